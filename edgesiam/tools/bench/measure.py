"""The measurements behind ``edgesiam bench``, all on one thread.

Each function measures one thing and returns a JSON-ready dict. Importing this module pins the
BLAS/OpenMP pools to one thread (when numpy has not started them yet); :func:`single_thread`
also limits already-loaded pools (threadpoolctl) and torch, and TFLite interpreters are made with
``num_threads=1``.

The device-only figures (peak RSS of ``edgesiam run``, end-to-end latency through Mosquitto) run
``edgesiam run`` in a separate process, from the device venv (``.venv-litert``, else
``.venv-tflite``) when one exists, else from the current interpreter's ``edgesiam``.
"""

from __future__ import annotations

import os

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)
ORIGINAL_THREAD_ENV = {k: os.environ.get(k) for k in THREAD_VARS}
for _var in THREAD_VARS:
    os.environ[_var] = "1"

import contextlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

RATE_DEFAULT = 16000
GALLERY_SIZES = (1, 100, 1000, 10000)
MOSQUITTO = "/usr/sbin/mosquitto"


# --- helpers ---------------------------------------------------------------------------------


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Limit BLAS/OpenMP pools (and torch, when loaded) to one thread for the block."""
    stack = contextlib.ExitStack()
    try:
        from threadpoolctl import threadpool_limits

        stack.enter_context(threadpool_limits(1))
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
    torch_mod = sys.modules.get("torch")
    old = torch_mod.get_num_threads() if torch_mod is not None else None
    if torch_mod is not None:
        torch_mod.set_num_threads(1)
    try:
        with stack:
            yield
    finally:
        if torch_mod is not None and old is not None:
            torch_mod.set_num_threads(old)


def pct(values: Sequence[float] | np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if len(values) else None


def timed(fn: Callable[[], Any], runs: int, warmup: int) -> dict[str, float | None]:
    """p50/p95/mean of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = np.empty(runs, dtype=np.float64)
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        times[i] = (time.perf_counter() - t0) * 1e3
    return {
        "p50_ms": pct(times, 50),
        "p95_ms": pct(times, 95),
        "mean_ms": round(float(times.mean()), 4),
        "runs": runs,
    }


def find_bundles(root: str | Path) -> list[Path]:
    """Bundle directories (those with a ``manifest.json``) in ``root``, or ``root`` itself."""
    p = Path(root)
    if (p / "manifest.json").is_file():
        return [p]
    return sorted(d for d in p.iterdir() if (d / "manifest.json").is_file()) if p.is_dir() else []


def _manifest(bundle: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((bundle / "manifest.json").read_text())
    return data


def _single_thread_frontend(frontend: Any) -> None:
    if hasattr(frontend, "threads"):
        frontend.threads = 1


def synthetic_signal(manifest: dict[str, Any], seconds: float, seed: int = 0) -> np.ndarray:
    """A test signal in the bundle's format: voiced tones over noise (audio), or IMU-like rows."""
    rng = np.random.default_rng(seed)
    rate = int(manifest["sample_rate"])
    n = round(seconds * rate)
    t = np.arange(n) / rate
    if manifest["modality"] == "audio":
        f0 = 140 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
        phase = 2 * np.pi * np.cumsum(f0) / rate
        x = sum(h**-0.8 * np.sin(h * phase) for h in range(1, 12))
        x = 0.3 * x / np.max(np.abs(x)) + 0.01 * rng.standard_normal(n)
        return np.asarray(x, dtype=np.float32)
    channels = int(manifest["channels"])
    phase = np.linspace(0, np.pi, channels)
    x = np.sin(2 * np.pi * 1.3 * t[:, None] + phase) + 0.05 * rng.standard_normal((n, channels))
    return x.astype(np.float32)


# --- model sizes and per-window latency --------------------------------------------------------


def model_sizes(bundle: str | Path) -> dict[str, Any]:
    """Bytes of every model file in the bundle, and of the whole bundle directory."""
    b = Path(bundle)
    m = _manifest(b)
    models = {key: (b / entry["file"]).stat().st_size for key, entry in m["models"].items()}
    total = sum(f.stat().st_size for f in b.iterdir() if f.is_file())
    return {"models_bytes": models, "deployed": m["model"], "bundle_bytes": total}


def _torch_latency(checkpoint: Path, runs: int, warmup: int) -> dict[str, Any]:
    try:
        import torch

        from edgesiam.train.checkpoint import CheckpointEmbedder
    except ImportError as exc:
        return {"status": f"not measured (torch not importable: {exc})"}
    emb = CheckpointEmbedder(checkpoint)
    shape = emb.frontend.feature_shape(emb.window)
    x = torch.zeros((1, *shape), dtype=torch.float32)
    with single_thread(), torch.no_grad():
        torch.set_num_threads(1)
        res: dict[str, Any] = dict(timed(lambda: emb.model(x), runs, warmup))
    res["checkpoint"] = str(checkpoint)
    return res


def model_latency(
    bundle: str | Path,
    runs: int = 200,
    warmup: int = 20,
    checkpoint: str | Path | None = None,
) -> dict[str, Any]:
    """Per-window ``invoke()`` latency of each TFLite model in the bundle (num_threads=1), and
    of the torch eager model when a checkpoint is given and exists."""
    from edgesiam.model.interpreters import TFLiteModel, measure_latency

    b = Path(bundle)
    m = _manifest(b)
    out: dict[str, Any] = {}
    backend = None
    with single_thread():
        for key, entry in m["models"].items():
            if key == "edgetpu":
                continue
            model = TFLiteModel(b / entry["file"], num_threads=1)
            backend = model.backend.name
            lat = measure_latency(model, runs=runs, warmup=warmup)
            out[f"tflite_{key}"] = {
                "p50_ms": round(lat["median_ms"], 4),
                "p95_ms": round(lat["p95_ms"], 4),
                "runs": runs,
            }
    out["interpreter"] = backend
    ck = Path(checkpoint) if checkpoint is not None else None
    if ck is not None and ck.is_file():
        out["torch_eager"] = _torch_latency(ck, runs, warmup)
    else:
        out["torch_eager"] = {"status": "no checkpoint", "looked_for": str(ck) if ck else None}
    return out


# --- the full pipeline -------------------------------------------------------------------------


def random_gallery(dim: int, templates: int, per_label: int = 1, seed: int = 0) -> Any:
    """A gallery of ``templates`` random unit templates, ``per_label`` to a label."""
    from edgesiam.core.matching import Gallery

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((templates, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = [f"label{i // per_label:05d}" for i in range(templates)]
    return Gallery.from_templates(x, labels)


def pipeline_cost(
    bundle: str | Path,
    seconds: float = 30.0,
    gallery_templates: int = 30,
    model: str | None = None,
    repeats: int = 3,
) -> dict[str, Any]:
    """Front-end + model + matching on every window (at the bundle's hop) of a synthetic signal.

    The signal goes through the runtime's own :class:`~edgesiam.core.stream.StreamMatcher`
    (windows, overlapping log-mel frames computed once, the int8 model, the gallery, the decision
    rule) in chunks of 0.1 s, ``repeats`` times; the cheapest pass gives the time per second of
    signal (``ms_per_second``), the real-time factor (wall ÷ signal), per-window p50/p95, and the
    share of each stage (front-end, model, matching with the decision: what dominates the cost).
    """
    from edgesiam.core.matching import Thresholds
    from edgesiam.core.stream import StreamMatcher, WindowResult
    from edgesiam.model.interpreters import BundleEmbedder

    b = Path(bundle)
    with single_thread():
        emb = BundleEmbedder(b, model=model, num_threads=1)
        _single_thread_frontend(emb.frontend)
        m = emb.manifest.model_dump()
        signal = synthetic_signal(m, max(seconds, emb.window / emb.sample_rate))
        gallery = random_gallery(emb.embedding_dim, gallery_templates, per_label=3)
        chunk = max(1, emb.sample_rate // 10)

        def stream(samples: np.ndarray) -> list[WindowResult]:
            matcher = StreamMatcher(emb, gallery, Thresholds(1.0))
            return [
                r
                for at in range(0, samples.shape[0], chunk)
                for r in matcher.push_windows(samples[at : at + chunk])
            ]

        stream(signal[: emb.window + 2 * emb.hop])  # one warm-up pass over three windows
        # the signal streamed `passes` times, each pass timed on its own: the cheapest pass is
        # the figure (the peers are timed the same way, best of 3), so that other work on a shared
        # machine inflates neither side
        passes = [stream(signal) for _ in range(repeats)]
        results = min(passes, key=lambda p: sum(r.total_ms for r in p))
        window_ms = [r.total_ms for r in results]
        stages = {
            "frontend": [r.features_ms for r in results],
            "model": [r.inference_ms for r in results],
            "matching": [r.total_ms - r.features_ms - r.inference_ms for r in results],
        }
        first = signal[: emb.window + 20 * emb.hop]  # 21 windows
        profile = profile_top(lambda: stream(first), per=21)
    stream_s = signal.shape[0] / emb.sample_rate
    total_ms = float(sum(window_ms))
    shares = {k: round(sum(v) / total_ms, 4) for k, v in stages.items()}
    return {
        "bundle": emb.name,
        "modality": emb.modality,
        "model": emb.model_key,
        "interpreter": emb.backend,
        "stream_s": round(stream_s, 3),
        "windows": len(window_ms),
        "window_s": emb.window / emb.sample_rate,
        "hop_s": emb.hop / emb.sample_rate,
        "gallery_templates": gallery_templates,
        "passes": repeats,
        "ms_per_second": round(total_ms / stream_s, 4),
        "real_time_factor": round(total_ms / 1e3 / stream_s, 6),
        "window_ms_p50": pct(window_ms, 50),
        "window_ms_p95": pct(window_ms, 95),
        "stage_ms_p50": {k: pct(v, 50) for k, v in stages.items()},
        "stage_share": shares,
        "dominant_stage": max(shares, key=lambda k: shares[k]),
        "profile_top": profile,
    }


def profile_top(fn: Callable[[], Any], per: int = 1, top: int = 8) -> list[dict[str, Any]]:
    """cProfile of ``fn()``: the ``top`` functions by own time, in ms per call of ``per``."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    out = []
    for (file, line, name), (_cc, nc, tt, ct, _callers) in rows:
        where = f"{Path(file).name}:{line}" if line else file
        out.append(
            {
                "function": f"{name} ({where})",
                "own_ms": round(tt * 1e3 / max(per, 1), 4),
                "cumulative_ms": round(ct * 1e3 / max(per, 1), 4),
                "calls": nc,
            }
        )
    return out


def matching_cost(
    dim: int = 64,
    sizes: Sequence[int] = GALLERY_SIZES,
    runs: int = 300,
    warmup: int = 20,
    per_label: int = 1,
) -> dict[str, Any]:
    """``Gallery.best`` of one query against galleries of ``sizes`` templates; ``centred``: the
    same with scores centred on a background mean (``matching.centre: background``)."""
    from edgesiam.core.normalise import CentredScorer, centred_gallery

    rng = np.random.default_rng(1)
    q = rng.standard_normal((1, dim)).astype(np.float32)
    q /= np.linalg.norm(q)
    mean = rng.standard_normal(dim) * 0.1
    out: dict[str, Any] = {"dim": dim, "templates_per_label": per_label, "sizes": {}}
    out["centred"] = {}
    with single_thread():
        for n in sizes:
            g = random_gallery(dim, int(n), per_label=per_label)
            out["sizes"][str(int(n))] = timed(partial(g.best, q), runs, warmup)
            centred = CentredScorer(centred_gallery(g, mean), mean)
            out["centred"][str(int(n))] = timed(partial(centred.scores, q), runs, warmup)
    return out


# --- device-only runs: peak RSS and MQTT end-to-end latency ------------------------------------


def device_executable(root: str | Path = ".") -> tuple[str, str]:
    """The ``edgesiam`` of a device-only venv (``.venv-litert``, ``.venv-tflite``), else ours."""
    for venv in (".venv-litert", ".venv-tflite"):
        exe = Path(root) / venv / "bin" / "edgesiam"
        if exe.exists():
            return str(exe.resolve()), venv
    here = Path(sys.executable).parent / "edgesiam"
    if here.exists():
        return str(here), "current venv (no device-only venv found)"
    found = shutil.which("edgesiam")
    return (found or "edgesiam"), "PATH (no device-only venv found)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def drain(pipe: Any, sink: list[str]) -> threading.Thread:
    def run() -> None:
        for line in iter(pipe.readline, b""):
            sink.append(line.decode(errors="replace"))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def hwm_poller(pid: int, out: dict[str, int]) -> threading.Thread:
    """Poll VmHWM of ``pid`` (peak RSS as the kernel counts it) until the process is gone."""

    def run() -> None:
        path = f"/proc/{pid}/status"
        while True:
            try:
                text = Path(path).read_text()
            except OSError:
                return
            m = re.search(r"VmHWM:\s+(\d+) kB", text)
            if m:
                out["vmhwm_kb"] = int(m.group(1))
            time.sleep(0.005)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def launch(
    cmd: list[str],
    stdin: int | None = None,
    cwd: str | Path | None = None,
    one_thread: bool = True,
) -> tuple[subprocess.Popen[bytes], list[str], dict[str, int]]:
    """Start ``cmd`` with stdout/stderr drained and its VmHWM polled.

    ``one_thread=False`` gives the child the thread settings this process started with.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if not one_thread:
        for k, v in ORIGINAL_THREAD_ENV.items():
            env.pop(k, None)
            if v is not None:
                env[k] = v
    proc = subprocess.Popen(
        cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd
    )
    err: list[str] = []
    drain(proc.stderr, err)
    drain(proc.stdout, [])
    hwm: dict[str, int] = {}
    hwm_poller(proc.pid, hwm)
    return proc, err, hwm


def reap(proc: subprocess.Popen[bytes]) -> tuple[int, int]:
    """Wait for the process: (exit code, ru_maxrss in KiB)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss


ENDED = re.compile(r"run ended \([^)]*\): (\{.*\})")


def write_signal(manifest: dict[str, Any], seconds: float, path: Path, seed: int = 0) -> Path:
    """The synthetic signal as a file ``edgesiam run``/``enroll`` reads (.wav or .npy)."""
    x = synthetic_signal(manifest, seconds, seed)
    if manifest["modality"] == "audio":
        import soundfile as sf

        path = path.with_suffix(".wav")
        sf.write(path, x, int(manifest["sample_rate"]), subtype="PCM_16")
    else:
        path = path.with_suffix(".npy")
        np.save(path, x)
    return path


def enroll(exe: str, bundle: Path, gallery: Path, label: str, files: Sequence[Path]) -> None:
    subprocess.run(
        [exe, "enroll", "--bundle", str(bundle), "--gallery", str(gallery), "--label", label]
        + [str(f) for f in files],
        check=True,
        capture_output=True,
    )


def run_argv(
    exe: str, bundle: Path, gallery: Path, source: str, state_dir: Path, *extra: str
) -> list[str]:
    """The ``edgesiam run`` command line every measurement starts from."""
    return [
        exe,
        "run",
        "--bundle",
        str(bundle),
        "--gallery",
        str(gallery),
        "--source",
        source,
        "--state-dir",
        str(state_dir),
        "--log-level",
        "info",
        *extra,
    ]


def device_rss(
    bundle: str | Path,
    seconds: float = 30.0,
    exe: str | None = None,
    work: str | Path | None = None,
) -> dict[str, Any]:
    """Peak RSS of a device-only ``edgesiam run --no-mqtt`` over a file (a fresh process).

    Peak RSS is the child's VmHWM (``/proc/PID/status``, polled every 5 ms; a high-water mark
    of the exec'd image alone). ``ru_maxrss`` from ``wait4()`` is kept too, but Linux carries
    the parent's RSS at fork across ``exec`` into it, so it is only meaningful when the
    measuring process is small (it is not once torch is loaded).
    """
    b = Path(bundle).resolve()
    m = _manifest(b)
    exe, where = (exe, "given") if exe else device_executable()
    with tempfile.TemporaryDirectory(prefix="edgesiam-bench-") as tmp:
        w = Path(work) if work else Path(tmp)
        clip = write_signal(m, 3.0, w / "enroll", seed=1)
        stream = write_signal(m, seconds, w / "stream", seed=2)
        gallery = w / "gallery.npz"
        enroll(exe, b, gallery, "synthetic", [clip])
        t0 = time.time()
        proc, err, hwm = launch(
            run_argv(exe, b, gallery, f"file:{stream}", w / "state", "--no-mqtt")
        )
        code, maxrss_kb = reap(proc)
        wall = time.time() - t0
        time.sleep(0.1)
    if code != 0:
        return {"status": f"edgesiam run failed ({code})", "stderr": "".join(err)[-2000:]}
    summary: dict[str, Any] = {}
    found = ENDED.search("".join(err))
    if found:
        summary = json.loads(found[1])
    stream_s = summary.get("stream_s")
    run_wall = summary.get("wall_s")
    return {
        "executable": exe,
        "venv": where,
        "stream_s": stream_s,
        "process_wall_s": round(wall, 3),
        "run_wall_s": run_wall,
        "real_time_factor": round(run_wall / stream_s, 5) if stream_s and run_wall else None,
        "windows": summary.get("windows"),
        "peak_rss_mb": round(hwm.get("vmhwm_kb", 0) / 1024, 1),
        "peak_rss_mb_wait4_incl_parent_at_fork": round(maxrss_kb / 1024, 1),
    }


@contextlib.contextmanager
def mosquitto(work: Path) -> Iterator[tuple[int, str]]:
    """A local Mosquitto on a free port: ``(port, version line)``."""
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        + ("user root\n" if os.geteuid() == 0 else "")
        + f"log_dest file {work}/mosquitto.log\n"
    )
    broker = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        version = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True).stdout
        yield port, (version.splitlines() or ["mosquitto"])[0]
    finally:
        broker.terminate()
        broker.wait()


class Sub:
    """An MQTT subscriber that keeps (receive time, topic, payload) of every message."""

    def __init__(self, port: int, topic: str) -> None:
        from edgesiam.mqtt.client import make_client

        self.msgs: list[tuple[float, str, bytes]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.c = make_client()
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.on_message = self._msg
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("the subscriber could not subscribe")

    def _msg(self, c: Any, u: Any, m: Any) -> None:
        now = time.time()
        with self.lock:
            self.msgs.append((now, m.topic, bytes(m.payload)))

    def on(self, suffix: str) -> list[tuple[float, bytes]]:
        with self.lock:
            return [(t, p) for t, topic, p in self.msgs if topic.endswith(suffix)]

    def stop(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def live_run(
    exe: str,
    bundle: Path,
    gallery: Path,
    pcm: np.ndarray,
    rate: int,
    port: int,
    device_id: str,
    state_dir: Path,
    chunk: int = 1600,
) -> dict[str, Any]:
    """Feed s16le ``pcm`` to ``edgesiam run --source stdin:`` in real time and time every event
    from the moment its window's last sample was in the pipe to the subscriber's receive."""
    sub = Sub(port, f"edgesiam/{device_id}/#")
    broker = ("--broker", f"mqtt://127.0.0.1:{port}", "--device-id", device_id)
    proc, err, hwm = launch(
        run_argv(exe, bundle, gallery, "stdin:", state_dir, *broker), stdin=subprocess.PIPE
    )
    assert proc.stdin is not None
    deadline = time.time() + 60
    while not any(p == b"online" for _, p in sub.on("/status")) and time.time() < deadline:
        time.sleep(0.01)
    data = pcm.astype("<i2")
    available: list[float] = []
    start = time.monotonic()
    for i in range(0, data.size, chunk):
        due = start + (i + chunk) / rate
        while (wait := due - time.monotonic()) > 0:
            time.sleep(min(wait, 0.05))
        proc.stdin.write(data[i : i + chunk].tobytes())
        proc.stdin.flush()
        available.append(time.time())
    time.sleep(1.0)
    proc.stdin.close()
    code, _ = reap(proc)
    time.sleep(0.3)
    e2e, decision, delivery = [], [], []
    seen = set()
    for recv, payload in sub.on("/event"):
        ev = json.loads(payload)
        if ev["id"] in seen:
            continue
        seen.add(ev["id"])
        last_sample = round(ev["offset_s"] * rate) - 1
        avail = available[min(last_sample // chunk, len(available) - 1)]
        e2e.append((recv - avail) * 1e3)
        decision.append((ev["ts"] - avail) * 1e3)
        delivery.append((recv - ev["ts"]) * 1e3)
    metrics = [json.loads(p) for _, p in sub.on("/metrics")]
    last = metrics[-1] if metrics else {}
    sub.stop()
    return {
        "exit_code": code,
        "dropped_frames": last.get("dropped_frames"),
        "inference_ms_p50": last.get("inference_ms_p50"),
        "inference_ms_p95": last.get("inference_ms_p95"),
        "stream_s": round(data.size / rate, 3),
        "events": len(e2e),
        "e2e_latency_ms_p50": pct(e2e, 50),
        "e2e_latency_ms_p95": pct(e2e, 95),
        "e2e_latency_ms_max": pct(e2e, 100),
        "decision_latency_ms_p50": pct(decision, 50),
        "decision_latency_ms_p95": pct(decision, 95),
        "delivery_latency_ms_p50": pct(delivery, 50),
        "delivery_latency_ms_p95": pct(delivery, 95),
        "peak_rss_mb": round(hwm.get("vmhwm_kb", 0) / 1024, 1),
        "stderr_tail": "".join(err)[-800:] if code != 0 or not e2e else None,
    }


def mqtt_latency(
    bundle: str | Path, seconds: float = 20.0, exe: str | None = None
) -> dict[str, Any]:
    """End-to-end latency (window end → subscriber) of a live audio run through Mosquitto.

    A synthetic voice is enrolled, then streamed in real time over stdin (voice segments between
    quiet gaps), so the runtime decides matches and publishes them (QoS 1).
    """
    b = Path(bundle).resolve()
    m = _manifest(b)
    if m["modality"] != "audio":
        return {"status": "not measured (the live stdin source is for audio bundles)"}
    if not Path(MOSQUITTO).exists():
        return {"status": f"not measured ({MOSQUITTO} not installed)"}
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        return {"status": "not measured (paho-mqtt not installed)"}
    exe, where = (exe, "given") if exe else device_executable()
    rate = int(m["sample_rate"])
    with tempfile.TemporaryDirectory(prefix="edgesiam-bench-") as tmp:
        w = Path(tmp)
        clip = write_signal(m, 3.0, w / "enroll", seed=1)
        gallery = w / "gallery.npz"
        enroll(exe, b, gallery, "synthetic", [clip])
        voice = synthetic_signal(m, 3.0, seed=3)
        rng = np.random.default_rng(4)
        parts = []
        total = 0
        while total < seconds * rate:
            gap = (0.003 * rng.standard_normal(int(1.5 * rate))).astype(np.float32)
            parts += [gap, voice]
            total += gap.size + voice.size
        x = np.concatenate(parts)[: int(seconds * rate)]
        pcm = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)
        with mosquitto(w) as (port, version):
            res = live_run(exe, b, gallery, pcm, rate, port, "bench-live", w / "state")
    return {"broker": f"{version} on 127.0.0.1 (MQTT 5, QoS 1 events)", "venv": where, **res}


# --- everything --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import platform

    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cpus_visible": os.cpu_count(), "python": platform.python_version()}


def peers(audio_seconds: float, data_dir: str | Path) -> dict[str, Any]:
    """Peer tools, from :mod:`edgesiam.tools.bench.peers` when it exists."""
    try:
        from edgesiam.tools.bench import peers as peers_mod
    except ImportError:
        return {"status": "not measured"}
    try:
        result: dict[str, Any] = peers_mod.measure_peers(audio_seconds, Path(data_dir))
    except Exception as exc:  # a peer tool's failure must not lose our own figures
        return {"status": f"failed: {type(exc).__name__}: {exc}"}
    return result


def run_all(
    bundles_dir: str | Path = "export",
    *,
    quick: bool = False,
    skip_mqtt: bool = False,
    skip_rss: bool = False,
    runs_dir: str | Path = "runs",
    data_dir: str | Path = "data",
    skip_accuracy: bool = False,
    plots_dir: str | Path | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Every measurement, as the JSON ``edgesiam bench --json`` writes.

    ``data_dir`` is the prepared data root: its held-out test sets give the accuracy table (DET
    plots into ``plots_dir``), and ``data_dir/speech/test`` the audio the peers are timed on.
    """
    bundles = find_bundles(bundles_dir)
    if not bundles:
        raise FileNotFoundError(f"no bundles (folders with manifest.json) in {bundles_dir}")
    runs, warmup = (30, 5) if quick else (300, 30)
    seconds = 4.0 if quick else 60.0
    sizes = (1, 100, 1000) if quick else GALLERY_SIZES
    report: dict[str, Any] = {
        "edgesiam_bench": 1,
        "quick": quick,
        "threads": 1,
        "machine": machine(),
        "bundles": {},
    }
    dims = []
    for b in bundles:
        m = _manifest(b)
        log(f"bench: {b.name}: sizes, latency, pipeline")
        entry = {
            "path": str(b),
            "modality": m["modality"],
            "sizes": model_sizes(b),
            "latency": model_latency(
                b, runs, warmup, checkpoint=Path(runs_dir) / m["name"] / "best.pt"
            ),
            "pipeline": pipeline_cost(b, seconds, repeats=1 if quick else 3),
        }
        report["bundles"][b.name] = entry
        dims.append(int(m["embedding_dim"]))
    log("bench: matching cost")
    report["matching"] = matching_cost(
        max(dims), sizes, runs=runs * 2 if not quick else 50, warmup=warmup
    )
    audio = [n for n, e in report["bundles"].items() if e["modality"] == "audio"]
    sensor = [n for n, e in report["bundles"].items() if e["modality"] != "audio"]
    speaker = "speaker" if "speaker" in audio else (audio[0] if audio else None)
    imu = "motion" if "motion" in sensor else (sensor[0] if sensor else None)
    report["pipeline_ms_per_audio_second"] = (
        report["bundles"][speaker]["pipeline"]["ms_per_second"] if speaker else None
    )
    report["pipeline_audio_rtf"] = (
        report["bundles"][speaker]["pipeline"]["real_time_factor"] if speaker else None
    )
    report["pipeline_audio_bundle"] = speaker
    report["pipeline_ms_per_imu_second"] = (
        report["bundles"][imu]["pipeline"]["ms_per_second"] if imu else None
    )
    report["pipeline_imu_rtf"] = (
        report["bundles"][imu]["pipeline"]["real_time_factor"] if imu else None
    )
    report["pipeline_imu_bundle"] = imu
    main = speaker or bundles[0].name
    main_dir = Path(report["bundles"][main]["path"])
    if skip_rss:
        report["device_rss"] = {"status": "skipped"}
    else:
        log(f"bench: device-only RSS ({main})")
        try:
            report["device_rss"] = {"bundle": main, **device_rss(main_dir, 5.0 if quick else 30.0)}
        except Exception as exc:
            report["device_rss"] = {"status": f"failed: {type(exc).__name__}: {exc}"}
    if skip_mqtt or not speaker:
        report["mqtt"] = {"status": "skipped" if skip_mqtt else "no audio bundle"}
    else:
        log(f"bench: end-to-end latency through Mosquitto ({speaker}, real time)")
        try:
            report["mqtt"] = {
                "bundle": speaker,
                **mqtt_latency(Path(report["bundles"][speaker]["path"]), 8.0 if quick else 30.0),
            }
        except Exception as exc:
            report["mqtt"] = {"status": f"failed: {type(exc).__name__}: {exc}"}
    if quick:
        report["peers"] = {"status": "not measured (--quick)"}
    else:
        log("bench: peers")
        speech = Path(data_dir) / "speech" / "test"
        report["peers"] = peers(seconds, speech if speech.is_dir() else Path(data_dir))
        ours = report.get("pipeline_ms_per_audio_second")
        if isinstance(ours, (int, float)) and all(
            isinstance(v, dict) for v in report["peers"].values()
        ):
            from edgesiam.tools.bench.peers import add_ratios

            add_ratios(report["peers"], float(ours))
    if quick or skip_accuracy:
        report["accuracy"] = {"status": "not measured (--quick)" if quick else "skipped"}
    else:
        from edgesiam.tools.bench.accuracy import accuracy_all

        report["accuracy"] = accuracy_all(
            {b.name: b for b in bundles}, data_dir, plots=plots_dir, log=log
        )
    report["goals"] = goals(report)
    return report


GOALS = {
    "pipeline_ms_per_audio_second": ("<=", 0.5),
    "cheapest_peer_ratio": (">=", 10.0),
    "int8_model_kb": ("<=", 150.0),
    "int8_model_kb_base": ("<=", 1000.0),
    "device_rss_mb": ("<=", 80.0),
    "e2e_latency_ms_p95": ("<=", 10.0),
}
"""Each goal: the comparison that meets it and its limit (goals are reported, never asserted). The
size goals are per tier: ``tiny`` bundles (Pi Zero 2 W, Coral) and ``base`` ones, named
``<name>-base`` (Pi 4/5)."""

BASE_SUFFIX = "-base"
"""A bundle whose name ends so is of the ``base`` tier."""


def cheapest_peer_ratio(report: dict[str, Any]) -> float | None:
    """How many times cheaper our audio pipeline is than the cheapest peer that was measured."""
    peers = report.get("peers")
    if not isinstance(peers, dict):
        return None
    ratios = [
        float(v["ratio_to_ours"])
        for v in peers.values()
        if isinstance(v, dict) and isinstance(v.get("ratio_to_ours"), int | float)
    ]
    return min(ratios) if ratios else None


def goals(report: dict[str, Any]) -> dict[str, Any]:
    """Each goal's measured value and whether it is met (None: not measured)."""

    def largest_kb(base: bool) -> float | None:
        sizes = [
            e["sizes"]["models_bytes"].get("int8")
            for name, e in report["bundles"].items()
            if name.endswith(BASE_SUFFIX) == base
        ]
        return max((v for v in sizes if v), default=0) / 1000 or None

    values = {
        "pipeline_ms_per_audio_second": report.get("pipeline_ms_per_audio_second"),
        "cheapest_peer_ratio": cheapest_peer_ratio(report),
        "int8_model_kb": largest_kb(base=False),
        "int8_model_kb_base": largest_kb(base=True),
        "device_rss_mb": report.get("device_rss", {}).get("peak_rss_mb"),
        "e2e_latency_ms_p95": report.get("mqtt", {}).get("e2e_latency_ms_p95"),
    }
    out = {}
    for key, (op, limit) in GOALS.items():
        v = values[key]
        met = None if v is None else bool(v <= limit if op == "<=" else v >= limit)
        out[key] = {"value": v, "goal": limit, "op": op, "met": met}
    return out
