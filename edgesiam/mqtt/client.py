"""Connecting to a broker: URL parsing, the broker settings, credentials and TLS, and the one
:func:`make_client` that builds every paho client of edgesiam (device, dashboard, sources, tools).

The password is held as a ``SecretStr``, handed to paho and never logged; a password in a URL is
refused (URLs end up in process lists, shell history and logs).
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import sys
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, model_validator

from edgesiam.errors import ConfigError
from edgesiam.extras import import_extra
from edgesiam.mqtt.contract import DEVICE_ID, TOPIC_PREFIX, Topics
from edgesiam.paths import UserPath
from edgesiam.settings import StrictModel, format_validation_error

__all__ = [
    "BrokerAddress",
    "BrokerOptions",
    "MqttSettings",
    "MqttVersion",
    "apply_credentials",
    "connect_failed",
    "connect_failure_reason",
    "connect_persistent",
    "make_client",
    "paho",
    "paho_logger",
    "parse_broker_url",
    "retry_delay",
]

MqttVersion = Literal["5", "3.1.1"]


class _QuietWhenStopped(logging.Filter):
    """paho's loop may log "Client is not connected" once after a deliberate disconnect; that
    is the stop itself, not an error worth showing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Client is not connected")


def paho_logger(name: str) -> logging.Logger:
    """The logger for a client's paho messages (``make_client(logger=...)``), without the one
    paho logs after a deliberate disconnect."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, _QuietWhenStopped) for f in logger.filters):
        logger.addFilter(_QuietWhenStopped())
    return logger


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


class BrokerOptions(StrictModel):
    """How a device reaches its broker, whoever the device is: the fields shared by the publisher's
    :class:`MqttSettings` and the runtime config's ``mqtt`` section. Unknown keys are errors; the
    password never sits here in clear text (``password`` is a ``SecretStr``; prefer
    ``password_env`` or ``password_file``)."""

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
        if not DEVICE_ID.match(self.device_id):
            raise ValueError(f"device_id {self.device_id!r}: use 1-64 of A-Z a-z 0-9 _ -")
        for name in ("prefix", "ha_prefix"):
            if not TOPIC_PREFIX.match(getattr(self, name)):
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
            raise ConfigError(format_validation_error(exc, source, "(settings)")) from None

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


def paho(extra: str = "device") -> Any:
    """The ``paho.mqtt.client`` module, or an error naming the extra that installs it."""
    return import_extra("paho.mqtt.client", extra, package="paho-mqtt")


def apply_credentials(client: Any, settings: MqttSettings | None, tls: bool) -> None:
    """Give a paho client the settings' username and password and, for ``mqtts://``, TLS: the
    broker's certificate verified against ``tls_ca`` (the system's CAs when unset), an optional
    client certificate, and hostname checking unless ``tls_insecure``."""
    username = settings.effective_username if settings is not None else None
    if settings is not None and username is not None:
        client.username_pw_set(username, settings.resolve_password())
    if not tls:
        return
    ca, cert, key = (
        (settings.tls_ca, settings.tls_cert, settings.tls_key) if settings else (None,) * 3
    )
    client.tls_set(
        ca_certs=str(ca) if ca else None,
        certfile=str(cert) if cert else None,
        keyfile=str(key) if key else None,
        cert_reqs=ssl.CERT_REQUIRED,
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    if settings is not None and settings.tls_insecure:
        client.tls_insecure_set(True)


def make_client(
    client_id: str = "",
    *,
    protocol: MqttVersion = "5",
    settings: MqttSettings | None = None,
    tls: bool | None = None,
    persistent: bool = False,
    manual_ack: bool = False,
    logger: logging.Logger | None = None,
    extra: str = "device",
) -> Any:
    """A paho (v2 callback API) client with the settings' credentials, TLS and reconnect delays.

    ``persistent``: the broker keeps the session (MQTT 3.1.1 ``clean_session=False``; for MQTT 5
    :func:`connect_persistent` asks for it). ``tls`` defaults to the settings' URL scheme.
    """
    mqtt = paho(extra)
    v5 = protocol == "5"
    kwargs: dict[str, Any] = {
        "callback_api_version": mqtt.CallbackAPIVersion.VERSION2,
        "client_id": client_id,
        "protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
    }
    if manual_ack:
        kwargs["manual_ack"] = True
    if not v5:
        kwargs["clean_session"] = not persistent
    client = mqtt.Client(**kwargs)
    if logger is not None:
        client.enable_logger(logger)
    if settings is not None:
        client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
    apply_credentials(
        client, settings, settings.address.tls if tls is None and settings else bool(tls)
    )
    return client


def connect_persistent(client: Any, settings: MqttSettings, protocol: MqttVersion) -> None:
    """Connect in the background to the settings' broker, resuming the session (MQTT 5:
    ``clean_start=False`` with the settings' session expiry), and start paho's network loop."""
    connect: dict[str, Any] = {"keepalive": settings.keepalive}
    if protocol == "5":
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = settings.session_expiry_s
        connect.update(clean_start=False, properties=props)
    client.connect_async(settings.address.host, settings.address.port, **connect)
    client.loop_start()


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


def connect_failed(settings: MqttSettings, failures: int, log: logging.Logger, who: str) -> str:
    """For paho's ``on_connect_fail`` (it is handling the ``OSError`` that says why): the reason,
    logged with the delay before the next attempt."""
    address = settings.address
    reason = connect_failure_reason(sys.exc_info()[1], address.host, address.port, address.tls)
    log.warning(
        "%s: %s; retrying in %d s (attempt %d; the delay doubles up to %d s)",
        who,
        reason,
        retry_delay(settings, failures),
        failures,
        settings.reconnect_max_s,
    )
    return reason
