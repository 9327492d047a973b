"""``edgesiam export``: the command-line face of :func:`edgesiam.export.export_bundle`.

``add_export_parser(subparsers)`` adds the sub-command to the ``edgesiam`` parser;
``cmd_export(args)`` runs it. ``load_model(path)`` (from :mod:`edgesiam.model.interpreters`) opens a
bundle directory as a ``DeviceEmbedder``.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any

from edgesiam.argparsing import add_command, add_quiet
from edgesiam.model.interpreters import is_bundle, load_model

__all__ = ["add_export_parser", "cmd_export", "is_bundle", "load_model"]

HELP = "export a checkpoint to a gated int8 TFLite bundle"
DESCRIPTION = textwrap.dedent(
    """
    Export a training checkpoint to a bundle: BUNDLE_DIR/ with manifest.json, model.tflite
    (full-integer int8: int8 input and output, every tensor inside int8/int32),
    model_float32.tflite, frontend.npz (the whole front-end state), weights.safetensors and
    recipe.yaml (float weights and resolved recipe, for `edgesiam tune`; never read on a device),
    MODEL_CARD.md and, when it helps, cohort.npy (score normalisation). The int8 model is calibrated with real windows of
    the training data (--calib, at least 200 windows).

    The gate measures the int8 model against the torch model on held-out labels (--heldout, by
    default the recipe's validation folder) and refuses to write the bundle unless: mean cosine
    >= 0.999 and min cosine >= 0.99 over held-out windows, EER(int8) - EER(torch) <= 0.5 points,
    no float op or DEQUANTIZE in the int8 graph, every op in the Edge TPU's supported list, and,
    when edgetpu_compiler is on PATH, a clean compile (model_edgetpu.tflite and its log are then
    added to the bundle). --force writes a failing bundle anyway, marked as failed.

    Thresholds for false-match rates 1e-2, 1e-3, 1e-4 and at the EER are calibrated on the
    held-out trials with the int8 model and stored in the manifest. A device's microphone, line
    or room moves every score: give --threshold-data the held-out labels re-recorded through
    other channels (`edgesiam data render`), and each target's threshold becomes the strictest
    over all the folders, so the false-match rate holds on each of them, not only on clean audio.

    Example:
      edgesiam export runs/speaker/best.pt -o export/speaker --calib data/speech/train \
        --heldout data/speech/val --threshold-data data/ood/speech-val/gsm \
        --threshold-data data/ood/speech-val/far-field
    """
)


def add_export_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``export`` to an ``argparse`` sub-parser collection; returns the new parser."""
    ex = add_command(subparsers, "export", help=HELP, description=DESCRIPTION)
    ex.add_argument("model", metavar="MODEL", help="training checkpoint (.pt)")
    ex.add_argument("-o", "--output", required=True, metavar="BUNDLE_DIR", help="bundle to write")
    ex.add_argument(
        "--calib", required=True, metavar="DATA_DIR", help="training data for int8 calibration"
    )
    ex.add_argument(
        "--heldout",
        metavar="DATA_DIR",
        help="held-out labels for the gate and thresholds (default: the recipe's data.val)",
    )
    ex.add_argument(
        "--threshold-data",
        action="append",
        default=[],
        metavar="DATA_DIR",
        help="more held-out recordings for the thresholds, e.g. --heldout re-recorded through "
        "another channel (repeatable): each threshold is the strictest over all folders",
    )
    ex.add_argument("--name", help="bundle name in the manifest (default: BUNDLE_DIR's name)")
    ex.add_argument("--float16", action="store_true", help="also write model_float16.tflite")
    ex.add_argument(
        "--dynamic-range", action="store_true", help="also write model_dynamic_range.tflite"
    )
    ex.add_argument(
        "--calib-windows",
        type=int,
        default=300,
        metavar="N",
        help="calibration windows (default 300, at least 200)",
    )
    ex.add_argument(
        "--min-mean-cosine",
        type=float,
        default=0.999,
        metavar="X",
        help="smallest allowed mean cosine(int8, torch) over held-out windows (default 0.999)",
    )
    ex.add_argument(
        "--min-cosine",
        type=float,
        default=0.99,
        metavar="X",
        help="smallest allowed cosine(int8, torch) of any held-out window (default 0.99)",
    )
    ex.add_argument(
        "--max-eer-delta",
        type=float,
        default=0.5,
        metavar="POINTS",
        help="largest allowed EER(int8) - EER(torch), in percentage points (default 0.5)",
    )
    ex.add_argument(
        "--l2-in-numpy",
        action="store_true",
        help="leave the L2_NORMALIZATION op out of the model (the loader normalises anyway): "
        "the int8 output keeps its own scale, a little closer to torch",
    )
    ex.add_argument("--no-cohort", action="store_true", help="never ship a score-norm cohort")
    ex.add_argument(
        "--cohort-size",
        type=int,
        default=200,
        metavar="N",
        help="training recordings in the score-normalisation cohort (default 200)",
    )
    ex.add_argument(
        "--edgetpu-compiler",
        metavar="PATH",
        help="edgetpu_compiler to run (default: edgetpu_compiler when it is on PATH)",
    )
    ex.add_argument("--force", action="store_true", help="write the bundle even if the gate fails")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing BUNDLE_DIR")
    ex.add_argument("--seed", type=int, default=0, help="seed of the calibration sampling")
    ex.add_argument("--on-error", choices=["fail", "skip"], default="fail")
    add_quiet(ex, help="no progress output")
    ex.set_defaults(func=cmd_export)
    return ex  # type: ignore[no-any-return]


def cmd_export(args: argparse.Namespace) -> int:
    from edgesiam.export.bundle_writer import ExportOptions, export_bundle
    from edgesiam.export.gate import GateLimits

    variants = [
        v for v, on in (("float16", args.float16), ("dynamic-range", args.dynamic_range)) if on
    ]
    options = ExportOptions(
        name=args.name,
        calib_windows=args.calib_windows,
        cohort_size=args.cohort_size,
        cohort=not args.no_cohort,
        variants=variants,
        limits=GateLimits(
            min_mean_cosine=args.min_mean_cosine,
            min_cosine=args.min_cosine,
            max_eer_delta_points=args.max_eer_delta,
        ),
        force=args.force,
        overwrite=args.overwrite,
        l2_in_model=not args.l2_in_numpy,
        edgetpu_compiler=args.edgetpu_compiler,
        seed=args.seed,
        threshold_data=[Path(d) for d in args.threshold_data],
        on_error=args.on_error,
        progress=not args.quiet,
        log=(lambda _m: None) if args.quiet else print,
    )
    result = export_bundle(
        Path(args.model),
        Path(args.output),
        Path(args.calib),
        Path(args.heldout) if args.heldout else None,
        options,
    )
    m = result.manifest
    print(
        f"wrote {result.bundle}: {', '.join(e.file for e in m.models.values())}; "
        f"gate {'passed' if m.gate.passed else 'FAILED (forced)'}; "
        f"window threshold at FMR 1e-3: {m.thresholds.window.at_fmr['0.001']:.4f}"
    )
    return 0
