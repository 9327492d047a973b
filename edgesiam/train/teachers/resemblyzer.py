"""Resemblyzer (a GE2E LSTM speaker encoder, 256-d), the speaker peer of ``make bench``, as a peer
of ``edgesiam eval`` beside CAM++.

Resemblyzer needs webrtcvad (built from source) and its own librosa, so it lives in the peers venv
(``.venv-peers``, made by ``scripts/make_peers_venv.sh``), never in the project's. The recordings
the teacher cache lacks are embedded in one run of the peers' Python, with the script ``make
bench`` scores it by (``preprocess_wav`` then ``embed_utterance``; a recording the VAD would empty
is embedded whole); the run writes a ``.npy`` the cache then takes its rows from. Its licence is
unstated: a peer in tables, never a teacher for shipped models.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgesiam.errors import ConfigError, ModelError
from edgesiam.tools.bench.peers import (
    DEFAULT_PYTHON,
    RESEMBLYZER_SCRIPT,
    install_record,
    peer_env,
)

NAME = "resemblyzer"
EMBEDDING_DIM = 256

_DESCRIBE = """
import hashlib, importlib.util, json
from importlib.metadata import version
from pathlib import Path
weights = Path(importlib.util.find_spec("resemblyzer").origin).parent / "pretrained.pt"
print("PEER_RESULT " + json.dumps({"sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
                                   "version": version("resemblyzer")}))
"""


def _tail(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-3:])[-600:]


class ResemblyzerPeer:
    """Resemblyzer in the peers venv at ``python``: its weights' SHA-256 (read at start, without
    loading torch) keys the cache; :meth:`embed_files` embeds recordings there."""

    name = NAME
    revision = 1
    """Raise it when the script's preprocessing changes (cached embeddings expire)."""

    def __init__(self, python: Path = DEFAULT_PYTHON) -> None:
        self.python = Path(python)
        if not self.python.exists():
            raise ConfigError(
                f"Resemblyzer runs in the peers venv and {self.python} does not exist: run "
                "scripts/make_peers_venv.sh (or `make bench`) first"
            )
        recorded = install_record(self.python).get(NAME, {})
        if recorded.get("status") == "not installable":
            raise ConfigError(f"Resemblyzer is not installed in the peers venv: {recorded}")
        described = self._run(["-c", _DESCRIBE])
        found = [ln for ln in described.splitlines() if ln.startswith("PEER_RESULT ")]
        if not found:
            raise ModelError(f"{self.python}: cannot find Resemblyzer's weights: {described}")
        info = json.loads(found[-1][len("PEER_RESULT ") :])
        self.weights_sha256: str = info["sha256"]
        self.version: str = info["version"]

    def _run(self, args: list[str]) -> str:
        done = subprocess.run(
            [str(self.python), *args], capture_output=True, text=True, env=peer_env(), check=False
        )
        if done.returncode:
            raise ModelError(f"{self.python}: exit {done.returncode}: {_tail(done.stderr)}")
        return done.stdout

    def embed_files(self, files: Sequence[Path], progress: bool = True) -> np.ndarray:
        """``(len(files), 256)`` L2-normalised embeddings, in order, from one peers-venv run."""
        with tempfile.TemporaryDirectory(prefix="edgesiam-resemblyzer-") as tmp:
            listing, out = Path(tmp) / "paths.json", Path(tmp) / "embeddings.npy"
            listing.write_text(json.dumps([str(Path(f).resolve()) for f in files]))
            errors = Path(tmp) / "stderr.txt"
            with (
                open(errors, "w") as err,
                tqdm(total=len(files), desc=NAME, unit="rec", disable=not progress) as bar,
            ):
                run = subprocess.Popen(
                    [str(self.python), "-c", RESEMBLYZER_SCRIPT, str(listing), str(out)],
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                    env=peer_env(),
                )
                assert run.stdout is not None
                for line in run.stdout:
                    if line.startswith("PEER_PROGRESS"):
                        bar.update(1)
                code = run.wait()
            if code:
                raise ModelError(f"Resemblyzer exited {code}: {_tail(errors.read_text())}")
            embeddings = np.load(out).astype(np.float32)
        if embeddings.shape != (len(files), EMBEDDING_DIM):
            raise ModelError(f"Resemblyzer gave {embeddings.shape} for {len(files)} recordings")
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        normalised: np.ndarray = embeddings / np.where(norms > 0, norms, 1.0)
        return normalised
