"""Distillation: the encoder learns what a large pretrained teacher says of each clean recording.

The teacher embeds every training recording once, clean and whole (through the on-disk cache of
:mod:`edgesiam.train.teachers.cache`); the encoder sees augmented, channel-degraded windows of the
same recordings. Two ways to pull the student towards the teacher:

- ``relation``: the matrix of cosine similarities between the batch's embeddings should equal the
  teacher's matrix between their recordings. Nothing depends on the teacher's embedding size and no
  weight is added; two windows of one recording (say, one through a phone line and one through a
  room) are pulled together because the teacher sees one recording.
- ``feature``: a linear head maps each embedding into the teacher's space, and their cosine is
  maximised. The head is a training aid and is never exported.

>>> s = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
>>> float(relation_loss(s, s))
0.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgesiam.data.readers import DatasetInfo
from edgesiam.errors import DataError
from edgesiam.train.config import DistillConfig


def relation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the off-diagonal cosine similarities of two L2-normalised
    batches ``(B, D_s)`` and ``(B, D_t)``."""
    n = student.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=student.device)
    return ((student @ student.T - teacher @ teacher.T)[off] ** 2).mean()


@dataclass
class Distiller:
    """The distillation term of the loss for a batch of windows of known recordings."""

    targets: torch.Tensor  # (recordings, D_teacher), L2-normalised
    kind: str
    weight: float
    head: nn.Module | None = None

    @classmethod
    def build(cls, config: DistillConfig, targets: np.ndarray, embedding_dim: int) -> Distiller:
        t = torch.from_numpy(np.asarray(targets, dtype=np.float32))
        t = F.normalize(t, dim=1)  # rows of NaN (no target) stay NaN
        head = nn.Linear(embedding_dim, t.shape[1]) if config.kind == "feature" else None
        return cls(t, config.kind, config.weight, head)

    def to(self, device: str) -> Distiller:
        self.targets = self.targets.to(device)
        if self.head is not None:
            self.head.to(device)
        return self

    def __call__(self, embeddings: torch.Tensor, recordings: torch.Tensor) -> torch.Tensor:
        """The term for windows of ``recordings``; those the teacher has no target for (a row
        of NaN: a folder it does not speak for) are left out."""
        teacher = self.targets[recordings]
        known = ~torch.isnan(teacher[:, 0])
        if int(known.sum()) < 2:
            return embeddings.new_zeros(())
        embeddings, teacher = embeddings[known], teacher[known]
        if self.head is None:
            return self.weight * relation_loss(embeddings, teacher)
        mapped = F.normalize(self.head(embeddings), dim=1)
        return self.weight * (1.0 - (mapped * teacher).sum(dim=1)).mean()


def teacher_targets(
    config: DistillConfig, infos: Sequence[DatasetInfo], progress: bool = True
) -> np.ndarray:
    """The teacher's embedding of every recording of ``infos``, in the order the pooled folders
    list them (:func:`~edgesiam.train.windows.pool_datasets`), from the cache where it holds them.
    """
    from edgesiam.train.teachers.embed import load_teacher, teacher_embeddings

    for info in infos:
        if info.modality != "audio":
            raise DataError("distillation needs audio recordings", info.root)
    teacher = load_teacher(config.teacher, Path(config.root))
    spoken = None if config.folders is None else {Path(f).resolve() for f in config.folders}
    parts = []
    for info in infos:
        files = [r.path for r in info.recordings]
        if spoken is None or Path(info.root).resolve() in spoken:
            parts.append(teacher_embeddings(teacher, info.root, files, Path(config.root), progress))
        else:
            parts.append(np.full((len(files), 1), np.nan))
    width = max(p.shape[1] for p in parts)
    return np.concatenate(
        [p if p.shape[1] == width else np.full((len(p), width), np.nan) for p in parts]
    ).astype(np.float32)
