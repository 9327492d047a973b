"""``edgesiam demo``: the sub-command's parser and its entry point."""

from __future__ import annotations

import argparse
import logging
import math
import textwrap
from typing import Any

from edgesiam.argparsing import add_command, pass_through
from edgesiam.errors import ConfigError
from edgesiam.tools.demo.run import TRADEOFF, run_demo

log = logging.getLogger(__name__)

__all__ = ["add_demo_parser", "cmd_demo"]

HELP = "the main job end to end: real speech → int8 bundle → enroll → stream → MQTT events"
DESCRIPTION = textwrap.dedent(
    """
    The main job end to end on this machine, with real data and real MQTT:

      1. prepare the real speech data (a no-op when DATA/speech is there);
      2. load the shipped int8 bundle;
      3. pick --labels held-out speakers of DATA/speech/test (never seen in training, seeded),
         different people (the Hedgewars voice packs may be one actor: at most one of them), and
         enroll each from --enroll-clips clips;
      4. start an MQTT broker (embedded amqtt on a free localhost port) or use --broker, and
         subscribe to the device's event topic;
      5. write a stream (WORKDIR/stream.wav): other clips of the enrolled speakers and clips of
         --others speakers never enrolled (none of them one of the enrolled people), in turns
         separated by low-level room noise;
      6. run the device runtime on it (file source, MQTT publisher, durable outbox) and print each
         event as it reaches the subscriber, with the speaker really talking at that moment;
      7. unless --no-calibrate: run `edgesiam calibrate` on the held-out speakers left over (test
         and validation labels, none of them in the stream; each one's clips back to back, as a
         device hears people talk) for --max-false-per-hour, and stream again with the
         calibrated thresholds, scores centred on that background (--centre) and each speaker
         scored by their mean enrollment clip (--aggregate), as the speaker profiles do;
      8. summarise each run: hits, misses, false matches, windows/s and the real-time factor;
         then calibrate the same stream for each --tradeoff target and print what each buys.

    Everything it writes goes to WORKDIR (stream.wav, stream.json with the true turns,
    gallery.npz, state/, summary.json).
    """
)

# ------------------------------------------------------------------------------------------------
# the command


def add_demo_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``demo`` to an ``argparse`` sub-parser collection; returns the new parser."""
    demo = add_command(subparsers, "demo", help=HELP, description=DESCRIPTION)
    demo.add_argument(
        "--bundle", default="export/speaker", metavar="DIR", help="bundle (default: %(default)s)"
    )
    demo.add_argument(
        "--data", default="data", metavar="ROOT", help="data root (default: %(default)s)"
    )
    demo.add_argument(
        "--labels", type=int, default=4, metavar="N", help="speakers to enroll (default: 4)"
    )
    demo.add_argument(
        "--enroll-clips", type=int, default=3, metavar="K", help="clips per speaker (default: 3)"
    )
    demo.add_argument(
        "--others",
        type=int,
        default=3,
        metavar="M",
        help="never-enrolled speakers in the stream (default: 3)",
    )
    demo.add_argument(
        "--turns", type=int, default=2, metavar="T", help="turns per speaker (default: 2)"
    )
    demo.add_argument("--seed", type=int, default=0, help="picks speakers and clips (default: 0)")
    demo.add_argument(
        "--broker",
        default="embedded",
        metavar="URL",
        help="'embedded' (amqtt on a free localhost port, the default) or mqtt://host:port",
    )
    demo.add_argument(
        "--workdir", default="runs/demo", metavar="DIR", help="outputs (default: %(default)s)"
    )
    demo.add_argument(
        "--target-fmr",
        type=float,
        default=1e-3,
        metavar="FMR",
        help="false-match rate of the bundle's calibrated threshold (default: 1e-3)",
    )
    demo.add_argument(
        "--realtime", action="store_true", help="pace the stream at its real rate (like a mic)"
    )
    demo.add_argument(
        "--no-calibrate",
        action="store_true",
        help="stream once at the bundle's threshold, without the calibration step",
    )
    demo.add_argument(
        "--max-false-per-hour",
        type=float,
        default=1.0 / 24.0,
        metavar="X",
        help="the calibration's target (default 1/24: one false match a day)",
    )
    demo.add_argument(
        "--margin",
        type=float,
        default=0.0,
        metavar="X",
        help="open-set margin (matching.margin; default 0: off)",
    )
    demo.add_argument(
        "--score-norm",
        choices=["off", "cohort"],
        default="off",
        help="score windows with the bundle's cohort (matching.score_norm; default off)",
    )
    demo.add_argument(
        "--centre",
        choices=["off", "background"],
        default="background",
        help="after calibrating, centre scores on the background's mean (matching.centre; "
        "default: %(default)s, as in the speaker profiles)",
    )
    demo.add_argument(
        "--aggregate",
        choices=["max", "mean"],
        default="mean",
        help="a speaker's score: the best of their templates or their mean template "
        "(matching.aggregate; default: %(default)s, as in the speaker profiles)",
    )
    demo.add_argument(
        "--tradeoff",
        type=_targets,
        default=TRADEOFF,
        metavar="X,Y,...",
        help="also calibrate the same stream for these false matches per hour and print what "
        "each buys (default: 1,10,60; 'none': skip)",
    )
    demo.set_defaults(func=cmd_demo)
    return demo  # type: ignore[no-any-return]


_PASSED_ON = (
    "labels",
    "enroll_clips",
    "others",
    "turns",
    "seed",
    "broker",
    "workdir",
    "realtime",
    "max_false_per_hour",
    "margin",
    "score_norm",
    "centre",
    "aggregate",
    "tradeoff",
)
"""The options :func:`~edgesiam.tools.demo.run.run_demo` takes as they are, under their names."""


def _targets(text: str) -> tuple[float, ...]:
    if text.strip().lower() == "none":
        return ()
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not all(v > 0 and math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"false matches per hour must be > 0: {text!r}")
    return values


def cmd_demo(args: argparse.Namespace) -> int:
    from edgesiam.runtime.config import MatchingConfig

    try:
        fmr = MatchingConfig(target_fmr=args.target_fmr).target_fmr
    except Exception as exc:
        raise ConfigError(f"--target-fmr {args.target_fmr}: {exc}") from None
    run_demo(
        args.bundle,
        args.data,
        target_fmr=fmr,
        calibrate=not args.no_calibrate,
        **pass_through(args, *_PASSED_ON),
    )
    return 0
