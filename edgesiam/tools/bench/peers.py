"""Peer tools beside ours: Resemblyzer, openWakeWord's feature pipeline, EfficientWord-Net.

The peers live in their own virtual environment (``.venv-peers``, made by
``scripts/make_peers_venv.sh``), never in the project's: each measurement is a small script run
there by subprocess, so this module imports nothing heavy. Every peer is reported as a dict
``{"status": "ok" | "not installable" | "not runnable", "reason", "ms_per_audio_second",
"version", ...}``; a peer that cannot be installed or run says why instead of failing the run.
Timings are on one thread (thread variables set to 1, the process pinned to one CPU core, torch and
onnxruntime told one thread). Only the weights shipped inside the peers' wheels are used; nothing
is fetched from a hub at run time.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import textwrap
from pathlib import Path
from typing import Any

PEERS = ("resemblyzer", "openwakeword", "efficientword_net")
"""Peer names, as keys of :func:`measure_peers`'s result and of ``peers-install.json``."""

DEFAULT_PYTHON = Path(".venv-peers/bin/python")
INSTALL_RECORD = "peers-install.json"  # written by scripts/make_peers_venv.sh into the venv
SAMPLE_RATE = 16000
TIMEOUT_S = 600

_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}

# Shared head of every peer script: one core, the audio to embed (real recordings concatenated, or
# a synthetic voiced signal), and the JSON result line. argv: audio_seconds, data_dir or "".
_PRELUDE = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    SR = 16000
    SECONDS = float(sys.argv[1])
    DATA_DIR = sys.argv[2] if len(sys.argv) > 2 else ""

    def load_audio(n):
        parts, have = [], 0
        if DATA_DIR:
            import soundfile as sf
            from pathlib import Path
            for path in sorted(Path(DATA_DIR).glob("*/*.wav")):
                wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
                if sr != SR:
                    continue
                parts.append(wav.mean(axis=1))
                have += len(parts[-1])
                if have >= n:
                    break
        if have < n:  # synthetic: a pitch-gliding harmonic tone, syllable-modulated, plus noise
            t = np.arange(n - have) / SR
            f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
            phase = 2 * np.pi * np.cumsum(f0) / SR
            voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
            envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
            rng = np.random.default_rng(0)
            synth = 0.1 * envelope * voiced + 0.005 * rng.standard_normal(len(t))
            parts.append(synth.astype(np.float32))
        return np.concatenate(parts)[:n].astype(np.float32)

    def emit(**result):
        print("PEER_RESULT " + json.dumps(result))
    """
)

_SCRIPTS = {
    "resemblyzer": textwrap.dedent(
        """
        from importlib.metadata import version
        import torch
        torch.set_num_threads(1)
        from resemblyzer import VoiceEncoder, preprocess_wav
        encoder = VoiceEncoder("cpu", verbose=False)
        wav = load_audio(int(SECONDS * SR))
        encoder.embed_utterance(preprocess_wav(wav[: 2 * SR], source_sr=SR))  # warm-up
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            embedding = encoder.embed_utterance(preprocess_wav(wav, source_sr=SR))
            best = min(best, time.perf_counter() - start)
        emit(version=version("resemblyzer"), seconds=best, audio_seconds=len(wav) / SR,
             dim=int(embedding.shape[-1]), torch=torch.__version__,
             what="VoiceEncoder.embed_utterance(preprocess_wav(wav)), best of 3")
        """
    ),
    "openwakeword": textwrap.dedent(
        """
        from importlib.metadata import version
        from pyopen_wakeword import OpenWakeWordFeatures
        from pyopen_wakeword.openwakeword import SAMPLES_PER_CHUNK
        features = OpenWakeWordFeatures.from_builtin()
        wav = load_audio(int(SECONDS * SR))
        pcm = (np.clip(wav, -1, 1) * 32767).astype(np.int16)
        chunks = [pcm[i : i + SAMPLES_PER_CHUNK].tobytes()
                  for i in range(0, len(pcm) - SAMPLES_PER_CHUNK + 1, SAMPLES_PER_CHUNK)]
        def run():
            n = 0
            for chunk in chunks:
                for _ in features.process_streaming(chunk):
                    n += 1
            return n
        run()  # warm-up; also drains the 8 s of zeros the stream starts with
        best, n_embeddings = float("inf"), 0
        for _ in range(3):
            start = time.perf_counter()
            n_embeddings = run()
            best = min(best, time.perf_counter() - start)
        emit(version=version("pyopen-wakeword"), seconds=best,
             audio_seconds=len(chunks) * SAMPLES_PER_CHUNK / SR, embeddings=n_embeddings,
             what="OpenWakeWordFeatures.process_streaming over 80 ms chunks "
                  "(mel-spectrogram + embedding TFLite), steady state, best of 3")
        """
    ),
    "efficientword_net": textwrap.dedent(
        """
        from importlib.metadata import version
        import onnxruntime as rt
        _SessionOptions = rt.SessionOptions
        def _one_thread_options():
            options = _SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            return options
        rt.SessionOptions = _one_thread_options
        from eff_word_net.audio_processing import Resnet50_Arc_loss
        model = Resnet50_Arc_loss()  # loads the shipped ONNX and runs one warm-up window
        window = model.window_frames
        wav = load_audio(max(int(SECONDS * SR), window))
        windows = [wav[i : i + window] for i in range(0, len(wav) - window + 1, window)]
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for w in windows:
                embedding = model.audioToVector(w)
            best = min(best, time.perf_counter() - start)
        emit(version=version("EfficientWord-Net"), seconds=best,
             audio_seconds=len(windows) * window / SR, window_seconds=window / SR,
             dim=int(np.asarray(embedding).shape[-1]),
             what="Resnet50_Arc_loss.audioToVector (logfbank + ResNet-50 ONNX) over "
                  "non-overlapping windows of the model's own length, best of 3")
        """
    ),
}

RESEMBLYZER_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import soundfile as sf
    import torch
    torch.set_num_threads(1)
    from resemblyzer import VoiceEncoder, preprocess_wav
    from resemblyzer.audio import normalize_volume
    from resemblyzer.hparams import audio_norm_target_dBFS
    paths = json.load(open(sys.argv[1]))
    encoder = VoiceEncoder("cpu", verbose=False)
    embeddings, untrimmed = [], 0
    for path in paths:
        wav, sr = sf.read(path, dtype="float32", always_2d=True)
        wav = wav.mean(axis=1)
        processed = preprocess_wav(wav, source_sr=sr)
        if len(processed) < 400:  # the VAD trimmed (nearly) everything: keep the whole recording
            import librosa
            processed = librosa.resample(wav, orig_sr=sr, target_sr=16000)  # as preprocess_wav
            processed = normalize_volume(processed, audio_norm_target_dBFS, increase_only=True)
            untrimmed += 1
        embeddings.append(encoder.embed_utterance(processed))
        print("PEER_PROGRESS", flush=True)
    np.save(sys.argv[2], np.stack(embeddings).astype(np.float32))
    print("PEER_RESULT " + json.dumps({"untrimmed": untrimmed}))
    """
)
"""Resemblyzer's embedding of each recording: argv JSON list of paths, output .npy; one
``PEER_PROGRESS`` line per recording. Shared by ``make bench`` and ``edgesiam eval --peer``."""


def peer_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(_THREAD_ENV)
    return env


def install_record(python: Path) -> dict[str, Any]:
    """What make_peers_venv.sh recorded per peer (empty when it recorded nothing)."""
    record = python.parent.parent / INSTALL_RECORD
    try:
        loaded: dict[str, Any] = json.loads(record.read_text())
        return loaded
    except (OSError, ValueError):
        return {}


def _run(python: Path, script: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run ``script`` with the peers' Python; its ``PEER_RESULT`` line, or an error dict."""
    try:
        done = subprocess.run(
            [str(python), "-c", script, *args],
            capture_output=True,
            text=True,
            env=peer_env(),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    except OSError as exc:
        return {"error": f"cannot start {python}: {exc}"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("PEER_RESULT "):
            result: dict[str, Any] = json.loads(line[len("PEER_RESULT ") :])
            return result
    lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
    return {"error": f"exit {done.returncode}: " + " | ".join(lines[-3:])[-600:]}


def _not_installable(reason: str) -> dict[str, Any]:
    return {
        "status": "not installable",
        "reason": reason,
        "ms_per_audio_second": None,
        "version": None,
    }


def measure_peer(
    peer: str,
    audio_seconds: float = 10.0,
    data_dir: Path | None = None,
    python: Path = DEFAULT_PYTHON,
    timeout: float = TIMEOUT_S,
) -> dict[str, Any]:
    """Cost of one peer (see :data:`PEERS`) embedding ``audio_seconds`` of 16 kHz audio.

    The audio is the recordings of ``data_dir`` (``DIR/<label>/<item>.wav``) concatenated, topped up
    with a synthetic voiced signal (all synthetic when ``data_dir`` is None).
    """
    if peer not in _SCRIPTS:
        raise ValueError(f"unknown peer {peer!r}; known: {', '.join(PEERS)}")
    python = Path(python)
    if not python.exists():
        return _not_installable(
            f"no peers venv: {python} does not exist (run scripts/make_peers_venv.sh)"
        )
    recorded = install_record(python).get(peer, {})
    if recorded.get("status") == "not installable":
        return _not_installable(recorded.get("reason", "pip install failed"))
    args = [str(audio_seconds), str(data_dir) if data_dir is not None else ""]
    out = _run(python, _PRELUDE + _SCRIPTS[peer], args, timeout)
    if "error" in out:
        missing = "ModuleNotFoundError" in out["error"] or "PackageNotFoundError" in out["error"]
        return {
            "status": "not installable" if missing else "not runnable",
            "reason": out["error"],
            "ms_per_audio_second": None,
            "version": None,
        }
    if recorded.get("note"):
        out["install_note"] = recorded["note"]
    seconds, audio = float(out.pop("seconds")), float(out.pop("audio_seconds"))
    return {
        "status": "ok",
        "reason": None,
        "ms_per_audio_second": 1000.0 * seconds / audio,
        "version": out.pop("version"),
        "audio_seconds": audio,
        "audio": "synthetic" if data_dir is None else f"recordings of {data_dir}",
        **out,
    }


def measure_peers(
    audio_seconds: float = 10.0,
    data_dir: Path | None = None,
    python: Path = DEFAULT_PYTHON,
) -> dict[str, dict[str, Any]]:
    """:func:`measure_peer` for every peer, keyed by peer name (see :data:`PEERS`)."""
    return {peer: measure_peer(peer, audio_seconds, data_dir, python) for peer in PEERS}


def add_ratios(peers: dict[str, dict[str, Any]], ours_ms_per_audio_second: float) -> None:
    """Add ``ratio_to_ours`` (peer cost / our cost, per audio second) to each measured peer."""
    for result in peers.values():
        ms = result.get("ms_per_audio_second")
        result["ratio_to_ours"] = (
            ms / ours_ms_per_audio_second
            if ms is not None and ours_ms_per_audio_second > 0
            else None
        )


def resemblyzer_accuracy(
    data_dir: Path,
    python: Path = DEFAULT_PYTHON,
    out_npz: Path | None = None,
    timeout: float = 3600,
) -> dict[str, Any]:
    """Resemblyzer's held-out metrics on the recordings of ``data_dir``, on the trials ours get.

    Every recording is embedded with ``VoiceEncoder.embed_utterance(preprocess_wav(...))`` in the
    peers venv; the embeddings go to ``out_npz`` (the ``edgesiam embed`` layout: embeddings,
    labels, paths, groups; a temporary file when None) and are scored by
    :func:`edgesiam.evaluation.evaluate` with the dataset's labels and groups. Returns the metrics
    plus ``status`` / ``reason`` / ``version`` / ``untrimmed`` (recordings the VAD would have
    emptied, embedded whole); a peer that is missing or fails gives the status and reason only.
    """
    import numpy as np

    from edgesiam.data.readers import scan_dataset
    from edgesiam.evaluation import evaluate

    python = Path(python)
    if not python.exists():
        return _not_installable(
            f"no peers venv: {python} does not exist (run scripts/make_peers_venv.sh)"
        )
    recorded = install_record(python).get("resemblyzer", {})
    if recorded.get("status") == "not installable":
        return _not_installable(recorded.get("reason", "pip install failed"))
    info = scan_dataset(data_dir)
    paths = [str(r.path) for r in info.recordings]
    labels = [r.label for r in info.recordings]
    groups = [r.group for r in info.recordings]
    with tempfile.TemporaryDirectory() as tmp:
        list_path, emb_path = Path(tmp) / "paths.json", Path(tmp) / "embeddings.npy"
        list_path.write_text(json.dumps(paths))
        out = _run(python, RESEMBLYZER_SCRIPT, [str(list_path), str(emb_path)], timeout)
        if "error" in out:
            return {"status": "not runnable", "reason": out["error"], "version": None}
        npz = Path(out_npz) if out_npz is not None else Path(tmp) / "resemblyzer.npz"
        npz.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            npz,
            embeddings=np.load(emb_path).astype(np.float32),
            labels=np.array(labels),
            paths=np.array(paths),
            groups=np.array(["" if g is None else g for g in groups]),
        )
        with np.load(npz) as saved:
            embeddings = saved["embeddings"]
    metrics = evaluate(embeddings, labels, groups)
    version = _run(
        python,
        "from importlib.metadata import version; import json; "
        "print('PEER_RESULT ' + json.dumps({'v': version('resemblyzer')}))",
        [],
        60,
    ).get("v")
    return {
        "status": "ok",
        "reason": None,
        "version": version,
        "data_dir": str(data_dir),
        "untrimmed": out.get("untrimmed", 0),
        "npz": str(out_npz) if out_npz is not None else None,
        **metrics,
    }
