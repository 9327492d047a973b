"""``edgesiam tune``: the command-line face of :func:`edgesiam.tune.run_tune`.

Only argparse at import time: torch is imported when the command runs, so ``edgesiam --help``
works on the device install.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any

from edgesiam.argparsing import add_command, add_quiet

HELP = "fine-tune a bundle on your own recordings → a gated bundle and a comparison"
DESCRIPTION = textwrap.dedent(
    """
    Fine-tune a shipped bundle (or a training checkpoint) on your own recordings, export it
    through the same gate as `edgesiam export`, and compare it with the original.

    DATA_DIR is a dataset folder: DATA_DIR/<label>/<recording>.(wav|flac|ogg|csv|npy), one
    modality, any sample rate (audio is resampled; a sensor folder's dataset.toml gives its rate
    and channels), at least 5 recordings per label. Several folders are pooled. It is checked
    first: labels with too few recordings, mixed audio and sensor files, sensor files with the
    wrong channels for the bundle and unreadable files are all named in one error.

    Files named GROUP__NAME belong to GROUP (a person, a session, a machine): whole groups are
    held out, so the held-out numbers say how the model does on a group it never saw. About 30%
    of the recordings are held out (the table, the gate and the thresholds), 20% of the rest
    decides early stopping, the rest tunes the encoder: the bundle's recipe (objective,
    augmentation) at a tenth of its learning rate, BatchNorm statistics frozen, for at most
    --minutes. Uses CUDA when torch sees one.

    OUT_BUNDLE is exported int8 with thresholds calibrated on the held-out part. When the gate
    fails, tune tries more calibration windows, the L2 step in numpy and (sensors) feature
    clipping before giving up. OUT_BUNDLE/TUNING.md and TUNING.json hold the held-out
    comparison: the tuned bundle, the original unchanged and the classic descriptor (EER, 5-way
    1/5-shot, leave-one-out top-1), and which to deploy.

    Example:
      edgesiam tune my_sounds/ --from export/events -o bundles/my-events --minutes 5
      edgesiam tune my_gestures/ --from export/motion -o bundles/my-motion --set optim.lr=0.001
    """
)


def add_tune_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``tune`` to an ``argparse`` sub-parser collection; returns the new parser."""
    tu = add_command(subparsers, "tune", help=HELP, description=DESCRIPTION)
    tu.add_argument("data", nargs="+", metavar="DATA_DIR", help="dataset folder(s) to tune on")
    tu.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="BUNDLE",
        help="bundle that carries weights (e.g. export/events), or a checkpoint runs/NAME/best.pt",
    )
    tu.add_argument("-o", "--output", required=True, metavar="OUT_BUNDLE", help="bundle to write")
    tu.add_argument(
        "--minutes", type=float, default=5.0, metavar="N", help="tuning time budget (default 5)"
    )
    tu.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a value of the bundle's recipe after tune's defaults, e.g. "
        "--set optim.lr=0.001 or --set sampler.batch_size=32 (repeatable)",
    )
    tu.add_argument(
        "--heldout",
        metavar="DIR",
        help="your own held-out folder (same labels, other recordings) instead of the split",
    )
    tu.add_argument(
        "--split-by",
        choices=["group", "recording"],
        default="group",
        help="hold out whole GROUP__ groups (default) or single recordings, for file names "
        "whose prefix is no person or session (a recording's own session may then sit on "
        "both sides, so the held-out figures are optimistic)",
    )
    tu.add_argument("--seed", type=int, default=0, help="seed of the split and the tuning")
    tu.add_argument("--overwrite", action="store_true", help="replace an existing OUT_BUNDLE")
    add_quiet(tu, help="no progress bars or messages")
    tu.set_defaults(func=cmd_tune)
    return tu  # type: ignore[no-any-return]


def cmd_tune(args: argparse.Namespace) -> int:
    from edgesiam.errors import MissingExtraError
    from edgesiam.settings import parse_override

    try:
        from edgesiam.tune import TuneRequest, run_tune
    except ImportError as exc:
        raise MissingExtraError(exc.name or "torch", "train") from None
    request = TuneRequest(
        data=[Path(d) for d in args.data],
        source=Path(args.source),
        output=Path(args.output),
        minutes=args.minutes,
        overrides=dict(parse_override(s) for s in args.set or []),
        heldout=Path(args.heldout) if args.heldout else None,
        split_by=args.split_by,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    run_tune(request, log=(lambda _m: None) if args.quiet else print)
    return 0
