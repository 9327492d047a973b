"""Training recipes (as the dict a YAML recipe loads into) for the tiny models the tests train in
seconds on the generated sets of :mod:`tests.support.signals`."""

from __future__ import annotations

from pathlib import Path

SMALL_ENCODER = {
    "channels": [16, 24],
    "kernel_sizes": [5, 3],
    "strides": [2, 2],
    "dilations": [1, 1],
    "embedding_dim": 16,
}


def audio_recipe(train_dir: Path, val_dir: Path, **optim: object) -> dict[str, object]:
    """The tiny audio encoder on log-mel windows (0.5 s, hop 0.25 s), triplet loss; ``optim`` overrides."""
    return {
        "name": "tiny-audio",
        "modality": "audio",
        "data": {
            "train": str(train_dir),
            "val": str(val_dir),
            "sample_rate": 16000,
            "window_s": 0.5,
            "hop_s": 0.25,
        },
        "frontend": {"type": "logmel", "n_mels": 24},
        "encoder": SMALL_ENCODER,
        "objective": {"type": "triplet", "mining": "all"},
        "sampler": {"m_per_class": 4, "batch_size": 24},
        "augment": {"type": "audio", "specaugment": None},
        "optim": {"lr": 0.01, "epochs": 3, "steps_per_epoch": 6, "patience": 5, **optim},
    }


def sensor_recipe(train_dir: Path, val_dir: Path) -> dict[str, object]:
    """The tiny encoder on 6-channel IMU windows (2 s, hop 1 s), supervised contrastive loss."""
    return {
        "name": "tiny-motion",
        "modality": "sensor",
        "data": {"train": str(train_dir), "val": str(val_dir), "window_s": 2.0, "hop_s": 1.0},
        "frontend": {"type": "sensor"},
        "encoder": SMALL_ENCODER,
        "objective": {"type": "supcon"},
        "sampler": {"m_per_class": 4, "batch_size": 20},
        "augment": {"type": "imu", "max_angle_deg": 10},
        "optim": {"lr": 0.01, "epochs": 3, "steps_per_epoch": 6},
    }
