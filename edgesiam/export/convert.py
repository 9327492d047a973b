"""Keras mirror → TFLite: float32, full-integer int8, and the optional float16 / dynamic-range ones.

The int8 model is calibrated with real windows of the training data (at least 200, spread over
recordings in a seeded random order), passed through the model's own front-end; its input and
output are int8 and every tensor inside is int8 or int32 (``TFLITE_BUILTINS_INT8`` only).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

from edgesiam.core.embedder import DeviceEmbedder
from edgesiam.core.windowing import frame
from edgesiam.data.readers import DatasetInfo, iter_recordings, reading_spec, scan_dataset
from edgesiam.errors import DataError, ModelError
from edgesiam.export.keras_mirror import import_tensorflow

VARIANTS: Final = ("int8", "float32", "float16", "dynamic-range")
VARIANT_FILES: Final = {
    "int8": "model.tflite",
    "float32": "model_float32.tflite",
    "float16": "model_float16.tflite",
    "dynamic-range": "model_dynamic_range.tflite",
}
MIN_CALIBRATION_WINDOWS: Final = 200

Variant = Literal["int8", "float32", "float16", "dynamic-range"]


@dataclass
class CalibrationSet:
    """Windows of the training data for int8 calibration, and the recordings they came from."""

    root: Path
    features: np.ndarray  # (N, C_in, T) float32, front-end applied
    recordings: list[np.ndarray]  # the recordings read (for the score-normalisation cohort)
    labels: list[str]
    hop: int  # the hop the calibration windows were cut with


def _check_dataset(embedder: DeviceEmbedder, info: DatasetInfo) -> None:
    if info.modality != embedder.modality:
        raise DataError(
            f"the model is for {embedder.modality} but the folder holds {info.modality} recordings",
            info.root,
        )


def read_calibration(
    embedder: DeviceEmbedder,
    data_dir: str | Path,
    windows: int = 300,
    min_windows: int = MIN_CALIBRATION_WINDOWS,
    recordings: int = 200,
    seed: int = 0,
    on_error: Literal["fail", "skip"] = "fail",
    progress: bool = False,
) -> CalibrationSet:
    """Read ``windows`` calibration windows (≥ ``min_windows``) of the training data.

    Recordings are read in a seeded random order until there are plenty of windows and at least
    ``recordings`` recordings (the cohort). When the data hold fewer windows than asked for at
    the model's hop, they are cut again with a smaller hop (real, overlapping windows).
    """
    if windows < min_windows:
        raise DataError(
            f"calibration needs at least {min_windows} windows, {windows} were asked for"
        )
    info = scan_dataset(data_dir, on_error=on_error)
    _check_dataset(embedder, info)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(info.recordings))
    shuffled = dataclasses.replace(
        info, recordings=[info.recordings[i] for i in order], skipped=list(info.skipped)
    )
    recs: list[np.ndarray] = []
    labels: list[str] = []
    total = 0
    for rec, x in iter_recordings(
        shuffled, embedder.sample_rate, on_error, progress, spec=reading_spec(embedder)
    ):
        if info.modality == "sensor" and x.shape[1] != embedder.channels:
            raise DataError(
                f"has {x.shape[1]} channels, the model takes {embedder.channels}", rec.path
            )
        recs.append(x)
        labels.append(rec.label)
        total += len(frame(x, embedder.window, embedder.hop))
        if total >= 4 * windows and len(recs) >= recordings:
            break
    hop = embedder.hop
    while True:
        cut = [frame(x, embedder.window, hop) for x in recs]
        total = sum(len(c) for c in cut)
        if total >= windows or hop == 1:
            break
        hop = max(1, hop // 2)
    if total < min_windows:
        raise DataError(
            f"calibration needs at least {min_windows} windows; the {len(recs)} recordings give "
            f"only {total} even with a hop of {hop} sample(s): pass a larger --calib folder",
            info.root,
        )
    index = np.concatenate(
        [np.stack([np.full(len(c), i), np.arange(len(c))], 1) for i, c in enumerate(cut)]
    )
    pick = index[np.sort(rng.choice(len(index), size=min(windows, len(index)), replace=False))]
    raw = np.stack([cut[i][j] for i, j in pick]).astype(np.float32)
    features = np.concatenate(
        [embedder.frontend(raw[i : i + 256]) for i in range(0, len(raw), 256)]
    ).astype(np.float32)
    return CalibrationSet(info.root, features, recs, labels, hop)


def _representative(features_ntc: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    def gen() -> Iterator[list[np.ndarray]]:
        for i in range(len(features_ntc)):
            yield [features_ntc[i : i + 1]]

    return gen


def to_tflite(keras_model: Any, variant: Variant, calibration: np.ndarray | None = None) -> bytes:
    """Convert the mirror to one TFLite variant; ``calibration`` is ``(N, C_in, T)`` for int8."""
    tf, _ = import_tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    if variant == "int8":
        if calibration is None or len(calibration) == 0:
            raise ModelError("int8 conversion needs calibration windows")
        ntc = np.ascontiguousarray(np.swapaxes(calibration, 1, 2), dtype=np.float32)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(ntc)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic-range":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant != "float32":
        raise ModelError(f"unknown TFLite variant {variant!r}; choose from {', '.join(VARIANTS)}")
    with warnings.catch_warnings(), _quiet() as chatter:
        warnings.simplefilter("ignore")
        try:
            model: bytes = converter.convert()
        except Exception as exc:  # the converter raises many kinds
            tail = chatter.read()[-3000:]
            raise ModelError(f"TFLite conversion ({variant}) failed: {exc}\n{tail}") from exc
    return model


@contextlib.contextmanager
def _quiet() -> Iterator[Any]:
    """Hold back what the converter prints (Python and C++, stdout and stderr) in a temporary
    file, so the CLI's output stays readable; the caller may read it to report a failure."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+") as sink:
        saved = []
        try:
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
        except OSError:  # no real file descriptors (an embedding host): do not hide anything
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            saved = []
        try:
            with contextlib.redirect_stdout(sink):
                yield sink
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)


def convert_all(
    keras_model: Any, calibration: np.ndarray, variants: Sequence[str] = ("float32", "int8")
) -> dict[str, bytes]:
    """Every requested variant (float32 and int8 always), keyed by variant."""
    wanted = ["float32", "int8", *[v for v in variants if v not in ("float32", "int8")]]
    out: dict[str, bytes] = {}
    for variant in wanted:
        if variant not in VARIANTS:
            raise ModelError(
                f"unknown TFLite variant {variant!r}; choose from {', '.join(VARIANTS)}"
            )
        out[variant] = to_tflite(keras_model, variant, calibration)  # type: ignore[arg-type]
    return out


def keras_parity(
    keras_model: Any, torch_embed: Callable[[np.ndarray], np.ndarray], features: np.ndarray
) -> float:
    """Smallest cosine between the Keras mirror and torch on ``features`` (a build sanity check)."""
    if len(features) == 0:
        return math.nan
    ntc = np.swapaxes(features, 1, 2).astype(np.float32)
    ours = np.concatenate([np.asarray(keras_model(ntc[i : i + 1])) for i in range(len(ntc))])
    ref = torch_embed(features)
    ours = ours / np.maximum(np.linalg.norm(ours, axis=1, keepdims=True), 1e-12)
    ref = ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
    return float(np.min(np.sum(ours * ref, axis=1)))
