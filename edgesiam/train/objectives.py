"""Training objectives, assembled from pytorch-metric-learning parts.

One cosine-similarity distance object is shared by the loss and its miner (so they agree on what
'close' means), the miner turns a batch into index tuples, and the loss reduces them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pytorch_metric_learning import distances, losses, miners
from torch import nn

from edgesiam.train.config import (
    ContrastiveObjective,
    ObjectiveConfig,
    SubCenterArcFaceObjective,
    SupConObjective,
    TripletObjective,
)


@dataclass
class Objective:
    """A loss, an optional miner, and the loss's own learnable parameters (class centres)."""

    loss: nn.Module
    miner: nn.Module | None
    learnable: bool
    lr: float | None = None

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        indices = self.miner(embeddings, labels) if self.miner is not None else None
        value: torch.Tensor = self.loss(embeddings, labels, indices)
        return value


def build_objective(config: ObjectiveConfig, num_classes: int, embedding_dim: int) -> Objective:
    """Build the objective a recipe asks for; ``num_classes`` matters for margin-softmax losses."""
    cosine = distances.CosineSimilarity()
    if isinstance(config, ContrastiveObjective):
        loss = losses.ContrastiveLoss(
            pos_margin=config.pos_margin, neg_margin=config.neg_margin, distance=cosine
        )
        miner = (
            miners.PairMarginMiner(
                pos_margin=config.pos_margin, neg_margin=config.neg_margin, distance=cosine
            )
            if config.mining == "pair_margin"
            else None
        )
        return Objective(loss, miner, learnable=False)
    if isinstance(config, TripletObjective):
        triplet_miner: nn.Module = (
            miners.BatchHardMiner(distance=cosine)
            if config.mining == "hard"
            else miners.TripletMarginMiner(
                margin=config.margin, type_of_triplets=config.mining, distance=cosine
            )
        )
        loss = losses.TripletMarginLoss(margin=config.margin, distance=cosine)
        return Objective(loss, triplet_miner, learnable=False)
    if isinstance(config, SubCenterArcFaceObjective):
        loss = losses.SubCenterArcFaceLoss(
            num_classes=num_classes,
            embedding_size=embedding_dim,
            margin=config.margin_deg,
            scale=config.scale,
            sub_centers=config.sub_centers,
        )
        return Objective(loss, None, learnable=True, lr=config.lr)
    if isinstance(config, SupConObjective):
        return Objective(losses.SupConLoss(temperature=config.temperature), None, learnable=False)
    raise TypeError(f"unknown objective {config!r}")
