"""``cmd/replay``: the outbox keeps acknowledged events (bounded by age and count, first to go when
the database is full) and the device publishes them again with their original id and seq."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgesiam.runtime.commands import CommandHandler
from edgesiam.runtime.outbox import Outbox
from edgesiam.runtime.publishers import MemoryPublisher
from edgesiam.runtime.replay import Replayer


def _event(seq: int, event_id: str) -> dict[str, Any]:
    return {"id": event_id, "seq": seq, "device": "pi", "ts": 1.0, "label": "x" * 200}


def _device(outbox: Outbox) -> MemoryPublisher:
    publisher = MemoryPublisher("pi", outbox)
    publisher.set_command_handler(
        CommandHandler(object(), replay=Replayer(outbox, publisher.republish))
    )  # type: ignore[arg-type]
    return publisher


def test_acknowledged_events_are_republished_with_their_id_and_seq(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", keep_acked_s=3600, keep_acked_max=100, id_prefix="pi")
    device = _device(outbox)
    sent = [outbox.add(_event) for _ in range(5)]
    for event in sent:
        device.publish_event(event)  # sent and acknowledged: no longer pending
    assert outbox.depth == 0
    device.messages.clear()
    result = device.command("replay", {"from_seq": 2, "to_seq": 4, "correlation_id": "r1"})
    assert result["ok"] is True, result
    assert result["result"] == {
        "from_seq": 2, "to_seq": 4, "republished": 3, "pending": 0, "not_held": []
    }  # fmt: skip
    again = device.events
    assert [(e["seq"], e["id"]) for e in again] == [(e.seq, e.id) for e in sent[1:4]]
    assert again == [e.payload for e in sent[1:4]]  # byte for byte the same payload


def test_what_is_not_kept_is_reported_and_pending_events_are_left_to_the_sender(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", keep_acked_s=3600, keep_acked_max=3)
    device = _device(outbox)
    events = [outbox.add(_event) for _ in range(8)]
    outbox.ack_many(e.seq for e in events[:6])  # 7 and 8 still pending; only 4-6 kept (max 3)
    result = device.command("replay", {"from_seq": 1, "to_seq": 10})["result"]
    assert result["republished"] == 3
    assert result["pending"] == 2
    assert result["not_held"] == [[1, 3]]  # 9 and 10 were never handed out
    assert [e["seq"] for e in device.events] == [4, 5, 6]


def test_kept_events_expire_and_none_are_kept_when_disabled(tmp_path: Path) -> None:
    short = Outbox(tmp_path / "a.sqlite3", keep_acked_s=0.05)
    short.ack(short.add(_event).seq)
    time.sleep(0.2)
    assert short.acked(1, 1) == []
    off = Outbox(tmp_path / "b.sqlite3")  # the class default keeps nothing
    off.ack(off.add(_event).seq)
    assert off.acked(1, 1) == []


def test_a_full_outbox_forgets_kept_events_before_refusing_new_ones(tmp_path: Path) -> None:
    outbox = Outbox(
        tmp_path / "o.sqlite3", max_bytes=64 * 1024, keep_acked_s=3600, keep_acked_max=100_000
    )
    for _ in range(600):  # far more than 64 KiB: only possible if kept events make room
        outbox.ack(outbox.add(_event).seq)
    assert outbox.dropped == 0
    assert 0 < len(outbox.acked(1, 600)) < 600


def test_bad_replay_requests_are_refused_clearly(tmp_path: Path) -> None:
    device = _device(Outbox(tmp_path / "o.sqlite3", keep_acked_s=60))
    too_many = device.command("replay", {"from_seq": 1, "to_seq": 20_000})
    assert too_many["ok"] is False
    assert "to_seq must be" in too_many["error"]
    assert device.command("replay", {"from_seq": 0, "to_seq": 2})["error_code"] == "invalid"
    no_outbox = MemoryPublisher("pi")
    no_outbox.set_command_handler(CommandHandler(object()))  # type: ignore[arg-type]
    assert "keeps no events" in no_outbox.command("replay", {"from_seq": 1, "to_seq": 2})["error"]
