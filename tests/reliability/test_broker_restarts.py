"""The broker stopped or killed, and restarted, again and again while a real ``edgesiam run``
streams events.

A real ``edgesiam run`` (the shipped ``export/events`` bundle, every window an event, see
``tests/support/device.py``) is fed a generated voice over ``stdin:`` and publishes to a real
Mosquitto (persistence on, saved after every change). While it streams, the broker is stopped and
started again, down for a random 0.2-1 s each time. Two consumers keep a persistent session (fixed client
id, MQTT 5 ``clean_start=false``, QoS 1) and reconnect by themselves: a plain subscriber, and the
dashboard's :class:`~edgesiam.dashboard.ingest.Ingester` writing its
:class:`~edgesiam.dashboard.history.History`.

Afterwards the device has exited cleanly with an empty outbox, and each consumer holds exactly one
``id`` per ``seq``, first seen in ``seq`` order (an event may arrive more than once: delivery is
at least once).

- SIGTERM (a clean stop: Mosquitto saves its state): every ``seq`` from 1 to the last one the
  outbox handed out, no gap.
- SIGKILL (a crash): the device resends everything the broker had not acknowledged, so nothing
  older is lost; but Mosquitto acknowledges a QoS 1 PUBLISH before its next save to disk (see
  eclipse-mosquitto/mosquitto#1855), so what it acknowledged since its last save can die with
  it. Here the broker saves only every 10 minutes (never, within the test: Debian's default is
  30 minutes) and the dashboard is away for a moment before each crash, so the events queued
  for it are certainly lost by the broker. The device keeps acknowledged events
  (``outbox.keep_acked_s``) and the dashboard asks for the gaps it sees (``cmd/replay``): the
  history must hold every ``seq``, **zero** missing. The plain subscriber (which asks for
  nothing, but hears the replays too) may only miss events within the device's in-flight window
  (100 events) of where the device was sending when the broker was killed.

Short version: 2 restarts during 1 000 events; ``EDGESIAM_RELIABILITY=full``: 10 restarts during
10 000 events, for each signal.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from edgesiam.dashboard.history import History
from edgesiam.dashboard.ingest import Ingester
from tests.support.device import Device, Feeder, Scale, flood_config
from tests.support.mqtt import MosquittoBroker, Subscriber, wait_until

DEVICE = "flood"
TOPIC = f"edgesiam/{DEVICE}/event"
STATUS = f"edgesiam/{DEVICE}/status"
IN_FLIGHT = 100  # MqttPublisher's window of events awaiting PUBACK


def outbox_state(state: Path) -> tuple[int, int, int | None]:
    """(the last seq handed out, events still stored, the first stored seq) of a device's outbox
    (read while it runs, or after it stopped); fails if the database is damaged."""
    with sqlite3.connect(state / "outbox.sqlite3", timeout=30) as db:
        next_seq = int(db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0])
        stored, first = db.execute("SELECT COUNT(*), MIN(seq) FROM events").fetchone()
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return next_seq - 1, int(stored), None if first is None else int(first)


def seq_ids(payloads: Iterable[dict[str, object]]) -> tuple[dict[int, set[str]], list[int]]:
    """seq → the ids seen with it, and the seqs in the order they were first seen."""
    ids: dict[int, set[str]] = defaultdict(set)
    order: list[int] = []
    for event in payloads:
        seq = int(str(event["seq"]))
        if seq not in ids:
            order.append(seq)
        ids[seq].add(str(event["id"]))
    return ids, order


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_broker_restarts_during_a_stream(
    sig: signal.Signals,
    scale: Scale,
    make_mosquitto: Callable[..., MosquittoBroker],
    events_gallery: Path,
    devices: list[Device],
    tmp_path: Path,
) -> None:
    restarts, events = scale.broker_restarts, scale.events
    rng = random.Random(7)
    crashes = sig == signal.SIGKILL
    # a crash loses what the broker acknowledged since its last save: here, everything
    mosquitto = make_mosquitto(["autosave_interval 600", "autosave_on_changes false"] * crashes)
    watcher = Subscriber(
        mosquitto.host, mosquitto.port, [TOPIC, STATUS], client_id="watcher", persistent=True
    ).start()
    history = History(tmp_path / "history.sqlite3", retention_days=None)

    def dashboard() -> Ingester:
        started = Ingester(
            mosquitto.url, history, prefix="edgesiam", client_id="dashboard", reconnect_max_s=1
        )
        started.start()
        return started

    ingester = dashboard()
    assert ingester.wait_connected(20)
    config = flood_config(tmp_path, events_gallery, mosquitto.url, DEVICE)
    device = Device(config, "--log-level", "info")
    devices.append(device)
    state = tmp_path / "state"

    def online() -> bool:
        return any(m.payload == b"online" for m in watcher.on(STATUS))

    assert wait_until(lambda: online() or device.proc.poll() is not None, 60)
    assert device.proc.poll() is None, device.log()[-3000:]
    # the stream is spread out so that every restart falls in the middle of it
    feeder = Feeder(device, events, seconds=4.0 * (restarts + 1))
    feeder.start()
    began = time.monotonic()
    crash_points: list[int] = []  # where the device was sending when the broker was killed
    try:
        for k in range(restarts):
            at = began + feeder.seconds * (k + 1) / (restarts + 1)
            while (wait := at - time.monotonic()) > 0:
                time.sleep(min(wait, 0.05))
            before = len(watcher.on(TOPIC))
            if crashes:  # the dashboard is away: the broker queues its events, then dies
                ingester.stop()
                time.sleep(0.5)
            mosquitto.stop(sig)
            handed, _, first_pending = outbox_state(state)
            crash_points.append(first_pending if first_pending is not None else handed + 1)
            time.sleep(rng.uniform(0.2, 1.0))  # the broker stays down a while
            mosquitto.start()
            if crashes:
                ingester = dashboard()
            # delivery resumes after each restart, before the next one
            assert wait_until(lambda b=before: len(watcher.on(TOPIC)) > b, 60), (
                f"restart {k}: nothing new arrived\n{device.log()[-3000:]}"
            )
        feeder.join(timeout=600)
        assert feeder.ok, device.log()[-3000:]
        if crashes:  # the device stays up (as on a site) while the dashboard asks for what was lost
            handed = set(range(1, outbox_state(state)[0] + 1))
            wait_until(lambda: set(history.seqs(DEVICE)) >= handed, 90)
        code = device.finish()
        assert code == 0, device.log()[-3000:]
        last, stored, _ = outbox_state(state)
        assert stored == 0, f"{stored} events left in the outbox"
        assert last >= events
        everything = set(range(1, last + 1))

        def delivered() -> bool:
            got = {int(m.json()["seq"]) for m in watcher.on(TOPIC)}
            return got >= everything and set(history.seqs(DEVICE)) >= everything

        wait_until(delivered, 60)  # (gaps, if any, are reported below)
    finally:
        watcher.stop()
        ingester.stop()

    replays = [(r["from_seq"], r["to_seq"]) for r in history.replay_requests(DEVICE)]
    consumers = {
        "subscriber": [json.loads(m.payload) for m in watcher.on(TOPIC)],
        "dashboard history": history.events(DEVICE, limit=10 * last),
    }
    history.close()
    report = []
    for name, payloads in consumers.items():
        ids, order = seq_ids(payloads)
        assert all(len(v) == 1 for v in ids.values()), f"{name}: one seq, two ids"
        assert len({i for v in ids.values() for i in v}) == len(ids), f"{name}: an id repeated"
        assert set(ids) <= everything, f"{name}: a seq the device never handed out"
        missing = sorted(everything - set(ids))
        if name == "subscriber" and not crashes:  # (after a crash, replays come late)
            first_seen = order  # the history is read back by time, not in arrival order
            assert first_seen == sorted(first_seen), f"{name}: events first seen out of order"
        if not crashes or name == "dashboard history":
            assert not missing, f"{name}: {len(missing)} gap(s), first {missing[:10]}"
        else:
            stray = [s for s in missing if not any(abs(s - c) <= IN_FLIGHT for c in crash_points)]
            assert not stray, (
                f"{name}: seq {stray[:10]} lost far from any broker crash ({crash_points})"
            )
        report.append(f"{name}: {len(missing)} gap(s) {missing[:10]}, {len(payloads)} received")
    report.append(f"replays asked by the dashboard: {replays}")
    print(
        f"\nbroker {sig.name} x{restarts} during {last} events (crash points {crash_points}): "
        + "; ".join(report)
    )
