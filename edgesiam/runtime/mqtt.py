"""Publishing to MQTT: match events from the outbox, near misses, metrics, commands, availability.

``MqttPublisher`` (paho-mqtt v2) is the device's one connection to the broker:

- ``<prefix>/<device>/status``: retained ``online`` on every connect; ``offline`` as the last will
  (the broker sends it when the device vanishes) and published by ``stop()`` on a clean exit.
- ``<prefix>/<device>/event``: QoS 1 events read from the :class:`~edgesiam.runtime.outbox.Outbox`
  in ``seq`` order by one sender thread; an event leaves the outbox when its PUBACK arrives. What is
  not acknowledged is sent again: by paho after a reconnect (same packet ids, DUP set, in order)
  and by the sender after a restart (everything still in the outbox, in order).
- ``…/near_miss`` and ``…/metrics``: QoS 0, skipped while disconnected (they are not durable).
- ``…/cmd/<verb>`` → the command handler (on its own worker thread, so a slow command never stalls
  the network loop or the pipeline) → ``…/cmd/<verb>/result``.
- Home Assistant discovery (:mod:`edgesiam.runtime.homeassistant`), sent on every connect, when
  Home Assistant announces itself on ``homeassistant/status``, and when the gallery's labels change.

The session is persistent (fixed client id; MQTT 5 ``clean_start=False`` with a session expiry, or
MQTT 3.1.1 ``clean_session=False``), so commands sent while the device was away are delivered when
it is back. ``MemoryPublisher`` records instead of sending (tests, ``--no-mqtt``).

``protocol: auto`` (the default) tries MQTT 5 and falls back to 3.1.1 when the broker refuses the
version, closes the connection, or does not answer within a few seconds (``edgesiam broker``,
amqtt, speaks 3.1.1 only and never answers an MQTT 5 CONNECT). A broker that cannot be reached is
retried with a doubling delay; each failure is logged with its reason (``connection refused by
localhost:1999``, a DNS or TLS error) and kept in :attr:`MqttPublisher.last_error`.

The password is held as a ``SecretStr``, handed to paho and never logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from edgesiam import __version__
from edgesiam.errors import ConfigError, MissingExtraError
from edgesiam.paths import UserPath
from edgesiam.runtime.outbox import Event, Outbox

__all__ = [
    "SCHEMA_EVENT",
    "SCHEMA_METRICS",
    "SCHEMA_NEAR_MISS",
    "SCHEMA_REVISION",
    "BrokerAddress",
    "CommandCallback",
    "MemoryPublisher",
    "MqttPublisher",
    "MqttSettings",
    "Publisher",
    "Topics",
    "connect_failure_reason",
    "event_builder",
    "metrics_payload",
    "near_miss_payload",
    "parse_broker_url",
]

log = logging.getLogger(__name__)

SCHEMA_EVENT: Final = "edgesiam.event.v1"
SCHEMA_NEAR_MISS: Final = "edgesiam.near_miss.v1"
SCHEMA_METRICS: Final = "edgesiam.metrics.v1"
SCHEMA_REVISION: Final = 2
"""Fields added within v1 (consumers ignore what they do not know): revision 2 adds the window's
``embedding`` / ``embedding_scale`` / ``embedding_id`` to events and near misses."""

STATUS_ONLINE: Final = "online"
STATUS_OFFLINE: Final = "offline"

_DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TOPIC_PREFIX = re.compile(r"^[^#+/\s]+(/[^#+/\s]+)*$")

CommandCallback = Callable[[str, bytes], dict[str, Any]]
"""``(verb, payload) -> result``: what :class:`~edgesiam.runtime.commands.CommandHandler.handle`
is; it must never raise (the publisher turns an exception into an error result anyway)."""


# ------------------------------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is, from ``mqtt[s]://[user@]host[:port]``."""

    host: str
    port: int
    tls: bool
    username: str | None = None


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user@]host[:port]`` (1883) or ``mqtts://…`` (TLS, 8883) → a :class:`BrokerAddress`.

    A password in the URL is refused: URLs end up in process lists, shell history and logs.
    """
    parts = urlsplit(url)
    if parts.password is not None:  # first: no later message may quote the URL with it
        raise ConfigError(
            f"broker URL for {parts.hostname or '?'}: put no password in the URL; "
            "give it with password_env or password_file"
        )
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(f"broker URL {url!r}: expected mqtt://[user@]host[:port] or mqtts://…")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"broker URL {url!r}: a broker URL has no path or query")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"broker URL {url!r}: {exc}") from None
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=port if port is not None else (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
    )


class BrokerOptions(BaseModel):
    """How a device reaches its broker, whoever the device is: the fields shared by the publisher's
    :class:`MqttSettings` and the runtime config's ``mqtt`` section. Unknown keys are errors; the
    password never sits here in clear text (``password`` is a ``SecretStr``; prefer
    ``password_env`` or ``password_file``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field("mqtt://localhost:1883", description="mqtt[s]://[user@]host[:port]")
    prefix: str = Field("edgesiam", description="first topic level(s)")
    protocol: Literal["auto", "5", "3.1.1"] = Field(
        "auto",
        description="MQTT version; auto: 5, falling back to 3.1.1 when the broker does not "
        "speak 5 (the embedded amqtt broker speaks 3.1.1 only)",
    )
    client_id: str | None = Field(
        None, description="fixed, for the persistent session (default: edgesiam-<device_id>)"
    )
    username: str | None = Field(None, description="default: the user@ of the URL")
    password: SecretStr | None = Field(None, description="the password itself (already resolved)")
    password_env: str | None = Field(None, description="environment variable holding it")
    password_file: UserPath | None = Field(None, description="file holding it (one line)")
    allow_plaintext_password: bool = Field(
        False, description="send a password over mqtt:// without TLS (trusted networks only)"
    )
    tls_ca: UserPath | None = Field(None, description="CA bundle (default: the system's)")
    tls_cert: UserPath | None = Field(None, description="client certificate (PEM)")
    tls_key: UserPath | None = Field(None, description="client key (PEM)")
    tls_insecure: bool = Field(False, description="skip the host-name check (test brokers only)")
    keepalive: int = Field(30, ge=5, le=3600, description="seconds; the will fires after 1.5×")
    reconnect_min_s: int = Field(1, ge=1, description="first reconnect delay")
    reconnect_max_s: int = Field(60, ge=1, description="reconnect delay cap (doubling backoff)")
    session_expiry_s: int = Field(
        7 * 24 * 3600, ge=0, description="MQTT 5: how long the broker keeps the session"
    )
    max_inflight: int = Field(20, ge=1, le=65535, description="QoS 1 messages awaiting PUBACK")
    homeassistant: bool = Field(True, description="publish Home Assistant MQTT discovery")
    ha_prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix")
    command_queue: int = Field(8, ge=1, description="commands waiting; more are answered 'busy'")


class MqttSettings(BrokerOptions):
    """The publisher's settings: the broker options of one device, checked together."""

    device_id: str = Field(description="this device's topic level: 1-64 of [A-Za-z0-9_-]")

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        if not _DEVICE_ID.match(self.device_id):
            raise ValueError(f"device_id {self.device_id!r}: use 1-64 of A-Z a-z 0-9 _ -")
        for name in ("prefix", "ha_prefix"):
            if not _TOPIC_PREFIX.match(getattr(self, name)):
                raise ValueError(f"{name} {getattr(self, name)!r}: no wildcards or empty levels")
        try:
            address = parse_broker_url(self.url)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        if self.username and address.username and self.username != address.username:
            raise ValueError("username differs from the user@ in the URL")
        sources = [self.password, self.password_env, self.password_file]
        if sum(s is not None for s in sources) > 1:
            raise ValueError("give the password one way: password, password_env or password_file")
        if any(s is not None for s in sources):
            if not (self.username or address.username):
                raise ValueError("a password needs a username (username, or user@ in the URL)")
            if not address.tls and not self.allow_plaintext_password:
                raise ValueError(
                    "refusing to send a password without TLS: use mqtts://, or set "
                    "allow_plaintext_password on a network you trust"
                )
        tls_files = (self.tls_ca, self.tls_cert, self.tls_key)
        if any(f is not None for f in tls_files) and not address.tls:
            raise ValueError("TLS files are set but the URL is mqtt://; use mqtts://")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("a client certificate needs its key (tls_cert and tls_key)")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s exceeds reconnect_max_s")
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "mqtt settings") -> MqttSettings:
        """Validate, turning a pydantic error into a :class:`ConfigError` with every problem."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            lines = [f"{source}: {exc.error_count()} problem(s)"]
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "(settings)"
                lines.append(f"  {where}: {err['msg']}")
            raise ConfigError("\n".join(lines)) from None

    @property
    def address(self) -> BrokerAddress:
        return parse_broker_url(self.url)

    @property
    def effective_username(self) -> str | None:
        return self.username or self.address.username

    @property
    def effective_client_id(self) -> str:
        return self.client_id or f"edgesiam-{self.device_id}"

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix, self.device_id)

    def resolve_password(self) -> str | None:
        """The password from wherever it is given; errors name the source, never the value."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(
                    f"MQTT password: the environment variable {self.password_env} is not set"
                )
            return value
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(
                    f"MQTT password file {self.password_file}: cannot be read ({exc.strerror})"
                ) from None
        return None


@dataclass(frozen=True)
class Topics:
    """Every topic of one device (contract 5 of DESIGN.md)."""

    prefix: str
    device: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def near_miss(self) -> str:
        return f"{self.base}/near_miss"

    @property
    def metrics(self) -> str:
        return f"{self.base}/metrics"

    @property
    def commands(self) -> str:
        """The subscription filter for commands (``+`` does not match ``<verb>/result``)."""
        return f"{self.base}/cmd/+"

    def command(self, verb: str) -> str:
        return f"{self.base}/cmd/{verb}"

    def command_result(self, verb: str) -> str:
        return f"{self.base}/cmd/{verb}/result"

    def verb_of(self, topic: str) -> str | None:
        """``…/cmd/<verb>`` → ``verb``; anything else → None."""
        head = f"{self.base}/cmd/"
        if topic.startswith(head) and "/" not in topic[len(head) :] and len(topic) > len(head):
            return topic[len(head) :]
        return None


# ------------------------------------------------------------------------------------------------
# payloads


def _json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), default=_plain)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def event_builder(
    *,
    device: str,
    model: str,
    label: str,
    score: float,
    threshold: float,
    offset_s: float,
    ts: float | None = None,
    **extra: Any,
) -> Callable[[int, str], dict[str, Any]]:
    """The ``build(seq, id)`` that :meth:`Outbox.add` calls for one match event (schema v1).

    ``event_type`` repeats ``label`` for Home Assistant's event entity; ``extra`` keys (e.g.
    ``source``, ``model_sha256``) are added as they are.
    """
    when = time.time() if ts is None else ts

    def build(seq: int, event_id: str) -> dict[str, Any]:
        return {
            "schema": SCHEMA_EVENT,
            "schema_revision": SCHEMA_REVISION,
            "id": event_id,
            "seq": seq,
            "device": device,
            "ts": round(float(when), 3),
            "label": label,
            "event_type": label,
            "score": round(float(score), 5),
            "threshold": round(float(threshold), 5),
            "offset_s": round(float(offset_s), 3),
            "model": model,
            **extra,
        }

    return build


def near_miss_payload(device: str, data: dict[str, Any]) -> dict[str, Any]:
    """A near miss (schema v1): the runtime's dict with ``schema``, ``device`` and ``ts`` added."""
    return {
        "schema": SCHEMA_NEAR_MISS,
        "schema_revision": SCHEMA_REVISION,
        "device": device,
        "ts": round(time.time(), 3),
        **data,
    }


def metrics_payload(device: str, data: dict[str, Any], outbox: Outbox | None) -> dict[str, Any]:
    """Metrics (schema v1): the runtime's dict plus ``outbox_depth`` / ``outbox_dropped``."""
    out = {"schema": SCHEMA_METRICS, "device": device, "ts": round(time.time(), 3), **data}
    if outbox is not None:
        out.setdefault("outbox_depth", outbox.depth)
        out.setdefault("outbox_dropped", outbox.dropped)
    return out


# ------------------------------------------------------------------------------------------------
# the interface


@runtime_checkable
class Publisher(Protocol):
    """Where the runtime's events, near misses and metrics go, and where commands come from."""

    def start(self) -> None: ...

    def stop(self, drain_timeout_s: float = 2.0) -> None: ...

    def publish_event(self, event: Event) -> None:
        """``event`` is already stored in the outbox; deliver it (now or when connected)."""
        ...

    def publish_near_miss(self, data: dict[str, Any]) -> None: ...

    def publish_metrics(self, data: dict[str, Any]) -> None: ...

    def set_command_handler(self, handler: CommandCallback | None) -> None: ...

    def set_labels(self, labels: Sequence[str]) -> None:
        """The gallery's labels changed (Home Assistant's event types follow them)."""
        ...


@dataclass
class PublishedMessage:
    topic: str
    payload: str
    qos: int
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class MemoryPublisher:
    """Records what would be published and acknowledges events at once (tests, ``--no-mqtt``).

    ``on_message(message)``, when given, sees each message as it is recorded (e.g. to print events).
    """

    device_id: str = "device"
    outbox: Outbox | None = None
    prefix: str = "edgesiam"
    on_message: Callable[[PublishedMessage], None] | None = None
    messages: list[PublishedMessage] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    _handler: CommandCallback | None = None

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix, self.device_id)

    def _record(self, topic: str, payload: str, qos: int = 0, retain: bool = False) -> None:
        message = PublishedMessage(topic, payload, qos, retain)
        self.messages.append(message)
        if self.on_message is not None:
            self.on_message(message)

    def on_topic(self, topic: str) -> list[Any]:
        """The payloads recorded on ``topic`` (JSON decoded where they are JSON)."""
        out = []
        for m in self.messages:
            if m.topic == topic:
                try:
                    out.append(m.json())
                except json.JSONDecodeError:
                    out.append(m.payload)
        return out

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.on_topic(self.topics.event)

    def start(self) -> None:
        self._record(self.topics.status, STATUS_ONLINE, 1, True)
        if self.outbox is not None:  # what a previous run left, as the real publisher replays it
            while batch := self.outbox.pending(1000):
                for event in batch:
                    self.publish_event(event)

    def stop(self, drain_timeout_s: float = 2.0) -> None:
        self._record(self.topics.status, STATUS_OFFLINE, 1, True)

    def publish_event(self, event: Event) -> None:
        self._record(self.topics.event, event.text, 1)
        if self.outbox is not None:
            self.outbox.ack(event.seq)

    def republish(self, event: Event) -> bool:
        """Publish a kept event again (``cmd/replay``)."""
        self._record(self.topics.event, event.text, 1)
        return True

    def publish_near_miss(self, data: dict[str, Any]) -> None:
        self._record(self.topics.near_miss, _json(near_miss_payload(self.device_id, data)))

    def publish_metrics(self, data: dict[str, Any]) -> None:
        payload = metrics_payload(self.device_id, data, self.outbox)
        self._record(self.topics.metrics, _json(payload))

    def set_command_handler(self, handler: CommandCallback | None) -> None:
        self._handler = handler

    def set_labels(self, labels: Sequence[str]) -> None:
        self.labels = sorted(labels)

    def command(self, verb: str, payload: bytes | str | dict[str, Any]) -> dict[str, Any]:
        """Deliver a command as if it came from the broker; returns (and records) the result."""
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        if isinstance(payload, str):
            payload = payload.encode()
        result = _run_handler(self._handler, verb, payload)
        self._record(self.topics.command_result(verb), _json(result), 1)
        return result


def _run_handler(handler: CommandCallback | None, verb: str, payload: bytes) -> dict[str, Any]:
    from edgesiam.runtime.commands import error_result, peek_correlation_id

    if handler is None:
        return error_result(verb, "unavailable", "this device takes no commands", None)
    try:
        result = handler(verb, payload)
        _json(result)
        return result
    except Exception as exc:  # the handler promises not to raise; never let one through anyway
        log.exception("command %s: the handler failed", verb)
        return error_result(verb, "internal", str(exc), peek_correlation_id(payload))


# ------------------------------------------------------------------------------------------------
# paho


def _paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError as exc:
        raise MissingExtraError("paho-mqtt", "device") from exc
    return mqtt


def apply_credentials(client: Any, settings: MqttSettings) -> None:
    """Give a paho client the settings' username and password and, for ``mqtts://``, TLS: the
    broker's certificate verified against ``tls_ca`` (the system's CAs when unset), an optional
    client certificate, and hostname checking unless ``tls_insecure``."""
    username = settings.effective_username
    if username is not None:
        client.username_pw_set(username, settings.resolve_password())
    if settings.address.tls:
        client.tls_set(
            ca_certs=str(settings.tls_ca) if settings.tls_ca else None,
            certfile=str(settings.tls_cert) if settings.tls_cert else None,
            keyfile=str(settings.tls_key) if settings.tls_key else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
        if settings.tls_insecure:
            client.tls_insecure_set(True)


CONNACK_WAIT_S: Final = 3.0
"""With ``protocol: auto``, how long an MQTT 5 CONNECT may go unanswered before 3.1.1 is tried."""


def connect_failure_reason(
    exc: BaseException | None, host: str, port: int, tls: bool = False
) -> str:
    """Why a connection to ``host:port`` failed, in words that say what to look at."""
    where = f"{host}:{port}"
    if tls and isinstance(exc, ConnectionResetError):
        return f"TLS handshake with {where} failed: the connection was reset (not a TLS port?)"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where} (is the broker running, on this port?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name {host!r} ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the certificate of {where} was not accepted ({exc.verify_message or exc})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {where} failed ({exc.reason or exc})"
    if isinstance(exc, TimeoutError):
        return f"no answer from {where} (timed out)"
    if isinstance(exc, OSError):
        return f"cannot reach {where} ({exc.strerror or exc})"
    return f"cannot connect to {where}" + (f" ({exc})" if exc is not None else "")


def retry_delay(settings: BrokerOptions, failures: int) -> int:
    """paho's reconnect delay after ``failures`` failed attempts in a row (doubling, capped)."""
    return int(min(settings.reconnect_min_s * 2 ** max(0, failures - 1), settings.reconnect_max_s))


class MqttPublisher:
    """The device's MQTT connection (see the module docstring for what it does and why)."""

    def __init__(
        self,
        settings: MqttSettings,
        outbox: Outbox,
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
        mqtt = _paho()
        s = self.settings
        v5 = self.protocol == "5"
        kwargs: dict[str, Any] = {
            "callback_api_version": mqtt.CallbackAPIVersion.VERSION2,
            "client_id": s.effective_client_id,
            "protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        }
        if not v5:
            kwargs["clean_session"] = False
        client = mqtt.Client(**kwargs)
        client.enable_logger(logging.getLogger(f"{__name__}.paho"))
        client.max_inflight_messages_set(s.max_inflight)
        client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)
        client.will_set(self.topics.status, STATUS_OFFLINE, qos=1, retain=True)
        apply_credentials(client, s)
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
        s = self.settings
        self._socket_opened = None
        self._client = self._make_client()
        connect: dict[str, Any] = {"keepalive": s.keepalive}
        if self.protocol == "5":
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = s.session_expiry_s
            connect.update(clean_start=False, properties=props)
        self._client.connect_async(s.address.host, s.address.port, **connect)
        self._client.loop_start()

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

    def publish_event(self, event: Event) -> None:
        self._wake.set()

    def republish(self, event: Event) -> bool:
        """Publish a kept (already acknowledged) event again, QoS 1 (``cmd/replay``); paho holds
        it until the connection is back. False if paho refused it."""
        client = self._client
        if client is None:
            return False
        info = client.publish(self.topics.event, event.text, qos=1)
        return info.rc in (0, 4)

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
            self._client.publish(topic, _json(payload), qos=0)

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
        """paho could not open the connection; it is handling the ``OSError`` that says why."""
        address = self.settings.address
        self._failures += 1
        self.last_error = connect_failure_reason(
            sys.exc_info()[1], address.host, address.port, address.tls
        )
        log.warning(
            "MQTT: %s; retrying in %d s (attempt %d; the delay doubles up to %d s)",
            self.last_error,
            retry_delay(self.settings, self._failures),
            self._failures,
            self.settings.reconnect_max_s,
        )

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
            from edgesiam.runtime.commands import error_result, peek_correlation_id

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
            result = _run_handler(self._handler, verb, payload)
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
                self.topics.command_result(verb), _json(result), qos=1, properties=properties
            )

    def _publish_discovery(self) -> None:
        from edgesiam.runtime.homeassistant import discovery_messages

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
            client.publish(topic, _json(payload), qos=1, retain=True)
