"""The SQLite history: de-duplication by event id, persistence across reopen, retention, reads."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from edgesiam.dashboard.history import History
from edgesiam.errors import HistoryError, InvalidPayload
from tests.dashboard.conftest import event_payload


def test_events_are_deduplicated_by_id(tmp_path: Path) -> None:
    h = History(tmp_path / "h.sqlite3")
    first = event_payload("kitchen", 1)
    assert h.add_event(first) is True
    assert h.add_event(dict(first)) is False  # QoS 1 redelivery
    assert h.add_event(event_payload("kitchen", 2)) is True
    assert h.seqs("kitchen") == [1, 2]
    assert h.counts()["events"] == 2
    h.close()


def test_history_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    with History(path) as h:
        for seq in (3, 1, 2):  # arrival order differs from seq order
            h.add_event({**event_payload("hall", seq), "ts": 1_800_000_000.0 + seq})
        h.set_status("hall", "online")
        h.set_labels("hall", ["bob", "alice", "bob"], model="speaker")
    with History(path) as h:
        assert h.seqs("hall") == [1, 2, 3]
        assert h.add_event(event_payload("hall", 2)) is False  # still a duplicate after restart
        (device,) = h.devices()
        assert device["status"] == "online"
        assert device["labels"] == ["alice", "bob"]
        assert device["model"] == "speaker"
        assert device["events"] == 3
        newest = h.events()
        assert [e["seq"] for e in newest] == [3, 2, 1]
        assert all("received_ts" in e for e in newest)


def test_events_filters(tmp_path: Path) -> None:
    h = History(tmp_path / "h.sqlite3")
    base = 1_800_000_000.0
    for i in range(5):
        h.add_event({**event_payload("a", i + 1), "ts": base + i})
        h.add_event({**event_payload("b", i + 1), "ts": base + i + 0.5})
    assert [e["seq"] for e in h.events("a")] == [5, 4, 3, 2, 1]
    assert [e["seq"] for e in h.events("a", since_ts=base + 3)] == [5, 4]
    assert len(h.events(limit=3)) == 3
    assert h.events(limit=3)[0]["device"] == "b"
    assert h.events("nobody") == []
    h.close()


def test_retention_purges_old_rows_at_open_and_on_demand(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    now = time.time()
    with History(path, retention_days=1.0) as h:
        h.add_event(event_payload("old", 1), received=now - 3 * 86400)
        h.add_near_miss(
            {"device": "old", "ts": now, "label": "x", "score": 0.5}, received=now - 3 * 86400
        )
        h.add_event(event_payload("new", 1), received=now)
        assert h.counts()["events"] == 2
        removed = h.purge(now=now)
        assert removed["events"] == 1 and removed["near_misses"] == 1 and removed["devices"] == 1
        assert [d["device"] for d in h.devices()] == ["new"]
    with History(path, retention_days=None) as h:  # None keeps everything
        h.add_event(event_payload("ancient", 1), received=now - 1000 * 86400)
        assert h.purge() == {}
    with History(path, retention_days=1.0) as h:  # reopening with retention purges at once
        assert h.seqs("ancient") == []
        assert h.seqs("new") == [1]


def test_invalid_payloads_are_refused_with_the_reason(tmp_path: Path) -> None:
    h = History(tmp_path / "h.sqlite3")
    good = event_payload("dev", 1)
    for broken, word in [
        ({**good, "id": 7}, "id"),
        ({**good, "seq": "1"}, "seq"),
        ({**good, "seq": True}, "seq"),
        ({**good, "ts": float("nan")}, "ts"),
        ({**good, "device": "a/b"}, "device"),
    ]:
        with pytest.raises(InvalidPayload, match=word):
            h.add_event(broken)
    with pytest.raises(InvalidPayload, match="online or offline"):
        h.set_status("dev", "maybe")
    assert h.counts()["events"] == 0
    with pytest.raises(HistoryError, match="retention_days"):
        History(tmp_path / "x.sqlite3", retention_days=-1)
    h.close()


def test_status_last_seen_and_timeline(tmp_path: Path) -> None:
    h = History(tmp_path / "h.sqlite3")
    t = 1_800_000_000.0
    assert h.set_status("pi", "online", received=t) is True
    assert h.set_status("pi", "online", received=t + 1) is False
    h.add_event({**event_payload("pi", 1, score=0.9), "ts": t + 2}, received=t + 2)
    h.add_near_miss(
        {"device": "pi", "ts": t + 3, "label": "bob", "score": 0.65, "threshold": 0.7},
        received=t + 3,
    )
    assert h.set_status("pi", "offline", received=t + 10) is True  # the last will
    device = h.device("pi")
    assert device is not None
    assert device["status"] == "offline" and device["status_changed"] == t + 10
    assert device["last_seen"] == t + 3  # a last will is not a sign of life
    points = h.timeline("pi")
    assert [(p["kind"], p["score"]) for p in points] == [("event", 0.9), ("near_miss", 0.65)]
    assert h.near_misses("pi")[0]["label"] == "bob"
    h.close()


def test_command_results_are_kept(tmp_path: Path) -> None:
    h = History(tmp_path / "h.sqlite3")
    h.add_command_result(
        "pi",
        {
            "schema": "edgesiam.cmd_result.v1",
            "verb": "list",
            "ok": True,
            "correlation_id": "c1",
            "result": {},
            "ts": 1.0,
        },
    )
    h.add_command_result(
        "pi",
        {
            "schema": "edgesiam.cmd_result.v1",
            "verb": "enroll",
            "ok": False,
            "correlation_id": "c2",
            "error": "bad",
            "error_code": "invalid",
            "ts": 2.0,
        },
    )
    assert [r["verb"] for r in h.command_results("pi")] == ["enroll", "list"]
    (found,) = h.command_results(correlation_id="c1")
    assert found["ok"] is True and found["device"] == "pi"
    h.close()


def test_other_processes_can_read_while_it_writes(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    h = History(path)
    h.add_event(event_payload("dev", 1))
    reader = sqlite3.connect(path)
    assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert reader.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1
    reader.close()
    h.close()


def test_thresholds_are_kept_per_device_and_older_histories_gain_the_column(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.sqlite3"
    History(path).close()
    with sqlite3.connect(path) as db:  # a history written before thresholds were kept
        db.execute("ALTER TABLE devices DROP COLUMN thresholds")
    h = History(path)
    h.set_labels("pi", ["alice", "bob"])
    assert h.device("pi")["thresholds"] is None  # type: ignore[index]
    h.set_thresholds("pi", 0.97, {"alice": 0.9, "bob": 0.97})
    h.close()
    again = History(path).device("pi")
    assert again is not None
    assert again["thresholds"] == {"default": 0.97, "labels": {"alice": 0.9, "bob": 0.97}}
