"""``edgesiam bench``: measure the shipped bundles on one thread.

``add_bench_parser(subparsers)`` adds the sub-command to the ``edgesiam`` parser;
``cmd_bench(args)`` runs it.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from edgesiam.argparsing import add_command, add_quiet, pass_through

__all__ = ["add_bench_parser", "cmd_bench"]

SKIPPABLE = {
    "mqtt": "no Mosquitto end-to-end latency",
    "rss": "no device-only RSS run",
    "accuracy": "no accuracy table (held-out trials)",
}
"""The measurements ``--skip-<part>`` leaves out (``run_all(skip_<part>=True)``)."""
HELP = "latency, cost, memory and size of the shipped bundles"
DESCRIPTION = textwrap.dedent(
    """
    Measure every bundle in BUNDLES (default: export/) on one thread: per-window latency of
    torch eager (runs/<name>/best.pt when present), TFLite float32 and TFLite int8; the full
    pipeline (front-end + int8 model + matching) in ms per second of signal and as a real-time
    factor; model sizes; matching cost for galleries of 1 to 10 000 templates; the peak RSS of
    a device-only `edgesiam run`; end-to-end latency window end -> subscriber through a local
    Mosquitto; the peers (Resemblyzer, openWakeWord's features, EfficientWord-Net) timed on
    the same audio; and accuracy: each bundle, the classic baseline (MFCC or channel
    statistics) and Resemblyzer on the same held-out trials of DATA (DET curves into --plots).
    Prints a markdown table (for the README); --json and --plots write the rest.

    Example: edgesiam bench --json runs/bench.json --plots runs/bench --markdown runs/bench.md
    """
)


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``bench`` to an ``argparse`` sub-parser collection; returns the new parser."""
    p: argparse.ArgumentParser = add_command(
        subparsers, "bench", help=HELP, description=DESCRIPTION
    )
    p.add_argument("--bundles", default="export", metavar="DIR", help="bundles (default: export)")
    p.add_argument("--json", metavar="OUT", help="write every figure as JSON")
    p.add_argument(
        "--plots", metavar="DIR", help="write the latency-vs-gallery-size and DET plots (PNG)"
    )
    p.add_argument("--markdown", metavar="OUT.md", help="also write the markdown table to a file")
    p.add_argument("--quick", action="store_true", help="the small smoke version (seconds)")
    for part, text in SKIPPABLE.items():
        p.add_argument(f"--skip-{part}", action="store_true", help=text)
    p.add_argument("--runs", default="runs", metavar="DIR", help="checkpoints: DIR/<name>/best.pt")
    p.add_argument(
        "--data",
        default="data",
        metavar="DIR",
        help="prepared data root: held-out test sets, and speech/test for the peers (default: data)",
    )
    add_quiet(p, help="no progress lines")
    p.set_defaults(func=cmd_bench)
    return p


def cmd_bench(args: argparse.Namespace) -> int:
    from edgesiam.tools.bench import measure, report

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    try:
        result = measure.run_all(
            args.bundles,
            runs_dir=args.runs,
            data_dir=args.data,
            plots_dir=args.plots,
            log=log,
            **pass_through(args, "quick", *(f"skip_{part}" for part in SKIPPABLE)),
        )
    except FileNotFoundError as exc:
        print(f"edgesiam bench: {exc}", file=sys.stderr)
        return 2
    md = report.markdown(result)
    if args.plots:
        result["plots"] = [str(p) for p in report.plot(result, args.plots)]
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(md)
    print(md)
    return 0
