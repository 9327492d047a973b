"""Gaps in a device's ``seq``: found in the history, asked back from the device with ``cmd/replay``.

A device numbers its events 1, 2, 3, … and keeps them for a while after the broker took them
(``outbox.keep_acked_s``), because a broker killed before its next save can lose an event it had
already acknowledged. Every ``check_every_s`` the :class:`GapWatcher` asks the history for each
device's span of recently received ``seq`` (one query for the fleet), and where a span does not
add up, which ``seq`` runs are missing (whichever ingester stored the events). A gap seen
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
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from edgesiam.dashboard.history import SqlHistory

__all__ = ["DEFAULT_REPLAY", "GapWatcher", "ReplayPolicy"]

log = logging.getLogger(__name__)

AskReplay = Callable[[str, int, int], bool]
"""``(device, from_seq, to_seq) -> sent``: publish a ``cmd/replay`` request."""


@dataclass(frozen=True, kw_only=True)
class ReplayPolicy:
    """How eagerly missing events are asked for (see the module docstring); options are named."""

    check_every_s: float = 2.0
    max_span: int = 1000
    retry_after_s: float = 60.0
    max_tries: int = 3
    max_requests: int = 50


DEFAULT_REPLAY: Final = ReplayPolicy()

RECEIVED_MARGIN_S: Final = 30.0
"""Each check looks at events received since this long before the previous one."""


class GapWatcher:
    """Finds gaps in the history and asks devices to replay them, on its own thread."""

    def __init__(self, history: SqlHistory, ask: AskReplay, policy: ReplayPolicy) -> None:
        self.history = history
        self.ask = ask
        self.policy = policy
        self.requested = 0
        """Replay requests sent by this process."""
        self._since = 0.0  # received time from which the next check looks (0: everything)
        self._floor: dict[str, int] = {}  # device → every seq up to here is stored (or given up)
        self._seen: dict[str, set[tuple[int, int]]] = {}  # device → gaps found on the last check
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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
        """One pass: the ``(device, from_seq, to_seq)`` asked for.

        One query gives each device's span of recently received seqs; only a device whose span
        does not add up (or had gaps last time) is looked at event by event."""
        now = time.time()
        spans = self.history.recent_seq_spans(self._since)
        self._since = now - RECEIVED_MARGIN_S  # overlap: other ingesters' clocks, late commits
        suspects = dict.fromkeys(self._seen, 0)
        for device, (low, high, count) in spans.items():
            floor = self._floor.setdefault(device, low - 1)
            if count == high - low + 1 and low <= floor + 1:
                self._floor[device] = max(floor, high)
            else:
                suspects[device] = high
        asked: list[tuple[str, int, int]] = []
        for device, high in sorted(suspects.items()):
            asked.extend(self._check_device(device, high, len(asked)))
        return asked

    def _check_device(self, device: str, high: int, asked: int) -> list[tuple[str, int, int]]:
        floor = self._floor.get(device, 0)
        gaps = self.history.seq_gaps(device, after_seq=floor, limit=self.policy.max_requests)
        if not gaps:
            self._floor[device] = max(floor, high)
            self._seen.pop(device, None)
            return []
        before = self._seen.get(device, set())
        self._seen[device] = set(gaps)
        out: list[tuple[str, int, int]] = []
        for first, last in gaps:
            if (first, last) in before and asked + len(out) < self.policy.max_requests:
                out.extend(self._ask(device, first, last))
        return out

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
