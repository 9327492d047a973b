"""The durable outbox: every event is on disk before anything tries to send it.

An event is stored (SQLite, WAL) in the same transaction that gives it its sequence number, so a
crash can neither lose a stored event nor hand out the same ``seq`` twice. The publisher reads
``pending()`` in ``seq`` order, publishes with QoS 1 and calls ``ack(seq)`` when the broker's PUBACK
arrives; what is not acknowledged is sent again after a reconnect or a restart (at-least-once, so
subscribers drop duplicates by ``id``).

Durability: ``synchronous=FULL`` for the transaction that stores an event (each one is fsynced to
the WAL: an event the runtime was told is stored survives a power cut, the usual way a Pi stops;
about 3 ms per event, and events are rare), ``NORMAL`` for acknowledgements (losing one to a power
cut only means one duplicate after the restart).

Bounds: at most ``max_pending`` events are kept. ``policy="drop_oldest"`` deletes the oldest
pending events to make room (subscribers see a gap in ``seq``); ``"reject_new"`` keeps the stored
ones and refuses the new event with an :class:`OutboxError` (its ``seq`` is used up all the same,
so the gap is visible too). Either way ``dropped`` (persisted) counts the events lost. A full disk
(or ``max_bytes``) refuses the new event with an :class:`OutboxError` that says which of the two
it was; the event gets no ``seq`` (so it shows as ``dropped``, not as a gap). Events already stored
stay stored and are sent as usual. Under ``max_bytes``, acknowledged events free their pages, so
the outbox takes events again once the broker has taken the pending ones; on a full disk it takes
them again once space is freed (until then an acknowledgement may fail too: the event stays stored
and is sent again, a duplicate, never a loss).

Replay: acknowledged events are kept (table ``sent``) for ``keep_acked_s`` seconds, at most
``keep_acked_max`` of them, so that :meth:`Outbox.acked` can hand them to ``cmd/replay`` (a
broker killed before its next save loses events it had acknowledged; the dashboard sees the gap
in ``seq`` and asks for them again). Kept events are the first thing given up for room: when the
database is full they are deleted and the new event is stored.

Footprint: the database holds the pending events (``max_bytes`` caps it when given); its
write-ahead log is checkpointed every :data:`WAL_CHECKPOINT_PAGES` pages and truncated to
:data:`WAL_SIZE_LIMIT` bytes, so it stays around 1 MiB however long the outbox runs.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from edgesiam.errors import OutboxError
from edgesiam.locked_db import LockedDatabase

__all__ = ["WAL_CHECKPOINT_PAGES", "WAL_SIZE_LIMIT", "Event", "Outbox", "OutboxPolicy"]

log = logging.getLogger(__name__)

OutboxPolicy = Literal["drop_oldest", "reject_new", "drop_newest"]
"""``drop_newest`` is another name for ``reject_new``."""

_SCHEMA_VERSION: Final = 1

WAL_CHECKPOINT_PAGES: Final = 256
"""The write-ahead log is copied into the database (a passive checkpoint) once it holds this many
pages (1 MiB with SQLite's 4 KiB pages; SQLite's default is 1000)."""

WAL_SIZE_LIMIT: Final = 1 << 20
"""Bytes the write-ahead log is truncated to after a checkpoint (it is reused, not regrown)."""

_LOW_SPACE: Final = 64 * 1024
"""Free bytes under which an SQLITE_FULL is put down to the disk rather than to ``max_bytes``."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY,
    id      TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sent (
    seq     INTEGER PRIMARY KEY,
    id      TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL,
    acked   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sent_acked ON sent (acked);
"""


@dataclass(frozen=True)
class Event:
    """One stored event: ``payload`` is the dict that was built, ``text`` the JSON that is sent."""

    seq: int
    id: str
    payload: dict[str, Any]
    text: str
    created: float


def _is_disk_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_FULL or "database or disk is full" in str(exc)


class Outbox(LockedDatabase):
    """Durable, bounded queue of events awaiting a PUBACK (thread-safe; one process at a time)."""

    def __init__(
        self,
        path: str | Path,
        max_pending: int = 100_000,
        policy: OutboxPolicy = "drop_oldest",
        *,
        id_prefix: str = "",
        max_bytes: int | None = None,
        keep_acked_s: float = 0.0,
        keep_acked_max: int = 10_000,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        if policy not in ("drop_oldest", "reject_new", "drop_newest"):
            raise ValueError(f"unknown outbox policy {policy!r} (drop_oldest or reject_new)")
        self.path = Path(path)
        self.max_pending = max_pending
        self.keep_acked_s = max(0.0, keep_acked_s)
        self.keep_acked_max = max(0, keep_acked_max) if keep_acked_s > 0 else 0
        self.policy: Literal["drop_oldest", "reject_new"] = (
            "drop_oldest" if policy == "drop_oldest" else "reject_new"
        )
        self._lock = threading.RLock()
        self._unsaved_drops = 0
        self._unremoved: set[int] = set()  # acknowledged, not yet removed (a full disk)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=5.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            self._db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            self._db.executescript(_SCHEMA)
            if max_bytes is not None:
                page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
                self._db.execute(f"PRAGMA max_page_count={max(8, int(max_bytes) // page)}")
            with self._transaction():
                instance = self._meta("instance")
                if instance is None:
                    instance = uuid.uuid4().hex[:8]
                    self._set_meta("instance", instance)
                    self._set_meta("schema", _SCHEMA_VERSION)
                    self._set_meta("next_seq", 1)
                    self._set_meta("dropped", 0)
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: cannot open ({exc})") from exc
        prefix = f"{id_prefix}-" if id_prefix else ""
        self._id_prefix = f"{prefix}{instance}-"
        self.max_bytes = max_bytes

    def _full_reason(self) -> str:
        """Why SQLite said "full": the disk, or the outbox's own ``max_bytes``."""
        try:
            st = os.statvfs(self.path.parent)
            free = st.f_bavail * st.f_frsize
        except OSError:
            free = None
        if self.max_bytes is not None and (free is None or free >= _LOW_SPACE):
            return (
                f"the outbox is full (its size limit, max_bytes {self.max_bytes}); it takes "
                "events again once the broker has taken the pending ones"
            )
        where = f" ({free} bytes free)" if free is not None else ""
        return (
            f"the disk holding it is full{where}; free space there: the outbox takes events "
            "again as soon as there is room"
        )

    # -- transactions ---------------------------------------------------------------------------

    def _transaction(self, *, durable: bool = True) -> _Txn:
        return _Txn(self._db, durable)

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: object) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, str(value)),
        )

    def _drop_oldest(self, n: int) -> None:
        self._db.execute(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY seq LIMIT ?)", (n,)
        )
        self._set_meta("dropped", int(self._meta("dropped") or 0) + n)
        log.warning("outbox full (%d events): dropped the %d oldest", self.max_pending, n)

    def _count_drops(self, n: int) -> int:
        """Add ``n`` and the drops not yet written to the persisted counter (inside a transaction);
        returns how many of the unwritten ones it wrote, to forget once the transaction commits."""
        unsaved = self._unsaved_drops
        if n + unsaved:
            self._set_meta("dropped", int(self._meta("dropped") or 0) + n + unsaved)
        return unsaved

    # -- the interface ----------------------------------------------------------------------------

    def add(self, build: Callable[[int, str], dict[str, Any]]) -> Event:
        """Allocate the next ``seq`` and an ``id``, build the payload and store it, atomically.

        ``build(seq, id)`` returns the JSON-serialisable payload. Raises :class:`OutboxError` when
        the event cannot be stored (``reject_new`` and full, or the disk is full).
        """
        return self._add(build, may_free=True)

    def _add(self, build: Callable[[int, str], dict[str, Any]], may_free: bool) -> Event:
        with self._lock:
            try:
                with self._transaction():
                    if self._unremoved:
                        self._remove(self._unremoved)
                    seq = int(self._meta("next_seq") or 1)
                    event_id = f"{self._id_prefix}{seq}"
                    self._set_meta("next_seq", seq + 1)
                    depth = self._stored()  # what is left once the unremoved are gone
                    rejected = depth >= self.max_pending and self.policy == "reject_new"
                    written = self._count_drops(1 if rejected else 0)
                    if not rejected:
                        if depth >= self.max_pending:
                            self._drop_oldest(depth - self.max_pending + 1)
                        payload = build(seq, event_id)
                        text = json.dumps(payload, separators=(",", ":"), default=_json_default)
                        created = time.time()
                        self._db.execute(
                            "INSERT INTO events(seq, id, payload, created) VALUES (?, ?, ?, ?)",
                            (seq, event_id, text, created),
                        )
            except sqlite3.Error as exc:
                if _is_disk_full(exc) and may_free and self._forget_kept():
                    return self._add(build, may_free=False)
                if _is_disk_full(exc):
                    self._unsaved_drops += 1
                    raise OutboxError(
                        f"outbox {self.path}: event dropped, not stored: {self._full_reason()} "
                        f"({self.dropped} event(s) dropped so far)"
                    ) from exc
                raise OutboxError(f"outbox {self.path}: cannot store an event ({exc})") from exc
            self._unsaved_drops -= written
            self._unremoved.clear()
            if rejected:
                raise OutboxError(
                    f"outbox full ({self.max_pending} events pending, policy reject_new): "
                    f"event seq {seq} dropped; is the broker reachable?"
                )
            return Event(seq, event_id, payload, text, created)

    def pending(self, limit: int = 100, after_seq: int = 0) -> list[Event]:
        """Up to ``limit`` stored events with ``seq > after_seq``, in ``seq`` order."""
        with self._lock:
            gone = set(self._unremoved)  # acknowledged already
            rows = self._db.execute(
                "SELECT seq, id, payload, created FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit + len(gone)),
            ).fetchall()
        events = [
            Event(int(s), str(i), json.loads(p), str(p), float(c))
            for s, i, p, c in rows
            if int(s) not in gone
        ]
        return events[:limit]

    def ack(self, seq: int) -> None:
        """The broker has the event: forget it."""
        self.ack_many((seq,))

    def ack_many(self, seqs: Iterable[int]) -> None:
        """Acknowledge several events in one transaction.

        When the removal cannot be written (a full disk), the events stay stored and their
        ``seq`` is remembered: the next transaction that succeeds removes them. Only a restart
        before that sends them again (duplicates, never a loss).
        """
        batch = {int(s) for s in seqs}
        if not batch:
            return
        with self._lock:
            try:
                with self._transaction(durable=False):
                    self._keep(batch)
                    self._remove(batch | self._unremoved)
                    written = self._count_drops(0)
                self._unsaved_drops -= written
                self._unremoved.clear()
            except sqlite3.Error as exc:
                self._unremoved |= batch
                why = self._full_reason() if _is_disk_full(exc) else str(exc)
                log.error(
                    "outbox %s: cannot remove %d acknowledged event(s) yet; they are removed "
                    "with the next write that succeeds (or sent again after a restart): %s",
                    self.path,
                    len(self._unremoved),
                    why,
                )

    def _keep(self, seqs: set[int]) -> None:
        """Copy acknowledged events to ``sent`` (for replay) and trim it to the keep bounds."""
        if not self.keep_acked_max:
            return
        now = time.time()
        self._db.executemany(
            "INSERT OR REPLACE INTO sent (seq, id, payload, created, acked) "
            "SELECT seq, id, payload, created, ? FROM events WHERE seq = ?",
            [(now, s) for s in sorted(seqs)],
        )
        self._db.execute("DELETE FROM sent WHERE acked < ?", (now - self.keep_acked_s,))
        self._db.execute(
            "DELETE FROM sent WHERE seq <= (SELECT seq FROM sent ORDER BY seq DESC "
            "LIMIT 1 OFFSET ?)",
            (self.keep_acked_max,),
        )

    def _forget_kept(self) -> bool:
        """Delete every kept event (the database is full); True if that freed anything."""
        try:
            with self._transaction(durable=False):
                freed = self._db.execute("DELETE FROM sent").rowcount
        except sqlite3.Error:
            return False
        if freed:
            log.warning(
                "outbox %s full: forgot %d acknowledged event(s) kept for replay", self.path, freed
            )
        return bool(freed)

    def acked(self, from_seq: int, to_seq: int, limit: int = 10_000) -> list[Event]:
        """Kept acknowledged events with ``from_seq <= seq <= to_seq``, in ``seq`` order (what
        ``cmd/replay`` publishes again)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, id, payload, created FROM sent WHERE seq BETWEEN ? AND ? "
                "AND acked >= ? ORDER BY seq LIMIT ?",
                (from_seq, to_seq, time.time() - self.keep_acked_s, limit),
            ).fetchall()
        return [Event(int(s), str(i), json.loads(p), str(p), float(c)) for s, i, p, c in rows]

    def _remove(self, seqs: Iterable[int]) -> None:
        self._db.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in sorted(seqs)])

    def _stored(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def _depth(self) -> int:
        return max(0, self._stored() - len(self._unremoved))

    @property
    def depth(self) -> int:
        """Events stored and not yet acknowledged."""
        with self._lock:
            return self._depth()

    @property
    def dropped(self) -> int:
        """Events lost to the bounds or a full disk, over the outbox's whole life."""
        with self._lock:
            return int(self._meta("dropped") or 0) + self._unsaved_drops

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next event will get."""
        with self._lock:
            return int(self._meta("next_seq") or 1)


class _Txn:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error), fsynced or not."""

    def __init__(self, db: sqlite3.Connection, durable: bool) -> None:
        self.db = db
        self.durable = durable

    def __enter__(self) -> None:
        self.db.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays (what the runtime computes with) as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
