"""The dashboard's MQTT client: every device's messages into the :class:`History`, and commands out.

Subscribed (QoS 1), under the devices' topic prefix: ``+/event``, ``+/status``, ``+/near_miss``,
``+/metrics``, ``+/cmd/+/result``; and Home Assistant's ``<ha>/event/+/edgesiam_match/config``
(the retained discovery config names each device's enrolled labels and model). With ``share``
the events, near misses, metrics and command results come through ``$share/<group>/…`` (MQTT 5
shared subscriptions: several ingesters split them); statuses and discovery configs are
retained, which a shared subscription does not receive, and storing them twice is harmless, so
every ingester takes them.

Nothing acknowledged is lost:

- The session is persistent: a fixed client id (derived from the history's path unless given),
  MQTT 5 ``clean_start=False`` with a session expiry (7 days by default), so the broker queues
  QoS 1 events while the dashboard is stopped or the connection is down, and a restart of either
  side resumes the same session.
- Messages are acknowledged by hand: an event's PUBACK is sent only after it is committed to
  SQLite. The network thread hands messages to one writer thread, which stores what has arrived
  in one transaction (one fsync for a burst, one message at a time when it is quiet), then sends
  their PUBACKs in arrival order. If the history cannot be written (disk full), the message is
  left unacknowledged and the broker sends it again on the next connection.
- Duplicates (an event sent again after a lost PUBACK) are dropped by the history on their ``id``.
- Gaps in a device's ``seq`` (a broker that crashed after acknowledging) are asked back from the
  device with ``cmd/replay`` (:mod:`edgesiam.dashboard.gaps`).

:meth:`Ingester.command` publishes ``<prefix>/<device>/cmd/<verb>`` with a fresh
``correlation_id`` and waits (bounded) for the matching ``…/cmd/<verb>/result``.

The password is handed to paho and never logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from edgesiam.dashboard.gaps import DEFAULT_REPLAY, GapWatcher, ReplayPolicy
from edgesiam.dashboard.history import DEVICE_ID, SqlHistory
from edgesiam.errors import CommandFailed, EdgesiamError, HistoryError, InvalidPayload
from edgesiam.mqtt.client import (
    MqttSettings,
    MqttVersion,
    connect_failed,
    connect_persistent,
    make_client,
    paho_logger,
)
from edgesiam.mqtt.contract import VERBS

__all__ = [
    "CommandFailed",
    "IngestCounters",
    "Ingester",
    "UpdateCallback",
    "default_client_id",
]

log = logging.getLogger(__name__)

UpdateCallback = Callable[[str, dict[str, Any]], None]
"""``(kind, data)`` after something was stored: kind is ``event``, ``near_miss``, ``status``,
``metrics``, ``labels``, ``command_result`` or ``broker`` (the dashboard's own connection)."""


def _count(help: str | None = None) -> Any:
    """A counter from 0; one with a ``help`` text is also a Prometheus counter on ``/metrics``."""
    return field(default=0, metadata={"help": help} if help else {})


@dataclass
class IngestCounters:
    """What the ingester has seen since it started (shown by the dashboard's ``/api/stats``)."""

    messages: int = _count("MQTT messages this ingester received")
    events_new: int = _count("events it stored")
    duplicates: int = _count("events it dropped as already held")
    invalid: int = _count("messages it dropped as malformed")
    storage_errors: int = _count()
    connects: int = _count()


def default_client_id(history: str | Path) -> str:
    """The fixed client id of a dashboard whose history is ``history`` (a file, or the history's
    :attr:`~edgesiam.dashboard.history.SqlHistory.location`): stable across restarts (the
    persistent session) and distinct for two dashboards with different data."""
    key = str(history.resolve()) if isinstance(history, Path) else history
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return f"edgesiam-dashboard-{digest}"


def _labels_of(result: Any) -> list[str] | None:
    """The label list in a ``list``/``forget``/``enroll`` result, if it has one."""
    if not isinstance(result, dict) or not isinstance(result.get("labels"), list):
        return None
    out = []
    for item in result["labels"]:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and isinstance(item.get("label"), str):
            out.append(item["label"])
    return out


def _thresholds_of(result: Any) -> tuple[float | None, dict[str, float]] | None:
    """The default and per-label thresholds in a ``list``/``threshold`` result, if it has them."""
    if not isinstance(result, dict) or not isinstance(result.get("labels"), list):
        return None
    per_label = {
        item["label"]: float(item["threshold"])
        for item in result["labels"]
        if isinstance(item, dict)
        and isinstance(item.get("label"), str)
        and isinstance(item.get("threshold"), int | float)
        and not isinstance(item.get("threshold"), bool)
    }
    default = result.get("default_threshold")
    if not per_label and not isinstance(default, int | float):
        return None
    return (float(default) if isinstance(default, int | float) else None), per_label


@dataclass(frozen=True)
class _Inbound:
    """A message from the network thread, waiting to be stored and acknowledged."""

    client: Any
    topic: str
    payload: bytes
    retained: bool
    mid: int
    qos: int


class _Waiter:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: dict[str, Any] | None = None


class Ingester:
    """Writes what devices publish into ``history`` and sends them commands (module docstring).

    ``broker`` is ``mqtt[s]://[user@]host[:port]``; ``password`` the already resolved password
    (refused over plain ``mqtt://`` unless ``allow_plaintext_password``); ``tls_*`` as for the
    device (:class:`~edgesiam.mqtt.client.BrokerOptions`). ``on_update`` is called on the
    network thread after each stored message: it must be quick and must not raise.

    ``share``: take the devices' events, near misses, metrics and command results through the
    MQTT 5 shared subscription ``$share/<share>/…``, so that several ingesters (each with its own
    ``client_id``) split them; statuses and Home Assistant configs (retained, and idempotent to
    store) are subscribed by each. ``store=False``: a ``--serve-only`` page's connection, which
    only sends commands and takes their results (the ingesters store everything). ``replay``:
    when to ask a device to resend the events missing from the history (None: never).
    """

    def __init__(
        self,
        broker: str,
        history: SqlHistory,
        *,
        prefix: str = "edgesiam",
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls_ca: Path | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        tls_insecure: bool = False,
        allow_plaintext_password: bool = False,
        protocol: Literal["5", "3.1.1"] = "5",
        ha_prefix: str = "homeassistant",
        keepalive: int = 30,
        session_expiry_s: int = 7 * 24 * 3600,
        reconnect_max_s: int = 30,
        on_update: UpdateCallback | None = None,
        max_batch: int = 500,
        share: str | None = None,
        store: bool = True,
        replay: ReplayPolicy | None = DEFAULT_REPLAY,
    ) -> None:
        if share is not None and (not share or any(c in share for c in "/+#")):
            raise EdgesiamError(f"share group {share!r}: a non-empty name without / + #")
        self.history = history
        self.share = share
        self.store = store
        self.settings = MqttSettings.from_dict(
            {
                "url": broker,
                "device_id": "dashboard",
                "prefix": prefix,
                "ha_prefix": ha_prefix,
                "protocol": protocol,
                "client_id": client_id or default_client_id(history.location),
                "username": username,
                "password": SecretStr(password) if password is not None else None,
                "allow_plaintext_password": allow_plaintext_password,
                "tls_ca": tls_ca,
                "tls_cert": tls_cert,
                "tls_key": tls_key,
                "tls_insecure": tls_insecure,
                "keepalive": keepalive,
                "session_expiry_s": session_expiry_s,
                "reconnect_max_s": max(1, reconnect_max_s),
            },
            source="dashboard broker settings",
        )
        self.prefix = prefix
        self.ha_prefix = ha_prefix
        self.on_update = on_update
        self.connected = threading.Event()
        self.counters = IngestCounters()
        self.last_error: str | None = None
        self._client: Any = None
        self._waiters: dict[str, _Waiter] = {}
        self._waiters_lock = threading.Lock()
        self._last_refusal: str | None = None
        self._failures = 0
        self._inbox: queue.Queue[_Inbound | None] = queue.Queue(maxsize=max_batch * 20)
        self._max_batch = max_batch
        self._writer: threading.Thread | None = None
        self.gaps = (
            GapWatcher(history, self.request_replay, replay)
            if replay is not None and store
            else None
        )

    @property
    def client_id(self) -> str:
        return self.settings.effective_client_id

    @property
    def broker_url(self) -> str:
        return self.settings.url

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retried with backoff); messages flow once connected."""
        if self._client is not None:
            return
        s = self.settings
        version: MqttVersion = "5" if s.protocol == "5" else "3.1.1"
        paho_log = paho_logger(f"{__name__}.paho")
        client = make_client(
            s.effective_client_id,
            protocol=version,
            settings=s,
            persistent=True,
            manual_ack=True,
            logger=paho_log,
            extra="dashboard",
        )
        client.max_queued_messages_set(1000)
        address = s.address
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        log.info(
            "dashboard: connecting to %s:%d as %s (client id %s, TLS %s)",
            address.host,
            address.port,
            s.effective_username or "anonymous",
            s.effective_client_id,
            "on" if address.tls else "off",
        )
        self._client = client
        self._writer = threading.Thread(
            target=self._write_loop, name="dashboard-writer", daemon=True
        )
        self._writer.start()
        if self.gaps is not None:
            self.gaps.start()
        connect_persistent(client, s, version)

    def stop(self) -> None:
        """Disconnect; the broker keeps the session (and queues events) until it expires."""
        client = self._client
        if client is None:
            return
        self._client = None
        if self.gaps is not None:
            self.gaps.stop()
        client.disconnect()
        client.loop_stop()
        self.connected.clear()
        self._inbox.put(None)  # what is queued is stored (not acknowledged: the session has it)
        if self._writer is not None:
            self._writer.join(timeout=30)
            self._writer = None
        with self._waiters_lock:
            for waiter in self._waiters.values():
                waiter.done.set()

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    # -- commands ---------------------------------------------------------------------------------

    def command(
        self, device: str, verb: str, request: dict[str, Any], timeout: float = 15.0
    ) -> dict[str, Any]:
        """Send ``verb`` to ``device`` and return its result (``edgesiam.cmd_result.v1``).

        A fresh ``correlation_id`` replaces any in ``request``. Raises :class:`CommandFailed`
        (``code`` ``offline``: the dashboard is not connected to the broker; ``timeout``: no
        result within ``timeout`` seconds, e.g. the device is off; the command stays queued in
        the device's session and runs when it is back).
        """
        if not DEVICE_ID.match(device):
            raise CommandFailed(f"device {device!r}: not a device id", "invalid")
        if verb not in VERBS:
            raise CommandFailed(f"unknown command {verb!r}; one of {', '.join(VERBS)}", "invalid")
        client = self._client
        if client is None or not self.connected.is_set():
            raise CommandFailed("the dashboard is not connected to the MQTT broker", "offline")
        correlation = f"dash-{uuid.uuid4().hex[:16]}"
        payload = {**request, "correlation_id": correlation}
        waiter = _Waiter()
        with self._waiters_lock:
            self._waiters[correlation] = waiter
        try:
            info = client.publish(f"{self.prefix}/{device}/cmd/{verb}", json.dumps(payload), qos=1)
            if info.rc != 0:
                raise CommandFailed(f"the command could not be sent (paho rc {info.rc})", "offline")
            if not waiter.done.wait(timeout) or waiter.result is None:
                raise CommandFailed(
                    f"no result from {device} within {timeout:g} s (is it online?); the command "
                    "stays queued for it",
                    "timeout",
                )
            return waiter.result
        finally:
            with self._waiters_lock:
                self._waiters.pop(correlation, None)

    def request_replay(self, device: str, from_seq: int, to_seq: int) -> bool:
        """Ask ``device`` to publish its events ``from_seq``..``to_seq`` again (``cmd/replay``);
        the answer is stored as a command result, the events as events. False if not sent."""
        client = self._client
        if client is None or not self.connected.is_set():
            return False
        request = {
            "from_seq": from_seq,
            "to_seq": to_seq,
            "correlation_id": f"replay-{uuid.uuid4().hex[:12]}",
        }
        info = client.publish(f"{self.prefix}/{device}/cmd/replay", json.dumps(request), qos=1)
        log.info("dashboard: asked %s to replay seq %d-%d", device, from_seq, to_seq)
        return bool(info.rc == 0)

    # -- paho callbacks (network thread) ----------------------------------------------------------

    def _filters(self) -> list[tuple[str, int]]:
        p = self.prefix
        shared = f"$share/{self.share}/" if self.share and self.store else ""
        return [
            (f"{shared}{p}/+/event", 1),
            (f"{p}/+/status", 1),  # retained: a shared subscription would not receive it
            (f"{shared}{p}/+/near_miss", 1),
            (f"{shared}{p}/+/metrics", 1),
            (f"{shared}{p}/+/cmd/+/result", 1),
            (f"{self.ha_prefix}/event/+/edgesiam_match/config", 1),
        ]

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._failures += 1
        self.last_error = connect_failed(self.settings, self._failures, log, "dashboard")
        self._notify("broker", {"connected": False, "last_error": self.last_error})

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            reason = str(reason_code)
            if reason != self._last_refusal:
                log.error("dashboard: the broker refused the connection: %s", reason)
                self._last_refusal = reason
            self.last_error = f"broker refused the connection: {reason}"
            return
        self._last_refusal = None
        self.last_error = None
        self._failures = 0
        self.counters.connects += 1
        log.info(
            "dashboard: connected to the broker (session %s)",
            "resumed" if flags.session_present else "new",
        )
        client.subscribe(self._filters())
        self.connected.set()
        self._notify("broker", {"connected": True})

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if was and self._client is not None:
            self.last_error = f"disconnected ({reason_code})"
            log.warning("dashboard: %s from the broker; reconnecting", self.last_error)
        self._notify("broker", {"connected": False, "last_error": self.last_error})

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.counters.messages += 1
        # blocks when the writer is far behind: TCP back-pressure instead of unbounded memory
        self._inbox.put(
            _Inbound(
                client,
                message.topic,
                bytes(message.payload),
                bool(message.retain),
                message.mid,
                message.qos,
            )
        )

    # -- the writer thread ------------------------------------------------------------------------

    def _write_loop(self) -> None:
        """Store what has arrived in one transaction, then acknowledge it, in arrival order."""
        while True:
            first = self._inbox.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._write_batch(batch)
            if stop:
                return

    def _write_batch(self, batch: list[_Inbound]) -> None:
        updates: list[tuple[str, dict[str, Any]]] = []
        stored: list[_Inbound] = []
        if not self.store:
            self._relay_only(batch)
            return
        # by device (stable: each device's own order kept), so that concurrent ingesters lock
        # the devices' rows in one order and never deadlock; acknowledged in arrival order below
        batch_by_device = sorted(batch, key=self._device_of)
        try:
            with self.history.transaction():
                for item in batch_by_device:
                    if self._store_one(item, updates):
                        stored.append(item)
        except HistoryError:
            # one at a time, so that only what cannot be written stays unacknowledged
            updates, stored = [], []
            for item in batch_by_device:
                try:
                    with self.history.transaction():
                        if self._store_one(item, updates):
                            stored.append(item)
                except HistoryError as exc:
                    self.counters.storage_errors += 1
                    self.last_error = str(exc)
                    log.error("dashboard: %s; the message will be delivered again", exc)
        done = {id(item) for item in stored}
        for item in batch:
            if id(item) in done and item.qos > 0 and item.client is self._client:
                item.client.ack(item.mid, item.qos)
        for kind, data in updates:
            self._notify(kind, data)
        for kind, data in updates:
            if kind == "command_result":
                self._wake_waiter(data)

    def _relay_only(self, batch: list[_Inbound]) -> None:
        """A serve-only connection: the live page hears what arrives (the ingesters store it),
        and whoever waits for a command result is woken."""
        now = time.time()
        for item in batch:
            device = self._device_of(item)
            kind = item.topic.rpartition("/")[2]
            if item.topic.startswith(f"{self.prefix}/") and DEVICE_ID.match(device):
                with contextlib.suppress(ValueError, RecursionError, TypeError):
                    self._relay(kind, device, item.payload, now)
            if item.qos > 0 and item.client is self._client:
                item.client.ack(item.mid, item.qos)

    def _relay(self, kind: str, device: str, payload: bytes, now: float) -> None:
        if kind == "status":
            status = payload.decode("utf-8", "replace").strip()
            self._notify("status", {"device": device, "status": status, "ts": now})
            return
        data = self._json(payload)
        if kind in ("event", "near_miss"):
            self._notify(kind, {**data, "device": device, "received_ts": now})
        elif kind == "metrics":
            self._notify("metrics", {"device": device, "metrics": data, "received_ts": now})
        elif kind == "result":
            self._notify("command_result", {**data, "device": device, "received_ts": now})
            self._wake_waiter(data)

    def _device_of(self, item: _Inbound) -> str:
        for head in (f"{self.prefix}/", f"{self.ha_prefix}/event/"):
            if item.topic.startswith(head):
                return item.topic[len(head) :].partition("/")[0]
        return ""

    def _store_one(self, item: _Inbound, updates: list[tuple[str, dict[str, Any]]]) -> bool:
        """Store one message (inside the batch's transaction); False if it must not be acked."""
        try:
            self._store(item.topic, item.payload, item.retained, updates)
        except HistoryError:
            raise
        except self.history.driver_errors() as exc:  # the transaction is void: not acknowledged
            raise HistoryError(f"{self.history.location}: cannot write ({exc})") from None
        except (InvalidPayload, ValueError, TypeError, RecursionError) as exc:
            self.counters.invalid += 1
            log.warning("dashboard: dropped a message on %s: %s", item.topic, exc)
        except Exception:  # a bug must not stop the writer; the message is dropped
            self.counters.invalid += 1
            log.exception("dashboard: could not handle a message on %s", item.topic)
        return True

    # -- dispatch ---------------------------------------------------------------------------------

    def _store(
        self,
        topic: str,
        payload: bytes,
        retained: bool,
        updates: list[tuple[str, dict[str, Any]]],
    ) -> None:
        """Write one message to the history; what the page should hear goes to ``updates``."""
        now = time.time()
        ha_head = f"{self.ha_prefix}/event/"
        if topic.startswith(ha_head) and topic.endswith("/edgesiam_match/config"):
            device = topic[len(ha_head) : -len("/edgesiam_match/config")]
            if payload and DEVICE_ID.match(device):
                self._discovery(device, json.loads(payload), now, updates)
            return
        head = f"{self.prefix}/"
        if not topic.startswith(head):
            return
        device, _, rest = topic[len(head) :].partition("/")
        if not DEVICE_ID.match(device):
            return
        if rest == "event":
            data = self._json(payload)
            if data.get("device") != device:
                raise InvalidPayload(f"event says device {data.get('device')!r} on {topic}")
            if self.history.add_event(data, received=now):
                self.counters.events_new += 1
                updates.append(("event", {**data, "received_ts": now}))
            else:
                self.counters.duplicates += 1
        elif rest == "status":
            if not payload:
                return  # a cleared retained status
            status = payload.decode("utf-8", "replace").strip()
            changed = self.history.set_status(device, status, received=now)
            if changed or not retained:
                updates.append(("status", {"device": device, "status": status, "ts": now}))
        elif rest == "near_miss":
            data = self._json(payload)
            data["device"] = device
            self.history.add_near_miss(data, received=now)
            updates.append(("near_miss", {**data, "received_ts": now}))
        elif rest == "metrics":
            data = self._json(payload)
            self.history.set_metrics(device, data, received=now)
            updates.append(("metrics", {"device": device, "metrics": data, "received_ts": now}))
        elif rest.startswith("cmd/") and rest.endswith("/result"):
            data = self._json(payload)
            self.history.add_command_result(device, data, received=now)
            labels = _labels_of(data.get("result")) if data.get("ok") is True else None
            if labels is not None:
                model = data["result"].get("model")
                self.history.set_labels(
                    device, labels, model=model if isinstance(model, str) else None, received=now
                )
                update: dict[str, Any] = {"device": device, "labels": sorted(labels)}
                thresholds = _thresholds_of(data["result"])
                if thresholds is not None:
                    self.history.set_thresholds(device, *thresholds, received=now)
                    update["thresholds"] = {"default": thresholds[0], "labels": thresholds[1]}
                updates.append(("labels", update))
            updates.append(("command_result", {**data, "device": device, "received_ts": now}))

    def _discovery(
        self, device: str, config: Any, now: float, updates: list[tuple[str, dict[str, Any]]]
    ) -> None:
        if not isinstance(config, dict) or not isinstance(config.get("event_types"), list):
            return
        block = config.get("device")
        model = block.get("model") if isinstance(block, dict) else None
        labels = [x for x in config["event_types"] if isinstance(x, str)]
        self.history.set_labels(
            device, labels, model=model if isinstance(model, str) else None, received=now
        )
        updates.append(("labels", {"device": device, "labels": sorted(labels)}))

    def _wake_waiter(self, result: dict[str, Any]) -> None:
        correlation = result.get("correlation_id")
        if isinstance(correlation, str):
            with self._waiters_lock:
                waiter = self._waiters.get(correlation)
            if waiter is not None:
                waiter.result = {k: v for k, v in result.items() if k != "received_ts"}
                waiter.done.set()

    @staticmethod
    def _json(payload: bytes) -> dict[str, Any]:
        data = json.loads(payload)
        if not isinstance(data, dict):
            raise InvalidPayload("expected a JSON object")
        return data

    def _notify(self, kind: str, data: dict[str, Any]) -> None:
        if self.on_update is None:
            return
        try:
            self.on_update(kind, data)
        except Exception:
            log.exception("dashboard: live update listener failed")
