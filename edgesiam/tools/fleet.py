"""The fleet benchmark: simulated devices → a real Mosquitto → the dashboard's ingester and history.

Each simulated device is one paho client (MQTT 5, its own client id, a retained ``online`` status
and an ``offline`` last will, like the runtime) that publishes ``edgesiam.event.v1`` events with
QoS 1 at a fixed rate, with ``id``/``seq`` made as the runtime makes them
(``<device>-<8 hex>-<seq>``, seq from 1). Devices are spread over a few processes (one per ~25
devices by default), each driving its clients from one pacing thread, so the publishers stay cheap
next to what is measured.

One :class:`~edgesiam.dashboard.ingest.Ingester` (persistent session, QoS 1, each event committed
to SQLite before its PUBACK) writes a fresh :class:`~edgesiam.dashboard.history.History`; or, with
a PostgreSQL history (``--history postgresql://…``), ``ingesters`` ingester processes share the
events through the MQTT 5 shared subscription ``$share/fleet/…`` and write one
:class:`~edgesiam.dashboard.history_pg.PostgresHistory`, as ``edgesiam dashboard --ingest-only
--share`` does. After
the publishers stop, the benchmark waits for the history to stop growing and reports: events
published and acknowledged by the broker, events stored, missing (published seqs absent from the
history: the goal is none), duplicates dropped, rates, publish → history latency and the
history's size on disk.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import random
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesiam.errors import ConfigError
from edgesiam.mqtt.client import make_client, paho, parse_broker_url
from edgesiam.mqtt.contract import event_builder, to_json

if TYPE_CHECKING:
    from edgesiam.dashboard.history import SqlHistory

__all__ = ["FleetSpec", "format_report", "run_fleet"]

PREFIX = "fleet-bench"
LABELS = ("alice", "bob", "carol", "door_knock")


@dataclass(frozen=True)
class FleetSpec:
    """What to simulate: ``devices`` devices, each publishing ``rate`` events/s for ``seconds``."""

    devices: int = 100
    rate: float = 5.0
    seconds: float = 60.0
    processes: int = 4
    prefix: str = PREFIX

    def check(self) -> None:
        if not 1 <= self.devices <= 10_000:
            raise ConfigError("--devices: 1 to 10000")
        if not 0 < self.rate <= 1000:
            raise ConfigError("--rate: events per second per device, above 0 and at most 1000")
        if not 0 < self.seconds <= 3600:
            raise ConfigError("--seconds: above 0 and at most 3600")
        if not 1 <= self.processes <= self.devices:
            raise ConfigError("--processes: 1 to the number of devices")

    @property
    def events_per_device(self) -> int:
        return max(1, round(self.rate * self.seconds))


# ------------------------------------------------------------------------------------------------
# a private Mosquitto


class _Mosquitto:
    """A throwaway Mosquitto on a free localhost port (no persistence: one run only)."""

    def __init__(self, folder: Path) -> None:
        exe = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if exe is None:
            raise ConfigError(
                "fleet-bench starts its own Mosquitto, which is not installed "
                "(apt-get install mosquitto), or give --broker mqtt://host:port"
            )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        config = folder / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "max_queued_messages 1000000",
            "max_inflight_messages 100",
            "persistence false",
            "log_type error",
            f"log_dest file {folder / 'mosquitto.log'}",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        config.write_text("\n".join(lines) + "\n")
        self.process = subprocess.Popen(
            [exe, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigError(f"mosquitto exited at once (see {folder / 'mosquitto.log'})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise ConfigError("mosquitto did not start listening within 15 s")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ------------------------------------------------------------------------------------------------
# the simulated devices (one process per group)


def _event(device: str, outbox_id: str, seq: int, rng: random.Random) -> str:
    """One simulated match event, built as the device builds it (``edgesiam.event.v1``)."""
    label = LABELS[seq % len(LABELS)]
    build = event_builder(
        device=device,
        model="fleet-sim",
        label=label,
        score=0.55 + 0.4 * rng.random(),
        threshold=0.6,
        offset_s=seq / 5.0,
    )
    return to_json(build(seq, f"{device}-{outbox_id}-{seq}"))


def _devices_process(
    names: list[str],
    host: str,
    port: int,
    prefix: str,
    rate: float,
    count: int,
    go: Any,
    results: Any,
) -> None:
    """One publisher process: connect every device, wait for ``go``, publish, report."""
    rng = random.Random(os.getpid())
    clients = _connect_devices(names, host, port, prefix)
    if clients is None:
        results.put({"error": "some simulated devices could not connect within 60 s"})
        return
    for name, client in clients.items():
        client.publish(f"{prefix}/{name}/status", "online", qos=1, retain=True)
    results.put({"ready": len(names)})
    go.wait()
    outbox = {name: secrets.token_hex(4) for name in names}
    infos: list[Any] = []
    started = time.time()
    late = 0
    for k in range(count):
        target = started + k / rate
        delay = target - time.time()
        if delay > 0:
            time.sleep(delay)
        elif delay < -0.5:
            late += 1
        for name, client in clients.items():
            topic = f"{prefix}/{name}/event"
            infos.append(client.publish(topic, _event(name, outbox[name], k + 1, rng), qos=1))
    published_at = time.time()
    acked = _acknowledged(infos)
    acked_at = time.time()
    for name, client in clients.items():
        client.publish(f"{prefix}/{name}/status", "offline", qos=1, retain=True).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()
    results.put(
        {
            "published": len(infos),
            "acked": acked,
            "started": started,
            "published_at": published_at,
            "acked_at": acked_at,
            "late_ticks": late,
            "devices": {name: count for name in names},
        }
    )


def _connect_devices(names: list[str], host: str, port: int, prefix: str) -> dict[str, Any] | None:
    """One started paho client per device (an ``offline`` last will, like the runtime's); None
    when some do not connect within 60 s."""
    clients: dict[str, Any] = {}
    connected = {name: threading.Event() for name in names}
    for name in names:
        client = make_client(f"fleet-{name}", extra="dashboard")
        client.will_set(f"{prefix}/{name}/status", "offline", qos=1, retain=True)
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        client.on_connect = lambda c, u, f, rc, p, ev=connected[name]: (
            ev.set() if not rc.is_failure else None
        )
        client.connect_async(host, port, keepalive=60)
        client.loop_start()
        clients[name] = client
    if not all(connected[name].wait(60) for name in names):
        return None
    return clients


def _acknowledged(infos: list[Any]) -> int:
    """How many of the publishes the broker acknowledged, waiting at most 120 s for them all."""
    deadline = time.monotonic() + 120
    for info in infos:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        with contextlib.suppress(RuntimeError, ValueError):  # not sent: counted below
            info.wait_for_publish(remaining)
    return sum(1 for info in infos if info.is_published())


# ------------------------------------------------------------------------------------------------
# the ingesters


class _LocalIngest:
    """One ingester in this process, on the history the benchmark reads."""

    def __init__(self, broker: str, history: SqlHistory, prefix: str) -> None:
        from edgesiam.dashboard.ingest import Ingester

        self.ingester = Ingester(
            broker,
            history,
            prefix=prefix,
            client_id=f"edgesiam-fleet-dashboard-{secrets.token_hex(4)}",
            session_expiry_s=600,
        )
        self.ingester.start()
        if not self.ingester.wait_connected(30):
            raise ConfigError(f"the dashboard ingester could not connect to {broker}")

    def stop(self) -> dict[str, int]:
        self.ingester.stop()
        return dict(vars(self.ingester.counters))


def _ingest_process(
    broker: str, url: str, prefix: str, client_id: str, stop: Any, results: Any
) -> None:
    """One ``--ingest-only --share fleet`` ingester in its own process; reports its counters."""
    from edgesiam.dashboard.history_pg import PostgresHistory
    from edgesiam.dashboard.ingest import Ingester

    history = PostgresHistory(url, retention_days=None)
    ingester = Ingester(
        broker, history, prefix=prefix, client_id=client_id, session_expiry_s=600, share="fleet"
    )
    ingester.start()
    results.put({"connected": ingester.wait_connected(30)})
    stop.wait()
    ingester.stop()
    history.close()
    results.put(dict(vars(ingester.counters)))


class _SharedIngest:
    """``count`` ingester processes sharing the events (PostgreSQL history)."""

    def __init__(self, broker: str, url: str, prefix: str, count: int) -> None:
        ctx = mp.get_context("spawn")
        self.stop_event = ctx.Event()
        self.results: Any = ctx.Queue()
        run = secrets.token_hex(4)
        ids = [f"edgesiam-fleet-ingest-{run}-{n}" for n in range(count)]
        args = [(broker, url, prefix, i, self.stop_event, self.results) for i in ids]
        self.processes = [ctx.Process(target=_ingest_process, args=a, daemon=True) for a in args]
        for proc in self.processes:
            proc.start()
        for _ in self.processes:
            if not self.results.get(timeout=120)["connected"]:
                self.stop()
                raise ConfigError(f"an ingester could not connect to {broker}")

    def stop(self) -> dict[str, int]:
        self.stop_event.set()
        totals: dict[str, int] = {}
        for _ in self.processes:
            with contextlib.suppress(Exception):
                for key, value in self.results.get(timeout=60).items():
                    totals[key] = totals.get(key, 0) + int(value)
        for proc in self.processes:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
        return totals


def _open_history(target: str | None, folder: Path) -> SqlHistory:
    from edgesiam.dashboard.history import History
    from edgesiam.dashboard.history_pg import PostgresHistory, is_postgres_url

    if target is not None and is_postgres_url(target):
        return PostgresHistory(target, retention_days=None)
    db = Path(target) if target is not None else folder / "fleet-history.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return History(db, retention_days=None)


def _history_bytes(history: SqlHistory) -> int:
    from edgesiam.dashboard.history import History

    if isinstance(history, History):
        files = (Path(f"{history.path}{suffix}") for suffix in ("", "-wal"))
        return sum(f.stat().st_size for f in files if f.exists())
    (size,) = history._execute("SELECT pg_database_size(current_database())").fetchone()
    return int(size)


# ------------------------------------------------------------------------------------------------
# the run


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def run_fleet(
    spec: FleetSpec,
    *,
    broker: str | None = None,
    data_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    drain_timeout_s: float = 60.0,
    history_target: str | None = None,
    ingesters: int = 1,
) -> dict[str, Any]:
    """Run the benchmark and return its figures (see :func:`format_report`).

    ``history_target``: a SQLite file or ``postgresql://…`` (default: a fresh SQLite file under
    ``data_dir``); ``ingesters`` > 1 needs PostgreSQL (they share it and the events)."""
    spec.check()
    shared = _shared_history(history_target, ingesters)
    paho("dashboard")  # a missing extra is said here, not in each publisher process

    say = progress or (lambda _line: None)
    run = _Run(spec, ingesters, shared, Path(tempfile.mkdtemp(prefix="edgesiam-fleet-")))
    try:
        run.start_broker(broker, say)
        address = parse_broker_url(run.broker)
        folder = Path(data_dir) if data_dir is not None else run.scratch / "history"
        folder.mkdir(parents=True, exist_ok=True)
        history = run.history = _open_history(history_target, folder)
        baseline = history.counts()["events"]
        if shared and history_target is not None:
            run.ingest = _SharedIngest(run.broker, history_target, spec.prefix, ingesters)
        else:
            run.ingest = _LocalIngest(run.broker, history, spec.prefix)
        run_id = secrets.token_hex(3)
        names = [f"sim{run_id}-{i:04d}" for i in range(spec.devices)]
        published = _publish(run, address.host, address.port, names, say)
        say(
            f"fleet-bench: {published.published} published, {published.acked} acknowledged; "
            "waiting for the history"
        )
        stored = _collect_history(
            history, baseline, names, spec.events_per_device, published.published, drain_timeout_s
        )
        counters = run.ingest.stop()
        run.ingest = None
        offline = _offline(history, set(names))
        return _report(run, published, stored, counters, offline, history.location)
    finally:
        run.close()


def _shared_history(history_target: str | None, ingesters: int) -> bool:
    """Whether the history is PostgreSQL, which several ingesters can share."""
    from edgesiam.dashboard.history_pg import is_postgres_url

    shared = history_target is not None and is_postgres_url(history_target)
    if not 1 <= ingesters <= 64 or (ingesters > 1 and not shared):
        raise ConfigError("--ingesters: 1 to 64; more than one needs --history postgresql://…")
    return shared


@dataclass
class _Run:
    """One benchmark run: what it simulates, and what it starts and must stop whatever happens
    (the scratch folder, a private broker, the history, the ingesters, the publishers)."""

    spec: FleetSpec
    ingesters: int
    shared: bool
    scratch: Path
    broker: str = ""
    mosquitto: _Mosquitto | None = None
    history: SqlHistory | None = None
    ingest: _LocalIngest | _SharedIngest | None = None
    processes: list[Any] = field(default_factory=list)

    def start_broker(self, broker: str | None, say: Callable[[str], None]) -> None:
        """Use ``broker``, else a private Mosquitto."""
        if broker is None:
            self.mosquitto = _Mosquitto(self.scratch)
            broker = self.mosquitto.url
            say(f"fleet-bench: Mosquitto on {broker}")
        self.broker = broker

    def close(self) -> None:
        for proc in self.processes:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
        if self.ingest is not None:
            self.ingest.stop()
        if self.history is not None:
            self.history.close()
        if self.mosquitto is not None:
            self.mosquitto.stop()
        shutil.rmtree(self.scratch, ignore_errors=True)  # the history stays when data_dir was given


@dataclass(frozen=True)
class _Published:
    """What the publisher processes reported, summed over them."""

    published: int
    acked: int
    started: float
    published_at: float
    late_ticks: int

    @classmethod
    def of(cls, reports: list[dict[str, Any]]) -> _Published:
        return cls(
            published=sum(r["published"] for r in reports),
            acked=sum(r["acked"] for r in reports),
            started=min(r["started"] for r in reports),
            published_at=max(r["published_at"] for r in reports),
            late_ticks=sum(r["late_ticks"] for r in reports),
        )


def _publish(
    run: _Run, host: str, port: int, names: list[str], say: Callable[[str], None]
) -> _Published:
    """Start the publisher processes, let them all go at once when every device is connected, and
    sum what they report."""
    spec = run.spec
    groups = [names[i :: spec.processes] for i in range(spec.processes)]
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    results: Any = ctx.Queue()
    for group in groups:
        args = (group, host, port, spec.prefix, spec.rate, spec.events_per_device, go, results)
        proc = ctx.Process(target=_devices_process, args=args, daemon=True)
        proc.start()
        run.processes.append(proc)
    _messages(results, len(groups), timeout_s=120)
    say(
        f"fleet-bench: {spec.devices} devices connected in {len(groups)} processes; "
        f"publishing {spec.rate:g} events/s each for {spec.seconds:g} s"
    )
    go.set()
    return _Published.of(_messages(results, len(groups), timeout_s=spec.seconds + 300))


def _messages(results: Any, count: int, timeout_s: float) -> list[dict[str, Any]]:
    """``count`` messages of the publisher processes; one that reports an error ends the run."""
    messages: list[dict[str, Any]] = []
    while len(messages) < count:
        message = results.get(timeout=timeout_s)
        if "error" in message:
            raise ConfigError(f"fleet-bench: {message['error']}")
        messages.append(message)
    return messages


@dataclass(frozen=True)
class _Stored:
    """What the history holds of the run's devices once it has stopped growing."""

    events: int
    missing: int
    latencies: list[float]
    received: list[float]
    drained_at: float
    bytes: int


def _collect_history(
    history: SqlHistory,
    baseline: int,
    names: list[str],
    count: int,
    published: int,
    drain_timeout_s: float,
) -> _Stored:
    """Wait for the history to drain and the devices' retained ``offline``, then read it (each
    device published seqs 1 to ``count``)."""
    drained_at = _drain(history, baseline, published, drain_timeout_s)
    wanted = set(names)
    deadline = time.monotonic() + 10  # the devices' own 'offline' follows their last event
    while _offline(history, wanted) < len(names) and time.monotonic() < deadline:
        time.sleep(0.1)
    missing = 0
    for name in names:
        have = set(history.seqs(name))
        missing += sum(1 for seq in range(1, count + 1) if seq not in have)
    events = history.events(limit=published + 10)
    latencies = sorted(
        (e["received_ts"] - e["ts"]) * 1000.0
        for e in events
        if isinstance(e.get("ts"), int | float)
    )
    events = [e for e in events if e.get("device") in wanted]
    received = sorted(e["received_ts"] for e in events)
    return _Stored(len(events), missing, latencies, received, drained_at, _history_bytes(history))


def _drain(history: SqlHistory, baseline: int, published: int, timeout_s: float) -> float:
    """Wait until every published event is stored, or the history stops growing for
    ``timeout_s``; the time it ended."""
    last, last_change = -1, time.monotonic()
    while True:
        stored = history.counts()["events"] - baseline
        if stored >= published:
            break
        if stored != last:
            last, last_change = stored, time.monotonic()
        elif time.monotonic() - last_change > timeout_s:
            break
        time.sleep(0.2)
    return time.time()


def _offline(history: SqlHistory, wanted: set[str]) -> int:
    """How many of the run's devices the history shows offline."""
    return sum(1 for d in history.devices() if d["device"] in wanted and d["status"] == "offline")


def _report(
    run: _Run,
    published: _Published,
    stored: _Stored,
    counters: dict[str, int],
    offline: int,
    location: str,
) -> dict[str, Any]:
    """The figures :func:`format_report` prints."""
    spec, received, latencies = run.spec, stored.received, stored.latencies
    publish_span = max(published.published_at - published.started, 1e-9)
    ingest_span = max((received[-1] - received[0]) if len(received) > 1 else 0.0, 1e-9)
    return {
        "spec": asdict(spec),
        "broker": run.broker,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "expected": spec.devices * spec.events_per_device,
        "published": published.published,
        "acked_by_broker": published.acked,
        "stored": stored.events,
        "missing": stored.missing,
        "ingesters": run.ingesters,
        "history_backend": "postgresql" if run.shared else "sqlite",
        "duplicates_dropped": counters.get("duplicates", 0),
        "invalid": counters.get("invalid", 0),
        "storage_errors": counters.get("storage_errors", 0),
        "publish_seconds": round(publish_span, 3),
        "published_per_s": round(published.published / publish_span, 1),
        "ingested_per_s": round(len(received) / ingest_span, 1) if received else 0.0,
        "drain_seconds_after_publish": round(stored.drained_at - published.published_at, 3),
        "latency_ms_p50": _round(_percentile(latencies, 50)),
        "latency_ms_p95": _round(_percentile(latencies, 95)),
        "latency_ms_max": _round(latencies[-1] if latencies else None),
        "late_ticks": published.late_ticks,
        "devices_offline_at_end": offline,
        "history_bytes": stored.bytes,
        "history": location,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def format_report(report: dict[str, Any]) -> str:
    """The figures as a few readable lines."""
    spec = report["spec"]
    return "\n".join(
        [
            f"fleet: {spec['devices']} devices × {spec['rate']:g} events/s × {spec['seconds']:g} s "
            f"({spec['processes']} publisher processes, {report['ingesters']} ingester(s) on "
            f"{report['history_backend']}, {report['cpu_count']} CPUs, "
            f"load {report['load_avg_1m']:.2f})",
            f"published        {report['published']} events ({report['published_per_s']:.1f}/s), "
            f"{report['acked_by_broker']} acknowledged by the broker",
            f"stored           {report['stored']} events ({report['ingested_per_s']:.1f}/s ingested)",
            f"missing          {report['missing']}",
            f"duplicates       {report['duplicates_dropped']} dropped by id",
            f"latency          publish → history p50 {report['latency_ms_p50']} ms, "
            f"p95 {report['latency_ms_p95']} ms, max {report['latency_ms_max']} ms",
            f"history          {report['history_bytes'] / 1e6:.2f} MB "
            f"(drained {report['drain_seconds_after_publish']:.2f} s after the last publish)",
            f"devices offline  {report['devices_offline_at_end']} of {spec['devices']} at the end "
            "(their retained status)",
        ]
    )
