"""``edgesiam fleet-bench``: the fleet benchmark's parser and entry point
(:func:`edgesiam.tools.fleet.run_fleet`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap
from pathlib import Path
from typing import Any

from edgesiam.tools.fleet import FleetSpec, format_report, run_fleet

__all__ = ["add_fleet_bench_parser", "cmd_fleet_bench"]

FLEET_DESCRIPTION = textwrap.dedent(
    """
    Measure the dashboard's ingest under load: simulated devices (processes of paho clients, each
    device with a retained status and a last will) publish edgesiam.event.v1 events with QoS 1 at
    a fixed rate, with ids and seqs as the runtime makes them, through a real Mosquitto into a
    dashboard Ingester and its SQLite history, or (--history postgresql://… --ingesters N) into N
    ingester processes sharing the events through $share/fleet/… and one PostgreSQL history.
    Prints the publish and ingest rates, how many events the history is missing (the goal is
    none) and how many arrived twice, the publish → history latency (p50/p95) and the history's
    size.

    Without --broker it starts its own Mosquitto on a free port (mosquitto must be installed).

    Examples:
      edgesiam fleet-bench                                   # 100 devices × 5 events/s × 60 s
      edgesiam fleet-bench --devices 10 --rate 5 --seconds 3 --json fleet.json
      edgesiam fleet-bench --devices 1000 --rate 1 --seconds 30 --processes 8 \\
          --history postgresql://edgesiam@localhost/fleet --ingesters 4
    """
)


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_fleet_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``fleet-bench`` to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "fleet-bench",
        help="simulated devices → Mosquitto → dashboard history: throughput and lost events",
        description=FLEET_DESCRIPTION,
        formatter_class=_formatter,
    )
    p.add_argument(
        "--devices", type=int, default=100, help="simulated devices (default: %(default)s)"
    )
    p.add_argument(
        "--rate",
        type=float,
        default=5.0,
        help="events per second per device (default: %(default)g)",
    )
    p.add_argument(
        "--seconds", type=float, default=60.0, help="how long they publish (default: %(default)g)"
    )
    p.add_argument(
        "--broker",
        metavar="URL",
        help="an existing broker, mqtt://host:port (default: start a Mosquitto on a free port)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=0,
        help="publisher processes (default: one per 25 devices)",
    )
    p.add_argument(
        "--data-dir", metavar="DIR", help="keep the history here (default: a temporary folder)"
    )
    p.add_argument(
        "--history",
        metavar="TARGET",
        help="the history: a SQLite file (default: a fresh one under --data-dir) or "
        "postgresql://user@host/db (events of other runs there are left alone)",
    )
    p.add_argument(
        "--ingesters",
        type=int,
        default=1,
        metavar="N",
        help="ingester processes sharing the events ($share/fleet/…); above 1 needs a "
        "postgresql:// --history (default: %(default)s)",
    )
    p.add_argument("--json", metavar="OUT", type=Path, help="also write the figures as JSON")
    p.set_defaults(func=cmd_fleet_bench)
    return p  # type: ignore[no-any-return]


def cmd_fleet_bench(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    spec = FleetSpec(
        devices=args.devices,
        rate=args.rate,
        seconds=args.seconds,
        processes=args.processes or max(1, (args.devices + 24) // 25),
    )
    report = run_fleet(
        spec,
        broker=args.broker,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        history_target=args.history,
        ingesters=args.ingesters,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(format_report(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["missing"] == 0 else 1
