"""Training windows: recordings of a dataset folder cut into labelled raw windows, held in memory.

Raw windows (not features) are kept, so waveform augmentation can run before the front-end, exactly
as the device will see a stream: augment → front-end → encoder.
"""

from __future__ import annotations

import dataclasses
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
    """Several dataset folders of one modality as one.

    Sensor folders may differ in channel order, units and rate when their ``dataset.toml`` names
    the channels (and, if any declares units, the first does too): their recordings are read as
    their own folder says and brought to the first folder's layout.
    """
    first = infos[0]
    recordings = list(first.recordings)
    for other in infos[1:]:
        if other.modality != first.modality:
            raise DataError(
                f"cannot pool {other.modality} recordings with {first.modality} ones", other.root
            )
        if first.modality == "sensor":  # read as its own folder declares (and names it)
            if _layout(other) != _layout(first):
                _check_convertible(first, other)
            recordings += [dataclasses.replace(r, source=other) for r in other.recordings]
        else:
            recordings += other.recordings
    return DatasetInfo(
        root=first.root,
        modality=first.modality,
        sample_rate=first.sample_rate,
        channels=first.channels,
        recordings=recordings,
        skipped=[s for info in infos for s in info.skipped],
        units=first.units,
    )


def _layout(info: DatasetInfo) -> tuple[object, ...]:
    return info.sample_rate, info.channels, info.units


def _check_convertible(first: DatasetInfo, other: DatasetInfo) -> None:
    """Pooling ``other`` into ``first``'s layout needs named channels (and units to convert)."""
    if not first.channels or not other.channels:
        raise DataError(
            f"sensor folders differ in rate, channels or units from {first.root}; name the "
            "channels in both dataset.toml files so they can be matched",
            other.root,
        )
    if other.units is not None and first.units is None:
        raise DataError(
            f"declares units but {first.root / 'dataset.toml'} does not: declare them there "
            "so these recordings can be converted",
            other.root,
        )
    if (other.sample_rate is None) != (first.sample_rate is None):
        raise DataError(
            f"sample_rate is declared in one of {first.root} and {other.root} only", other.root
        )
    missing = [
        c for c in first.channels if c.casefold() not in {o.casefold() for o in other.channels}
    ]
    if missing:
        raise DataError(f"lacks the channel(s) {', '.join(missing)} of {first.root}", other.root)


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
