"""A teacher's embeddings of dataset recordings, through the on-disk cache: what ``edgesiam eval
--peer`` scores beside the model, and the targets distillation will train towards.

A teacher embeds each recording whole, as it was designed to (not the windows-then-mean of our own
models), from the recording read at the teacher's sample rate.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from edgesiam.data.readers import DatasetInfo, read_audio
from edgesiam.errors import ConfigError, DataError
from edgesiam.train.teachers import PEERS
from edgesiam.train.teachers.aisfx import AiSfx, load_aisfx
from edgesiam.train.teachers.cache import TeacherCache
from edgesiam.train.teachers.campplus import CamPlusPlus, load_campplus
from edgesiam.train.teachers.resemblyzer import ResemblyzerPeer

if TYPE_CHECKING:
    from edgesiam.model.embedders import EmbeddedDataset

Teacher = CamPlusPlus | AiSfx | ResemblyzerPeer
"""A teacher or peer: in this process (torch) or in the peers venv (Resemblyzer)."""


class _Identified(Protocol):
    name: str
    weights_sha256: str
    revision: int


def load_teacher(name: str, root: Path = Path("data")) -> Teacher:
    """The teacher ``name`` (see :data:`~edgesiam.train.teachers.PEERS`) with its weights,
    downloaded once into ``ROOT/.cache`` (Resemblyzer's come with the peers venv)."""
    if name == "campplus":
        return load_campplus(root)
    if name == "aisfx":
        return load_aisfx(root)
    if name == "resemblyzer":
        return ResemblyzerPeer()
    raise ConfigError(f"unknown teacher {name!r}; known: {', '.join(PEERS)}")


def teacher_cache(teacher: _Identified, root: Path = Path("data")) -> TeacherCache:
    """The cache of ``teacher``'s embeddings under ``ROOT/.cache/teachers``."""
    from edgesiam.data.recipes.base import cache_dir

    folder = cache_dir(root) / "teachers"
    return TeacherCache(folder, teacher.name, teacher.weights_sha256, teacher.revision)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch threads (unchanged when None), then restore the count."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def teacher_embeddings(
    teacher: Teacher,
    data_dir: Path,
    files: Sequence[Path],
    root: Path = Path("data"),
    progress: bool = True,
    threads: int | None = 1,
) -> np.ndarray:
    """``(len(files), D)`` L2-normalised embeddings of audio ``files`` inside ``data_dir``,
    computed only for files the cache does not already hold as they are.

    One torch thread by default: one recording is too little work to share between cores, and
    threads waiting on each other crawl on a busy machine (30 times slower was measured with two
    threads on a loaded 2-core workstation).
    """

    cache = teacher_cache(teacher, root)
    if isinstance(teacher, ResemblyzerPeer):  # one run in the peers venv for what is missing
        stale = cache.stale(Path(data_dir), files)
        rows = teacher.embed_files(stale, progress) if stale else np.zeros((0, 0))
        done = {str(path): row for path, row in zip(stale, rows, strict=True)}
        return cache.embeddings(Path(data_dir), files, lambda p: done[str(p)], progress=False)
    model = teacher

    def compute(path: Path) -> np.ndarray:
        return model.embed(read_audio(path, model.sample_rate))

    with torch_threads(threads):
        return cache.embeddings(Path(data_dir), files, compute, progress=progress)


def peer_system(
    name: str, info: DatasetInfo, ours: EmbeddedDataset, root: Path, progress: bool = True
) -> dict[str, tuple[np.ndarray, list[str], list[str | None]]]:
    """``{report name: (embeddings, labels, groups)}`` of peer ``name`` on the recordings that
    ``ours`` holds, so that it is scored on exactly the same trials as the model."""
    if info.modality != "audio":
        raise DataError(
            f"the peer {name} embeds audio; the dataset holds {info.modality}", info.root
        )
    teacher = load_teacher(name, root)
    files = [Path(p) for p in ours.paths]
    embeddings = teacher_embeddings(teacher, info.root, files, root, progress)
    return {PEERS[name]: (embeddings, ours.labels, ours.groups)}
