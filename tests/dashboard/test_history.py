"""The history, on both backends (SQLite and PostgreSQL): de-duplication by event id, persistence
across reopen, retention, reads, versioned schema migrations."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from edgesiam.dashboard.history import MIGRATIONS, History
from edgesiam.errors import HistoryError, InvalidPayload
from tests.support.dashboard import OpenHistory, event_payload


@pytest.fixture(params=["sqlite", "postgresql"])
def history_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_events_are_deduplicated_by_id(open_history: OpenHistory) -> None:
    h = open_history()
    first = event_payload("kitchen", 1)
    assert h.add_event(first) is True
    assert h.add_event(dict(first)) is False  # QoS 1 redelivery
    assert h.add_event(event_payload("kitchen", 2)) is True
    assert h.seqs("kitchen") == [1, 2]
    assert h.counts()["events"] == 2
    h.close()


def test_history_survives_reopening(open_history: OpenHistory) -> None:
    with open_history() as h:
        for seq in (3, 1, 2):  # arrival order differs from seq order
            h.add_event({**event_payload("hall", seq), "ts": 1_800_000_000.0 + seq})
        h.set_status("hall", "online")
        h.set_labels("hall", ["bob", "alice", "bob"], model="speaker")
    with open_history() as h:
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


def test_events_filters(open_history: OpenHistory) -> None:
    h = open_history()
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


def test_retention_purges_old_rows_at_open_and_on_demand(open_history: OpenHistory) -> None:
    now = time.time()
    with open_history(retention_days=1.0) as h:
        h.add_event(event_payload("old", 1), received=now - 3 * 86400)
        h.add_near_miss(
            {"device": "old", "ts": now, "label": "x", "score": 0.5}, received=now - 3 * 86400
        )
        h.add_event(event_payload("new", 1), received=now)
        assert h.counts()["events"] == 2
        removed = h.purge(now=now)
        assert removed["events"] == 1 and removed["near_misses"] == 1 and removed["devices"] == 1
        assert [d["device"] for d in h.devices()] == ["new"]
    with open_history(retention_days=None) as h:  # None keeps everything
        h.add_event(event_payload("ancient", 1), received=now - 1000 * 86400)
        assert h.purge() == {}
    with open_history(retention_days=1.0) as h:  # reopening with retention purges at once
        assert h.seqs("ancient") == []
        assert h.seqs("new") == [1]


def test_invalid_payloads_are_refused_with_the_reason(open_history: OpenHistory) -> None:
    h = open_history()
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
        open_history("x", retention_days=-1)
    h.close()


def test_status_last_seen_and_timeline(open_history: OpenHistory) -> None:
    h = open_history()
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


def test_command_results_are_kept(open_history: OpenHistory) -> None:
    h = open_history()
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


def test_a_history_from_before_versioned_migrations_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    with History(path) as h:
        h.add_event(event_payload("pi", 1))
    with sqlite3.connect(path) as db:  # as edgesiam wrote it before thresholds and versions
        db.execute("ALTER TABLE devices DROP COLUMN thresholds")
        db.execute("DROP TABLE schema_version")
        db.execute("DROP TABLE replay_requests")
    h = History(path)
    assert h.schema_version() == len(MIGRATIONS)
    assert h.seqs("pi") == [1]
    assert h.device("pi")["thresholds"] is None  # type: ignore[index]
    h.set_thresholds("pi", 0.97, {"alice": 0.9, "bob": 0.97})
    h.close()
    again = History(path).device("pi")
    assert again is not None
    assert again["thresholds"] == {"default": 0.97, "labels": {"alice": 0.9, "bob": 0.97}}


def test_the_previous_schema_version_is_migrated_in_order(open_history: OpenHistory) -> None:
    with open_history(migrations=MIGRATIONS[:2]) as old:  # the release before replay requests
        assert old.schema_version() == 2
        old.add_event(event_payload("pi", 1))
        old.add_event(event_payload("pi", 4))
        with pytest.raises(HistoryError):
            old.claim_replay("pi", 2, 3, retry_after_s=1, max_tries=1)
    with open_history() as h:
        assert h.schema_version() == 3
        assert h.seqs("pi") == [1, 4]  # the data came along
        assert h.seq_gaps("pi") == [(2, 3)]
        assert h.claim_replay("pi", 2, 3, retry_after_s=60, max_tries=2) is True
        assert h.claim_replay("pi", 2, 3, retry_after_s=60, max_tries=2) is False  # asked already
        assert h.claim_replay("pi", 2, 3, retry_after_s=0, max_tries=2) is True  # a retry
        assert h.claim_replay("pi", 2, 3, retry_after_s=0, max_tries=2) is False  # no more tries
        (asked,) = h.replay_requests("pi")
        assert asked["tries"] == 2
    with open_history() as h:  # opening again migrates nothing
        assert h.schema_version() == 3


def test_a_history_written_by_a_newer_edgesiam_is_refused(open_history: OpenHistory) -> None:
    with open_history() as h, h.transaction():
        h._execute("INSERT INTO schema_version (version, applied) VALUES (99, 0)")
    with pytest.raises(HistoryError, match="version 99 was written by a newer edgesiam"):
        open_history()


def test_seq_gaps_lists_each_missing_run(open_history: OpenHistory) -> None:
    with open_history() as h:
        for seq in (1, 2, 5, 6, 9, 20):
            h.add_event(event_payload("a", seq))
        h.add_event(event_payload("b", 3))
        assert h.seq_gaps("a") == [(3, 4), (7, 8), (10, 19)]
        assert h.seq_gaps("a", after_seq=6) == [(7, 8), (10, 19)]
        assert h.seq_gaps("a", limit=1) == [(3, 4)]
        assert h.seq_gaps("b") == []
