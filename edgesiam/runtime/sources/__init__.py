"""Where samples come from: files, standard input, a microphone, an MQTT topic, a serial port.

Every source yields float32 chunks ``(n, channels)`` at its ``sample_rate`` from :meth:`chunks`,
in a thread of the pipeline's, and stops soon after :meth:`close` is called from any other thread.
The core never sees a device: it takes numpy arrays (openWakeWord's rule), so a source is the only
part that knows about PortAudio, pyserial or paho, and each imports its library only when used,
with an error that names what to install.

``live`` tells the pipeline what to do when processing falls behind: a live source's samples are
dropped (and counted), since the world does not wait; a file read as fast as possible is waited for.
Standard input can be either: unless told, it is taken as a recording (waited for) when it is a
regular file or runs ahead of real time, which no microphone can (:class:`StreamPacing`).

A microphone or standard input at another rate than the bundle's (many USB microphones record only
at 44.1 or 48 kHz) is resampled on the device by :class:`~edgesiam.core.resample.StreamResampler`.

Sensor samples are converted from the source's declared ``units`` to the bundle's, and the first
seconds of a stream are checked for gravity (about 1 g at rest): a stream whose accelerometer does
not fit its declared units is warned about once, saying what it read and what to set.

Bad input never stops a live stream: a malformed MQTT message or serial line is counted in
``rejected`` and logged, then skipped. A source whose format cannot fit the bundle (wrong rate,
wrong channel count) is refused when it is opened, with a message that says what to change.

One module a kind: :mod:`.file`, :mod:`.stdin`, :mod:`.mic`, :mod:`.mqtt`, :mod:`.serial` (sensor
rows parsed by :mod:`.rows`), on what :mod:`.base` shares; this package builds one from a config or
a ``--source`` URI.
"""

from __future__ import annotations

from typing import Any, BinaryIO

from pydantic import ValidationError

from edgesiam.errors import ConfigError
from edgesiam.mqtt.client import MqttSettings
from edgesiam.runtime.config import (
    FileSourceConfig,
    MicSourceConfig,
    MqttSourceConfig,
    SerialSourceConfig,
    SourceConfig,
    StdinSourceConfig,
    parse_source_uri,
)
from edgesiam.runtime.sources.base import Source, StreamFormat
from edgesiam.runtime.sources.file import FileSource
from edgesiam.runtime.sources.mic import MicSource
from edgesiam.runtime.sources.mqtt import MqttSensorSource
from edgesiam.runtime.sources.serial import SerialSource
from edgesiam.runtime.sources.stdin import StdinSource
from edgesiam.settings import StrictModel, format_validation_error

__all__ = ["open_source", "source_config"]


class _SourceOnly(StrictModel):
    source: SourceConfig


def source_config(config_or_uri: SourceConfig | str | dict[str, Any]) -> SourceConfig:
    """A validated source config from a config, its dict, or a ``--source`` URI."""
    if isinstance(
        config_or_uri,
        FileSourceConfig
        | StdinSourceConfig
        | MicSourceConfig
        | MqttSourceConfig
        | SerialSourceConfig,
    ):
        return config_or_uri
    data = parse_source_uri(config_or_uri) if isinstance(config_or_uri, str) else config_or_uri
    try:
        return _SourceOnly.model_validate({"source": data}).source
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "--source")) from None


def open_source(
    config_or_uri: SourceConfig | str | dict[str, Any],
    fmt: StreamFormat,
    *,
    mqtt: MqttSettings | None = None,
    stdin: BinaryIO | None = None,
    client_id: str | None = None,
) -> Source:
    """Build the source a config (or ``--source`` URI) describes, for a bundle's ``fmt``.

    ``mqtt`` is the runtime's broker, which an ``mqtt:`` source uses unless it names its own;
    ``stdin`` replaces standard input (tests).
    """
    config = source_config(config_or_uri)
    if isinstance(config, FileSourceConfig):
        return FileSource(config.path, fmt, config.chunk_s, config.realtime, config.units)
    if isinstance(config, StdinSourceConfig):
        return StdinSource(
            fmt,
            config.sample_rate,
            config.channels,
            config.format,
            config.chunk_s,
            stdin,
            live=config.live,
            units=config.units,
        )
    if isinstance(config, MicSourceConfig):
        return MicSource(fmt, config.device, config.sample_rate, config.channels, config.chunk_s)
    if isinstance(config, MqttSourceConfig):
        return MqttSensorSource(
            fmt,
            config.topic,
            config.format,
            channels=config.channels,
            sample_rate=config.sample_rate,
            broker=mqtt,
            url=config.url,
            qos=config.qos,
            client_id=client_id,
            units=config.units,
        )
    return SerialSource(
        fmt,
        config.port,
        config.baudrate,
        channels=config.channels,
        sample_rate=config.sample_rate,
        chunk_s=config.chunk_s,
        units=config.units,
    )
