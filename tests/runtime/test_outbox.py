"""The outbox: durable, ordered, bounded, and seq never repeats."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from edgesiam.errors import EdgesiamError, OutboxError
from edgesiam.runtime.outbox import Outbox


def payload(seq: int, event_id: str) -> dict[str, Any]:
    return {"seq": seq, "id": event_id, "label": "alice"}


def test_add_assigns_seq_from_one_and_a_stable_id(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", id_prefix="dev1") as box:
        a, b = box.add(payload), box.add(payload)
    assert (a.seq, b.seq) == (1, 2)
    assert a.id != b.id and a.id.startswith("dev1-") and a.id.endswith("-1")
    assert a.payload == {"seq": 1, "id": a.id, "label": "alice"}
    assert json.loads(a.text) == a.payload and " " not in a.text


def test_seq_is_monotonic_across_reopen_even_after_the_outbox_empties(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, id_prefix="d") as box:
        events = [box.add(payload) for _ in range(3)]
        box.ack_many(e.seq for e in events)
        assert box.depth == 0
        first_ids = {e.id for e in events}
    with Outbox(path, id_prefix="d") as box:
        e = box.add(payload)
        assert e.seq == 4 and e.id not in first_ids
        assert box.pending()[0].id == e.id  # the id is stored, not recomputed


def test_a_new_database_gets_new_ids_even_though_seq_restarts(tmp_path: Path) -> None:
    with (
        Outbox(tmp_path / "a.db", id_prefix="d") as a,
        Outbox(tmp_path / "b.db", id_prefix="d") as b,
    ):
        assert a.add(payload).id != b.add(payload).id


def test_pending_is_in_seq_order_and_ack_removes(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        for _ in range(10):
            box.add(payload)
        assert [e.seq for e in box.pending(4)] == [1, 2, 3, 4]
        assert [e.seq for e in box.pending(3, after_seq=4)] == [5, 6, 7]
        box.ack(2)
        box.ack_many([5, 9])
        assert [e.seq for e in box.pending()] == [1, 3, 4, 6, 7, 8, 10]
        assert box.depth == 7
        box.ack(2)  # twice, or an event already dropped: harmless
        assert box.depth == 7


def test_pending_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as box:
        for _ in range(5):
            box.add(payload)
        box.ack(1)
    with Outbox(path) as box:
        assert [e.seq for e in box.pending()] == [2, 3, 4, 5]
        assert box.pending()[0].payload["label"] == "alice"


def test_drop_oldest_keeps_the_newest_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, max_pending=3, policy="drop_oldest") as box:
        for _ in range(5):
            box.add(payload)
        assert [e.seq for e in box.pending()] == [3, 4, 5]
        assert box.dropped == 2
    with Outbox(path, max_pending=3) as box:
        assert box.dropped == 2  # persisted


def test_reject_new_keeps_the_stored_uses_up_the_seq_and_counts(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_pending=2, policy="reject_new") as box:
        box.add(payload)
        box.add(payload)
        with pytest.raises(OutboxError, match="full"):
            box.add(payload)
        assert [e.seq for e in box.pending()] == [1, 2]
        assert box.dropped == 1
        box.ack(1)
        assert box.add(payload).seq == 4  # seq 3 was lost: subscribers see the gap


def test_disk_full_is_an_outbox_error_and_the_outbox_recovers(tmp_path: Path) -> None:
    """SQLITE_FULL, simulated with max_page_count (what max_bytes sets)."""
    big = "x" * 3000

    def large(seq: int, event_id: str) -> dict[str, Any]:
        return {"seq": seq, "id": event_id, "blob": big}

    with Outbox(tmp_path / "o.db", max_bytes=64 * 1024) as box:
        stored = []
        with pytest.raises(OutboxError, match="full") as info:
            for _ in range(100):
                stored.append(box.add(large))
        assert isinstance(info.value, EdgesiamError)
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        assert 0 < len(stored) < 100
        assert box.dropped == 1
        assert [e.seq for e in box.pending(1000)] == [e.seq for e in stored]
        box.ack_many(e.seq for e in stored)  # the broker took them: pages are free again
        again = box.add(large)
        assert again.seq == stored[-1].seq + 1  # the failed add used no seq
        assert box.dropped == 1


def test_a_failing_build_stores_nothing_and_uses_no_seq(tmp_path: Path) -> None:
    def broken(seq: int, event_id: str) -> dict[str, Any]:
        raise RuntimeError("bug")

    with Outbox(tmp_path / "o.db") as box:
        with pytest.raises(RuntimeError):
            box.add(broken)
        assert box.depth == 0
        assert box.add(payload).seq == 1


def test_numpy_values_are_stored_as_plain_json(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    with Outbox(tmp_path / "o.db") as box:
        e = box.add(lambda s, i: {"score": np.float32(0.5), "v": np.arange(2)})
        assert (
            box.pending()[0].payload
            == {"score": 0.5, "v": [0, 1]}
            == e.payload
            | {
                "score": 0.5,
                "v": [0, 1],
            }
        )


def test_wal_mode(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db"):
        mode = sqlite3.connect(tmp_path / "o.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_concurrent_adds_get_distinct_consecutive_seqs(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        seqs: list[int] = []
        lock = threading.Lock()

        def work() -> None:
            for _ in range(20):
                e = box.add(payload)
                with lock:
                    seqs.append(e.seq)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(seqs) == list(range(1, 81))


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Outbox(tmp_path / "o.db", max_pending=0)
    with pytest.raises(ValueError):
        Outbox(tmp_path / "o.db", policy="keep_all")  # type: ignore[arg-type]
    with Outbox(tmp_path / "o.db", policy="drop_newest") as box:
        assert box.policy == "reject_new"  # another name for it
    (tmp_path / "garbage.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(OutboxError, match="cannot open"):
        Outbox(tmp_path / "garbage.db")
