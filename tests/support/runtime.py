"""The device runtime in tests: a config for an in-process run, and a fake command target."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgesiam.errors import EdgesiamError
from edgesiam.runtime.commands import Clip
from edgesiam.runtime.config import RuntimeConfig, load_runtime_config


def make_config(
    bundle: Path, gallery: Path | None, source: Any, state: Path, **extra: Any
) -> RuntimeConfig:
    """A validated config without MQTT; ``source`` a path (a file source) or a source section;
    each of ``extra`` replaces a key or is merged into a section."""
    data: dict[str, Any] = {
        "bundle": str(bundle),
        "gallery": None if gallery is None else str(gallery),
        "source": source if isinstance(source, dict) else {"type": "file", "path": str(source)},
        "state_dir": str(state),
        "device_id": "test-pi",
        "mqtt": {"enabled": False},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return load_runtime_config(None, data)


class FakeRuntime:
    """The CommandTarget side of a runtime, recording its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.labels: dict[str, int] = {"alice": 3}
        self.block = threading.Event()
        self.block.set()

    def enroll_embeddings(
        self, label: str, embeddings: np.ndarray, append: bool = False
    ) -> dict[str, Any]:
        self.calls.append(("enroll_embeddings", (label, embeddings)))
        if embeddings.shape[1] != 4:
            raise EdgesiamError(f"the model's embeddings have 4 values, not {embeddings.shape[1]}")
        self.labels[label] = self.labels.get(label, 0) + len(embeddings)
        return {"label": label, "templates": self.labels[label], "consistency": 0.93}

    def enroll_clips(self, label: str, clips: list[Clip], append: bool = False) -> dict[str, Any]:
        shapes = [(c.name, c.kind, len(c.data)) for c in clips]
        self.calls.append(("enroll_clips", (label, shapes, append)))
        self.block.wait(10)
        return {"label": label, "templates": len(clips)}

    def forget(self, label: str) -> dict[str, Any]:
        self.calls.append(("forget", label))
        if label not in self.labels:
            raise KeyError(f"no label {label!r} is enrolled")
        del self.labels[label]
        return {"label": label, "removed": True}

    def list(self) -> dict[str, Any]:
        self.calls.append(("list", None))
        return {"labels": dict(self.labels)}

    def set_threshold(
        self, label: str | None, value: float | None, target_fmr: float | None
    ) -> dict[str, Any]:
        self.calls.append(("set_threshold", (label, value, target_fmr)))
        if target_fmr is not None and target_fmr not in (1e-2, 1e-3, 1e-4):
            raise ValueError("the bundle has thresholds for 0.01, 0.001, 0.0001")
        return {"label": label, "threshold": value if value is not None else 0.61}

    def reload(self) -> dict[str, Any]:
        self.calls.append(("reload", None))
        raise RuntimeError("disk on fire")
