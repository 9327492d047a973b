"""Training windows: recordings of a dataset folder cut into labelled raw windows, held in memory.

Raw windows (not features) are kept, so waveform augmentation can run before the front-end, exactly
as the device will see a stream: augment → front-end → encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgesiam.core.windowing import frame
from edgesiam.data.readers import DatasetInfo, Recording, iter_recordings
from edgesiam.errors import DataError

ClassMode = Literal["label", "label_and_group", "recording"]


@dataclass
class WindowSet:
    windows: np.ndarray  # (n, N) audio or (n, N, C) sensor, float32
    labels: np.ndarray  # (n,) int64 index into label_names
    label_names: list[str]
    recording: np.ndarray  # (n,) int64 index of the source recording in info.recordings


@dataclass
class RecordingSet:
    """Whole recordings (for validation: one embedding per recording)."""

    recordings: list[np.ndarray]
    labels: list[str]
    groups: list[str | None]


def pool_datasets(infos: list[DatasetInfo]) -> DatasetInfo:
    """Several dataset folders of one modality as one (sensor folders must agree on channels)."""
    first = infos[0]
    for other in infos[1:]:
        if other.modality != first.modality:
            raise DataError(
                f"cannot pool {other.modality} recordings with {first.modality} ones", other.root
            )
        if first.modality == "sensor" and (
            other.sample_rate != first.sample_rate
            or other.channels != first.channels
            or other.units != first.units
        ):
            raise DataError(
                f"sensor folders differ in rate, channels or units from {first.root}", other.root
            )
    return DatasetInfo(
        root=first.root,
        modality=first.modality,
        sample_rate=first.sample_rate,
        channels=first.channels,
        recordings=[r for info in infos for r in info.recordings],
        skipped=[s for info in infos for s in info.skipped],
        units=first.units,
    )


def resolve_sample_rate(info: DatasetInfo, requested: int | None) -> int:
    if info.modality == "audio":
        if requested is None:
            raise DataError("audio needs a sample rate (data.sample_rate)", info.root)
        return requested
    if info.sample_rate is None and requested is None:
        raise DataError(
            "sensor data needs its sample rate: set sample_rate in dataset.toml or data.sample_rate",
            info.root,
        )
    if requested is not None and info.sample_rate not in (None, requested):
        raise DataError(
            f"dataset.toml says {info.sample_rate} Hz but the recipe asks for {requested} Hz "
            "(sensor streams are not resampled)",
            info.root,
        )
    return int(requested if requested is not None else info.sample_rate)  # type: ignore[arg-type]


def load_windows(
    info: DatasetInfo,
    sample_rate: int,
    window: int,
    hop: int,
    max_per_recording: int,
    min_recordings_per_label: int,
    rng: np.random.Generator,
    on_error: Literal["fail", "skip"] = "fail",
    progress: bool = True,
    classes: ClassMode = "label",
) -> WindowSet:
    """Cut every recording into windows (short ones padded), keeping at most ``max_per_recording``."""

    def class_of(rec: Recording) -> str:
        if classes == "recording":
            return str(rec.path)
        if classes == "label_and_group" and rec.group is not None:
            return f"{rec.label}/{rec.group}"
        return rec.label

    counts: dict[str, int] = {}
    for rec in info.recordings:
        counts[class_of(rec)] = counts.get(class_of(rec), 0) + 1
    keep = sorted(k for k, v in counts.items() if v >= min_recordings_per_label)
    if len(keep) < 2:
        raise DataError(
            f"training needs at least 2 labels with ≥{min_recordings_per_label} recordings, "
            f"found {len(keep)}",
            info.root,
        )
    index = {name: i for i, name in enumerate(keep)}
    rate = sample_rate if info.modality == "audio" else None
    chunks: list[np.ndarray] = []
    labels: list[int] = []
    sources: list[int] = []
    position = {id(rec): i for i, rec in enumerate(info.recordings)}
    for rec, x in iter_recordings(info, sample_rate=rate, on_error=on_error, progress=progress):
        r = position[id(rec)]  # the index in info.recordings, also when some are skipped
        if class_of(rec) not in index:
            continue
        w = frame(x, window, hop)
        if len(w) > max_per_recording:
            w = w[np.sort(rng.choice(len(w), max_per_recording, replace=False))]
        chunks.append(w.astype(np.float32))
        labels.extend([index[class_of(rec)]] * len(w))
        sources.extend([r] * len(w))
    if not chunks:
        raise DataError("no training windows could be read", info.root)
    return WindowSet(
        np.concatenate(chunks), np.asarray(labels, np.int64), keep, np.asarray(sources, np.int64)
    )


def load_recordings(
    info: DatasetInfo,
    sample_rate: int,
    on_error: Literal["fail", "skip"] = "fail",
    progress: bool = True,
) -> RecordingSet:
    rate = sample_rate if info.modality == "audio" else None
    out = RecordingSet([], [], [])
    for rec, x in iter_recordings(info, sample_rate=rate, on_error=on_error, progress=progress):
        out.recordings.append(x)
        out.labels.append(rec.label)
        out.groups.append(rec.group)
    return out
