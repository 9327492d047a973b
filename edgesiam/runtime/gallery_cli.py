"""``edgesiam enroll`` and ``edgesiam gallery list|forget``: the gallery from the command line.

``add_gallery_parsers(subparsers)`` adds both sub-commands to the ``edgesiam`` parser; each sets
``func`` to its ``cmd_*`` function. Everything here runs on the device install: the bundle is
opened with :mod:`edgesiam.model.interpreters` (no torch, tensorflow or librosa).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from edgesiam.core.embedder import DeviceEmbedder
from edgesiam.core.gate import DEFAULT_SENSOR_THRESHOLD, DEFAULT_THRESHOLD_DB
from edgesiam.core.matching import Gallery
from edgesiam.errors import ConfigError, DataError, EdgesiamError
from edgesiam.runtime.gallery_store import MAX_RECORDINGS, Enrolment, GalleryInfo, GalleryStore

__all__ = ["add_gallery_parsers", "cmd_enroll", "cmd_gallery_forget", "cmd_gallery_list"]

ENROLL_DESCRIPTION = textwrap.dedent(
    f"""
    Enroll a label (a person, a sound, a gesture) from 1 to {MAX_RECORDINGS} example recordings,
    so that the runtime recognises it. Each recording is embedded with the bundle's int8 model
    and stored as one template in the gallery file.

    Give the recordings as files, as a folder (every recording in it; other files such as
    notes.txt are skipped with one line), or enroll every DIR/<label>/ of a dataset folder at
    once with --from-dataset DIR. Audio (.wav .flac .ogg .opus .mp3 .m4a .aac) is resampled to
    the bundle's rate (.m4a/.aac need ffmpeg); sensor files (.csv .npy) must have the bundle's
    channels. CSV headers are matched by name; the dataset.toml beside a file (or one folder
    above its label folder) gives its rate, column names and units.

    Enrolling a label again REPLACES its recordings (the default); --append adds the new ones
    to them instead (at most {MAX_RECORDINGS} in all).

    A template is made from the clip's active windows only: those at or above the runtime's
    energy gate (--gate-db, default {DEFAULT_THRESHOLD_DB:g} dBFS, for audio). As in the runtime,
    the gate is on for audio bundles and off for sensor bundles; --gate on|off says otherwise.
    A clip with no active window (silence, a dead microphone, no motion) is refused with the
    reason, and the report says how many windows of each clip were active.

    The gallery is one .npz file, written atomically and bound to the bundle's model: a gallery
    enrolled with one model is refused with any other (re-enroll into a new file).

    The consistency is the mean cosine between the recordings (1.0 = identical; n/a for one):
    low values mean the recordings disagree (different conditions, or the wrong clip). You are
    warned about clips shorter than one window, mostly silent clips, and labels that are close
    to another enrolled label.

    examples:
      edgesiam enroll --bundle export/speaker --gallery gallery.npz --label alice \\
          alice1.wav alice2.wav alice3.wav
      edgesiam enroll --bundle export/speaker --gallery gallery.npz --label alice --append \\
          alice4.mp3
      edgesiam enroll --bundle export/events --gallery workshop.npz --label saw recordings/saw/
      edgesiam enroll --bundle export/events --gallery workshop.npz --from-dataset recordings/
      edgesiam enroll --bundle export/motion --gallery moves.npz --label wave wave*.csv

    exit status: 0 when every label was enrolled, 1 when --from-dataset enrolled only some of
    them, 2 for an error.
    """
)

GALLERY_DESCRIPTION = textwrap.dedent(
    """
    Look at or change an enrolled gallery (see 'edgesiam enroll --help').

    examples:
      edgesiam gallery list --gallery gallery.npz
      edgesiam gallery list --gallery gallery.npz --bundle bundles/speaker   # also checks the model
      edgesiam gallery list --gallery gallery.npz --json
      edgesiam gallery forget --gallery gallery.npz --label alice
    """
)


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_gallery_parsers(subparsers: Any) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Add ``enroll`` and ``gallery`` (``list``, ``forget``) to an ``argparse`` sub-parser set."""
    en = subparsers.add_parser(
        "enroll",
        help=f"enroll a label from 1-{MAX_RECORDINGS} recordings into a gallery",
        description=ENROLL_DESCRIPTION,
        formatter_class=_formatter,
    )
    en.add_argument(
        "files",
        nargs="*",
        metavar="FILE_OR_FOLDER",
        help="example recordings of the label, or folders of them",
    )
    en.add_argument("--bundle", required=True, metavar="BUNDLE_DIR", help="the exported bundle")
    en.add_argument(
        "--gallery", required=True, metavar="GALLERY", help="gallery file (created when absent)"
    )
    en.add_argument("--label", help="the name to enroll (1-64 characters)")
    en.add_argument(
        "--from-dataset",
        metavar="DIR",
        help="enroll every DIR/<label>/ of a dataset folder (instead of --label and files)",
    )
    en.add_argument(
        "--append",
        action="store_true",
        help="add to the label's recordings (default: replace them)",
    )
    en.add_argument(
        "--gate",
        choices=("auto", "on", "off"),
        default="auto",
        help="the energy gate that picks a clip's active windows: auto = as the runtime "
        "(on for audio, off for sensors)",
    )
    en.add_argument(
        "--gate-db",
        type=float,
        default=DEFAULT_THRESHOLD_DB,
        metavar="DBFS",
        help=f"audio level under which a window is silent (default {DEFAULT_THRESHOLD_DB:g}, "
        "as matching.gate.threshold_db)",
    )
    en.add_argument(
        "--sensor-threshold",
        type=float,
        default=DEFAULT_SENSOR_THRESHOLD,
        metavar="STD",
        help="sensor activity (total std of the first three channels) under which a window is "
        f"still (default {DEFAULT_SENSOR_THRESHOLD:g}, as matching.gate.sensor_threshold)",
    )
    en.add_argument("--json", action="store_true", help="print the result as JSON")
    en.set_defaults(func=cmd_enroll)

    ga = subparsers.add_parser(
        "gallery",
        help="list or forget enrolled labels",
        description=GALLERY_DESCRIPTION,
        formatter_class=_formatter,
    )
    ga_sub = ga.add_subparsers(dest="gallery_command", metavar="ACTION", required=True)
    ls = ga_sub.add_parser(
        "list",
        help="the enrolled labels and the model the gallery belongs to",
        description="List the labels of a gallery, with their recordings and consistency. "
        "With --bundle, also check that the gallery belongs to that bundle's model.",
        formatter_class=_formatter,
    )
    ls.add_argument("--gallery", required=True, metavar="GALLERY")
    ls.add_argument("--bundle", metavar="BUNDLE_DIR", help="check the gallery against this bundle")
    ls.add_argument("--json", action="store_true", help="print the gallery as JSON")
    ls.set_defaults(func=cmd_gallery_list)
    fg = ga_sub.add_parser(
        "forget",
        help="remove a label",
        description="Remove a label and its recordings from a gallery (atomically).",
        formatter_class=_formatter,
    )
    fg.add_argument("--gallery", required=True, metavar="GALLERY")
    fg.add_argument("--label", required=True)
    fg.add_argument("--bundle", metavar="BUNDLE_DIR", help="check the gallery against this bundle")
    fg.set_defaults(func=cmd_gallery_forget)
    return en, ga


def _bundle_sha(bundle: str | None) -> tuple[str | None, str | None]:
    if bundle is None:
        return None, None
    from edgesiam.model.bundle import load_manifest
    from edgesiam.runtime.gallery_store import model_sha256

    manifest = load_manifest(Path(bundle))
    return model_sha256(manifest), manifest.name


def cmd_enroll(args: argparse.Namespace) -> int:
    from edgesiam.core.gate import EnergyGate
    from edgesiam.model.interpreters import load_model
    from edgesiam.runtime.gallery_store import model_sha256, validate_label

    if args.from_dataset is not None:
        if args.label is not None or args.files:
            raise ConfigError(
                "--from-dataset takes the labels from the folder names: give no --label or files"
            )
    elif args.label is None or not args.files:
        raise ConfigError(
            "give --label NAME and the recordings (files or a folder), or --from-dataset DIR"
        )
    else:
        validate_label(args.label)
    embedder = load_model(Path(args.bundle))
    store = GalleryStore(
        Path(args.gallery), model_sha256(embedder.manifest), bundle_name=embedder.manifest.name
    )
    enabled = {"auto": None, "on": True, "off": False}[args.gate]
    gate = EnergyGate.for_modality(
        embedder.modality, args.gate_db, enabled=enabled, sensor_threshold=args.sensor_threshold
    )
    plan: dict[str, list[Path]]
    if args.from_dataset is None:
        plan = {str(args.label): _recordings_of(args.files, embedder.modality)}
    else:
        plan = _dataset_plan(Path(args.from_dataset), embedder.modality)
    _check_counts(store, plan, args.append)
    done: list[Enrolment] = []
    failed: list[tuple[str, str]] = []
    for label, files in plan.items():
        try:
            done.append(_enroll_one(store, embedder, label, files, gate, args.append))
        except EdgesiamError as exc:
            if args.from_dataset is None:
                raise
            failed.append((label, str(exc)))
    done = _final_closest(store, done)
    _print_enrolments(args, store, embedder.manifest.name, done, failed)
    _warn_confusions(store, embedder.manifest, [r.label for r in done])
    return 1 if failed else 0


def _final_closest(store: GalleryStore, done: list[Enrolment]) -> list[Enrolment]:
    """Each enrolled label's closest other label in the gallery as it is now (with
    --from-dataset, labels enrolled after it count too)."""
    closest = label_closest(store.load())
    for result in done:
        result.closest = closest.get(result.label)
    return done


def label_closest(gallery: Gallery) -> dict[str, tuple[str, float]]:
    """Per label, the other label whose templates come closest to its own, and that cosine."""
    labels = gallery.labels
    if len(labels) < 2:
        return {}
    scores = gallery.scores(gallery.embeddings)  # (templates, labels)
    owner = np.array([labels.index(x) for x in gallery.template_labels])
    out: dict[str, tuple[str, float]] = {}
    for i, label in enumerate(labels):
        per_label = scores[owner == i].max(axis=0)
        per_label[i] = -np.inf
        j = int(np.argmax(per_label))
        out[label] = (labels[j], float(per_label[j]))
    return out


def current_thresholds(
    store: GalleryStore, manifest: Any
) -> tuple[dict[str, float], float, str, np.ndarray | None]:
    """The thresholds ``run`` would use without a config: the gallery's calibration per label,
    else the bundle's window threshold at the default target FMR; and the background mean the
    scores are centred on (a calibration made with ``matching.centre: background``), else None."""
    from edgesiam.core.matching import DEFAULT_TARGET_FMR, threshold_for
    from edgesiam.core.normalise import background_mean
    from edgesiam.runtime.calibration_store import CalibrationStore

    default = threshold_for(manifest.thresholds.window.at_fmr, DEFAULT_TARGET_FMR)
    uncalibrated: tuple[dict[str, float], float, str, np.ndarray | None] = (
        {},
        default,
        "the bundle's threshold at FMR 0.001",
        None,
    )
    calibrations = CalibrationStore(store.path, store.bundle_sha256 or "")
    calibration = calibrations.load()
    if calibration is None or calibration.score not in ("cosine", "centred-cosine"):
        return uncalibrated
    mean = None
    if calibration.score == "centred-cosine":
        cohort = calibrations.load_cohort(int(manifest.embedding_dim))
        mean = None if cohort is None else background_mean(cohort.background)
        if mean is None:
            return uncalibrated
    return calibration.thresholds(), default, "the calibrated threshold", mean


def _warn_confusions(store: GalleryStore, manifest: Any, enrolled: list[str]) -> None:
    """A warning, with what to do, for each enrolled label another label would be taken for."""
    from edgesiam.core.normalise import centred_gallery

    per_label, default, what, mean = current_thresholds(store, manifest)
    gallery = store.load()
    if mean is not None and len(gallery):
        gallery = centred_gallery(gallery, mean)
    for label, (other, score) in label_closest(gallery).items():
        threshold = per_label.get(other, default)
        if label not in enrolled or score < threshold:
            continue
        kind = "score (centred on the background)" if mean is not None else "score"
        print(
            f"warning: '{label}' and '{other}' would be confused: their closest recordings "
            f"{kind} {score:.3f}, at or above {what} for '{other}' ({threshold:.3f}). Record "
            "both again in the same conditions with longer, clearer clips (and check no clip is "
            "of the other), or make them stricter: edgesiam calibrate, or matching.margin in the "
            "runtime config",
            file=sys.stderr,
        )


def _recordings_of(names: list[str], modality: str) -> list[Path]:
    """Files as given; a folder stands for the recordings in it (other files skipped)."""
    from edgesiam.data.readers import list_recordings

    files: list[Path] = []
    for name in names:
        path = Path(name)
        files.extend(list_recordings(path, modality) if path.is_dir() else [path])
    return files


def _dataset_plan(root: Path, modality: str) -> dict[str, list[Path]]:
    """Every label folder of a dataset folder and its recordings, in label order."""
    from edgesiam.data.readers import scan_dataset

    info = scan_dataset(root)
    if info.modality != modality:
        raise DataError(
            f"holds {info.modality} recordings, but the bundle is for {modality}", info.root
        )
    plan: dict[str, list[Path]] = {}
    for rec in info.recordings:
        plan.setdefault(rec.label, []).append(rec.path)
    return plan


def _check_counts(store: GalleryStore, plan: dict[str, list[Path]], append: bool) -> None:
    """Refuse a plan that would pass a label's limit before anything is written."""
    have = {}
    if append and store.exists():
        have = {info.label: info.recordings for info in store.list()}
    over = [
        f"{label} ({have.get(label, 0) + len(files)})"
        for label, files in plan.items()
        if have.get(label, 0) + len(files) > MAX_RECORDINGS
    ]
    if over:
        raise ConfigError(
            f"a label takes 1 to {MAX_RECORDINGS} recordings; these would have more: "
            f"{', '.join(over)}. Keep the best {MAX_RECORDINGS} of each (few-shot enrolment), "
            "or enroll without --append to replace the old ones"
        )


def _enroll_one(
    store: GalleryStore,
    embedder: DeviceEmbedder,
    label: str,
    files: list[Path],
    gate: Any,
    append: bool,
) -> Enrolment:
    from edgesiam.runtime.enrollment import enroll_recordings
    from edgesiam.runtime.gallery_store import validate_label

    validate_label(label)
    return enroll_recordings(store, embedder, label, files, gate=gate, append=append)


def _enrolment_json(result: Enrolment) -> dict[str, Any]:
    return {
        "label": result.label,
        "recordings": result.recordings,
        "consistency": None if result.recordings < 2 else result.consistency,
        "replaced": result.replaced,
        "clips": [clip.to_dict() for clip in result.clips],
        "closest": None
        if result.closest is None
        else {"label": result.closest[0], "score": result.closest[1]},
        "warnings": result.warnings,
    }


def _print_enrolments(
    args: argparse.Namespace,
    store: GalleryStore,
    model: str,
    done: list[Enrolment],
    failed: list[tuple[str, str]],
) -> None:
    if args.json:
        if args.from_dataset is None:
            out: dict[str, Any] = {"gallery": str(store.path), **_enrolment_json(done[0])}
        else:
            out = {
                "gallery": str(store.path),
                "labels": [_enrolment_json(result) for result in done],
                "failed": [{"label": label, "error": error} for label, error in failed],
            }
        print(json.dumps(out, indent=2))
        return
    for result in done:
        verb = "re-enrolled" if result.replaced else "enrolled"
        print(
            f"{verb} '{result.label}' from {result.recordings} recording"
            f"{'s' if result.recordings != 1 else ''} into {store.path} "
            f"(model {model}, sha256 {(store.bundle_sha256 or '')[:12]}…)"
        )
        for clip in result.clips:
            print(f"  {clip.text}")
        print(
            f"  consistency: {result.consistency_text} (mean cosine between the recordings; "
            "1.0 = identical, n/a for one)"
        )
        if result.closest is not None:
            print(f"  closest other label: {result.closest[0]} ({result.closest[1]:.3f})")
        for warning in result.warnings:
            if not any(warning == clip.text for clip in result.clips):
                print(f"warning: {warning}", file=sys.stderr)
    for label, error in failed:
        print(f"edgesiam: error: label '{label}': {error}", file=sys.stderr)


def _info_json(info: GalleryInfo) -> dict[str, Any]:
    return {
        "gallery": str(info.path),
        "bundle_name": info.bundle_name,
        "bundle_sha256": info.bundle_sha256,
        "embedding_dim": info.embedding_dim,
        "created": info.created,
        "updated": info.updated,
        "labels": [
            {
                "label": lab.label,
                "recordings": lab.recordings,
                "consistency": None if lab.recordings < 2 else lab.consistency,
                "enrolled": lab.enrolled,
                "updated": lab.updated,
                "sources": lab.sources,
            }
            for lab in info.labels
        ],
    }


def cmd_gallery_list(args: argparse.Namespace) -> int:
    sha, name = _bundle_sha(args.bundle)
    store = GalleryStore(Path(args.gallery), sha, bundle_name=name)
    info = store.info()
    if args.json:
        print(json.dumps(_info_json(info), indent=2, ensure_ascii=False))
        return 0
    model = info.bundle_name or "?"
    print(
        f"{info.path}: {len(info.labels)} label{'s' if len(info.labels) != 1 else ''}, "
        f"{info.templates} recording{'s' if info.templates != 1 else ''}; model {model} "
        f"(sha256 {info.bundle_sha256[:12]}…), embedding size {info.embedding_dim}"
    )
    if sha is not None:
        print(f"  matches the bundle {args.bundle}")
    if not info.labels:
        print("  (no labels enrolled)")
        return 0
    width = max(5, *(len(lab.label) for lab in info.labels))
    print(f"  {'label':<{width}}  recordings  consistency  updated")
    for lab in info.labels:
        print(
            f"  {lab.label:<{width}}  {lab.recordings:>10}  {lab.consistency_text:>11}  "
            f"{lab.updated}"
        )
    return 0


def cmd_gallery_forget(args: argparse.Namespace) -> int:
    sha, name = _bundle_sha(args.bundle)
    store = GalleryStore(Path(args.gallery), sha, bundle_name=name)
    removed = store.forget(args.label)
    left = len(store.list())
    print(
        f"forgot '{args.label}' ({removed} recording{'s' if removed != 1 else ''}) from "
        f"{store.path}; {left} label{'s' if left != 1 else ''} left"
    )
    return 0
