"""The device process killed and restarted, and the device-only install running the same commands.

Crash and restart: ``edgesiam run`` in its own process, reading a file paced in real time and
publishing to a real Mosquitto, is SIGKILLed mid-stream and started again with the same state
directory, again and again. A subscriber with a persistent session (fixed client id, MQTT 5
``clean_start=false``, QoS 1), away for one of the restarts, must end up with every ``seq`` from 1
to the last one the outbox handed out, exactly one ``id`` per ``seq`` (an event may arrive twice:
delivery is at least once), and the retained status must be ``offline`` after each kill (the last
will) and after the final clean exit.

The device install: ``.venv-litert`` and ``.venv-tflite`` (``make device-venvs``) hold edgesiam
without torch, tensorflow or librosa; their ``edgesiam embed``, ``enroll`` and ``run`` must produce
what the workstation's produce.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from edgesiam.data.readers import read_audio
from edgesiam.interpreters import load_model
from edgesiam.runtime.gallery_store import GalleryStore, enroll_recordings, model_sha256
from tests.runtime.conftest import MosquittoBroker, Received, Subscriber, wait_until

ROOT = Path(__file__).resolve().parents[2]
RATE = 16000
ENROLLED = ("voice0", "voice1", "voice2")
STREAM = ("voice0", "voice4", "voice1", "voice5", "voice2") * 2
DEVICE = "crash"
EVENT_TOPIC = f"edgesiam/{DEVICE}/event"
STATUS_TOPIC = f"edgesiam/{DEVICE}/status"
HEAVY = ("torch", "tensorflow", "librosa")

RUN_CLI = (
    "import argparse, sys\n"
    "from edgesiam.runtime.run_cli import add_run_parser\n"
    "p = argparse.ArgumentParser(prog='edgesiam')\n"
    "add_run_parser(p.add_subparsers(dest='command', required=True))\n"
    "a = p.parse_args(sys.argv[1:])\n"
    "sys.exit(a.func(a))\n"
)
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def gallery(
    audio_bundle: Path, audio_heldout: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    embedder = load_model(audio_bundle)
    path = tmp_path_factory.mktemp("crash_gallery") / "gallery.npz"
    store = GalleryStore(path, model_sha256(embedder.manifest))
    for label in ENROLLED:
        enroll_recordings(store, embedder, label, sorted((audio_heldout / label).glob("*.wav"))[:2])
    return path


@pytest.fixture(scope="module")
def stream(audio_heldout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Held-out takes of enrolled and never-enrolled voices, back to back (about 13 s)."""
    takes = [
        read_audio(sorted((audio_heldout / label).glob("*.wav"))[2 + i // 5], RATE)
        for i, label in enumerate(STREAM)
    ]
    path = tmp_path_factory.mktemp("crash_stream") / "stream.wav"
    sf.write(path, np.concatenate(takes), RATE, subtype="PCM_16")
    return path


# ------------------------------------------------------------------------------------------------
# crash and restart


class Watcher:
    """The persistent subscriber: one client id, reconnected at will; keeps every message."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.broker = broker
        self.sessions: list[Subscriber] = []
        self.away = False
        self.connect()

    def connect(self) -> None:
        sub = Subscriber(
            self.broker.host,
            self.broker.port,
            [EVENT_TOPIC, STATUS_TOPIC],
            client_id="crash-watcher",
            persistent=True,
        )
        self.sessions.append(sub.start())

    def disconnect(self) -> None:
        self.sessions[-1].stop()
        self.away = True

    def reconnect(self) -> None:
        self.connect()
        self.away = False

    def stop(self) -> None:
        if not self.away:
            self.sessions[-1].stop()

    def messages(self, topic: str) -> list[Received]:
        return [m for sub in self.sessions for m in sub.on(topic)]

    def seqs(self) -> set[int]:
        return {int(m.json()["seq"]) for m in self.messages(EVENT_TOPIC)}

    def max_seq(self) -> int:
        return max(self.seqs(), default=0)

    def status(self) -> bytes | None:
        statuses = self.sessions[-1].on(STATUS_TOPIC)
        return statuses[-1].payload if statuses else None


def retained_status(broker: MosquittoBroker) -> bytes | None:
    """What a newcomer reads on the status topic (the retained message)."""
    fresh = Subscriber(broker.host, broker.port, [STATUS_TOPIC]).start()
    try:
        wait_until(lambda: bool(fresh.on(STATUS_TOPIC)), 5)
        got = fresh.on(STATUS_TOPIC)
        assert not got or got[0].retain
        return got[0].payload if got else None
    finally:
        fresh.stop()


def outbox_state(state: Path) -> tuple[int, int]:
    """(the last seq the outbox handed out, events still stored) of a stopped device."""
    with sqlite3.connect(state / "outbox.sqlite3") as db:
        next_seq = int(db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0])
        stored = int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    return next_seq - 1, stored


@pytest.fixture
def device_cmd(
    audio_bundle: Path, gallery: Path, stream: Path, mosquitto: MosquittoBroker, tmp_path: Path
) -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(realtime: bool = True) -> subprocess.Popen[str]:
        cmd = [
            *(sys.executable, "-c", RUN_CLI, "run", "--bundle", str(audio_bundle)),
            *("--gallery", str(gallery), "--source", f"file:{stream}"),
            *("--broker", mosquitto.url, "--device-id", DEVICE),
            *("--state-dir", str(tmp_path / "state"), "--log-level", "warning"),
        ]
        if realtime:
            cmd.append("--realtime")
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def crash_and_restart(
    kills: int,
    seed: int,
    device_cmd: Any,
    mosquitto: MosquittoBroker,
    tmp_path: Path,
) -> None:
    rng = random.Random(seed)
    watcher = Watcher(mosquitto)
    try:
        away = kills // 2 + 1  # the subscriber misses this run and catches up from its session
        for k in range(kills):
            before = watcher.max_seq()
            if k == away:
                watcher.disconnect()
            proc = device_cmd()
            need = rng.choice((0, 1, 1, 2)) if kills > 3 else (1, 2, 1)[k % 3]
            if need and k != away:  # killed after new events were decided (some may be in flight)
                target = before + need
                assert wait_until(lambda t=target: watcher.max_seq() >= t, 60), (
                    f"kill {k}: no new event ({watcher.max_seq()} <= {before})\n"
                    + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
                )
                time.sleep(rng.uniform(0.0, 0.4))
            elif k == away:  # unseen: long enough for events to be decided and published
                time.sleep(rng.uniform(3.0, 5.0))
            else:  # killed at any moment: while loading, connecting or replaying
                time.sleep(rng.uniform(0.2, 3.0))
            assert proc.poll() is None, f"kill {k}: the device ended before it was killed"
            proc.kill()
            proc.wait(10)
            if k == away:
                watcher.reconnect()  # what was published meanwhile was queued for it
            assert wait_until(lambda: watcher.status() == b"offline", 10), (
                f"kill {k}: no last will ({watcher.status()!r})"
            )
        assert retained_status(mosquitto) == b"offline"  # the last will, retained

        final = device_cmd(realtime=False)  # to the end of the file, a clean exit
        _, err = final.communicate(timeout=120)
        assert final.returncode == 0, err[-3000:]
        last, stored = outbox_state(tmp_path / "state")
        assert stored == 0 and last > kills
        assert wait_until(lambda: watcher.seqs() >= set(range(1, last + 1)), 30)

        messages = watcher.messages(EVENT_TOPIC)
        ids: dict[int, set[str]] = defaultdict(set)
        for m in messages:
            event = m.json()
            ids[int(event["seq"])].add(event["id"])
        assert sorted(ids) == list(range(1, last + 1)), "a gap in seq"
        assert all(len(v) == 1 for v in ids.values()), "one seq, two ids"
        assert len({i for v in ids.values() for i in v}) == last  # ids never repeat
        assert len(messages) >= last  # duplicates allowed (at least once)
        assert retained_status(mosquitto) == b"offline"  # a clean exit publishes it itself
    finally:
        watcher.stop()


def test_killed_three_times_the_subscriber_sees_every_seq_once(
    device_cmd: Any, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    crash_and_restart(3, 0, device_cmd, mosquitto, tmp_path)


@pytest.mark.slow
def test_killed_twenty_times_the_subscriber_sees_every_seq_once(
    device_cmd: Any, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    crash_and_restart(20, 1, device_cmd, mosquitto, tmp_path)


# ------------------------------------------------------------------------------------------------
# the device install


DEVICE_VENVS = (".venv-litert", ".venv-tflite")


def edgesiam(venv: Path | None, *args: str, timeout: float = 120) -> str:
    """``edgesiam ARGS`` with a venv's entry point (None: this interpreter's edgesiam)."""
    if venv is None:
        cmd = [sys.executable, "-m", "edgesiam", *args]
    else:
        cmd = [str(venv / "bin" / "edgesiam"), *args]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def heldout_subset(audio_heldout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three takes of each held-out voice (enough to compare embeddings, quick to embed)."""
    root = tmp_path_factory.mktemp("subset") / "data"
    for folder in sorted(p for p in audio_heldout.iterdir() if p.is_dir()):
        (root / folder.name).mkdir(parents=True)
        for take in sorted(folder.glob("*.wav"))[:3]:
            (root / folder.name / take.name).write_bytes(take.read_bytes())
    return root


def device_outputs(
    venv: Path | None,
    bundle: Path,
    data: Path,
    heldout: Path,
    stream: Path,
    out: Path,
    broker: MosquittoBroker | None = None,
) -> dict[str, Any]:
    """embed, enroll and run (no MQTT, and to ``broker``) with one install; what each produced."""
    out.mkdir(parents=True, exist_ok=True)
    edgesiam(venv, "embed", str(bundle), str(data), "-o", str(out / "emb.npz"), "-q")
    gallery = out / "gallery.npz"
    for label in ENROLLED:
        takes = [str(p) for p in sorted((heldout / label).glob("*.wav"))[:2]]
        edgesiam(venv, "enroll", "--bundle", str(bundle), "--gallery", str(gallery),
                 "--label", label, *takes)  # fmt: skip
    run = [
        *("run", "--bundle", str(bundle), "--gallery", str(gallery)),
        *("--source", f"file:{stream}", "--log-level", "warning"),
    ]
    stdout = edgesiam(venv, *run, "--no-mqtt", "--state-dir", str(out / "state"))
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = {
        "embeddings": np.load(out / "emb.npz"),
        "gallery": dict(np.load(gallery, allow_pickle=False)),
        "events": events,
    }
    if broker is not None:
        device = "dev-" + out.name.strip(".").replace(".", "-")
        sub = Subscriber(broker.host, broker.port, [f"edgesiam/{device}/#"]).start()
        try:
            edgesiam(venv, *run, "--broker", broker.url, "--device-id", device,
                     "--state-dir", str(out / "mqtt-state"))  # fmt: skip
            topic = f"edgesiam/{device}/event"
            wait_until(lambda: len(sub.on(topic)) >= len(events), 10)
            result["mqtt_events"] = [m.json() for m in sub.on(topic)]
            result["statuses"] = [m.payload for m in sub.on(f"edgesiam/{device}/status")]
        finally:
            sub.stop()
    return result


@pytest.fixture(scope="module")
def workstation(
    audio_bundle: Path,
    heldout_subset: Path,
    audio_heldout: Path,
    stream: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("workstation")
    return device_outputs(None, audio_bundle, heldout_subset, audio_heldout, stream, out)


def key(events: list[dict[str, Any]]) -> list[tuple[str, float]]:
    return [(e["label"], e["offset_s"]) for e in events]


@pytest.mark.parametrize("name", DEVICE_VENVS)
def test_the_device_install_embeds_enrolls_and_runs_like_the_workstation(
    name: str,
    audio_bundle: Path,
    heldout_subset: Path,
    audio_heldout: Path,
    stream: Path,
    workstation: dict[str, Any],
    mosquitto: MosquittoBroker,
    tmp_path: Path,
) -> None:
    venv = ROOT / name
    if not (venv / "bin" / "edgesiam").exists():
        pytest.skip(f"{name} does not exist (make device-venvs creates it)")
    # nothing heavy can be imported there, and the device commands do not try to
    probe = (
        "import importlib.util, json, sys\n"
        "import edgesiam.cli as cli\n"
        "cli.build_parser()\n"
        "import edgesiam.runtime.pipeline, edgesiam.runtime.mqtt, edgesiam.runtime.gallery_cli\n"
        "import edgesiam.embedders, edgesiam.interpreters, paho.mqtt.client\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps({'importable': [m for m in heavy if importlib.util.find_spec(m)],\n"
        "                  'imported': [m for m in heavy if m in sys.modules]}))\n"
    )
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == {"importable": [], "imported": []}

    got = device_outputs(
        venv, audio_bundle, heldout_subset, audio_heldout, stream, tmp_path / name, mosquitto
    )
    ours, theirs = got["embeddings"], workstation["embeddings"]
    assert list(ours["labels"]) == list(theirs["labels"])
    cosines = np.sum(ours["embeddings"] * theirs["embeddings"], axis=1)
    assert cosines.min() > 0.999, cosines.min()
    g, ref = got["gallery"], workstation["gallery"]
    assert list(g["labels"]) == list(ref["labels"]) and set(g["labels"]) == set(ENROLLED)
    assert np.sum(g["embeddings"] * ref["embeddings"], axis=1).min() > 0.999

    events, reference = got["events"], workstation["events"]
    assert reference and key(events) == key(reference)
    for a, b in zip(events, reference, strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=0.01)
    assert {e["label"] for e in events} == set(ENROLLED)
    # the same events over MQTT, through paho in the device install
    assert key(got["mqtt_events"]) == key(reference)
    assert got["statuses"][0] == b"online" and got["statuses"][-1] == b"offline"
