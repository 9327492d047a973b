"""The soak: a long stream through a real ``edgesiam run``, watching memory and latency drift.

A device-only ``edgesiam run`` (``.venv-litert``, else ``.venv-tflite``, else this venv) reads raw
PCM on ``stdin:`` (live: it drops samples when it falls behind, as with a microphone) and publishes
to a local Mosquitto. This process feeds it real held-out speech (``data/speech/test``: a few
speakers enrolled, the stream looping turns of enrolled and never-enrolled speakers; generated
voices when the data is absent) at ``--speed`` times real time, samples the device's RSS every
second, keeps the runtime's own metrics (every ``--metrics-interval`` s) and times every event
from the moment its window's last sample was in the pipe to the subscriber's receive.

At the end it reports, as JSON (``--out/soak.json``) and a plot (``--out/soak.png``):
- RSS growth: median RSS over the last 10 % of the run minus the median over the first 10 %
  (after ``--warmup`` seconds, while buffers fill); the goal is at most 5 MB;
- latency drift: event latency (window end → subscriber) and the runtime's per-window processing
  time (p95 of recent windows), first 10 % against last 10 %;
- delivery: events decided by the runtime, distinct ids received, gaps in ``seq``, dropped samples.

Run it from the repository root with the workstation venv::

    .venv/bin/python scripts/soak.py --seconds 3600      # one hour of wall clock at 20x: 20 h of audio
    SOAK_SECONDS=180 .venv/bin/python scripts/soak.py    # a three-minute check

``make soak`` runs the slow test that wraps this script (``tests/reliability/test_soak.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgesiam.tools.bench.measure import (  # noqa: E402
    ENDED,
    Sub,
    device_executable,
    enroll,
    launch,
    mosquitto,
    reap,
    synthetic_signal,
)

DEVICE_ID = "soak"
CHUNK_S = 0.1
GOAL_RSS_GROWTH_MB = 5.0


# --- the stream --------------------------------------------------------------------------------


def speech_stream(data: Path, rate: int, work: Path) -> tuple[np.ndarray, dict[str, list[Path]]]:
    """Held-out speech: (stream samples as int16, enrolment clips per enrolled speaker)."""
    import soundfile as sf

    from edgesiam.tools.demo.stream import build_stream, make_plan

    plan = make_plan(data, labels=4, enroll_clips=3, others=6, seed=0, window_s=1.0)
    path = work / "stream.wav"
    build_stream(plan, rate, path, turns=3, seed=0)
    x, _ = sf.read(path, dtype="int16")
    return np.asarray(x, dtype=np.int16), {k: list(v) for k, v in plan.enroll.items()}


def generated_stream(rate: int, work: Path) -> tuple[np.ndarray, dict[str, list[Path]]]:
    """Without the speech data: a generated voice between quiet gaps, that voice enrolled."""
    import soundfile as sf

    manifest = {"modality": "audio", "sample_rate": rate}
    voice = synthetic_signal(manifest, 3.0, seed=3)
    clip = work / "enroll.wav"
    sf.write(clip, synthetic_signal(manifest, 3.0, seed=1), rate, subtype="PCM_16")
    rng = np.random.default_rng(4)
    parts: list[np.ndarray] = []
    for _ in range(20):
        parts += [(0.003 * rng.standard_normal(int(1.5 * rate))).astype(np.float32), voice]
    x = np.clip(np.concatenate(parts), -1, 1)
    return np.round(x * 32767).astype(np.int16), {"synthetic": [clip]}


# --- what is observed while it runs -------------------------------------------------------------


@dataclass
class Observations:
    """Everything sampled during the run (wall-clock times are ``time.time()``)."""

    start: float
    rss: list[tuple[float, float]] = field(default_factory=list)  # (t, MiB)
    chunk_written: list[float] = field(default_factory=list)  # wall time chunk i was in the pipe
    samples_written: int = 0


def sample_rss(pid: int, obs: Observations, stop: threading.Event, every_s: float = 1.0) -> None:
    """VmRSS of ``pid`` every ``every_s`` until it is gone or ``stop`` is set."""
    path = Path(f"/proc/{pid}/status")
    while not stop.is_set():
        try:
            text = path.read_text()
        except OSError:
            return
        found = re.search(r"VmRSS:\s+(\d+) kB", text)
        if found:
            obs.rss.append((time.time(), int(found.group(1)) / 1024))
        stop.wait(every_s)


def feed(
    proc: subprocess.Popen[bytes],
    pcm: np.ndarray,
    rate: int,
    speed: float,
    seconds: float,
    obs: Observations,
) -> None:
    """Write ``pcm`` in a loop, paced at ``speed`` × real time, for ``seconds`` of wall clock."""
    assert proc.stdin is not None
    chunk = round(CHUNK_S * rate)
    blocks = [pcm[i : i + chunk].tobytes() for i in range(0, pcm.size - chunk + 1, chunk)]
    begin = time.monotonic()
    i = 0
    while True:
        due = begin + (i + 1) * CHUNK_S / speed
        if due - begin > seconds:
            break
        while (wait := due - time.monotonic()) > 0:
            time.sleep(min(wait, 0.05))
        try:
            proc.stdin.write(blocks[i % len(blocks)])
            proc.stdin.flush()
        except BrokenPipeError:
            break
        obs.chunk_written.append(time.time())
        obs.samples_written += chunk
        i += 1


# --- the report -----------------------------------------------------------------------------------


def _p(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def _median(values: list[float]) -> float | None:
    return _p(values, 50)


def tenths(
    points: list[tuple[float, float]], t0: float, t1: float
) -> tuple[list[float], list[float]]:
    """The values of ``(t, value)`` points in the first and the last 10 % of ``[t0, t1]``."""
    span = max(t1 - t0, 1e-9)
    first = [v for t, v in points if t0 <= t <= t0 + 0.1 * span]
    last = [v for t, v in points if t1 - 0.1 * span <= t <= t1]
    return first, last


def drift(points: list[tuple[float, float]], t0: float, t1: float) -> dict[str, Any]:
    first, last = tenths(points, t0, t1)
    out: dict[str, Any] = {
        "first_10pct_n": len(first),
        "last_10pct_n": len(last),
        "first_10pct_p50": _p(first, 50),
        "last_10pct_p50": _p(last, 50),
        "first_10pct_p95": _p(first, 95),
        "last_10pct_p95": _p(last, 95),
    }
    if first and last:
        out["p50_change"] = round(float(np.median(last) - np.median(first)), 3)
        out["p95_change"] = round(float(np.percentile(last, 95) - np.percentile(first, 95)), 3)
    return out


def analyse(
    obs: Observations,
    events: list[tuple[float, bytes]],
    metrics: list[tuple[float, bytes]],
    rate: int,
    warmup_s: float,
) -> dict[str, Any]:
    """RSS growth, latency drift and delivery from what was observed."""
    end = obs.chunk_written[-1] if obs.chunk_written else time.time()
    steady = obs.start + warmup_s
    rss_steady = [(t, v) for t, v in obs.rss if t >= steady]
    first, last = tenths(rss_steady, steady, end)
    rss: dict[str, Any] = {
        "samples": len(obs.rss),
        "warmup_s": warmup_s,
        "first_10pct_median_mb": _median(first),
        "last_10pct_median_mb": _median(last),
        "min_after_warmup_mb": round(min(v for _, v in rss_steady), 2) if rss_steady else None,
        "max_after_warmup_mb": round(max(v for _, v in rss_steady), 2) if rss_steady else None,
        "goal_growth_mb": GOAL_RSS_GROWTH_MB,
    }
    if first and last:
        rss["growth_mb"] = round(float(np.median(last) - np.median(first)), 2)
        rss["met"] = bool(rss["growth_mb"] <= GOAL_RSS_GROWTH_MB)
    if len(rss_steady) > 2:  # the trend over the whole steady part: a leak shows as a slope
        t, v = np.array(rss_steady).T
        rss["trend_mb_per_hour"] = round(float(np.polyfit((t - t[0]) / 3600, v, 1)[0]), 3)

    chunk = round(CHUNK_S * rate)
    latency: list[tuple[float, float]] = []
    seqs: dict[int, set[str]] = {}
    for received, payload in events:
        event = json.loads(payload)
        ids = seqs.setdefault(int(event["seq"]), set())
        if event["id"] in ids:
            continue  # a duplicate (at least once): timed once
        ids.add(event["id"])
        # the stream loops, so offset_s keeps growing: it locates the chunk that ended the window
        index = min(max(round(event["offset_s"] * rate) - 1, 0) // chunk, len(obs.chunk_written))
        if index < len(obs.chunk_written):
            latency.append((received, (received - obs.chunk_written[index]) * 1e3))

    window_p95: list[tuple[float, float]] = []
    inference_p50: list[tuple[float, float]] = []
    last_metrics: dict[str, Any] = {}
    for received, payload in metrics:
        m = json.loads(payload)
        last_metrics = m
        if m.get("window_ms_p95") is not None:
            window_p95.append((received, float(m["window_ms_p95"])))
        if m.get("inference_ms_p50") is not None:
            inference_p50.append((received, float(m["inference_ms_p50"])))

    top = max(seqs, default=0)
    return {
        "rss": rss,
        "event_latency_ms": drift(latency, obs.start, end),
        "window_ms_p95": drift(window_p95, steady, end),
        "inference_ms_p50": drift(inference_p50, steady, end),
        "delivery": {
            "events_received_distinct": sum(len(v) for v in seqs.values()),
            "max_seq": top,
            "missing_seqs": len(set(range(1, top + 1)) - set(seqs)),
            "seqs_with_several_ids": sum(len(v) > 1 for v in seqs.values()),
            "duplicates": len(events) - sum(len(v) for v in seqs.values()),
        },
        "last_metrics": last_metrics,
        "series": {
            "rss_mb": [(round(t - obs.start, 2), round(v, 3)) for t, v in obs.rss],
            "event_latency_ms": [(round(t - obs.start, 2), round(v, 3)) for t, v in latency],
            "window_ms_p95": [(round(t - obs.start, 2), v) for t, v in window_p95],
            "inference_ms_p50": [(round(t - obs.start, 2), v) for t, v in inference_p50],
        },
    }


def plot(report: dict[str, Any], path: Path) -> None:
    """RSS, event latency and per-window time against wall-clock minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report["series"]
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    rss = np.array(s["rss_mb"] or [(0, 0)], dtype=float)
    axes[0].plot(rss[:, 0] / 60, rss[:, 1], lw=0.8)
    axes[0].set_ylabel("RSS (MiB)")
    growth = report["rss"].get("growth_mb")
    axes[0].set_title(
        f"edgesiam run soak: {report['audio_hours']:.1f} h of audio at {report['speed']:g}x "
        f"({report['wall_s'] / 60:.0f} min); RSS growth {growth} MB"
    )
    lat = np.array(s["event_latency_ms"] or [(0, 0)], dtype=float)
    axes[1].plot(lat[:, 0] / 60, lat[:, 1], ".", ms=1.5)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("event latency (ms)\nwindow end → subscriber")
    win = np.array(s["window_ms_p95"] or [(0, 0)], dtype=float)
    inf = np.array(s["inference_ms_p50"] or [(0, 0)], dtype=float)
    axes[2].plot(win[:, 0] / 60, win[:, 1], label="per-window time p95")
    axes[2].plot(inf[:, 0] / 60, inf[:, 1], label="inference p50")
    axes[2].set_ylabel("ms")
    axes[2].set_xlabel("wall clock (min)")
    axes[2].legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the run --------------------------------------------------------------------------------------


def soak(
    seconds: float,
    speed: float,
    out: Path,
    bundle: Path,
    data: Path,
    metrics_interval_s: float,
    warmup_s: float,
) -> dict[str, Any]:
    """Run the soak and write ``out/soak.json`` and ``out/soak.png``; returns the report."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    rate = int(manifest["sample_rate"])
    exe, where = device_executable(ROOT)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgesiam-soak-") as tmp:
        work = Path(tmp)
        if data.is_dir():
            pcm, enrolment = speech_stream(data, rate, work)
            stream_from = str(data)
        else:
            pcm, enrolment = generated_stream(rate, work)
            stream_from = "generated voices (no speech data)"
        gallery = work / "gallery.npz"
        for label, clips in enrolment.items():
            enroll(exe, bundle, gallery, label, clips)
        config = work / "soak.yaml"
        config.write_text(
            f"bundle: {bundle}\n"
            f"metrics:\n  interval_s: {metrics_interval_s}\n"
            "source:\n  type: stdin\n  live: true\n"
        )
        with mosquitto(work) as (port, version):
            sub = Sub(port, f"edgesiam/{DEVICE_ID}/#")
            argv = [
                *(exe, "run", "--config", str(config), "--gallery", str(gallery)),
                *("--source", "stdin:", "--state-dir", str(work / "state")),
                *("--broker", f"mqtt://127.0.0.1:{port}", "--device-id", DEVICE_ID),
                *("--log-level", "info"),
            ]
            proc, err, hwm = launch(argv, stdin=subprocess.PIPE)
            deadline = time.time() + 60
            while not any(p == b"online" for _, p in sub.on("/status")):
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("edgesiam run did not come online:\n" + "".join(err))
                time.sleep(0.05)
            obs = Observations(start=time.time())
            stop = threading.Event()
            sampler = threading.Thread(target=sample_rss, args=(proc.pid, obs, stop), daemon=True)
            sampler.start()
            feed(proc, pcm, rate, speed, seconds, obs)
            assert proc.stdin is not None
            proc.stdin.close()
            stop.set()
            code, _ = reap(proc)
            deadline = time.time() + 30
            while not any(p == b"offline" for _, p in sub.on("/status")):
                if time.time() > deadline:
                    break
                time.sleep(0.05)
            time.sleep(0.5)
            events, metrics = sub.on("/event"), sub.on("/metrics")
            sub.stop()
    stderr = "".join(err)
    found = ENDED.search(stderr)
    summary = json.loads(found[1]) if found else {}
    report: dict[str, Any] = {
        "edgesiam_soak": 1,
        "exit_code": code,
        "executable": exe,
        "venv": where,
        "bundle": str(bundle),
        "stream_from": stream_from,
        "broker": f"{version} on 127.0.0.1 (MQTT 5, QoS 1 events)",
        "speed": speed,
        "wall_s": round(obs.chunk_written[-1] - obs.start, 1) if obs.chunk_written else 0.0,
        "audio_hours": round(obs.samples_written / rate / 3600, 3),
        "metrics_interval_s": metrics_interval_s,
        "peak_rss_mb": round(hwm.get("vmhwm_kb", 0) / 1024, 1),
        "run_summary": summary,
        "machine": {"cpus_visible": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
        **analyse(obs, events, metrics, rate, warmup_s),
    }
    if code != 0 or not found:
        report["stderr_tail"] = stderr[-3000:]
    (out / "soak.json").write_text(json.dumps(report, indent=1) + "\n")
    plot(report, out / "soak.png")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Soak a device-only edgesiam run: a long stdin stream at N x real time into "
        "a local Mosquitto; reports RSS growth and latency drift (JSON + PNG).",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=float(os.environ.get("SOAK_SECONDS", 3600)),
        help="wall-clock length of the stream (default: $SOAK_SECONDS or 3600)",
    )
    parser.add_argument("--speed", type=float, default=20.0, help="times real time (default 20)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "soak", help="report folder")
    parser.add_argument("--bundle", type=Path, default=ROOT / "export" / "speaker")
    parser.add_argument(
        "--data", type=Path, default=ROOT / "data" / "speech" / "test", help="speech to loop"
    )
    parser.add_argument(
        "--metrics-interval", type=float, default=10.0, help="runtime metrics every N s"
    )
    parser.add_argument(
        "--warmup", type=float, default=None, help="seconds left out of RSS (default: 5 %%)"
    )
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else min(60.0, 0.05 * args.seconds)
    report = soak(
        args.seconds,
        args.speed,
        args.out,
        args.bundle.resolve(),
        args.data,
        args.metrics_interval,
        warmup,
    )
    brief = {k: v for k, v in report.items() if k not in ("series", "last_metrics")}
    print(json.dumps(brief, indent=1))
    return 0 if report["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
