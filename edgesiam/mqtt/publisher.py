"""Publishing to MQTT: match events from the outbox, near misses, metrics, commands, availability.

``MqttPublisher`` (paho-mqtt v2) is the device's one connection to the broker:

- ``<prefix>/<device>/status``: retained ``online`` on every connect; ``offline`` as the last will
  (the broker sends it when the device vanishes) and published by ``stop()`` on a clean exit.
- ``<prefix>/<device>/event``: QoS 1 events read from the :class:`~edgesiam.runtime.outbox.Outbox` (any :class:`EventStore`)
  in ``seq`` order by one sender thread; an event leaves the outbox when its PUBACK arrives. What is
  not acknowledged is sent again: by paho after a reconnect (same packet ids, DUP set, in order)
  and by the sender after a restart (everything still in the outbox, in order).
- ``…/near_miss`` and ``…/metrics``: QoS 0, skipped while disconnected (they are not durable).
- ``…/cmd/<verb>`` → the command handler (on its own worker thread, so a slow command never stalls
  the network loop or the pipeline) → ``…/cmd/<verb>/result``.
- Home Assistant discovery (:mod:`edgesiam.mqtt.homeassistant`), sent on every connect, when
  Home Assistant announces itself on ``homeassistant/status``, and when the gallery's labels change.

The session is persistent (fixed client id; MQTT 5 ``clean_start=False`` with a session expiry, or
MQTT 3.1.1 ``clean_session=False``), so commands sent while the device was away are delivered when
it is back. The ``Publisher`` interface it implements, and the publishers that need no broker,
are in :mod:`edgesiam.runtime.publishers`.

``protocol: auto`` (the default) tries MQTT 5 and falls back to 3.1.1 when the broker refuses the
version, closes the connection, or does not answer within a few seconds (``edgesiam broker``,
amqtt, speaks 3.1.1 only and never answers an MQTT 5 CONNECT). A broker that cannot be reached is
retried with a doubling delay; each failure is logged with its reason (``connection refused by
localhost:1999``, a DNS or TLS error) and kept in :attr:`MqttPublisher.last_error`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal, Protocol

from edgesiam import __version__
from edgesiam.mqtt.client import (
    MqttSettings,
    connect_failed,
    connect_persistent,
    make_client,
    paho_logger,
)
from edgesiam.mqtt.contract import (
    STATUS_OFFLINE,
    STATUS_ONLINE,
    CommandCallback,
    error_result,
    metrics_payload,
    near_miss_payload,
    peek_correlation_id,
    run_command_handler,
    to_json,
)
from edgesiam.mqtt.homeassistant import discovery_messages

__all__ = ["CONNACK_WAIT_S", "EventStore", "MqttPublisher", "StoredEvent"]

log = logging.getLogger(__name__)


class StoredEvent(Protocol):
    """An event as the outbox holds it: its ``seq`` and its JSON text."""

    @property
    def seq(self) -> int: ...

    @property
    def text(self) -> str: ...


class EventStore(Protocol):
    """The durable queue the publisher sends from (the runtime's SQLite outbox)."""

    @property
    def depth(self) -> int: ...

    @property
    def dropped(self) -> int: ...

    def pending(self, limit: int = 100, after_seq: int = 0) -> Sequence[StoredEvent]: ...

    def ack_many(self, seqs: Iterable[int]) -> None: ...


CONNACK_WAIT_S: Final = 3.0
"""With ``protocol: auto``, how long an MQTT 5 CONNECT may go unanswered before 3.1.1 is tried."""


class MqttPublisher:
    """The device's MQTT connection (see the module docstring for what it does and why)."""

    def __init__(
        self,
        settings: MqttSettings,
        outbox: EventStore,
        model_name: str,
        *,
        labels: Sequence[str] = (),
        sw_version: str = __version__,
        window: int = 100,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.model_name = model_name
        self.sw_version = sw_version
        self.topics = settings.topics
        self._labels = sorted(labels)
        self._window = max(1, window)
        self._handler: CommandCallback | None = None
        self._client: Any = None
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._exit = threading.Event()
        self._wake = threading.Event()
        self._acks: queue.SimpleQueue[tuple[int, bool, str]] = queue.SimpleQueue()
        self._commands: queue.Queue[tuple[str, bytes, Any] | None] = queue.Queue(
            maxsize=settings.command_queue
        )
        self._threads: list[threading.Thread] = []
        self._inflight: dict[int, int] = {}
        self._last_refusal: str | None = None
        self.protocol: Literal["5", "3.1.1"] = "3.1.1" if settings.protocol == "3.1.1" else "5"
        """The MQTT version in use (``auto`` settles on one)."""
        self.last_error: str | None = None
        """Why the last connection attempt failed; None once connected."""
        self._failures = 0
        self._socket_opened: float | None = None
        self._fallback: str | None = None
        self.connects = 0
        self.rejected = 0
        """Events the broker refused (MQTT 5 PUBACK with an error reason); removed, not retried."""

    # -- lifecycle --------------------------------------------------------------------------------

    def _make_client(self) -> Any:
        s = self.settings
        client = make_client(
            s.effective_client_id,
            protocol=self.protocol,
            settings=s,
            persistent=True,
            logger=paho_logger(f"{__name__}.paho"),
        )
        client.max_inflight_messages_set(s.max_inflight)
        client.will_set(self.topics.status, STATUS_OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_socket_open = self._on_socket_open
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        """Connect in the background (retrying with backoff) and start sending the outbox."""
        if self._client is not None:
            return
        s = self.settings
        for flag in (self._connected, self._stopping, self._exit):
            flag.clear()
        self._inflight.clear()
        address = s.address
        log.info(
            "MQTT: connecting to %s:%d as %s (client id %s, MQTT %s, TLS %s)",
            address.host,
            address.port,
            s.effective_username or "anonymous",
            s.effective_client_id,
            "5, else 3.1.1" if s.protocol == "auto" else s.protocol,
            "on" if address.tls else "off",
        )
        self._connect()
        for name, target in (("sender", self._send_loop), ("commands", self._command_loop)):
            thread = threading.Thread(target=target, name=f"mqtt-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _connect(self) -> None:
        """A new paho client for :attr:`protocol`, connecting in the background."""
        self._socket_opened = None
        self._client = self._make_client()
        connect_persistent(self._client, self.settings, self.protocol)

    def _settle_protocol(self) -> None:
        """``auto``: when the broker does not speak MQTT 5, reconnect with 3.1.1 (sender thread)."""
        if self.settings.protocol != "auto" or self.protocol != "5" or self._connected.is_set():
            return
        opened = self._socket_opened
        why = self._fallback
        if why is None and opened is not None and time.monotonic() - opened > CONNACK_WAIT_S:
            why = f"no answer to MQTT 5 within {CONNACK_WAIT_S:g} s"
        if why is None or self._stopping.is_set():
            return
        address = self.settings.address
        log.warning(
            "MQTT: %s:%d does not speak MQTT 5 (%s); connecting with MQTT 3.1.1 "
            "(set mqtt.protocol or --protocol to 3.1.1 to skip the attempt)",
            address.host,
            address.port,
            why,
        )
        old = self._client
        self.protocol, self._fallback, self._socket_opened = "3.1.1", None, None
        old.disconnect()
        old.loop_stop()
        self._connect()

    def stop(self, drain_timeout_s: float = 2.0, timeout_s: float = 5.0) -> None:
        """Flush what can be flushed, publish ``offline`` (retained) and disconnect.

        Waits up to ``drain_timeout_s`` for the outbox to empty while connected; what is left
        stays in the outbox for the next start.
        """
        client = self._client
        if client is None:
            return
        deadline = time.monotonic() + drain_timeout_s
        while self._connected.is_set() and self.outbox.depth and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.02)
        self._stopping.set()
        if self._connected.is_set():
            info = client.publish(self.topics.status, STATUS_OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError) as exc:
                log.warning("MQTT: could not publish offline: %s", exc)
        client.disconnect()
        client.loop_stop()
        self._exit.set()
        self._wake.set()
        with contextlib.suppress(queue.Full):
            self._commands.put_nowait(None)
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        self._client = None
        self._threads.clear()

    # -- the runtime's calls ----------------------------------------------------------------------

    def publish_event(self, event: StoredEvent) -> None:
        self._wake.set()

    def republish(self, event: StoredEvent) -> bool:
        """Publish a kept (already acknowledged) event again, QoS 1 (``cmd/replay``); paho holds
        it until the connection is back. False if paho refused it."""
        client = self._client
        if client is None:
            return False
        info = client.publish(self.topics.event, event.text, qos=1)
        return bool(info.rc in (0, 4))

    def publish_near_miss(self, data: dict[str, Any]) -> None:
        self._publish_transient(
            self.topics.near_miss, near_miss_payload(self.settings.device_id, data)
        )

    def publish_metrics(self, data: dict[str, Any]) -> None:
        payload = metrics_payload(self.settings.device_id, data, self.outbox)
        payload.setdefault("mqtt_rejected", self.rejected)
        self._publish_transient(self.topics.metrics, payload)

    def _publish_transient(self, topic: str, payload: dict[str, Any]) -> None:
        # QoS 0 only while connected: offline they would pile up in paho and use up packet ids
        if self._client is not None and self._connected.is_set():
            self._client.publish(topic, to_json(payload), qos=0)

    def set_command_handler(self, handler: CommandCallback | None) -> None:
        self._handler = handler

    def set_labels(self, labels: Sequence[str]) -> None:
        labels = sorted(labels)
        if labels != self._labels:
            self._labels = labels
            if self._connected.is_set():
                self._publish_discovery()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # -- paho callbacks (network thread: never block here) ----------------------------------------

    def _on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        self._socket_opened = time.monotonic()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._failures += 1
        self.last_error = connect_failed(self.settings, self._failures, log, "MQTT")

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        self._socket_opened = None
        if reason_code.is_failure:
            reason = str(reason_code)
            auto_v5 = self.settings.protocol == "auto" and self.protocol == "5"
            if auto_v5 and "protocol version" in reason.lower():
                self._fallback = f"the broker answered {reason!r}"
                self._wake.set()
                return
            self.last_error = f"the broker refused the connection: {reason}"
            if reason != self._last_refusal:  # once per distinct reason, not every retry
                log.error("MQTT: %s", self.last_error)
                self._last_refusal = reason
            return
        self._last_refusal = None
        self.last_error = None
        self._failures = 0
        self.connects += 1
        receive_maximum = getattr(properties, "ReceiveMaximum", None)
        if receive_maximum and receive_maximum < client.max_inflight_messages:
            client.max_inflight_messages_set(receive_maximum)  # paho does not apply it itself
        log.info("MQTT: connected (session %s)", "resumed" if flags.session_present else "new")
        client.publish(self.topics.status, STATUS_ONLINE, qos=1, retain=True)
        filters = [(self.topics.commands, 1)]
        if self.settings.homeassistant:
            filters.append((f"{self.settings.ha_prefix}/status", 1))
        client.subscribe(filters)
        if self.settings.homeassistant:
            self._publish_discovery()
        self._connected.set()
        self._wake.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        unanswered = self._socket_opened is not None  # closed before any CONNACK
        self._socket_opened = None
        if self._stopping.is_set():
            return
        if unanswered and self.settings.protocol == "auto" and self.protocol == "5":
            self._fallback = f"the connection closed without an answer ({reason_code})"
            self._wake.set()
        elif was or unanswered:
            self.last_error = f"disconnected ({reason_code})"
            log.warning("MQTT: %s; reconnecting", self.last_error)

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        self._acks.put((mid, bool(reason_code.is_failure), str(reason_code)))
        self._wake.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        topic = message.topic
        if topic == f"{self.settings.ha_prefix}/status":
            if message.payload == b"online":
                self._publish_discovery()
            return
        verb = self.topics.verb_of(topic)
        if verb is None:
            return
        try:
            self._commands.put_nowait((verb, bytes(message.payload), message.properties))
        except queue.Full:
            result = error_result(
                verb,
                "busy",
                "too many commands waiting; try again",
                peek_correlation_id(message.payload),
            )
            self._publish_result(verb, result, message.properties)

    # -- worker threads ---------------------------------------------------------------------------

    def _send_loop(self) -> None:
        """Feed the outbox to paho in seq order, at most ``window`` unacknowledged at a time.

        Only this thread touches ``_inflight`` (packet id → seq), so an ack can never be looked up
        before its publish() has returned. paho keeps unacknowledged messages across reconnects
        and resends them itself, in order, with the same packet ids.
        """
        last_seq = 0
        while True:
            self._wake.wait(timeout=0.5)
            self._wake.clear()
            try:
                self._apply_acks()
                if self._exit.is_set():
                    return
                self._settle_protocol()
                if self._stopping.is_set() or not self._connected.is_set():
                    continue
                room = self._window - len(self._inflight)
                if room <= 0:
                    continue
                for event in self.outbox.pending(room, after_seq=last_seq):
                    info = self._client.publish(self.topics.event, event.text, qos=1)
                    if info.rc not in (0, 4):  # success, or stored until the connection is back
                        log.warning("MQTT: paho refused event seq %d (rc %s)", event.seq, info.rc)
                        break
                    self._inflight[info.mid] = event.seq
                    last_seq = event.seq
            except Exception:  # the sender must outlive any surprise; the outbox keeps the events
                log.exception("MQTT: sender error; retrying")
                time.sleep(1.0)

    def _apply_acks(self) -> None:
        acked: list[int] = []
        while True:
            try:
                mid, failed, reason = self._acks.get_nowait()
            except queue.Empty:
                break
            seq = self._inflight.pop(mid, None)
            if seq is None:
                continue  # status, results, discovery, or a QoS 0 message
            if failed:
                self.rejected += 1
                log.error("MQTT: the broker refused event seq %d (%s); dropped", seq, reason)
            acked.append(seq)
        if acked:
            self.outbox.ack_many(acked)

    def _command_loop(self) -> None:
        while True:
            item = self._commands.get()
            if item is None or self._exit.is_set():
                return
            verb, payload, properties = item
            result = run_command_handler(self._handler, verb, payload)
            if self._client is not None:
                self._publish_result(verb, result, properties)

    def _publish_result(self, verb: str, result: dict[str, Any], request_properties: Any) -> None:
        properties = None
        correlation = getattr(request_properties, "CorrelationData", None)
        if self.protocol == "5" and correlation is not None:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = correlation
        client = self._client
        if client is not None:
            client.publish(
                self.topics.command_result(verb), to_json(result), qos=1, properties=properties
            )

    def _publish_discovery(self) -> None:
        client = self._client
        if client is None or not self.settings.homeassistant:
            return
        for topic, payload in discovery_messages(
            topics=self.topics,
            model_name=self.model_name,
            sw_version=self.sw_version,
            labels=self._labels,
            discovery_prefix=self.settings.ha_prefix,
        ):
            client.publish(topic, to_json(payload), qos=1, retain=True)
