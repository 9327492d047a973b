"""The device install runs a bundle: two small venvs made by scripts/make_device_venvs.sh.

``.venv-litert`` holds ai-edge-litert with numpy 2, ``.venv-tflite`` tflite-runtime 2.14 with
numpy < 2; neither has torch, tensorflow or librosa. In each, ``embed_dataset`` on the bundle must
agree with the torch checkpoint on the workstation, and nothing heavy may be imported on the way.
The test command (``make test``) always creates both venvs; a test is skipped only when its venv
folder does not exist.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgesiam.model.embedders import EmbeddedDataset

ROOT = Path(__file__).resolve().parents[2]

DEVICE_SCRIPT = """
import json, sys
import numpy as np
from edgesiam.data.readers import scan_dataset
from edgesiam.model.embedders import embed_dataset
from edgesiam.model.interpreters import BundleEmbedder, load_model, measure_latency

embedder = load_model(sys.argv[1])
result = embed_dataset(embedder, scan_dataset(sys.argv[2]), progress=False)
np.save(sys.argv[3], result.embeddings)
try:
    BundleEmbedder(sys.argv[4])
    tamper = "accepted"
except Exception as exc:
    tamper = f"{type(exc).__name__}: {exc}"
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "tensorflow", "librosa", "keras"))
print(json.dumps({
    "backend": embedder.backend,
    "numpy": np.__version__,
    "heavy": heavy,
    "paths": result.paths,
    "tamper": tamper,
    "latency": measure_latency(embedder.model, runs=500),
}))
"""


@pytest.mark.parametrize(
    ("venv", "backend", "numpy_major"),
    [
        pytest.param(
            ".venv-litert",
            "ai-edge-litert",
            "2",
            marks=pytest.mark.skipif(
                not (ROOT / ".venv-litert").is_dir(),
                reason=".venv-litert does not exist: run scripts/make_device_venvs.sh",
            ),
        ),
        pytest.param(
            ".venv-tflite",
            "tflite-runtime",
            "1",
            marks=pytest.mark.skipif(
                not (ROOT / ".venv-tflite").is_dir(),
                reason=".venv-tflite does not exist: run scripts/make_device_venvs.sh",
            ),
        ),
    ],
)
def test_device_venv_embeds_like_torch_without_heavy_imports(
    venv: str,
    backend: str,
    numpy_major: str,
    audio_bundle: Path,
    torch_reference: EmbeddedDataset,
    audio_heldout: Path,
    tmp_path: Path,
) -> None:
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for f in audio_bundle.iterdir():
        (tampered / f.name).write_bytes(f.read_bytes())
    (tampered / "frontend.npz").write_bytes(b"not the front-end")
    out = tmp_path / "device.npy"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGESIAM_INTERPRETER")}
    done = subprocess.run(
        [
            str(ROOT / venv / "bin" / "python"),
            "-c",
            DEVICE_SCRIPT,
            str(audio_bundle),
            str(audio_heldout),
            str(out),
            str(tampered),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["backend"] == backend
    assert report["numpy"].split(".")[0] == numpy_major
    assert report["heavy"] == []
    assert report["tamper"].startswith("BundleError") and "frontend.npz" in report["tamper"]
    assert report["latency"]["median_ms"] > 0

    device = np.load(out)
    ref = torch_reference
    assert report["paths"] == ref.paths
    cos = np.sum(device * ref.embeddings, axis=1)
    assert cos.min() >= 0.999, f"worst recording cosine {cos.min():.6f}"
