"""The interpreter chain and the device modules' imports (in the workstation venv)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgesiam.errors import BundleError, MissingExtraError, NoInterpreterError
from edgesiam.model import interpreters
from edgesiam.model.interpreters import BundleEmbedder, find_backend


def test_backend_chain_prefers_litert_and_names_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EDGESIAM_INTERPRETER", raising=False)
    assert find_backend().name == "ai-edge-litert"
    with pytest.raises(BundleError, match="unknown interpreter backend 'nope'"):
        find_backend("nope")
    monkeypatch.setattr(interpreters, "_CACHE", {})
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(NoInterpreterError) as caught:
        find_backend()
    assert isinstance(caught.value, MissingExtraError)
    message = str(caught.value)
    assert "edgesiam[device]" in message
    for name in ("ai-edge-litert", "tflite-runtime", "tensorflow"):
        assert name in message


def test_tensorflow_interpreter_is_the_last_resort_and_agrees(audio_bundle: Path) -> None:
    litert = BundleEmbedder(audio_bundle)
    tf = BundleEmbedder(audio_bundle, backend="tensorflow")
    assert (litert.backend, tf.backend) == ("ai-edge-litert", "tensorflow")
    rng = np.random.default_rng(0)
    windows = (0.1 * rng.standard_normal((4, litert.window))).astype(np.float32)
    features = litert.frontend(windows)
    a, b = litert.embed_features(features), tf.embed_features(features)
    assert a.shape == (4, 16) and np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(a * b, axis=1)) > 0.999


def test_wrong_feature_shape_is_a_clear_error(audio_bundle: Path) -> None:
    from edgesiam.errors import DataError

    embedder = BundleEmbedder(audio_bundle)
    with pytest.raises(DataError, match=r"features of shape \(batch, 24, 48\)"):
        embedder.embed_features(np.zeros((1, 24, 47), np.float32))


def test_device_modules_import_nothing_heavy(audio_bundle: Path, audio_heldout: Path) -> None:
    """Here torch, tensorflow and librosa are installed: an accidental import would show."""
    code = (
        "import json, sys\n"
        "from edgesiam.model.interpreters import load_model\n"
        "from edgesiam.model.embedders import embed_dataset\n"
        "from edgesiam.data.readers import scan_dataset\n"
        "import edgesiam.model.bundle, edgesiam.core.metrics\n"
        f"e = load_model({str(audio_bundle)!r})\n"
        f"embed_dataset(e, scan_dataset({str(audio_heldout)!r}), progress=False)\n"
        "print(json.dumps(sorted(m for m in sys.modules\n"
        "    if m.split('.')[0] in ('torch', 'tensorflow', 'librosa', 'keras'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
