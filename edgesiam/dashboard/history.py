"""The dashboard's history: every device's events, near misses, status, metrics and command results
in one SQLite database (WAL), pure of MQTT and HTTP.

- Events are de-duplicated by their ``id`` (MQTT QoS 1 delivers at least once, and a device resends
  what was not acknowledged): :meth:`History.add_event` returns False for an ``id`` it already holds.
- Each write is committed before the method returns, or, inside ``with history.transaction():``,
  when the block ends (one commit for many writes). With the default ``synchronous="full"`` the
  commit is also fsynced, so an event acknowledged to the broker after it was committed survives a
  power cut of the dashboard's machine.
- Retention: rows received more than ``retention_days`` ago are deleted by :meth:`History.purge`
  (called when the history is opened and periodically by the dashboard); ``None`` keeps everything.
- One connection shared by the ingest thread and the web server's threads, behind a lock; the
  database can be opened by other processes at the same time (WAL readers never block the writer).

Times are Unix seconds. ``ts`` is the device's (when it decided), ``received_ts`` the dashboard's.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, TypeGuard

from edgesiam.errors import HistoryError, InvalidPayload
from edgesiam.locked_db import LockedDatabase

__all__ = [
    "DEVICE_ID",
    "MIGRATIONS",
    "SQLITE",
    "History",
    "HistoryError",
    "InvalidPayload",
    "SqlDialect",
    "SqlHistory",
]

DEVICE_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""The runtime's rule for a device id (a whole MQTT topic level)."""

_MAX_ID = 200
_DAY = 86400.0

_MATCH_COLUMNS: Final = """
    ts {real} NOT NULL,
    label TEXT,
    score {real},
    threshold {real},
    received {real} NOT NULL,
    payload TEXT NOT NULL"""
"""The columns an event and a near miss share: a window's match as the device sent it
(``{match}`` in a schema)."""

_SCHEMA_V1: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    seq {int} NOT NULL,{match}
);
CREATE INDEX IF NOT EXISTS events_device_ts ON events (device, ts);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_device_seq ON events (device, seq);
CREATE INDEX IF NOT EXISTS events_received ON events (received);
CREATE TABLE IF NOT EXISTS near_misses (
    n {serial},
    device TEXT NOT NULL,{match}
);
CREATE INDEX IF NOT EXISTS near_misses_device_ts ON near_misses (device, ts);
CREATE INDEX IF NOT EXISTS near_misses_received ON near_misses (received);
CREATE TABLE IF NOT EXISTS devices (
    device TEXT PRIMARY KEY,
    status TEXT,
    status_changed {real},
    last_seen {real} NOT NULL,
    model TEXT,
    labels TEXT,
    labels_received {real},
    metrics TEXT,
    metrics_received {real}
);
CREATE TABLE IF NOT EXISTS command_results (
    n {serial},
    device TEXT NOT NULL,
    verb TEXT NOT NULL,
    correlation_id TEXT,
    ok INTEGER NOT NULL,
    error_code TEXT,
    ts {real},
    received {real} NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS command_results_device ON command_results (device, n);
CREATE INDEX IF NOT EXISTS command_results_correlation ON command_results (correlation_id);
CREATE TABLE IF NOT EXISTS reviews (
    n {serial},
    device TEXT NOT NULL,
    action TEXT NOT NULL,
    label TEXT NOT NULL,
    ref TEXT,
    entry_id TEXT NOT NULL,
    by TEXT NOT NULL,
    ts {real} NOT NULL,
    undone_ts {real},
    undone_by TEXT,
    result TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_device ON reviews (device, n);
"""

_SCHEMA_V3: Final = """
CREATE TABLE IF NOT EXISTS replay_requests (
    device TEXT NOT NULL,
    from_seq {int} NOT NULL,
    to_seq {int} NOT NULL,
    requested {real} NOT NULL,
    tries INTEGER NOT NULL,
    PRIMARY KEY (device, from_seq, to_seq)
);
"""


@dataclass(frozen=True)
class SqlDialect:
    """What a database spells its own way in the history's SQL."""

    types: Mapping[str, str]
    """Column types for the schema's ``{int}``, ``{real}`` and ``{serial}``."""
    greatest: str
    """The SQL function of the larger of two values."""
    begin: str = "BEGIN"
    """The statement that opens a write transaction."""
    parameter: str = "?"
    """The driver's placeholder for a query parameter (the SQL here is written with ``?``)."""


SQLITE: Final = SqlDialect(
    {"int": "INTEGER", "real": "REAL", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT"},
    greatest="MAX",
    begin="BEGIN IMMEDIATE",  # takes the write lock at once: no deadlock between two writers
)

Migration = Callable[["SqlHistory"], None]
"""One step of the schema: run inside the migration's transaction on an older history."""


def _create(schema: str) -> Migration:
    def step(history: SqlHistory) -> None:
        types = history.DIALECT.types
        match = _MATCH_COLUMNS.format(**types)
        for statement in schema.format(match=match, **types).split(";"):
            if statement.strip():
                history._execute(statement)

    return step


def _add_thresholds(history: SqlHistory) -> None:
    if "thresholds" not in history._columns("devices"):
        history._execute("ALTER TABLE devices ADD COLUMN thresholds TEXT")


MIGRATIONS: Final[tuple[Migration, ...]] = (
    _create(_SCHEMA_V1),  # 1: events, near misses, devices, command results, reviews
    _add_thresholds,  # 2: each device's reported thresholds
    _create(_SCHEMA_V3),  # 3: replay requests (one per gap, shared by every ingester)
)
"""The schema's ordered steps: a history at version ``n`` has run the first ``n`` of them."""


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _optional_number(payload: Mapping[str, Any], key: str) -> float | None:
    value = payload.get(key)
    return float(value) if _number(value) else None


def _device(value: Any, what: str) -> str:
    if not isinstance(value, str) or not DEVICE_ID.match(value):
        raise InvalidPayload(f"{what}: 'device' must be 1-64 of A-Z a-z 0-9 _ - (got {value!r})")
    return value


def _dumps(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False)


def _with_received(text: str, received: float) -> dict[str, Any]:
    row: dict[str, Any] = json.loads(text)
    row["received_ts"] = received
    return row


_REVIEW_COLUMNS: Final = (
    "n, device, action, label, ref, entry_id, by, ts, undone_ts, undone_by, result"
)


def _review_row(row: tuple[Any, ...]) -> dict[str, Any]:
    keys = _REVIEW_COLUMNS.split(", ")
    out = dict(zip(keys, row, strict=True))
    out["result"] = json.loads(out["result"])
    return out


class SqlHistory(LockedDatabase):
    """The history's logic over any SQL database with a DB-API connection (module docstring);
    :class:`History` (SQLite) and :class:`~edgesiam.dashboard.history_pg.PostgresHistory` add the
    connection, the column types and the transaction statements.

    Opening runs the schema's :data:`MIGRATIONS` that the database has not run yet, in order,
    in one transaction; a database written by a newer edgesiam is refused.
    """

    DIALECT: ClassVar[SqlDialect]
    MIGRATIONS: ClassVar[tuple[Migration, ...]] = MIGRATIONS

    location: str
    """Where the history is (a file, or a database URL without its password), for logs."""

    def __init__(self, retention_days: float | None) -> None:
        if retention_days is not None and not (
            retention_days > 0 and math.isfinite(retention_days)
        ):
            raise HistoryError(
                f"retention_days must be a positive number of days or None, got {retention_days!r}"
            )
        self.retention_days = retention_days
        self._lock = threading.RLock()
        self._depth = 0
        self._db: Any = None
        self._touches: dict[str, tuple[float, str | None]] = {}

    def _open(self) -> None:
        """Bring the schema up to date, then apply retention (the connection is open)."""
        with self._write():
            self._lock_schema()
            self._execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                f"(version INTEGER PRIMARY KEY, applied {self.DIALECT.types['real']} NOT NULL)"
            )
            have = self.schema_version()
            if have > len(self.MIGRATIONS):
                raise HistoryError(
                    f"{self.location}: history schema version {have} was written by a newer "
                    f"edgesiam (this one knows versions up to {len(self.MIGRATIONS)}); upgrade it"
                )
            for version in range(have + 1, len(self.MIGRATIONS) + 1):
                self.MIGRATIONS[version - 1](self)
                self._execute(
                    "INSERT INTO schema_version (version, applied) VALUES (?, ?)",
                    (version, time.time()),
                )
        self.purge()

    def schema_version(self) -> int:
        """The last migration this database has run (0: a new database)."""
        row = self._execute("SELECT MAX(version) FROM schema_version").fetchone()
        if row[0] is not None:
            return int(row[0])
        return 1 if "events" in self._tables() else 0  # before versioned migrations: version 1

    def _lock_schema(self) -> None:
        """Keep other processes from migrating at the same time (inside the transaction)."""

    def driver_errors(self) -> tuple[type[Exception], ...]:
        """What the driver raises (turned into :class:`HistoryError`)."""
        raise NotImplementedError

    def _tables(self) -> set[str]:
        raise NotImplementedError

    def _columns(self, table: str) -> set[str]:
        raise NotImplementedError

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """Run one statement (``?`` placeholders) on the connection; returns the cursor."""
        if self.DIALECT.parameter != "?":
            sql = sql.replace("?", self.DIALECT.parameter)
        return self._db.execute(sql, args)

    # -- writes -----------------------------------------------------------------------------------

    def add_event(self, payload: dict[str, Any], received: float | None = None) -> bool:
        """Store one ``edgesiam.event.v1`` payload; True if it is new, False if its ``id`` is held.

        Requires ``id`` (string), ``device``, ``seq`` (integer ≥ 0) and ``ts`` (number); raises
        :class:`InvalidPayload` otherwise. Unknown fields are kept as they are.
        """
        event_id = payload.get("id")
        if not isinstance(event_id, str) or not 0 < len(event_id) <= _MAX_ID:
            raise InvalidPayload(f"event: 'id' must be a string of 1-{_MAX_ID} characters")
        device = _device(payload.get("device"), f"event {event_id}")
        seq = payload.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise InvalidPayload(f"event {event_id}: 'seq' must be an integer ≥ 0, got {seq!r}")
        ts = payload.get("ts")
        if not _number(ts):
            raise InvalidPayload(f"event {event_id}: 'ts' must be a number, got {ts!r}")
        label = payload.get("label")
        now = time.time() if received is None else received
        text = _dumps(payload)
        with self._write():
            cur = self._execute(
                "INSERT INTO events "
                "(id, device, seq, ts, label, score, threshold, received, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (
                    event_id,
                    device,
                    seq,
                    float(ts),
                    label if isinstance(label, str) else None,
                    _optional_number(payload, "score"),
                    _optional_number(payload, "threshold"),
                    now,
                    text,
                ),
            )
            new = bool(cur.rowcount == 1)
            model = payload.get("model")
            self._touch_later(device, now, model if isinstance(model, str) else None)
        return new

    def add_near_miss(self, payload: dict[str, Any], received: float | None = None) -> None:
        """Store one ``edgesiam.near_miss.v1`` payload (``device`` and ``ts`` required)."""
        device = _device(payload.get("device"), "near miss")
        ts = payload.get("ts")
        if not _number(ts):
            raise InvalidPayload(f"near miss from {device}: 'ts' must be a number, got {ts!r}")
        label = payload.get("label")
        now = time.time() if received is None else received
        with self._write():
            self._execute(
                "INSERT INTO near_misses (device, ts, label, score, threshold, received, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    device,
                    float(ts),
                    label if isinstance(label, str) else None,
                    _optional_number(payload, "score"),
                    _optional_number(payload, "threshold"),
                    now,
                    _dumps(payload),
                ),
            )
            self._touch_later(device, now)

    def set_status(self, device: str, status: str, received: float | None = None) -> bool:
        """Record ``online``/``offline`` (the retained status or the last will); True if changed."""
        _device(device, "status")
        if status not in ("online", "offline"):
            raise InvalidPayload(f"status of {device}: expected online or offline, got {status!r}")
        now = time.time() if received is None else received
        with self._write():
            row = self._execute("SELECT status FROM devices WHERE device = ?", (device,)).fetchone()
            changed = row is None or row[0] != status
            self._touch(device, now, seen=status == "online")
            if changed:
                self._execute(
                    "UPDATE devices SET status = ?, status_changed = ? WHERE device = ?",
                    (status, now, device),
                )
        return changed

    def set_metrics(
        self, device: str, payload: dict[str, Any], received: float | None = None
    ) -> None:
        """Keep the device's latest ``edgesiam.metrics.v1`` message (only the latest is kept)."""
        _device(device, "metrics")
        now = time.time() if received is None else received
        with self._write():
            self._touch(device, now)
            self._execute(
                "UPDATE devices SET metrics = ?, metrics_received = ? WHERE device = ?",
                (_dumps(payload), now, device),
            )

    def set_labels(
        self,
        device: str,
        labels: Iterable[str],
        *,
        model: str | None = None,
        received: float | None = None,
    ) -> None:
        """The device's enrolled labels (from a ``list`` result, an enroll/forget result or its
        Home Assistant discovery), and its model's name when known."""
        _device(device, "labels")
        clean = sorted({label for label in labels if isinstance(label, str)})
        now = time.time() if received is None else received
        with self._write():
            self._touch(device, now, model=model, seen=False)
            self._execute(
                "UPDATE devices SET labels = ?, labels_received = ? WHERE device = ?",
                (json.dumps(clean), now, device),
            )

    def set_thresholds(
        self,
        device: str,
        default: float | None,
        per_label: Mapping[str, float],
        received: float | None = None,
    ) -> None:
        """The thresholds the device reported (``list`` and ``threshold`` results): the default
        and each label's, kept until the device reports them again."""
        _device(device, "thresholds")
        clean = {k: float(v) for k, v in per_label.items() if isinstance(k, str) and _number(v)}
        value = {"default": float(default) if _number(default) else None, "labels": clean}
        now = time.time() if received is None else received
        with self._write():
            self._touch(device, now, seen=False)
            self._execute(
                "UPDATE devices SET thresholds = ? WHERE device = ?", (_dumps(value), device)
            )

    def add_command_result(
        self, device: str, payload: dict[str, Any], received: float | None = None
    ) -> None:
        """Store one ``edgesiam.cmd_result.v1`` payload from ``device``."""
        _device(device, "command result")
        verb = payload.get("verb")
        if not isinstance(verb, str) or not verb:
            raise InvalidPayload(f"command result from {device}: 'verb' must be a string")
        correlation = payload.get("correlation_id")
        error_code = payload.get("error_code")
        now = time.time() if received is None else received
        with self._write():
            self._execute(
                "INSERT INTO command_results "
                "(device, verb, correlation_id, ok, error_code, ts, received, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    device,
                    verb[:64],
                    correlation if isinstance(correlation, str) else None,
                    1 if payload.get("ok") is True else 0,
                    error_code if isinstance(error_code, str) else None,
                    _optional_number(payload, "ts"),
                    now,
                    _dumps(payload),
                ),
            )
            self._touch_later(device, now)

    def add_review(
        self,
        device: str,
        action: str,
        label: str,
        entry_id: str,
        by: str,
        result: Mapping[str, Any],
        ref: str | None = None,
    ) -> dict[str, Any]:
        """Record a review sent to a device (``wrong`` or ``this_was``): who, when, and the id of
        what the device stored (a rejected window or a template), so it can be undone."""
        _device(device, "review")
        now = time.time()
        with self._write():
            (n,) = self._execute(
                "INSERT INTO reviews (device, action, label, ref, entry_id, by, ts, result) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING n",
                (device, action, label, ref, entry_id, by, now, _dumps(result)),
            ).fetchone()
        found = self.review(int(n))
        assert found is not None
        return found

    def mark_undone(self, n: int, by: str) -> dict[str, Any] | None:
        """Note that review ``n`` was undone on its device (by whom, when)."""
        with self._write():
            self._execute(
                "UPDATE reviews SET undone_ts = ?, undone_by = ? WHERE n = ?", (time.time(), by, n)
            )
        return self.review(n)

    def purge(self, now: float | None = None) -> dict[str, int]:
        """Delete what was received before the retention window; the number of rows per table."""
        if self.retention_days is None:
            return {}
        cutoff = (time.time() if now is None else now) - self.retention_days * _DAY
        removed: dict[str, int] = {}
        with self._write():
            tables = [
                ("events", "received"),
                ("near_misses", "received"),
                ("command_results", "received"),
                ("devices", "last_seen"),
            ]
            if len(self.MIGRATIONS) >= 3:  # schema version 3 keeps replay requests
                tables.append(("replay_requests", "requested"))
            for table, column in tables:
                cur = self._execute(f"DELETE FROM {table} WHERE {column} < ?", (cutoff,))
                removed[table] = cur.rowcount
        return removed

    def claim_replay(
        self, device: str, from_seq: int, to_seq: int, *, retry_after_s: float, max_tries: int
    ) -> bool:
        """True if this process should ask ``device`` to replay ``from_seq``..``to_seq``: nobody
        asked yet, or the last ask is older than ``retry_after_s`` and fewer than ``max_tries``
        were made. One row per gap, shared by every ingester on the database, so a gap is asked
        for once however many ingesters see it."""
        now = time.time()
        with self._write():
            cur = self._execute(
                "INSERT INTO replay_requests (device, from_seq, to_seq, requested, tries) "
                "VALUES (?, ?, ?, ?, 1) ON CONFLICT (device, from_seq, to_seq) DO UPDATE "
                "SET requested = excluded.requested, tries = replay_requests.tries + 1 "
                "WHERE replay_requests.requested < ? AND replay_requests.tries < ?",
                (device, from_seq, to_seq, now, now - retry_after_s, max_tries),
            )
            return bool(cur.rowcount == 1)

    def replay_requests(self, device: str | None = None) -> list[dict[str, Any]]:
        """The replays asked for (``device``, ``from_seq``, ``to_seq``, ``requested``, ``tries``)."""
        where, args = ("WHERE device = ?", (device,)) if device is not None else ("", ())
        with self._lock:
            rows = self._execute(
                "SELECT device, from_seq, to_seq, requested, tries FROM replay_requests "
                f"{where} ORDER BY device, from_seq",
                args,
            ).fetchall()
        keys = ("device", "from_seq", "to_seq", "requested", "tries")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def transaction(self) -> _Transaction:
        """Group writes into one transaction (one commit, one fsync): ``with history.transaction():``.
        If anything inside fails, nothing of it is stored."""
        return _Transaction(self)

    # -- reads ------------------------------------------------------------------------------------

    def events(
        self, device: str | None = None, since_ts: float | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Stored event payloads (plus ``received_ts``), newest first: at most ``limit``, of one
        device or all, with ``ts >= since_ts``."""
        where, args = self._filter(device, since_ts)
        with self._lock:
            rows = self._execute(
                f"SELECT payload, received FROM events {where} ORDER BY ts DESC, seq DESC LIMIT ?",
                (*args, max(0, int(limit))),
            ).fetchall()
        return [_with_received(text, received) for text, received in rows]

    def seqs(self, device: str) -> list[int]:
        """Every stored ``seq`` of ``device``, ascending (gaps are missing events)."""
        with self._lock:
            rows = self._execute(
                "SELECT seq FROM events WHERE device = ? ORDER BY seq", (device,)
            ).fetchall()
        return [int(r[0]) for r in rows]

    def seq_gaps(self, device: str, after_seq: int = 0, limit: int = 100) -> list[tuple[int, int]]:
        """The runs of ``seq`` missing between stored events of ``device`` above ``after_seq``:
        ``(first, last)`` of each, ascending (what a replay should bring back)."""
        with self._lock:
            rows = self._execute(
                "SELECT prev + 1, seq - 1 FROM (SELECT seq, LAG(seq) OVER (ORDER BY seq) AS prev "
                "FROM events WHERE device = ? AND seq >= ?) AS t WHERE seq > prev + 1 "
                "ORDER BY seq LIMIT ?",
                (device, after_seq, max(0, int(limit))),
            ).fetchall()
        return [(int(a), int(b)) for a, b in rows]

    def recent_seq_spans(self, since_received: float) -> dict[str, tuple[int, int, int]]:
        """Per device, ``(lowest seq, highest seq, how many)`` of the events received since
        ``since_received``: a span with as many events as seqs has no gap (one cheap query for
        the whole fleet; :meth:`seq_gaps` then looks only where it does not add up)."""
        with self._lock:
            rows = self._execute(
                "SELECT device, MIN(seq), MAX(seq), COUNT(*) FROM events WHERE received >= ? "
                "GROUP BY device",
                (since_received,),
            ).fetchall()
        return {str(d): (int(lo), int(hi), int(n)) for d, lo, hi, n in rows}

    def near_misses(
        self, device: str | None = None, since_ts: float | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Stored near misses (plus ``received_ts``), newest first, filtered as :meth:`events`."""
        where, args = self._filter(device, since_ts)
        with self._lock:
            rows = self._execute(
                f"SELECT payload, received FROM near_misses {where} ORDER BY ts DESC, n DESC "
                "LIMIT ?",
                (*args, max(0, int(limit))),
            ).fetchall()
        return [_with_received(text, received) for text, received in rows]

    def timeline(
        self, device: str, since_ts: float | None = None, limit: int = 2000
    ) -> list[dict[str, Any]]:
        """The device's scores over time, oldest first: events (``kind: event``) and near misses
        (``kind: near_miss``), each ``{ts, kind, label, score, threshold}``; the newest ``limit``."""
        where, args = self._filter(device, since_ts)
        with self._lock:
            rows = self._execute(
                f"SELECT ts, kind, label, score, threshold FROM ("
                f"SELECT ts, 'event' AS kind, label, score, threshold FROM events {where} "
                f"UNION ALL SELECT ts, 'near_miss', label, score, threshold FROM near_misses "
                f"{where}) AS t ORDER BY ts DESC LIMIT ?",
                (*args, *args, max(0, int(limit))),
            ).fetchall()
        return [
            {"ts": ts, "kind": kind, "label": label, "score": score, "threshold": threshold}
            for ts, kind, label, score, threshold in reversed(rows)
        ]

    def devices(self) -> list[dict[str, Any]]:
        """Every device seen within the retention window, by id."""
        with self._lock:
            rows = self._execute(
                "SELECT d.device, d.status, d.status_changed, d.last_seen, d.model, d.labels, "
                "d.labels_received, d.metrics, d.metrics_received, d.thresholds, "
                "(SELECT COUNT(*) FROM events e WHERE e.device = d.device), "
                "(SELECT MAX(ts) FROM events e WHERE e.device = d.device) "
                "FROM devices d ORDER BY d.device"
            ).fetchall()
        return [self._device_row(row) for row in rows]

    def device(self, device: str) -> dict[str, Any] | None:
        """One device as :meth:`devices` gives it, or None."""
        return next((d for d in self.devices() if d["device"] == device), None)

    def command_results(
        self,
        device: str | None = None,
        *,
        correlation_id: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Stored command results (plus ``device`` and ``received_ts``), newest first."""
        clauses, args = [], []
        if device is not None:
            clauses.append("device = ?")
            args.append(device)
        if correlation_id is not None:
            clauses.append("correlation_id = ?")
            args.append(correlation_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._execute(
                f"SELECT device, payload, received FROM command_results {where} "
                "ORDER BY n DESC LIMIT ?",
                (*args, max(0, int(limit))),
            ).fetchall()
        out = []
        for dev, text, received in rows:
            row = _with_received(text, received)
            row["device"] = dev
            out.append(row)
        return out

    def reviews(self, device: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Reviews sent from the dashboard, newest first."""
        where, args = ("WHERE device = ?", (device,)) if device is not None else ("", ())
        with self._lock:
            rows = self._execute(
                f"SELECT {_REVIEW_COLUMNS} FROM reviews {where} ORDER BY n DESC LIMIT ?",
                (*args, max(0, int(limit))),
            ).fetchall()
        return [_review_row(row) for row in rows]

    def review(self, n: int) -> dict[str, Any] | None:
        """One review by its number, or None."""
        with self._lock:
            row = self._execute(
                f"SELECT {_REVIEW_COLUMNS} FROM reviews WHERE n = ?", (n,)
            ).fetchone()
        return None if row is None else _review_row(row)

    def near_miss_counts(self) -> dict[str, int]:
        """How many near misses are stored, per device."""
        with self._lock:
            rows = self._execute("SELECT device, COUNT(*) FROM near_misses GROUP BY device")
            return {str(device): int(n) for device, n in rows.fetchall()}

    def counts(self) -> dict[str, int]:
        """How many events, near misses, devices and command results are stored."""
        with self._lock:
            return {
                table: int(self._execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                for table in ("events", "near_misses", "devices", "command_results")
            }

    # -- internals --------------------------------------------------------------------------------

    def _write(self) -> _Transaction:
        return _Transaction(self)

    def _touch_later(self, device: str, now: float, model: str | None = None) -> None:
        """:meth:`_touch` (a sign of life) once per device per transaction, just before it
        commits, in device order: fewer writes for a burst, and concurrent writers (several
        ingesters on PostgreSQL) lock the devices' rows in one order, so never deadlock."""
        if (held := self._touches.get(device)) is not None:
            now, model = max(now, held[0]), model or held[1]
        self._touches[device] = (now, model)

    def _flush_touches(self) -> None:
        touches, self._touches = self._touches, {}
        for device in sorted(touches):
            now, model = touches[device]
            self._touch(device, now, model=model)

    def _touch(
        self, device: str, now: float, *, model: str | None = None, seen: bool = True
    ) -> None:
        """Create the device's row if needed; move ``last_seen`` forward; set the model if known."""
        self._execute(
            "INSERT INTO devices (device, last_seen) VALUES (?, ?) ON CONFLICT (device) DO "
            f"UPDATE SET last_seen = {self.DIALECT.greatest}(devices.last_seen, excluded.last_seen) "
            "WHERE ? = 1",
            (device, now, 1 if seen else 0),
        )
        if model:
            self._execute(
                "UPDATE devices SET model = ? WHERE device = ? AND model IS DISTINCT FROM ?",
                (model, device, model),
            )

    @staticmethod
    def _filter(device: str | None, since_ts: float | None) -> tuple[str, tuple[Any, ...]]:
        clauses: list[str] = []
        args: list[Any] = []
        if device is not None:
            clauses.append("device = ?")
            args.append(device)
        if since_ts is not None:
            clauses.append("ts >= ?")
            args.append(float(since_ts))
        return (f"WHERE {' AND '.join(clauses)}" if clauses else "", tuple(args))

    @staticmethod
    def _device_row(row: tuple[Any, ...]) -> dict[str, Any]:
        (device, status, changed, seen, model, labels, labels_at, metrics, metrics_at) = row[:9]
        thresholds, events, last_event_ts = row[9:]
        return {
            "device": device,
            "status": status or "unknown",
            "status_changed": changed,
            "last_seen": seen,
            "model": model,
            "labels": json.loads(labels) if labels else None,
            "labels_received": labels_at,
            "metrics": json.loads(metrics) if metrics else None,
            "metrics_received": metrics_at,
            "thresholds": json.loads(thresholds) if thresholds else None,
            "events": int(events),
            "last_event_ts": last_event_ts,
        }


class History(SqlHistory):
    """The dashboard's SQLite history (see the module docstring): the default.

    ``path`` is the database file (its folder is created); ``retention_days`` how long rows are
    kept (``None``: for ever); ``synchronous`` ``"full"`` (fsync each commit: survives a power cut)
    or ``"normal"`` (survives a crash of the process, not of the machine; faster).
    """

    DIALECT = SQLITE

    def __init__(
        self,
        path: Path,
        retention_days: float | None = 30.0,
        *,
        synchronous: Literal["full", "normal"] = "full",
    ) -> None:
        super().__init__(retention_days)
        self.path = Path(path)
        self.location = str(self.path.resolve())
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.execute("PRAGMA busy_timeout=30000")
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(f"{self.path}: cannot open the history database ({exc})") from None
        self._open()

    def driver_errors(self) -> tuple[type[Exception], ...]:
        return (sqlite3.Error,)

    def _tables(self) -> set[str]:
        rows = self._execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {str(r[0]) for r in rows}

    def _columns(self, table: str) -> set[str]:
        return {str(row[1]) for row in self._execute(f"PRAGMA table_info({table})")}


class _Transaction:
    """``BEGIN`` … ``COMMIT`` (or ``ROLLBACK``), driver errors as :class:`HistoryError`.

    Nested uses join the outermost transaction, which alone commits (or rolls everything back).
    """

    def __init__(self, history: SqlHistory) -> None:
        self._history = history

    def __enter__(self) -> None:
        h = self._history
        h._lock.acquire()
        if h._depth == 0:
            try:
                h._db.execute(h.DIALECT.begin)
            except h.driver_errors() as exc:
                h._lock.release()
                raise HistoryError(f"{h.location}: cannot write the history ({exc})") from None
        h._depth += 1

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        h = self._history
        h._depth -= 1
        try:
            if h._depth > 0:
                return  # the outermost transaction decides
            if kind is None:
                try:
                    h._flush_touches()
                    h._db.execute("COMMIT")
                    return
                except h.driver_errors() as error:
                    _rollback(h)
                    raise HistoryError(
                        f"{h.location}: cannot write the history ({error})"
                    ) from None
            h._touches.clear()
            _rollback(h)
            if isinstance(exc, h.driver_errors()):
                raise HistoryError(f"{h.location}: cannot write the history ({exc})") from None
        finally:
            h._lock.release()


def _rollback(history: SqlHistory) -> None:
    """Roll back, quietly when the connection is gone (the transaction is then void anyway)."""
    with contextlib.suppress(*history.driver_errors()):
        history._db.execute("ROLLBACK")
