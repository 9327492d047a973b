"""What the atheris harnesses share: seed inputs and a scratch folder.

A harness is run by ``make fuzz`` (``fuzz/run.sh``) for a bounded time; any exception other than
the documented ``EdgesiamError`` is a crash, and libFuzzer saves the input that caused it.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np


def scratch() -> Path:
    """A folder for the files a harness writes (in memory where the system has /dev/shm)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    return Path(tempfile.mkdtemp(prefix="edgesiam-fuzz-", dir=base))


def wav_bytes(subtype: str = "PCM_16", channels: int = 1, rate: int = 16000) -> bytes:
    import soundfile as sf

    x = 0.3 * np.sin(np.arange(800)[:, None] * 0.05 * np.arange(1, channels + 1))
    buf = io.BytesIO()
    sf.write(buf, x, rate, subtype=subtype, format="WAV")
    return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def write_seeds(name: str, folder: Path) -> None:
    """Valid inputs to start from, so that the fuzzer mutates real formats (not only noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        return
    seeds: list[bytes] = []
    if name == "readers":
        seeds += [b"w" + wav_bytes(s, c, r) for s, c, r in
                  [("PCM_16", 1, 16000), ("FLOAT", 2, 8000), ("PCM_U8", 1, 44100), ("ULAW", 1, 8000)]]  # fmt: skip
        seeds += [
            b"c" + t for t in [b"ax,ay,az\n1,2,3\n4,5,6\n", b"1;2,5\n3;4\n", b"1 2\n\n3 nan\n"]
        ]
        seeds += [b"n" + npy_bytes(a) for a in [np.ones((5, 3), "<f4"), np.arange(4, dtype="<i2")]]
    elif name == "commands":
        import base64

        wav = base64.b64encode(wav_bytes()).decode()
        requests = [
            ("enroll", {"label": "alice", "wav_base64": wav, "correlation_id": "1"}),
            ("enroll", {"label": "bob", "embeddings": [[0.1] * 64]}),
            ("forget", {"label": "alice"}),
            ("list", {}),
            ("threshold", {"label": "bob", "value": 0.5}),
            ("threshold", {"target_fmr": 0.001}),
            ("reload", {}),
        ]
        verbs = ["enroll", "forget", "list", "threshold", "reload"]
        seeds += [bytes([verbs.index(v)]) + json.dumps(r).encode() for v, r in requests]
    elif name == "sensor_payloads":
        seeds += [b"j" + t for t in [b"[1, 2, 3]", b'{"samples": [[1, 2, 3], [4, null, 6]]}']]
        seeds += [b"f" + np.ones(6, "<f4").tobytes(), b"c1,2,3", b"cax ay az"]
    for i, seed in enumerate(seeds):
        (folder / f"seed-{i}").write_bytes(seed)
