"""``edgesiam enroll`` and ``edgesiam gallery list|forget``: the gallery from the command line.

``add_gallery_parsers(subparsers)`` adds both sub-commands to the ``edgesiam`` parser; each sets
``func`` to its ``cmd_*`` function. Everything here runs on the device install: the bundle is
opened with :mod:`edgesiam.interpreters` (no torch, tensorflow or librosa).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from edgesiam.runtime.gallery_store import MAX_RECORDINGS, GalleryInfo, GalleryStore

__all__ = ["add_gallery_parsers", "cmd_enroll", "cmd_gallery_forget", "cmd_gallery_list"]

ENROLL_DESCRIPTION = textwrap.dedent(
    f"""
    Enroll a label (a person, a sound, a gesture) from 1 to {MAX_RECORDINGS} example recordings,
    so that the runtime recognises it. Each recording is embedded with the bundle's int8 model
    (the mean of its windows' embeddings) and stored as one template in the gallery file.

    The gallery is one .npz file, written atomically (a power cut leaves the old or the new
    gallery, never a broken one) and bound to the bundle's model: a gallery enrolled with one
    model is refused with any other (re-enroll with the new bundle into a new file).

    Audio files (.wav .flac .ogg .opus) are resampled to the bundle's rate; sensor files
    (.csv .npy) must have the bundle's channels. Enrolling a label again replaces its
    recordings; --append adds to them instead.

    The consistency is the mean cosine between the recordings (1.0 = identical; n/a for one):
    low values mean the recordings disagree (different conditions, or the wrong clip). You are
    warned about clips shorter than one window, silent or mostly silent clips, and labels that
    are close to another enrolled label.

    examples:
      edgesiam enroll --bundle bundles/speaker --gallery gallery.npz --label alice \\
          alice1.wav alice2.wav alice3.wav
      edgesiam enroll --bundle bundles/speaker --gallery gallery.npz --label alice --append \\
          alice4.wav
      edgesiam enroll --bundle bundles/motion --gallery moves.npz --label wave wave*.csv
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
    en.add_argument("files", nargs="+", metavar="FILE", help="example recordings of the label")
    en.add_argument("--bundle", required=True, metavar="BUNDLE_DIR", help="the exported bundle")
    en.add_argument(
        "--gallery", required=True, metavar="GALLERY", help="gallery file (created when absent)"
    )
    en.add_argument("--label", required=True, help="the name to enroll (1-64 characters)")
    en.add_argument(
        "--append", action="store_true", help="add to the label's recordings instead of replacing"
    )
    en.add_argument(
        "--gate-db",
        type=float,
        default=-45.0,
        metavar="DBFS",
        help="audio level under which a clip or window counts as silent (default -45)",
    )
    en.add_argument(
        "--sensor-threshold",
        type=float,
        default=0.02,
        metavar="STD",
        help="sensor activity (total std of the first three channels) under which a clip counts as "
        "motionless (default 0.02)",
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
    from edgesiam.bundle import load_manifest
    from edgesiam.runtime.gallery_store import model_sha256

    manifest = load_manifest(Path(bundle))
    return model_sha256(manifest), manifest.name


def cmd_enroll(args: argparse.Namespace) -> int:
    from edgesiam.core.gate import EnergyGate
    from edgesiam.interpreters import load_model
    from edgesiam.runtime.gallery_store import enroll_recordings, model_sha256, validate_label

    validate_label(args.label)
    embedder = load_model(Path(args.bundle))
    store = GalleryStore(
        Path(args.gallery), model_sha256(embedder.manifest), bundle_name=embedder.manifest.name
    )
    gate = EnergyGate(args.gate_db, sensor_threshold=args.sensor_threshold)
    result = enroll_recordings(
        store, embedder, args.label, [Path(f) for f in args.files], gate=gate, append=args.append
    )
    if args.json:
        print(
            json.dumps(
                {
                    "gallery": str(store.path),
                    "label": result.label,
                    "recordings": result.recordings,
                    "consistency": None if result.recordings < 2 else result.consistency,
                    "replaced": result.replaced,
                    "closest": None
                    if result.closest is None
                    else {"label": result.closest[0], "score": result.closest[1]},
                    "warnings": result.warnings,
                },
                indent=2,
            )
        )
        return 0
    verb = "re-enrolled" if result.replaced else "enrolled"
    print(
        f"{verb} '{result.label}' from {result.recordings} recording"
        f"{'s' if result.recordings != 1 else ''} into {store.path} "
        f"(model {embedder.manifest.name}, sha256 {(store.bundle_sha256 or '')[:12]}…)"
    )
    print(
        f"  consistency: {result.consistency_text} (mean cosine between the recordings; "
        "1.0 = identical, n/a for one)"
    )
    if result.closest is not None:
        print(f"  closest other label: {result.closest[0]} ({result.closest[1]:.3f})")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


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
