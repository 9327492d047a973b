"""Peer tools (edgesiam.tools.bench.peers): reported, never fatal, when the peers venv is missing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgesiam.tools.bench import peers

ROOT = Path(__file__).resolve().parents[2]
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"


def test_missing_venv_is_not_installable(tmp_path: Path) -> None:
    result = peers.measure_peers(audio_seconds=1.0, python=tmp_path / "nope" / "bin" / "python")
    assert set(result) == set(peers.PEERS)
    for peer in result.values():
        assert peer["status"] == "not installable"
        assert "does not exist" in peer["reason"]
        assert peer["ms_per_audio_second"] is None


def test_missing_venv_accuracy_is_not_installable(tmp_path: Path) -> None:
    result = peers.resemblyzer_accuracy(tmp_path, python=tmp_path / "bin" / "python")
    assert result["status"] == "not installable"
    assert result["reason"]


def test_recorded_install_failure_is_reported(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    python = tmp_path / "bin" / "python"
    python.symlink_to(sys.executable)
    reason = "pip install failed: ERROR: Failed building wheel for pyaudio"
    record = {"efficientword_net": {"status": "not installable", "reason": reason}}
    (tmp_path / peers.INSTALL_RECORD).write_text(json.dumps(record))
    result = peers.measure_peer("efficientword_net", 1.0, python=python)
    assert result == {
        "status": "not installable",
        "reason": reason,
        "ms_per_audio_second": None,
        "version": None,
    }


def test_missing_package_is_not_installable(tmp_path: Path) -> None:
    # A Python without the peer's package: the script's import fails, which says so.
    result = peers.measure_peer("openwakeword", 1.0, python=Path(sys.executable))
    if result["status"] == "ok":  # pragma: no cover - the project venv has no peers
        pytest.skip("pyopen_wakeword is importable in the project venv")
    assert result["status"] == "not installable"
    assert "pyopen_wakeword" in result["reason"]


def test_ratios() -> None:
    result = {"a": {"ms_per_audio_second": 20.0}, "b": {"ms_per_audio_second": None}}
    peers.add_ratios(result, 4.0)
    assert result["a"]["ratio_to_ours"] == pytest.approx(5.0)
    assert result["b"]["ratio_to_ours"] is None


def test_module_imports_nothing_heavy() -> None:
    code = "import json, sys, edgesiam.tools.bench.peers; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {m.split(".")[0] for m in json.loads(done.stdout)}
    assert not loaded & {"torch", "tensorflow", "librosa", "onnxruntime", "resemblyzer"}


@pytest.mark.slow
@pytest.mark.skipif(not PEERS_PYTHON.exists(), reason="no .venv-peers (scripts/make_peers_venv.sh)")
@pytest.mark.parametrize("peer", peers.PEERS)
def test_real_measurement(peer: str) -> None:
    result = peers.measure_peer(peer, audio_seconds=3.0, python=PEERS_PYTHON)
    if result["status"] != "ok":
        pytest.skip(f"{peer}: {result['status']}: {result['reason']}")
    assert result["ms_per_audio_second"] > 0
    assert result["version"]


@pytest.mark.slow
@pytest.mark.skipif(not PEERS_PYTHON.exists(), reason="no .venv-peers (scripts/make_peers_venv.sh)")
def test_resemblyzer_accuracy_small(tmp_path: Path) -> None:
    source = ROOT / "data" / "speech" / "test"
    if not source.is_dir():
        pytest.skip("no data/speech/test")
    data = tmp_path / "data"
    for label_dir in sorted(p for p in source.iterdir() if p.is_dir())[:3]:
        (data / label_dir.name).mkdir(parents=True)
        for wav in sorted(label_dir.glob("*.wav"))[:3]:
            (data / label_dir.name / wav.name).symlink_to(wav)
    result = peers.resemblyzer_accuracy(data, python=PEERS_PYTHON, out_npz=tmp_path / "r.npz")
    if result["status"] != "ok":
        pytest.skip(f"resemblyzer: {result['status']}: {result['reason']}")
    assert result["n_recordings"] == 9
    assert 0.0 <= result["eer"] <= 1.0
    assert (tmp_path / "r.npz").exists()
