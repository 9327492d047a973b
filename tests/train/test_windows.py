from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgesiam.data.readers import scan_dataset
from edgesiam.errors import DataError
from edgesiam.train.windows import (
    ClassMode,
    WindowSet,
    load_windows,
    pool_datasets,
    resolve_sample_rate,
)


def windows(root: Path, classes: ClassMode = "label") -> WindowSet:
    info = scan_dataset(root)
    rng = np.random.default_rng(0)
    return load_windows(info, 50, 100, 50, 4, 1, rng, progress=False, classes=classes)


def test_classes_label_group_and_recording(sensor_dataset: Path) -> None:
    by_label = windows(sensor_dataset)
    by_pair = windows(sensor_dataset, classes="label_and_group")
    by_recording = windows(sensor_dataset, classes="recording")
    assert by_label.label_names == [f"move{i}" for i in range(5)]
    assert len(by_pair.label_names) == 10
    assert "move0/s0" in by_pair.label_names
    assert len(by_recording.label_names) == 20
    # the same windows, only the class assignment differs
    assert np.array_equal(by_label.windows, by_recording.windows)


def test_windows_are_capped_per_recording(sensor_dataset: Path) -> None:
    ws = windows(sensor_dataset)
    counts = np.bincount(ws.recording)
    assert counts.max() <= 4 and ws.windows.shape[1:] == (100, 6)


def test_too_few_labels_is_explained(sensor_dataset: Path) -> None:
    info = scan_dataset(sensor_dataset)
    with pytest.raises(DataError, match="at least 2 labels with ≥9 recordings"):
        load_windows(info, 50, 100, 50, 4, 9, np.random.default_rng(0), progress=False)


def test_sensor_rate_comes_from_dataset_toml(sensor_dataset: Path) -> None:
    info = scan_dataset(sensor_dataset)
    assert resolve_sample_rate(info, None) == 50
    with pytest.raises(DataError, match="not resampled"):
        resolve_sample_rate(info, 100)


def test_pooled_folders_train_as_one(
    audio_dataset: Path, audio_heldout: Path, sensor_dataset: Path
) -> None:
    pooled = pool_datasets([scan_dataset(audio_dataset), scan_dataset(audio_heldout)])
    assert len(pooled) == len(scan_dataset(audio_dataset)) + len(scan_dataset(audio_heldout))
    with pytest.raises(DataError, match="cannot pool sensor recordings with audio"):
        pool_datasets([scan_dataset(audio_dataset), scan_dataset(sensor_dataset)])


def test_recipe_accepts_one_or_several_training_folders() -> None:
    from edgesiam.train.config import DataConfig

    one = DataConfig(train="a", window_s=1, hop_s=1)  # type: ignore[arg-type]
    many = DataConfig(train=["a", "b"], window_s=1, hop_s=1)  # type: ignore[list-item]
    assert one.train == [Path("a")] and many.train == [Path("a"), Path("b")]
