"""Enrolling recordings: each clip read at the bundle's rate, its active windows embedded and pooled
into one template, with the warnings that say why a clip is weak (too short, mostly silent, unlike
the label's others) and a refusal when every clip fails.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgesiam.core.embedder import DeviceEmbedder
from edgesiam.core.embedding import recording_embedding
from edgesiam.core.gate import EnergyGate, rms_dbfs, sensor_activity
from edgesiam.core.windowing import frame
from edgesiam.errors import ConfigError, DataError
from edgesiam.runtime.gallery_store import (
    MAX_RECORDINGS,
    MOSTLY_SILENT,
    ClipReport,
    Enrolment,
    GalleryStore,
    model_sha256,
    short_sha,
    validate_label,
)

__all__ = ["enroll_recordings"]


def _read_recording(embedder: DeviceEmbedder, path: Path) -> np.ndarray:
    from edgesiam.data.readers import RECORDING_EXTENSIONS, modality_of, read_audio

    kind = modality_of(path)
    if kind is None:
        raise DataError(
            f"is not a recording this edgesiam reads ({' '.join(RECORDING_EXTENSIONS)})", path
        )
    if kind != embedder.modality:
        raise DataError(f"is a {kind} file, but the bundle is for {embedder.modality}", path)
    if not path.is_file():
        raise DataError("does not exist (or is not a file)", path)
    if kind == "audio":
        return read_audio(path, int(embedder.sample_rate))
    return _read_sensor_recording(embedder, path)


def _read_sensor_recording(embedder: DeviceEmbedder, path: Path) -> np.ndarray:
    """A sensor file in the bundle's channel order, units and rate, as the dataset.toml of its
    dataset folder describes it (notices are logged, naming the file)."""
    from edgesiam.data.readers import SensorSpec, read_recording_for

    return read_recording_for(path, SensorSpec.of(embedder))


def _template_gate(gate: EnergyGate) -> EnergyGate:
    """``gate``'s thresholds without its hangover: the hangover lets a stream's word endings reach
    the model, but a template made from the quiet windows after a sound would match the quiet
    parts of every stream. A copy also leaves the runtime's own gate (which the device's enroll
    command passes) as it was."""
    return EnergyGate(
        gate.threshold_db,
        0,
        enabled=gate.enabled,
        sensor_threshold=gate.sensor_threshold,
    )


def _no_activity(embedder: DeviceEmbedder, windows: np.ndarray, gate: EnergyGate) -> str:
    levels = gate.levels(windows)
    top = float(np.nanmax(levels)) if np.any(np.isfinite(levels)) else math.nan
    n = len(windows)
    if embedder.modality == "audio":
        return (
            f"no active window: all {n} of its windows are below the energy gate's "
            f"{gate.threshold_db:.0f} dBFS (the loudest is {top:.1f} dBFS); record closer or "
            "louder, or lower the gate (enroll --gate-db, matching.gate.threshold_db)"
        )
    return (
        f"no active window: none of its {n} windows moves more than the gate's "
        f"{gate.sensor_threshold:g} (the most is {top:.4g}); record the motion itself, or lower "
        "the gate (enroll --sensor-threshold, matching.gate.sensor_threshold)"
    )


def _embed_active(
    embedder: DeviceEmbedder, name: str, x: np.ndarray, gate: EnergyGate
) -> tuple[np.ndarray | None, ClipReport]:
    """A clip's recording embedding from the windows above the runtime's energy gate.

    Returns ``(None, report)`` when no window is active: silence must not become a template that
    then matches the quiet parts of every stream.
    """
    from edgesiam.model.embedders import embed_windows

    windows = frame(x, embedder.window, embedder.hop)
    mask = _template_gate(gate).active_mask(windows)
    active = int(np.count_nonzero(mask))
    if active == 0:
        return None, ClipReport(name, len(windows), 0, _no_activity(embedder, windows, gate))
    embedding = recording_embedding(embed_windows(embedder, windows[mask]))
    return embedding, ClipReport(name, len(windows), active)


def _clip_warnings(
    embedder: DeviceEmbedder, x: np.ndarray, clip: ClipReport, gate: EnergyGate
) -> list[str]:
    out = []
    rate = float(embedder.sample_rate)
    name = clip.name
    if x.shape[0] < embedder.window:
        out.append(
            f"{name}: shorter than one window ({x.shape[0] / rate:.2f} s < "
            f"{embedder.window / rate:.2f} s): it was padded with silence; record a longer clip"
        )
    if embedder.modality == "audio":
        level = rms_dbfs(x)
        if not gate.enabled and not level >= gate.threshold_db:
            out.append(
                f"{name}: silent (RMS {level:.1f} dBFS, below {gate.threshold_db:.0f} dBFS; the "
                "gate is off, so it was enrolled as it is): check the microphone and record again"
            )
        elif gate.enabled and clip.active < clip.windows * (1.0 - MOSTLY_SILENT):
            out.append(
                f"{name}: only {clip.active} of its {clip.windows} windows pass the energy gate "
                f"({gate.threshold_db:.0f} dBFS): its template is made from those; trim the "
                "silence or record closer"
            )
    else:
        activity = sensor_activity(x)
        if activity < gate.sensor_threshold:
            out.append(
                f"{name}: shows almost no motion (total std of its first three channels "
                f"{activity:.4g} < {gate.sensor_threshold:g})"
            )
    return out


def _refused(label: str, clips: Sequence[ClipReport], files: Sequence[Path]) -> DataError:
    if len(clips) == 1:
        return DataError(f"refused: {clips[0].refused}", files[0])
    texts = "; ".join(c.text for c in clips)
    return DataError(f"'{label}' was not enrolled: every clip was refused: {texts}")


def enroll_recordings(
    store: GalleryStore,
    embedder: DeviceEmbedder,
    label: str,
    paths: Sequence[str | Path],
    *,
    gate: EnergyGate | None = None,
    append: bool = False,
    names: Sequence[str] | None = None,
) -> Enrolment:
    """Read 1-10 recordings, embed them with ``embedder`` and enroll ``label``.

    ``embedder`` is a ``DeviceEmbedder`` (a :class:`edgesiam.model.interpreters.BundleEmbedder` on the
    device); when it has a ``manifest``, the store is bound to its model (a store bound to
    another model is refused). Audio is read at the bundle's rate; sensor files (.csv/.npy) must
    have the bundle's channels.

    Each template is the recording embedding (docs/ARCHITECTURE.md, contract 3) of the clip's *active* windows: those
    at or above ``gate``'s threshold, the runtime's energy gate without its hangover (default: the
    runtime's default gate of the bundle's modality, on for audio, off for sensors). A clip with no active window is refused
    (reported in ``Enrolment.clips`` and the warnings); when every clip is refused nothing is
    written and a ``DataError`` says why. Warnings (not errors) for clips shorter than one window,
    mostly silent clips, recordings that disagree (consistency below the bundle's same-label
    threshold at its EER) and a label that is close to another enrolled one (above the bundle's
    threshold at FMR 1e-3). ``names`` replaces the file names in reports and ``sources``.
    """
    validate_label(label)
    files = [Path(p) for p in paths]
    if not 1 <= len(files) <= MAX_RECORDINGS:
        raise ConfigError(
            f"enroll '{label}' from 1 to {MAX_RECORDINGS} recordings, got {len(files)}"
        )
    shown = [str(n) for n in names] if names is not None else [f.name for f in files]
    if len(shown) != len(files):
        raise ConfigError(f"{len(shown)} names for {len(files)} recordings")
    seen: set[Path] = set()
    for f in files:
        key = f.resolve()
        if key in seen:
            raise ConfigError(f"{f} is given twice; each recording counts once")
        seen.add(key)
    manifest = getattr(embedder, "manifest", None)
    if manifest is not None:
        sha = model_sha256(manifest)
        if store.bundle_sha256 is None:
            store.bundle_sha256 = sha
            store.bundle_name = store.bundle_name or str(getattr(manifest, "name", "")) or None
        elif store.bundle_sha256 != sha:
            raise ConfigError(
                f"the gallery store is bound to model sha256 {short_sha(store.bundle_sha256)}…, the "
                f"embedder's bundle has {short_sha(sha)}…"
            )
    gate = gate if gate is not None else EnergyGate.for_modality(embedder.modality)
    warnings: list[str] = []
    embeddings = []
    clips: list[ClipReport] = []
    sources: list[str] = []
    for f, name in zip(files, shown, strict=True):
        x = _read_recording(embedder, f)
        embedding, clip = _embed_active(embedder, name, x, gate)
        clips.append(clip)
        if embedding is None:
            warnings.append(clip.text)
            continue
        warnings.extend(_clip_warnings(embedder, x, clip, gate))
        embeddings.append(embedding)
        sources.append(name)
    if not embeddings:
        raise _refused(label, clips, files)
    result = store.enroll(label, embeddings, sources=sources, append=append)
    result.warnings = warnings + _model_warnings(manifest, result)
    result.clips = clips
    return result


def _model_warnings(manifest: Any, result: Enrolment) -> list[str]:
    if manifest is None:
        return []
    out = []
    table = manifest.thresholds.recording
    if result.recordings > 1 and result.consistency < table.eer_threshold:
        out.append(
            f"the recordings of '{result.label}' do not agree well (consistency "
            f"{result.consistency:.3f} < {table.eer_threshold:.3f}, the bundle's same-label "
            "threshold at its EER): record them in the same conditions, and check that all are "
            f"of '{result.label}'"
        )
    near = table.at_fmr.get("0.001")
    if result.closest is not None and near is not None and result.closest[1] >= near:
        other, score = result.closest
        out.append(
            f"'{result.label}' is close to the enrolled label '{other}' (cosine {score:.3f} >= "
            f"{near:.3f}, the bundle's threshold at FMR 1e-3): the two may be confused"
        )
    return out
