"""``edgesiam eval --peer resemblyzer``: Resemblyzer runs in the peers venv by subprocess, once per
evaluation for the recordings its cache lacks. A stand-in peers venv (a Python whose path holds a
small ``resemblyzer`` package: each embedding is the recording's length and level) replaces the
real one, so the subprocess, the cache and the scoring are exercised for real, in seconds."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgesiam.cli import main
from edgesiam.data.readers import scan_dataset
from edgesiam.errors import ConfigError, ModelError
from edgesiam.train.teachers.embed import teacher_embeddings
from edgesiam.train.teachers.resemblyzer import ResemblyzerPeer

FAKE_PACKAGE = textwrap.dedent(
    """
    from pathlib import Path
    import numpy as np

    HERE = Path(__file__).parent

    def preprocess_wav(wav, source_sr):
        return wav

    class VoiceEncoder:
        def __init__(self, device, verbose=True):
            if (HERE / "broken").exists():
                raise RuntimeError("the stand-in encoder is broken")

        def embed_utterance(self, wav):
            with open(HERE / "calls.log", "a") as log:
                log.write(f"{len(wav)}\\n")
            v = np.zeros(256, np.float32)
            v[0], v[1], v[2] = len(wav) / 16000, float(np.abs(wav).mean()) * 10, 1.0
            return v / np.linalg.norm(v)
    """
)


def expected(path: Path) -> np.ndarray:
    """What the stand-in gives for a recording (mono, as the peers' script reads it)."""
    wav = sf.read(str(path), dtype="float32", always_2d=True)[0].mean(axis=1)
    v = np.zeros(256, np.float32)
    v[0], v[1], v[2] = len(wav) / 16000, float(np.abs(wav).mean()) * 10, 1.0
    return v / np.linalg.norm(v)


@pytest.fixture
def peers_venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``./.venv-peers/bin/python`` in a fresh working folder; returns the stand-in package."""
    site = tmp_path / "peers-site"
    package = site / "resemblyzer"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_PACKAGE)
    (package / "audio.py").write_text(
        "def normalize_volume(wav, target, increase_only):\n    return wav\n"
    )
    (package / "hparams.py").write_text("audio_norm_target_dBFS = -30\n")
    (package / "pretrained.pt").write_bytes(b"stand-in weights")
    meta = site / "resemblyzer-0.1.4.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: resemblyzer\nVersion: 0.1.4\n")
    (site / "torch.py").write_text("def set_num_threads(n):\n    pass\n")  # no real torch needed
    python = tmp_path / "work" / ".venv-peers" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{site}" exec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    monkeypatch.chdir(tmp_path / "work")
    return package


def calls(package: Path) -> int:
    log = package / "calls.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_eval_scores_resemblyzer_on_the_same_trials_from_one_cached_run(
    tiny_audio_model: Path, audio_heldout: Path, tmp_path: Path, peers_venv: Path
) -> None:
    data = tmp_path / "heldout"
    shutil.copytree(audio_heldout, data)
    args = ["eval", str(tiny_audio_model), str(data), "--episodes", "20", "-q", "--no-baseline"]
    args += ["--peer", "resemblyzer", "--peer-root", str(tmp_path / "root")]
    assert main([*args, "--json", str(tmp_path / "m.json")]) == 0
    systems = json.loads((tmp_path / "m.json").read_text())["systems"]
    assert list(systems) == ["edgesiam", "Resemblyzer"]
    for key in ("n_recordings", "n_labels", "n_genuine", "n_impostor"):
        assert systems["Resemblyzer"][key] == systems["edgesiam"][key], key
    assert calls(peers_venv) == 36

    # the cache holds what the peer computed, row for row, keyed by the stand-in weights' digest
    files = [r.path for r in scan_dataset(data).recordings]
    rows = teacher_embeddings(ResemblyzerPeer(), data, files, tmp_path / "root", progress=False)
    np.testing.assert_allclose(rows, np.stack([expected(f) for f in files]), atol=1e-6)
    assert calls(peers_venv) == 36  # read back, not recomputed

    changed = files[3]
    sf.write(str(changed), np.full(8000, 0.25, np.float32), 16000)
    assert main([*args, "--json", str(tmp_path / "again.json")]) == 0
    assert calls(peers_venv) == 37  # only the changed recording went to the peers venv


def test_without_the_peers_venv_the_error_says_how_to_make_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"scripts/make_peers_venv\.sh"):
        ResemblyzerPeer()


def test_a_failing_peer_run_reports_its_error(
    audio_heldout: Path, tmp_path: Path, peers_venv: Path
) -> None:
    (peers_venv / "broken").touch()
    files = [r.path for r in scan_dataset(audio_heldout).recordings][:2]
    with pytest.raises(ModelError, match="the stand-in encoder is broken"):
        ResemblyzerPeer().embed_files(files, progress=False)
