"""The device process SIGKILLed mid-stream and restarted with the same state directory.

``edgesiam run`` in its own process, reading a file paced in real time (held-out takes of
enrolled and never-enrolled voices, on the tiny trained bundle) and publishing to a real
Mosquitto, is SIGKILLed and started again with the same state directory, again and again: after
new events were decided (some still in flight), and at random moments (while loading, connecting
or replaying). A subscriber with a persistent session (fixed client id, MQTT 5
``clean_start=false``, QoS 1), away for one of the runs, must end up with every ``seq`` from 1 to
the last one the outbox handed out, exactly one ``id`` per ``seq`` (an event may arrive twice:
delivery is at least once). After every kill the gallery's bytes are unchanged (sha256) and the
outbox database passes SQLite's ``PRAGMA integrity_check``; the retained status is ``offline``
after each kill (the last will) and after the final clean exit.

Short version: 3 kills; ``EDGESIAM_RELIABILITY=full``: 20.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgesiam.model.interpreters import load_model
from edgesiam.runtime.enrollment import enroll_recordings
from edgesiam.runtime.gallery_store import GalleryStore, model_sha256
from tests.support.device import RUN_CLI, Scale
from tests.support.mqtt import MosquittoBroker, Received, Subscriber, wait_until
from tests.support.paths import ENV
from tests.support.signals import HELDOUT_ENROLLED

DEVICE = "crash"
EVENT_TOPIC = f"edgesiam/{DEVICE}/event"
STATUS_TOPIC = f"edgesiam/{DEVICE}/status"


@pytest.fixture(scope="module")
def gallery(
    audio_bundle: Path, audio_heldout: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    embedder = load_model(audio_bundle)
    path = tmp_path_factory.mktemp("crash_gallery") / "gallery.npz"
    store = GalleryStore(path, model_sha256(embedder.manifest))
    for label in HELDOUT_ENROLLED:
        enroll_recordings(store, embedder, label, sorted((audio_heldout / label).glob("*.wav"))[:2])
    return path


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
    """(the last seq the outbox handed out, events still stored) of a stopped device; fails if
    the database does not pass SQLite's integrity check."""
    with sqlite3.connect(state / "outbox.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        next_seq = int(db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0])
        stored = int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    return next_seq - 1, stored


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def device_cmd(
    audio_bundle: Path,
    gallery: Path,
    heldout_stream: Path,
    mosquitto: MosquittoBroker,
    tmp_path: Path,
) -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(realtime: bool = True) -> subprocess.Popen[str]:
        cmd = [
            *(sys.executable, "-c", RUN_CLI, "run", "--bundle", str(audio_bundle)),
            *("--gallery", str(gallery), "--source", f"file:{heldout_stream}"),
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


def test_runtime_killed_mid_stream_loses_nothing(
    scale: Scale,
    device_cmd: Any,
    gallery: Path,
    mosquitto: MosquittoBroker,
    tmp_path: Path,
) -> None:
    kills = scale.runtime_kills
    rng = random.Random(kills)
    gallery_sha = sha256(gallery)
    state = tmp_path / "state"
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
            assert sha256(gallery) == gallery_sha, f"kill {k}: the gallery changed"
            if (state / "outbox.sqlite3").exists():
                outbox_state(state)  # integrity_check after every kill
            if k == away:
                watcher.reconnect()  # what was published meanwhile was queued for it
            assert wait_until(lambda: watcher.status() == b"offline", 10), (
                f"kill {k}: no last will ({watcher.status()!r})"
            )
        assert retained_status(mosquitto) == b"offline"  # the last will, retained

        final = device_cmd(realtime=False)  # to the end of the file, a clean exit
        _, err = final.communicate(timeout=120)
        assert final.returncode == 0, err[-3000:]
        last, stored = outbox_state(state)
        assert stored == 0 and last > kills
        assert sha256(gallery) == gallery_sha
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
        print(
            f"\nruntime SIGKILL x{kills}: {last} events, 0 gaps, "
            f"{len(messages) - last} duplicate deliveries; gallery and outbox intact"
        )
    finally:
        watcher.stop()
