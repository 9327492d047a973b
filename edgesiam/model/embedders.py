"""From recordings to embeddings, for any model: a torch checkpoint on the workstation or an int8
bundle on the device.

A model is reached through the small ``DeviceEmbedder`` interface (:mod:`edgesiam.core.embedder`) (features in, embeddings out); the
windowing, front-end and recording pooling around it are the numpy core's, so every model is fed
exactly the same way (docs/ARCHITECTURE.md, contract 3: a recording's embedding is the normalised mean of its windows').
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgesiam.core.embedder import DeviceEmbedder
from edgesiam.core.embedding import recording_embedding
from edgesiam.core.windowing import frame
from edgesiam.data.readers import DatasetInfo, iter_recordings, reading_spec
from edgesiam.errors import DataError


def _windows(embedder: DeviceEmbedder, recording: np.ndarray) -> np.ndarray:
    if embedder.modality == "sensor" and (
        recording.ndim != 2 or recording.shape[1] != embedder.channels
    ):
        got = recording.shape[1] if recording.ndim == 2 else 1
        raise DataError(f"expected {embedder.channels} sensor channels, got {got}")
    return frame(recording, embedder.window, embedder.hop)


def embed_windows(
    embedder: DeviceEmbedder, windows: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """Raw windows ``(k, N)`` / ``(k, N, C)`` → window embeddings ``(k, D)``."""
    out = [
        embedder.embed_features(embedder.frontend(windows[i : i + batch_size]))
        for i in range(0, len(windows), batch_size)
    ]
    return np.concatenate(out, axis=0)


def embed_recording(embedder: DeviceEmbedder, recording: np.ndarray) -> np.ndarray:
    """One recording (audio ``(n,)`` at the model's rate, or sensor ``(n, C)``) → ``(D,)``."""
    return recording_embedding(embed_windows(embedder, _windows(embedder, recording)))


@dataclass
class EmbeddedDataset:
    """Recording embeddings of a dataset folder, in the layout of ``edgesiam embed``'s npz."""

    embeddings: np.ndarray
    labels: list[str]
    groups: list[str | None]
    paths: list[str]
    baseline: np.ndarray | None = None  # classic descriptors, when asked for (not saved)

    def save_npz(self, path: str) -> None:
        np.savez(
            path,
            embeddings=self.embeddings.astype(np.float32),
            labels=np.array(self.labels),
            paths=np.array(self.paths),
            groups=np.array(["" if g is None else g for g in self.groups]),
        )


def embed_dataset(
    embedder: DeviceEmbedder,
    info: DatasetInfo,
    on_error: Literal["fail", "skip"] = "fail",
    progress: bool = True,
    baseline: bool = False,
) -> EmbeddedDataset:
    """Embed every recording of a dataset folder (docs/ARCHITECTURE.md, contract 3), in the folder's order.

    ``baseline=True`` also describes each recording with the classic baseline (see
    :func:`baseline_embeddings`) in the same pass, so the folder is read (and decoded) once.
    """
    if info.modality != embedder.modality:
        raise DataError(
            f"the model is for {embedder.modality} but the dataset holds {info.modality} recordings",
            info.root,
        )
    describe = _baseline_describer(embedder) if baseline else None
    embeddings: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    labels: list[str] = []
    groups: list[str | None] = []
    paths: list[str] = []
    for rec, x in iter_recordings(
        info, embedder.sample_rate, on_error, progress, spec=reading_spec(embedder)
    ):
        embeddings.append(embed_recording(embedder, x))
        if describe is not None:
            rows.append(describe(x))
        labels.append(rec.label)
        groups.append(rec.group)
        paths.append(str(rec.path))
    if not embeddings:
        raise DataError("no recording could be embedded", info.root)
    result = EmbeddedDataset(np.stack(embeddings).astype(np.float32), labels, groups, paths)
    if describe is not None:
        from edgesiam.core.baselines import standardise

        result.baseline = standardise(np.stack(rows))
    return result


def _baseline_describer(embedder: DeviceEmbedder) -> Callable[[np.ndarray], np.ndarray]:
    """MFCC mean/std (from the model's own log-mel parameters, unnormalised) for audio, channel
    statistics for sensors."""
    from edgesiam.core.baselines import channel_statistics, mfcc_statistics
    from edgesiam.core.frontend import LogMelFrontEnd

    if embedder.modality != "audio":
        return channel_statistics
    plain = LogMelFrontEnd(embedder.frontend.params)  # type: ignore[attr-defined]
    return lambda x: mfcc_statistics(x, plain)


def baseline_embeddings(
    embedder: DeviceEmbedder,
    info: DatasetInfo,
    on_error: Literal["fail", "skip"] = "fail",
    progress: bool = True,
) -> np.ndarray:
    """Classic descriptors of the same recordings, standardised over the set: MFCC mean/std for
    audio (from the model's own log-mel parameters, unnormalised), channel statistics for sensors.
    """
    from edgesiam.core.baselines import standardise

    describe = _baseline_describer(embedder)
    rows = [
        describe(x)
        for _, x in iter_recordings(
            info, embedder.sample_rate, on_error, progress, spec=reading_spec(embedder)
        )
    ]
    if not rows:
        raise DataError("no recording could be read for the baseline", info.root)
    return standardise(np.stack(rows))
