"""The device runtime's config: strict pydantic models, validated before anything runs.

Unknown keys are errors with their path (``matching.gate.treshold_db: unknown key``); the source is
chosen by its ``type`` field (``file``, ``stdin``, ``mic``, ``mqtt``, ``serial``); secrets never
need to sit in the file: the MQTT password comes from ``password_env`` (an environment variable)
or ``password_file`` (a systemd credential, a Docker secret). Relative paths in a file are taken
relative to that file's folder; ``~`` and ``~user`` are expanded (a user unknown here is an error
naming the key).

``load_runtime_config(path, overrides)`` reads a YAML file (or nothing: ``path=None``), applies
dotted-key overrides (what the ``edgesiam run`` flags set) and validates the result.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import (
    AfterValidator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from edgesiam.core.units import canonical_unit
from edgesiam.errors import ConfigError
from edgesiam.model.bundle import FMR_TARGETS, fmr_key
from edgesiam.mqtt.client import BrokerOptions, MqttSettings, parse_broker_url
from edgesiam.paths import UserPath, expand_user
from edgesiam.settings import (
    UNSET,
    StrictModel,
    apply_overrides,
    format_validation_error,
    load_yaml,
)

__all__ = [
    "UNSET",
    "DecisionConfig",
    "FileSourceConfig",
    "GateConfig",
    "InterpreterConfig",
    "MatchingConfig",
    "MetricsConfig",
    "MicSourceConfig",
    "MqttConfig",
    "MqttSourceConfig",
    "OutboxConfig",
    "ProcessingConfig",
    "RuntimeConfig",
    "SerialSourceConfig",
    "SourceConfig",
    "StdinSourceConfig",
    "apply_overrides",
    "default_device_id",
    "default_state_dir",
    "is_runtime_config",
    "load_runtime_config",
    "parse_source_uri",
]

_DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def default_device_id() -> str:
    """This machine's host name, reduced to the characters an MQTT topic level may safely hold."""
    name = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname().split(".")[0]).strip("-")
    return name[:64] or "edgesiam"


def default_state_dir() -> Path:
    """systemd's ``$STATE_DIRECTORY`` under a service, else ``~/.local/state/edgesiam``."""
    systemd = os.environ.get("STATE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or expand_user("~/.local/state", "state_dir")
    return Path(base) / "edgesiam"


# ------------------------------------------------------------------------------------------------
# sources


class _SourceBase(StrictModel):
    chunk_s: float = Field(
        0.1, gt=0, le=10, description="seconds of samples handed to the pipeline at a time"
    )


def _known_units(value: list[str | None] | dict[str, str]) -> list[str | None] | dict[str, str]:
    try:
        if isinstance(value, dict):
            return {k: canonical_unit(u) for k, u in value.items()}
        return [None if u is None else canonical_unit(u) for u in value]
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


SensorUnits = Annotated[
    list[str | None] | dict[str, str] | None,
    AfterValidator(lambda v: None if v is None else _known_units(v)),
    Field(
        description="units the sensor samples are in: one per channel in the bundle's order "
        "(e.g. [m/s^2, m/s^2, m/s^2, deg/s, deg/s, deg/s]) or a table by the bundle's channel "
        "names; g, m/s^2, rad/s, deg/s. Converted to the bundle's units (default: already in them)"
    ),
]


class FileSourceConfig(_SourceBase):
    """Samples from a file: audio (wav, flac, ogg, opus; resampled to the bundle's rate) or a
    sensor recording (csv, npy). The run ends when the file is exhausted."""

    type: Literal["file"] = "file"
    path: UserPath = Field(description="the file to read")
    realtime: bool = Field(
        False, description="pace the samples at the stream's rate (a replayed live stream)"
    )
    units: SensorUnits = None


class StdinSourceConfig(_SourceBase):
    """Raw little-endian PCM on standard input, e.g. ``arecord -f S16_LE -r 16000 -c 1 | …``.

    A WAV header (what arecord writes unless told ``-t raw``) is recognised and checked against
    these settings."""

    type: Literal["stdin"] = "stdin"
    sample_rate: PositiveInt | None = Field(
        None,
        description="samples per second of the stream (default: a WAV header's, else the "
        "bundle's); another rate than the bundle's is resampled on the device",
    )
    channels: int = Field(1, ge=1, le=64, description="interleaved channels")
    format: Literal["s16le", "f32le"] = Field("s16le", description="sample encoding")
    live: bool | None = Field(
        None,
        description="true: samples arrive in real time (arecord), dropped and counted when "
        "processing falls behind; false: a recording piped in, which waits for the pipeline; "
        "unset: a recording when stdin is a file or runs ahead of real time, else live",
    )
    units: SensorUnits = None


class MicSourceConfig(_SourceBase):
    """A microphone through PortAudio (the Python package sounddevice, imported when used)."""

    type: Literal["mic"] = "mic"
    device: str | int | None = Field(
        None, description="PortAudio device name or index (default: the system's default input)"
    )
    sample_rate: PositiveInt | None = Field(
        None,
        description="rate to record at (default: the bundle's when the device can, else the "
        "device's own, e.g. 48000); another rate than the bundle's is resampled on the device",
    )
    channels: int = Field(1, ge=1, le=64)


class MqttSourceConfig(_SourceBase):
    """Sensor samples subscribed from an MQTT topic: JSON rows or packed little-endian float32."""

    type: Literal["mqtt"] = "mqtt"
    topic: str = Field(min_length=1, description="topic to subscribe to (wildcards allowed)")
    format: Literal["json", "f32le"] = Field(
        "json",
        description="json: one row [x, y, …], a list of rows, or {'samples': rows}; "
        "f32le: rows of packed little-endian float32, channel after channel",
    )
    channels: int | None = Field(None, ge=1, description="values per row (default: the bundle's)")
    sample_rate: PositiveFloat | None = Field(
        None, description="nominal samples per second (default: the bundle's)"
    )
    url: str | None = Field(
        None,
        description="mqtt[s]://[user@]host[:port] of another broker, without credentials "
        "(default: the runtime's broker, with its credentials)",
    )
    qos: Literal[0, 1] = 0
    units: SensorUnits = None

    @field_validator("url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_broker_url(value)
            except ValueError as exc:  # an unclosed IPv6 bracket, a port out of range
                raise ValueError(f"not a usable broker URL ({exc})") from None
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value


class SerialSourceConfig(_SourceBase):
    """One sample per line of CSV from a serial port (pyserial, imported when used)."""

    type: Literal["serial"] = "serial"
    port: str = Field(min_length=1, description="device path (/dev/ttyACM0) or a pyserial URL")
    baudrate: PositiveInt = 115200
    channels: int | None = Field(None, ge=1, description="values per line (default: the bundle's)")
    sample_rate: PositiveFloat | None = Field(
        None, description="nominal samples per second (default: the bundle's)"
    )
    units: SensorUnits = None


SourceConfig = Annotated[
    FileSourceConfig | StdinSourceConfig | MicSourceConfig | MqttSourceConfig | SerialSourceConfig,
    Field(discriminator="type"),
]

_SOURCE_TYPES: Final = ("file", "stdin", "mic", "mqtt", "serial")


def _query_value(text: str) -> Any:
    """A query-string value as YAML would read it (``1`` → 1, ``true`` → True, ``x`` → 'x')."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_source_uri(uri: str) -> dict[str, Any]:
    """``--source`` URI → the source section of a config (validated later, with the rest).

    ``file:PATH``, ``stdin:`` (``stdin:?sample_rate=16000&format=s16le``), ``mic:[DEVICE]``,
    ``mqtt:TOPIC`` (the runtime's broker) or ``mqtt://HOST:PORT/TOPIC``, ``serial:PORT``
    (``serial:/dev/ttyACM0?baudrate=115200``). Query parameters set the source's other keys.
    """
    kind, sep, rest = uri.partition(":")
    if not sep or kind not in _SOURCE_TYPES:
        raise ConfigError(
            f"--source {uri!r}: expected TYPE:… with TYPE one of {', '.join(_SOURCE_TYPES)} "
            "(e.g. file:recording.wav, stdin:, mic:, mqtt:sensors/imu, serial:/dev/ttyACM0)"
        )
    query: dict[str, Any] = {}
    if "?" in rest:
        rest, _, qs = rest.partition("?")
        for key, value in parse_qsl(qs, keep_blank_values=True, strict_parsing=False):
            query[key] = _query_value(value)
    data: dict[str, Any] = {"type": kind}
    if kind == "file":
        if not rest:
            raise ConfigError("--source file: needs a path, e.g. file:recording.wav")
        data["path"] = unquote(rest)
    elif kind == "stdin":
        if rest:
            data["sample_rate"] = _query_value(rest)
    elif kind == "mic":
        if rest:
            device = _query_value(unquote(rest))
            data["device"] = device if isinstance(device, int) else unquote(rest)
    elif kind == "mqtt":
        if rest.startswith("//"):
            try:
                parts = urlsplit("mqtt:" + rest)
            except ValueError as exc:  # e.g. an unclosed IPv6 bracket
                raise ConfigError(
                    f"--source mqtt://…: not a usable broker address ({exc})"
                ) from None
            if not parts.hostname or not parts.path.strip("/"):
                shown = "mqtt://…" if parts.password is not None else repr(uri)  # no secrets
                raise ConfigError(f"--source {shown}: expected mqtt://HOST[:PORT]/TOPIC")
            data["url"] = f"mqtt://{parts.netloc}"
            data["topic"] = unquote(parts.path[1:])
        else:
            if not rest:
                raise ConfigError("--source mqtt: needs a topic, e.g. mqtt:sensors/imu")
            data["topic"] = unquote(rest)
    elif kind == "serial":
        if not rest:
            raise ConfigError("--source serial: needs a port, e.g. serial:/dev/ttyACM0")
        data["port"] = unquote(rest)
    data.update(query)
    return data


# ------------------------------------------------------------------------------------------------
# interpreter, matching, mqtt, outbox, metrics


class InterpreterConfig(StrictModel):
    """How the bundle's model runs."""

    delegate: Literal["edgetpu"] | None = Field(
        None, description="edgetpu: run the bundle's Edge TPU model on a Coral accelerator"
    )
    backend: Literal["ai-edge-litert", "tflite-runtime", "tensorflow"] | None = Field(
        None, description="interpreter package (default: the first that imports)"
    )
    num_threads: int | None = Field(None, ge=1, le=16, description="interpreter CPU threads")


class DecisionConfig(StrictModel):
    """How window matches become events: ``n_of`` of the last ``m`` windows above threshold."""

    n_of: int = Field(2, ge=1, description="matching windows needed …")
    m: int = Field(3, ge=1, description="… among the last m windows")
    refractory_s: NonNegativeFloat = Field(
        2.0, description="no new event for the same label within this many seconds"
    )
    hold: bool = Field(
        False,
        description="renew the refractory period while the label keeps matching: one event per "
        "continuous occurrence (a long sound), the next after refractory_s without a match",
    )

    @model_validator(mode="after")
    def _n_within_m(self) -> DecisionConfig:
        if self.n_of > self.m:
            raise ValueError(f"n_of ({self.n_of}) cannot exceed m ({self.m}): no event could fire")
        return self


class GateConfig(StrictModel):
    """Skip silent (or motionless) windows before the model runs."""

    enabled: bool | None = Field(
        None, description="default: on for audio bundles, off for sensor bundles"
    )
    threshold_db: float = Field(
        -45.0, ge=-200, le=0, description="RMS level in dBFS under which an audio window is silent"
    )
    sensor_threshold: NonNegativeFloat = Field(
        0.02,
        description="the first triad's magnitude std (sensor units) under which a window is still",
    )
    hangover: NonNegativeInt = Field(
        2, description="windows still processed after the level drops (word endings)"
    )


class MatchingConfig(StrictModel):
    """Thresholds and the decision rule."""

    target_fmr: float = Field(
        1e-3,
        description="false-match rate whose calibrated window threshold (from the bundle) is used",
    )
    threshold: float | None = Field(
        None, ge=-1, le=1, description="an explicit cosine threshold instead of target_fmr"
    )
    per_label: dict[str, float] = Field(
        default_factory=dict, description="label → its own cosine threshold"
    )
    aggregate: Literal["max", "mean"] = Field(
        "max",
        description="a label's score: its best template (max, what the thresholds are calibrated "
        "for) or its mean template",
    )
    decision: DecisionConfig = Field(default_factory=DecisionConfig)
    near_miss_margin: float = Field(
        0.05, ge=0, le=2, description="a best score this far below its threshold is a near miss"
    )
    gate: GateConfig = Field(default_factory=GateConfig)
    score_norm: Literal["off", "cohort"] = Field(
        "off",
        description="cohort: score windows with adaptive s-norm against the bundle's cohort (and "
        "the device's, after edgesiam calibrate); thresholds are then the bundle's for the "
        "normalised score or a calibration made with it",
    )
    centre: Literal["off", "background"] = Field(
        "off",
        description="background: after edgesiam calibrate, centre windows and templates on the "
        "mean of the device's background before scoring (shared offsets of the room and the "
        "microphone cancel out); its calibration is for the centred score",
    )
    margin: float = Field(
        0.0,
        ge=0,
        le=2,
        description="open-set rule: a window matches only when its best label's score beats the "
        "second best label's by at least this much (0: off)",
    )

    @field_validator("target_fmr")
    @classmethod
    def _calibrated_fmr(cls, value: float) -> float:
        known = {fmr_key(t): t for t in FMR_TARGETS}
        if fmr_key(value) not in known:
            raise ValueError(
                f"the bundle has thresholds for false-match rates {', '.join(known)}; "
                f"got {value} (or set an explicit threshold)"
            )
        return known[fmr_key(value)]

    @field_validator("per_label")
    @classmethod
    def _thresholds_are_cosines(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {label: t for label, t in value.items() if not -1.0 <= t <= 1.0}
        if bad:
            raise ValueError(f"cosine thresholds must lie in [-1, 1], got {bad}")
        return value

    @model_validator(mode="after")
    def _one_way_to_threshold(self) -> MatchingConfig:
        if self.threshold is not None and "target_fmr" in self.model_fields_set:
            raise ValueError("set either target_fmr or threshold, not both")
        return self


class MqttConfig(BrokerOptions):
    """The broker that events, metrics and commands go through: the publisher's broker options
    (:class:`edgesiam.mqtt.client.BrokerOptions`, checked together by ``MqttSettings``: a password
    needs TLS unless allowed, a certificate needs its key, …) plus ``enabled``; ``device_id`` is the
    runtime's own.
    """

    enabled: bool = Field(True, description="false: nothing is published (events are printed)")

    @model_validator(mode="after")
    def _settings_fit_together(self) -> MqttConfig:
        try:
            MqttSettings.model_validate(self._settings_data("check"))
        except ValidationError as exc:
            problems = [str(e["msg"]).removeprefix("Value error, ") for e in exc.errors()]
            raise ValueError("; ".join(problems)) from None
        return self

    def _settings_data(self, device_id: str) -> dict[str, Any]:
        data = self.model_dump(exclude={"enabled"}, exclude_none=True)
        if self.password is not None:
            data["password"] = self.password.get_secret_value()
        return {**data, "device_id": device_id}

    def settings(self, device_id: str) -> MqttSettings:
        """The publisher's settings for this device (validated together, as a ``ConfigError``)."""
        return MqttSettings.from_dict(self._settings_data(device_id), "mqtt")


class OutboxConfig(StrictModel):
    """The durable queue of events not yet acknowledged by the broker."""

    max_pending: int = Field(10000, ge=1, description="events kept while the broker is away")
    policy: Literal["drop_oldest", "reject_new"] = Field(
        "drop_oldest",
        description="when the outbox is full: delete the oldest pending events, or refuse new ones",
    )
    drain_timeout_s: NonNegativeFloat = Field(
        10.0, description="at the end of a run, how long to wait for pending events"
    )
    keep_acked_s: NonNegativeFloat = Field(
        86400.0,
        description="keep events the broker acknowledged this long, to answer cmd/replay "
        "(a broker that crashes can lose what it acknowledged); 0 keeps none",
    )
    keep_acked_max: NonNegativeInt = Field(
        10000, description="at most this many acknowledged events kept (the oldest go first)"
    )


class MetricsConfig(StrictModel):
    interval_s: PositiveFloat = Field(
        30.0, description="seconds between metrics messages (and log lines)"
    )
    latency_window: int = Field(
        1000, ge=10, description="recent windows the latency percentiles are taken over"
    )


class ProcessingConfig(StrictModel):
    """The bounded queue between the source thread and the processing loop."""

    queue_s: float = Field(
        2.0, gt=0, le=120, description="seconds of samples buffered before new ones are dropped"
    )


class RuntimeConfig(StrictModel):
    """Everything ``edgesiam run`` needs on a device."""

    bundle: UserPath = Field(description="bundle directory (from edgesiam export)")
    gallery: UserPath | None = Field(
        None, description="enrolled templates (default: <state_dir>/gallery.npz)"
    )
    device_id: str = Field(
        default_factory=default_device_id, description="this device's name in MQTT topics"
    )
    state_dir: UserPath = Field(
        default_factory=default_state_dir,
        description="outbox and sequence numbers (default: $STATE_DIRECTORY or "
        "~/.local/state/edgesiam)",
    )
    source: SourceConfig
    interpreter: InterpreterConfig = Field(default_factory=InterpreterConfig)
    matching: MatchingConfig = Field(default_factory=MatchingConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    processing: ProcessingConfig = Field(default_factory=ProcessingConfig)
    print_events: bool = Field(False, description="also print each event as a JSON line")
    send_embeddings: bool = Field(
        True,
        description="events and near misses carry the window's embedding (int8, base64) so a "
        "reviewer can reject or confirm them from the dashboard; no audio or sensor samples ever "
        "leave the device, but an embedding is a compact description of the sound or motion: "
        "false keeps it on the device",
    )

    @field_validator("device_id")
    @classmethod
    def _topic_safe(cls, value: str) -> str:
        if not _DEVICE_ID.match(value):
            raise ValueError(
                f"{value!r} must be 1–64 letters, digits, '-' or '_' (it is an MQTT topic level)"
            )
        return value

    @property
    def gallery_path(self) -> Path:
        return self.gallery if self.gallery is not None else self.state_dir / "gallery.npz"


# ------------------------------------------------------------------------------------------------
# loading


_PATH_KEYS: Final = (
    ("bundle",),
    ("gallery",),
    ("state_dir",),
    ("source", "path"),
    ("mqtt", "password_file"),
    ("mqtt", "tls_ca"),
    ("mqtt", "tls_cert"),
    ("mqtt", "tls_key"),
)


def _relative_to(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Paths written in a config file are relative to its folder, not to where it is run from."""
    out = dict(data)
    for keys in _PATH_KEYS:
        node: Any = out
        for key in keys[:-1]:
            child = node.get(key) if isinstance(node, dict) else None
            if not isinstance(child, dict):
                node = None
                break
            node[key] = dict(child)
            node = node[key]
        if isinstance(node, dict):
            value = node.get(keys[-1])
            # ~ and ~user are left to the UserPath fields, whose errors name the key
            if (
                isinstance(value, str)
                and value[:1] not in ("", "~")
                and not Path(value).is_absolute()
            ):
                node[keys[-1]] = str(folder / value)
    return out


def is_runtime_config(data: Any) -> bool:
    """Whether parsed YAML is a runtime config (it names a ``bundle``) rather than a recipe."""
    return isinstance(data, dict) and "bundle" in data


def load_runtime_config(
    path: str | Path | None, overrides: dict[str, Any] | None = None
) -> RuntimeConfig:
    """Read, override and validate a runtime config; every problem is reported with its path.

    ``path=None`` starts from an empty config (everything from ``overrides``). Secrets are not
    read here (only when connecting), so a config validates on a machine without them.
    """
    source = "runtime config" if path is None else str(path)
    data: Any = {}
    if path is not None:
        p = Path(path)
        data = load_yaml(p)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"{source}: expected a mapping of settings, got {type(data).__name__}"
            )
        data = _relative_to(data, p.resolve().parent)
    if overrides:
        data = apply_overrides(data, overrides)
    try:
        return RuntimeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
