"""``edgesiam run``: the device pipeline from a config file, with flags that override it.

``add_run_parser(subparsers)`` adds the sub-command; ``cmd_run(args)`` runs it;
``validate_runtime_file(path)`` checks a runtime config for ``edgesiam validate`` (a runtime config
is told from a training recipe by its top-level ``bundle:`` key, see :func:`is_runtime_file`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import textwrap
from pathlib import Path
from types import FrameType
from typing import Any

from edgesiam.argparsing import add_command, add_log_level
from edgesiam.errors import ConfigError
from edgesiam.paths import expand_user
from edgesiam.runtime.config import (
    RuntimeConfig,
    is_runtime_config,
    load_runtime_config,
    parse_source_uri,
)
from edgesiam.settings import UNSET, load_yaml

log = logging.getLogger("edgesiam.runtime")

__all__ = [
    "add_run_parser",
    "add_runtime_inputs",
    "cmd_run",
    "config_from_args",
    "is_runtime_file",
    "validate_runtime_file",
]

HELP = "run a bundle on a live stream and publish match events"
DESCRIPTION = textwrap.dedent(
    """
    Run a bundle on a live stream: window it, skip silence, embed each window with the int8
    model, match it against the enrolled gallery, and publish match events over MQTT (stored in
    a durable outbox first, so nothing is lost while the broker is away or the power goes).

    CONFIG is a YAML runtime config (see firmware_configs/); the flags override it, and with
    --bundle and --source no config file is needed. Sources:
      file:PATH          an audio file (resampled) or a sensor .csv/.npy; ends the run
      stdin:             raw s16le PCM (stdin:?sample_rate=48000&format=f32le; live=true|false)
      mic:[DEVICE]       a PortAudio microphone (needs edgesiam[audio]; ?sample_rate=48000)
      mqtt:TOPIC         IMU rows from a topic (?format=json|f32le); mqtt://HOST:PORT/TOPIC
      serial:PORT        one CSV line per sample (needs edgesiam[serial]; ?baudrate=115200)
    A stdin: or mic: rate other than the bundle's is resampled on the device. A recording piped
    into stdin: (one that arrives faster than real time) is waited for, never dropped.

    Examples:
      arecord -f S16_LE -r 16000 -c 1 | edgesiam run --bundle export/speaker --source stdin: --no-mqtt
      edgesiam run --config /etc/edgesiam/pi4-audio.yaml --broker mqtts://pi@broker.lan:8883
      edgesiam run --bundle export/events --gallery g.npz --source file:test.wav --no-mqtt --realtime

    Thresholds: a window matches a label when its score (cosine to the label's best template)
    is at least the label's threshold. By default that is the bundle's calibrated window
    threshold at --target-fmr (0.001: about one false match per thousand windows of other
    sounds); --threshold sets one cosine for every label; matching.per_label in the config sets
    a label's own; `edgesiam calibrate` (per label, for false matches per hour of this device's
    background) overrides those; cmd/threshold over MQTT overrides all and is kept across
    restarts. The run prints each label's threshold and where it comes from; with --no-mqtt,
    near misses (score just under the threshold) are printed on stderr with their gap, to tune
    offline.

    SIGINT/SIGTERM stop cleanly: the source stops, queued samples are processed, pending events
    are flushed, 'offline' is published. A second SIGINT quits at once.
    """
)


def add_runtime_inputs(
    parser: Any,
    config_help: str = "runtime config (YAML)",
    bundle_help: str = "bundle directory (from edgesiam export)",
) -> None:
    """``--config``, ``--bundle`` and ``--gallery``: what a verb that runs the device pipeline
    reads (``run``, ``calibrate``); the flags override the config's keys."""
    parser.add_argument("--config", metavar="CFG", help=config_help)
    parser.add_argument("--bundle", metavar="DIR", help=bundle_help)
    parser.add_argument("--gallery", metavar="FILE", help="enrolled gallery (.npz)")


def add_run_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``run`` to an ``argparse`` sub-parser collection; returns the new parser."""
    run = add_command(subparsers, "run", help=HELP, description=DESCRIPTION)
    add_runtime_inputs(run)
    run.add_argument("--source", metavar="URI", help="where samples come from (see above)")
    run.add_argument("--realtime", action="store_true", help="pace a file: source at its real rate")
    run.add_argument(
        "--broker", metavar="URL", help="mqtt[s]://[user@]host[:port] (password: see the config)"
    )
    run.add_argument(
        "--protocol",
        choices=["auto", "5", "3.1.1"],
        help="MQTT version (default auto: 5, falling back to 3.1.1, which edgesiam broker speaks)",
    )
    run.add_argument("--device-id", metavar="ID", help="this device's MQTT name (default: host)")
    run.add_argument("--state-dir", metavar="DIR", help="outbox and sequence numbers")
    run.add_argument(
        "--no-mqtt", action="store_true", help="publish nothing; print events to stdout"
    )
    run.add_argument(
        "--print-events", action="store_true", help="also print each event as a JSON line"
    )
    run.add_argument(
        "--threshold",
        type=float,
        metavar="COSINE",
        help="one cosine threshold for every label, in [-1, 1] (matching.threshold)",
    )
    run.add_argument(
        "--target-fmr",
        type=float,
        metavar="RATE",
        help="use the bundle's threshold calibrated for this false-match rate: 0.01, 0.001 "
        "(default) or 0.0001 (matching.target_fmr)",
    )
    add_log_level(run)
    run.set_defaults(func=cmd_run)
    return run  # type: ignore[no-any-return]


def _absolute(path: str, option: str) -> str:
    return str(expand_user(path, option).resolve())


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given, as dotted config keys."""
    out: dict[str, Any] = {}
    if args.bundle:
        out["bundle"] = _absolute(args.bundle, "--bundle")
    if args.gallery:
        out["gallery"] = _absolute(args.gallery, "--gallery")
    if args.source:
        source = parse_source_uri(args.source)
        if source["type"] == "file":
            source["path"] = _absolute(source["path"], "--source")
        out["source"] = source
    if args.realtime:
        out["source.realtime"] = True
    if args.broker:
        out["mqtt.url"] = args.broker
        out["mqtt.enabled"] = True
    if args.protocol:
        out["mqtt.protocol"] = args.protocol
    if args.device_id:
        out["device_id"] = args.device_id
    if args.state_dir:
        out["state_dir"] = _absolute(args.state_dir, "--state-dir")
    if args.no_mqtt:
        if args.broker:
            raise ConfigError("--no-mqtt and --broker contradict each other; give one")
        out["mqtt.enabled"] = False
    if args.print_events:
        out["print_events"] = True
    out.update(_threshold_overrides(args))
    return out


def _threshold_overrides(args: argparse.Namespace) -> dict[str, Any]:
    threshold = getattr(args, "threshold", None)
    target_fmr = getattr(args, "target_fmr", None)
    if threshold is not None and target_fmr is not None:
        raise ConfigError("--threshold and --target-fmr contradict each other; give one")
    if threshold is not None:  # the flag wins over either setting of the config file
        return {"matching.threshold": threshold, "matching.target_fmr": UNSET}
    if target_fmr is not None:
        return {"matching.target_fmr": target_fmr, "matching.threshold": UNSET}
    return {}


def config_from_args(args: argparse.Namespace) -> RuntimeConfig:
    """The validated config that ``edgesiam run`` would use for these arguments."""
    if not args.config and not (args.bundle and args.source):
        raise ConfigError(
            "edgesiam run needs --config CFG, or at least --bundle DIR and --source URI"
        )
    overrides = _overrides(args)
    config = load_runtime_config(args.config, overrides)
    if args.realtime and config.source.type != "file":
        raise ConfigError(f"--realtime paces file sources; this source is {config.source.type}:")
    return config


def _configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=getattr(logging, level.upper()),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    else:
        root.setLevel(getattr(logging, level.upper()))


def cmd_run(args: argparse.Namespace) -> int:
    """Build the runtime, run it until the source ends or a signal stops it."""
    from edgesiam.runtime.pipeline import CENTRING_PENDING, Runtime

    _configure_logging(args.log_level)
    config = config_from_args(args)
    runtime = Runtime(config, config_path=args.config)
    if runtime.centring == "pending":
        log.warning("%s", CENTRING_PENDING)  # the device is told to centre and cannot yet

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if runtime.stopping and signum == signal.SIGINT:
            raise KeyboardInterrupt
        runtime.stop(f"signal {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = runtime.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(
        f"edgesiam run: {summary.reason}; {summary.stream_s:.1f} s of stream in "
        f"{summary.wall_s:.1f} s, {summary.windows} windows, {summary.events} event(s), "
        f"{summary.near_misses} near miss(es), {summary.dropped_frames} dropped samples"
        + (
            f", {summary.outbox_refused} event(s) refused by the outbox (disk full)"
            if summary.outbox_refused
            else ""
        ),
        file=sys.stderr,
    )
    return 0


def is_runtime_file(path: str | Path) -> bool:
    """Whether a YAML file is a runtime config (it has a top-level ``bundle`` key)."""
    return is_runtime_config(load_yaml(Path(path)))


def validate_runtime_file(path: str | Path) -> RuntimeConfig:
    """Validate a runtime config file, or raise ``ConfigError`` listing every problem.

    Nothing on the device is touched: the bundle and gallery need not exist here, and secrets are
    not read.
    """
    return load_runtime_config(Path(path))
