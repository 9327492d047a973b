"""Device measurements: the shipped speaker bundle, a 120 s held-out speech stream, the device-only
venvs, a local Mosquitto. Run with the workstation venv from the repo root.

The process helpers (launch, VmHWM polling, wait4, the MQTT subscriber) live in
:mod:`edgesiam.tools.bench.measure`, which ``edgesiam bench`` uses on synthetic streams; this script
keeps the real-speech protocol (3 unpaced runs per device venv, one live stdin run)."""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import soundfile as sf

from edgesiam.tools.bench.measure import ENDED, Sub, free_port, launch, live_run, reap, run_argv
from edgesiam.tools.demo.stream import build_stream, make_plan

ROOT = Path.cwd()
BUNDLE = ROOT / "export" / "speaker"
TEST = ROOT / "data" / "speech" / "test"
RATE = 16000
STREAM_S = 120.0
CHUNK = 1600  # 0.1 s, the sources' default chunk
work = Path(tempfile.mkdtemp(prefix="edgesiam-measure-"))


# --- the stream: 4 enrolled + 6 never-enrolled held-out speakers, cut to 120 s ---------------------
plan = make_plan(TEST, labels=4, enroll_clips=3, others=6, seed=0, window_s=1.0)
raw = work / "raw.wav"
segments, length = build_stream(plan, RATE, raw, turns=3, seed=0)
assert length >= STREAM_S, length
x, _ = sf.read(raw, dtype="int16")
x = x[: int(STREAM_S * RATE)]
stream = work / "stream120.wav"
sf.write(stream, x, RATE, subtype="PCM_16")
print(
    f"stream {stream}: {x.size / RATE:.1f} s, enrolled {plan.enrolled}, others {plan.never_enrolled}"
)

# --- mosquitto ----------------------------------------------------------------------------------
port = free_port()
conf = work / "mosquitto.conf"
conf.write_text(
    f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
    + ("user root\n" if os.geteuid() == 0 else "")
    + f"log_dest file {work}/mosquitto.log\n"
)
broker = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stderr=subprocess.PIPE)
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        break
    except OSError:
        time.sleep(0.05)
url = f"mqtt://127.0.0.1:{port}"
mosq_version = subprocess.run(
    ["/usr/sbin/mosquitto", "-h"], capture_output=True, text=True
).stdout.splitlines()[0]


SUMMARY = re.compile(
    r"edgesiam run: (\w[^;]*); ([\d.]+) s of stream in ([\d.]+) s, (\d+) windows, (\d+) event"
)

results: dict[str, object] = {}
for venv in (".venv-litert", ".venv-tflite"):
    exe = str(ROOT / venv / "bin" / "edgesiam")
    py = str(ROOT / venv / "bin" / "python")
    backend = subprocess.run(
        [
            py,
            "-c",
            "import edgesiam.model.interpreters as i, numpy; b = i.find_backend(); "
            "print(b.name, b.version, numpy.__version__)",
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    heavy = subprocess.run(
        [
            py,
            "-c",
            "import importlib.util as u; print([m for m in ('torch','tensorflow','librosa') "
            "if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    gallery = work / f"{venv}-gallery.npz"
    for label in plan.enrolled:
        subprocess.run(
            [
                exe,
                "enroll",
                "--bundle",
                str(BUNDLE),
                "--gallery",
                str(gallery),
                "--label",
                label,
                *map(str, plan.enroll[label]),
            ],
            check=True,
            capture_output=True,
        )
    dev = venv.strip(".").replace(".", "-")

    # 1. unpaced: throughput, RTF, peak RSS, inference percentiles (3 runs, the median) --------
    runs = []
    for rep in range(3):
        sub = Sub(port, f"edgesiam/{dev}/#")
        t0 = time.time()
        state = work / f"{dev}-state-{rep}"
        broker = ("--broker", url, "--device-id", dev)
        proc, err, hwm = launch(run_argv(exe, BUNDLE, gallery, f"file:{stream}", state, *broker))
        code, maxrss_kb = reap(proc)
        process_wall = time.time() - t0
        time.sleep(0.5)
        assert code == 0, "".join(err)
        m = ENDED.search("".join(err))
        assert m, "".join(err)
        summary = json.loads(m[1])
        metrics = [json.loads(p) for _, p in sub.on("/metrics")]
        last_metrics = metrics[-1] if metrics else {}
        received = len({json.loads(p)["id"] for _, p in sub.on("/event")})
        sub.stop()
        stream_s, wall_s, windows = summary["stream_s"], summary["wall_s"], summary["windows"]
        runs.append(
            {
                "stream_s": stream_s,
                "run_wall_s": wall_s,
                "process_wall_s": round(process_wall, 3),
                "real_time_factor": round(wall_s / stream_s, 5),
                "windows": windows,
                "gated_windows": summary["gated_windows"],
                "windows_per_s": round(windows / wall_s, 1),
                "events_decided": summary["events"],
                "events_received_over_mqtt": received,
                "inference_ms_p50": last_metrics.get("inference_ms_p50"),
                "inference_ms_p95": last_metrics.get("inference_ms_p95"),
                "window_ms_p95": last_metrics.get("window_ms_p95"),
                "peak_rss_mb_wait4": round(maxrss_kb / 1024, 1),
                "peak_rss_mb_vmhwm_polled": round(hwm.get("vmhwm_kb", 0) / 1024, 1),
                "peak_rss_mb_self_reported": last_metrics.get("peak_rss_mb"),
            }
        )
    runs.sort(key=lambda r: r["run_wall_s"])
    unpaced = {**runs[1], "of_3_runs": "median by run wall", "all_runs": runs}
    print(venv, json.dumps(runs))

    # 2. live: stdin fed in real time by this process, end-to-end latency -----------------------
    live = live_run(
        exe, BUNDLE, gallery, x, RATE, port, f"{dev}-live", work / f"{dev}-live-state", CHUNK
    )
    print(venv, json.dumps(live))
    results[venv] = {
        "interpreter": backend[0] if backend else None,
        "interpreter_version": backend[1] if len(backend) > 1 else None,
        "numpy": backend[2] if len(backend) > 2 else None,
        "heavy_modules_importable": heavy,
        "unpaced_file_run": unpaced,
        "live_stdin_run": live,
    }

broker.terminate()
broker.wait()
cpu = next(
    (
        line.split(":", 1)[1].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    ),
    platform.processor(),
)
report = {
    "bundle": str(BUNDLE.relative_to(ROOT)),
    "bundle_model": json.loads((BUNDLE / "manifest.json").read_text())["model"],
    "stream": {
        "seconds": STREAM_S,
        "from": str(TEST.relative_to(ROOT)),
        "enrolled": plan.enrolled,
        "enroll_clips": 3,
        "never_enrolled": plan.never_enrolled,
        "turns_in_first_120_s": sum(s.start_s < STREAM_S for s in segments),
        "noise_between_dbfs": -55,
    },
    "broker": f"{mosq_version} on 127.0.0.1 (MQTT 5, QoS 1 events)",
    "machine": {
        "cpu": cpu,
        "cpus_visible": os.cpu_count(),
        "note": "2 shared cores with a training job running in the background",
    },
    "method": {
        "unpaced_file_run": "edgesiam run --source file:stream.wav (no pacing), 3 runs, the median by run wall, --broker "
        "mqtt://127.0.0.1 in the device venv; real_time_factor = run wall / stream seconds and "
        "windows_per_s = windows / run wall, both from the run's own summary line (run wall: "
        "Runtime.run(), i.e. after the model is loaded, including the final MQTT flush); "
        "inference percentiles from the final metrics message (all windows that reached the "
        "model); peak RSS = ru_maxrss of the process from wait4() (cross-checked by polling "
        "VmHWM in /proc/PID/status and by the runtime's own peak_rss_mb)",
        "live_stdin_run": "edgesiam run --source stdin: (live) fed by the measuring process in "
        "real time: each 0.1 s chunk (1600 samples, s16le) is written to the pipe when its last "
        "sample would have been recorded, and the wall time after the write is kept. "
        "e2e latency = subscriber receive time - wall time at which the window's last sample "
        "was in the pipe (offset_s * rate - 1 locates the chunk). decision latency = event ts - "
        "that time (ts is time.time() when the Decider's decision is turned into an event, "
        "before the outbox write and fsync); delivery latency = receive - ts (outbox fsync, "
        "sender thread, Mosquitto, subscriber). One clock: all processes on this host.",
    },
    "results": results,
}
out = ROOT / "runs" / "device_measures.json"
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(report, indent=1) + "\n")
print(json.dumps(report, indent=1))
