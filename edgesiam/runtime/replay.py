"""``cmd/replay``: publish kept events again, with their original ``id`` and ``seq``.

The dashboard asks for a run of ``seq`` (``from_seq``..``to_seq``) that its history lacks; the
device answers from its outbox: the acknowledged events it still keeps
(:meth:`~edgesiam.runtime.outbox.Outbox.acked`, ``outbox.keep_acked_s``) are published again on
``<prefix>/<device>/event`` (QoS 1; subscribers drop duplicates by ``id``), events still pending
are on their way anyway, and the rest is reported as ``not_held`` (dropped by the outbox bounds
or older than the keep window) so the dashboard stops asking.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from edgesiam.runtime.outbox import Event, Outbox

__all__ = ["MAX_REPLAY", "Replayer"]

MAX_REPLAY: Final = 10_000
"""The most events one request may ask for (bounds the work one command can cause)."""

Republish = Callable[[Event], bool]
"""Publish one kept event again; False if it could not be queued."""


def _runs(seqs: list[int]) -> list[list[int]]:
    """Sorted ``seqs`` as ``[first, last]`` runs of consecutive numbers."""
    runs: list[list[int]] = []
    for seq in seqs:
        if runs and seq == runs[-1][1] + 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    return runs


class Replayer:
    """Answers replay requests from ``outbox`` through ``republish`` (the device's publisher)."""

    def __init__(self, outbox: Outbox, republish: Republish) -> None:
        self.outbox = outbox
        self.republish = republish

    def __call__(self, from_seq: int, to_seq: int) -> dict[str, Any]:
        """Republish what is kept of ``from_seq``..``to_seq``; the command's result."""
        if to_seq < from_seq or to_seq - from_seq >= MAX_REPLAY:
            raise ValueError(
                f"replay: to_seq must be from_seq to from_seq + {MAX_REPLAY - 1}, "
                f"got {from_seq}..{to_seq}"
            )
        kept = self.outbox.acked(from_seq, to_seq, limit=MAX_REPLAY)
        republished = sum(1 for event in kept if self.republish(event))
        pending = {
            e.seq
            for e in self.outbox.pending(MAX_REPLAY, after_seq=from_seq - 1)
            if e.seq <= to_seq
        }
        held = {e.seq for e in kept} | pending
        missing = [s for s in range(from_seq, min(to_seq, self.outbox.next_seq - 1) + 1)]
        return {
            "from_seq": from_seq,
            "to_seq": to_seq,
            "republished": republished,
            "pending": len(pending),
            "not_held": _runs([s for s in missing if s not in held]),
        }
