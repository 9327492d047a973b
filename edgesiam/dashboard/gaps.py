"""Gaps in a device's ``seq``: found in the history, asked back from the device with ``cmd/replay``.

A device numbers its events 1, 2, 3, … and keeps them for a while after the broker took them
(``outbox.keep_acked_s``), because a broker killed before its next save can lose an event it had
already acknowledged. The ingester notes each new event's device; every ``check_every_s`` the
:class:`GapWatcher` asks the history which ``seq`` runs are missing for those devices. A gap seen
on two checks in a row (so not an event still in another ingester's transaction: debounced) is
claimed in the history (:meth:`~edgesiam.dashboard.history.SqlHistory.claim_replay`: one request
per gap across all the ingesters on one database) and asked for, at most ``max_span`` seqs at a
time, at most ``max_requests`` per check, again after ``retry_after_s`` if it is still missing, at
most ``max_tries`` times (the device may have dropped it: outbox bounds, its keep window).

Not covered: events lost after the last one the history holds (no later ``seq`` shows the gap
until the device's next event).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from edgesiam.dashboard.history import SqlHistory

__all__ = ["DEFAULT_REPLAY", "GapWatcher", "ReplayPolicy"]

log = logging.getLogger(__name__)

AskReplay = Callable[[str, int, int], bool]
"""``(device, from_seq, to_seq) -> sent``: publish a ``cmd/replay`` request."""


@dataclass(frozen=True)
class ReplayPolicy:
    """How eagerly missing events are asked for (see the module docstring)."""

    check_every_s: float = 2.0
    max_span: int = 1000
    retry_after_s: float = 60.0
    max_tries: int = 3
    max_requests: int = 50


DEFAULT_REPLAY: Final = ReplayPolicy()


class GapWatcher:
    """Finds gaps in the history and asks devices to replay them, on its own thread."""

    def __init__(self, history: SqlHistory, ask: AskReplay, policy: ReplayPolicy) -> None:
        self.history = history
        self.ask = ask
        self.policy = policy
        self.requested = 0
        """Replay requests sent by this process."""
        self._lock = threading.Lock()
        self._dirty: dict[str, int] = {}  # device → highest seq stored since the last check
        self._floor: dict[str, int] = {}  # device → every seq up to here is stored (or given up)
        self._seen: dict[str, set[tuple[int, int]]] = {}  # device → gaps found on the last check
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def saw(self, device: str, seq: int) -> None:
        """An event of ``device`` was stored (called by the ingester's writer)."""
        with self._lock:
            self._dirty[device] = max(seq, self._dirty.get(device, 0))

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="dashboard-gaps", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.policy.check_every_s):
            try:
                self.check()
            except Exception:  # the history may be briefly unreachable; the next check retries
                log.exception("dashboard: the gap check failed")

    def check(self) -> list[tuple[str, int, int]]:
        """One pass: the ``(device, from_seq, to_seq)`` asked for."""
        with self._lock:
            devices = dict(self._dirty)
            self._dirty.clear()
        devices.update({d: 0 for d in self._seen if d not in devices})
        asked: list[tuple[str, int, int]] = []
        for device, top in sorted(devices.items()):
            floor = self._floor.get(device, 0)
            gaps = self.history.seq_gaps(device, after_seq=floor, limit=self.policy.max_requests)
            if not gaps:
                self._floor[device] = max(floor, top)
                self._seen.pop(device, None)
                continue
            before = self._seen.get(device, set())
            self._seen[device] = set(gaps)
            for first, last in gaps:
                if (first, last) in before and len(asked) < self.policy.max_requests:
                    asked.extend(self._ask(device, first, last))
        return asked

    def _ask(self, device: str, first: int, last: int) -> list[tuple[str, int, int]]:
        last = min(last, first + self.policy.max_span - 1)
        p = self.policy
        if not self.history.claim_replay(
            device, first, last, retry_after_s=p.retry_after_s, max_tries=p.max_tries
        ):
            return []
        if not self.ask(device, first, last):
            return []
        self.requested += 1
        return [(device, first, last)]
