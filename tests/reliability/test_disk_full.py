"""The outbox on a full disk: a clear error, bounded behaviour, and recovery when space is back.

The disk is real: a small tmpfs mounted for the test (the tests run as root, as CI does), filled
with a file until the kernel answers ENOSPC. Nothing is simulated: SQLite meets the full disk in
its write-ahead log and database files.

- The outbox alone: events stored before the disk fills stay stored and readable; every event
  offered while it is full is refused with an :class:`~edgesiam.errors.OutboxError` naming the
  full disk, gets no ``seq``, and is counted in ``dropped``; the files do not grow; an
  acknowledgement that cannot be written leaves the event stored (a duplicate later, never a
  loss). Once the filler is removed, the next event gets the next ``seq``, the count of dropped
  events survives a reopen and the database passes ``PRAGMA integrity_check``.
- A real ``edgesiam run`` with its state directory on the small disk, publishing to a real
  Mosquitto: the disk fills mid-stream, the device keeps running and says why events are not
  stored, its metrics count them (``outbox_dropped``), and when space is back it stores and
  delivers again: the subscriber sees every ``seq`` the outbox handed out, without a gap.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgesiam.errors import OutboxError
from edgesiam.runtime.outbox import Outbox
from tests.support.device import Device, Feeder, flood_config
from tests.support.mqtt import MosquittoBroker, Subscriber, wait_until

FULL_MESSAGE = "event dropped, not stored: the disk holding it is full"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``make(size)``: a fresh tmpfs of ``size`` (e.g. ``"1m"``) mounted for this test."""
    mounted: list[Path] = []

    def make(size: str) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no byte left; returns it (delete it to free the space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for block in (1 << 16, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * block)
    finally:
        os.close(fd)
    st = os.statvfs(disk)
    assert st.f_bavail == 0, "the disk did not fill"
    return filler


def footprint(folder: Path) -> int:
    """Bytes the disk has given to the outbox's files."""
    return sum(p.stat().st_blocks * 512 for p in folder.iterdir() if p.name != "filler")


def event(seq: int, event_id: str) -> dict[str, Any]:
    return {"seq": seq, "id": event_id, "label": "alice", "padding": "x" * 300}


def test_the_outbox_on_a_full_disk(small_disk: Callable[[str], Path]) -> None:
    disk = small_disk("1m")
    path = disk / "outbox.sqlite3"
    box = Outbox(path, id_prefix="dev")
    stored = [box.add(event) for _ in range(20)]
    filler = fill(disk)
    size = footprint(disk)

    for refused in range(1, 51):
        with pytest.raises(OutboxError) as info:
            box.add(event)
        assert FULL_MESSAGE in str(info.value)
        assert f"({refused} event(s) dropped so far)" in str(info.value)
    assert box.dropped == 50
    assert box.next_seq == 21  # refused events used no seq
    assert footprint(disk) == size  # bounded: nothing grew
    assert [e.seq for e in box.pending(100)] == [e.seq for e in stored]
    assert [e.text for e in box.pending(100)] == [e.text for e in stored]

    box.ack_many(e.seq for e in stored[:5])  # cannot be written yet: removed with the next write
    assert box.depth == 15
    assert [e.seq for e in box.pending(100)] == list(range(6, 21))

    filler.unlink()  # space is back
    again = box.add(event)
    assert again.seq == 21
    box.ack_many(e.seq for e in stored[:5])
    assert [e.seq for e in box.pending(100)] == [*range(6, 21), 21]
    box.close()

    with Outbox(path, id_prefix="dev") as reopened:
        assert reopened.dropped == 50
        assert reopened.next_seq == 22
        assert reopened.depth == 16
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_running_device_on_a_full_disk_recovers(
    small_disk: Callable[[str], Path],
    mosquitto: MosquittoBroker,
    events_gallery: Path,
    devices: list[Device],
    tmp_path: Path,
) -> None:
    disk = small_disk("4m")
    device_id = "diskfull"
    topic = f"edgesiam/{device_id}/event"
    watcher = Subscriber(
        mosquitto.host,
        mosquitto.port,
        [topic, f"edgesiam/{device_id}/metrics"],
        client_id="diskfull-watcher",
        persistent=True,
    ).start()
    config = flood_config(
        tmp_path, events_gallery, mosquitto.url, device_id, metrics={"interval_s": 1.0}
    )
    state = disk / "state"
    device = Device(config, "--state-dir", str(state), "--log-level", "info")
    devices.append(device)

    def seqs() -> set[int]:
        return {int(m.json()["seq"]) for m in watcher.on(topic)}

    def metrics() -> list[dict[str, Any]]:
        return [m.json() for m in watcher.on(f"edgesiam/{device_id}/metrics")]

    try:
        first = Feeder(device, 200, seconds=2.0)
        first.run()
        assert wait_until(lambda: len(seqs()) >= 200, 60), device.log()[-3000:]

        filler = fill(disk)
        full = Feeder(device, 200, seconds=2.0, first=False)
        full.run()
        assert full.ok and device.proc.poll() is None, device.log()[-3000:]
        assert wait_until(lambda: FULL_MESSAGE in device.log(), 30), device.log()[-3000:]
        assert wait_until(lambda: any(m.get("outbox_dropped", 0) > 0 for m in metrics()), 30)

        filler.unlink()
        after = Feeder(device, 200, seconds=2.0, first=False)
        after.run()
        assert after.ok
        assert device.finish() == 0, device.log()[-3000:]
    except BaseException:
        watcher.stop()
        raise
    with sqlite3.connect(state / "outbox.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        pending = int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    last, dropped = int(meta["next_seq"]) - 1, int(meta["dropped"])
    assert pending == 0
    assert wait_until(lambda: seqs() >= set(range(1, last + 1)), 30)
    watcher.stop()
    assert seqs() == set(range(1, last + 1)), "a gap: a refused event must use no seq"
    log_text = device.log()
    refused = re.search(r"(\d+) event\(s\) refused by the outbox \(disk full\)", log_text)
    assert refused is not None, log_text[-3000:]
    not_stored = int(refused.group(1))
    assert dropped == not_stored > 0
    # one error line per interval while the disk is full, not one per refused event
    assert 1 <= log_text.count(FULL_MESSAGE) < not_stored
    assert last + dropped == 600  # every window was an event: stored and delivered, or counted
    assert last >= 400
    print(
        f"\nfull disk: {dropped} event(s) refused with a clear error while the disk was full, "
        f"{last} stored and delivered without a gap; metrics: "
        + json.dumps({k: metrics()[-1].get(k) for k in ("outbox_dropped", "outbox_errors")})
    )
