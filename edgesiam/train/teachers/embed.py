"""A teacher's embeddings of dataset recordings, through the on-disk cache: what ``edgesiam eval
--peer`` scores beside the model, and the targets distillation will train towards.

A teacher embeds each recording whole, as it was designed to (not the windows-then-mean of our own
models), from the recording read at the teacher's sample rate.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from edgesiam.data.readers import DatasetInfo, read_audio
from edgesiam.errors import ConfigError, DataError
from edgesiam.train.teachers import PEERS
from edgesiam.train.teachers.cache import TeacherCache
from edgesiam.train.teachers.campplus import CamPlusPlus, load_campplus

if TYPE_CHECKING:
    from edgesiam.model.embedders import EmbeddedDataset


def load_teacher(name: str, root: Path = Path("data")) -> CamPlusPlus:
    """The teacher ``name`` (see :data:`~edgesiam.train.teachers.PEERS`) with its weights,
    downloaded once into ``ROOT/.cache``."""
    if name != "campplus":
        raise ConfigError(f"unknown teacher {name!r}; known: {', '.join(PEERS)}")
    return load_campplus(root)


def teacher_cache(teacher: CamPlusPlus, root: Path = Path("data")) -> TeacherCache:
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
    teacher: CamPlusPlus,
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

    def compute(path: Path) -> np.ndarray:
        return teacher.embed(read_audio(path, teacher.sample_rate))

    cache = teacher_cache(teacher, root)
    with torch_threads(threads):
        return cache.embeddings(Path(data_dir), files, compute, progress=progress)


def peer_system(
    name: str, info: DatasetInfo, ours: EmbeddedDataset, root: Path, progress: bool = True
) -> dict[str, tuple[np.ndarray, list[str], list[str | None]]]:
    """``{report name: (embeddings, labels, groups)}`` of peer ``name`` on the recordings that
    ``ours`` holds, so that it is scored on exactly the same trials as the model."""
    if info.modality != "audio":
        raise DataError(
            f"the peer {name} embeds speech; the dataset holds {info.modality}", info.root
        )
    teacher = load_teacher(name, root)
    files = [Path(p) for p in ours.paths]
    embeddings = teacher_embeddings(teacher, info.root, files, root, progress)
    return {PEERS[name]: (embeddings, ours.labels, ours.groups)}
