"""Checkpoints that carry everything needed to use or resume a model.

A checkpoint holds the validated recipe, the front-end state (filterbank, normalisation statistics),
the window geometry, the encoder weights and, for resuming, the optimiser, scheduler and random
states. It is written atomically (temporary file, then rename), so a crash never leaves a torn file,
and it loads with ``weights_only=True`` (no arbitrary code runs when a checkpoint is opened).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgesiam.core.frontend import FrontEnd, frontend_from_state
from edgesiam.errors import ModelError
from edgesiam.train.config import TrainConfig
from edgesiam.train.encoder import Conv1dEncoder

FORMAT = "edgesiam-checkpoint"
FORMAT_VERSION = 1


def frontend_to_torch(state: dict[str, np.ndarray]) -> dict[str, Any]:
    """Front-end state → values ``torch.load(weights_only=True)`` accepts."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        arr = np.asarray(value)
        out[key] = str(arr) if arr.dtype.kind == "U" else torch.from_numpy(np.array(arr))
    return out


def frontend_from_torch(state: dict[str, Any]) -> dict[str, np.ndarray]:
    return {
        k: np.asarray(v) if isinstance(v, str) else v.detach().cpu().numpy()
        for k, v in state.items()
    }


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **payload}, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ModelError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a bad file
        raise ModelError(f"{path}: not a readable edgesiam checkpoint ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelError(f"{path}: not an edgesiam checkpoint")
    if data.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"{path}: checkpoint format {data.get('format_version')} is not supported "
            f"(this edgesiam reads format {FORMAT_VERSION})"
        )
    return data


class CheckpointEmbedder:
    """A trained encoder from a checkpoint, behind the ``DeviceEmbedder`` interface."""

    def __init__(self, path: Path, device: str = "cpu") -> None:
        data = load_checkpoint(path)
        self.path = path
        self.config = TrainConfig.model_validate(data["config"])
        self.frontend: FrontEnd = frontend_from_state(frontend_from_torch(data["frontend"]))
        self.modality: str = data["modality"]
        self.sample_rate: int = int(data["sample_rate"])
        self.window: int = int(data["window"])
        self.hop: int = int(data["hop"])
        self.channels: int = int(data["channels"])
        self.channel_names: list[str] | None = data.get("channel_names")
        self.channel_units: list[str | None] | None = data.get("channel_units")
        self.model = Conv1dEncoder.from_config(int(data["in_channels"]), self.config.encoder)
        self.model.load_state_dict(data["model"])
        self.model.eval().to(device)
        self.device = device
        self.epoch: int = int(data.get("epoch", 0))
        self.metrics: dict[str, Any] = data.get("metrics", {})

    @torch.no_grad()
    def embed_features(self, features: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(self.device)
        out: np.ndarray = self.model(x).cpu().numpy()
        return out
