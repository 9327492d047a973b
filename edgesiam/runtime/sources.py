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
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import queue
import select
import stat
import struct
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from edgesiam.core.embedder import DeviceEmbedder
from edgesiam.core.resample import StreamResampler
from edgesiam.core.units import GravityCheck, conversion_factors, declared_units
from edgesiam.errors import ConfigError, DataError, MissingExtraError
from edgesiam.mqtt.client import MqttSettings, make_client, paho, parse_broker_url
from edgesiam.runtime.config import (
    FileSourceConfig,
    MicSourceConfig,
    MqttSourceConfig,
    SerialSourceConfig,
    SourceConfig,
    StdinSourceConfig,
    parse_source_uri,
)
from edgesiam.settings import StrictModel, format_validation_error

__all__ = [
    "FileSource",
    "MicSource",
    "MqttSensorSource",
    "SerialSource",
    "Source",
    "StdinSource",
    "StreamFormat",
    "StreamPacing",
    "open_source",
    "parse_csv_row",
    "parse_sensor_payload",
    "source_config",
]

log = logging.getLogger("edgesiam.runtime")

Float32Array = npt.NDArray[np.float32]

AUDIO_SUFFIXES: Final = (".wav", ".flac", ".ogg", ".opus")
SENSOR_SUFFIXES: Final = (".csv", ".npy")
_POLL_S: Final = 0.2
"""How often a blocked read looks whether the source was closed."""
_WIDTH_CHECK: Final = 10
"""Rows of the wrong width in a row, from the start, before a stream is declared unusable."""
_GRAVITY_CHECK_S: Final = 10.0
"""Seconds at the start of a sensor stream that the gravity check looks at."""
_UNITS_SETTING: Final = "the source's units (source.units, or ?units= in --source)"


@dataclass(frozen=True)
class StreamFormat:
    """What the bundle expects of a stream."""

    modality: Literal["audio", "sensor"]
    sample_rate: int
    channels: int
    channel_names: tuple[str, ...] | None = None
    channel_units: tuple[str | None, ...] | None = None

    @classmethod
    def of(cls, embedder: DeviceEmbedder) -> StreamFormat:
        """The format of a ``DeviceEmbedder`` (a loaded bundle)."""
        names = getattr(embedder, "channel_names", None)
        units = getattr(embedder, "channel_units", None)
        modality: Literal["audio", "sensor"] = "audio" if embedder.modality == "audio" else "sensor"
        return cls(
            modality,
            int(embedder.sample_rate),
            int(embedder.channels),
            tuple(names) if names else None,
            tuple(units) if units else None,
        )

    @property
    def stream_channels(self) -> int:
        """Channels of the chunks the pipeline takes: 1 for (mono) audio."""
        return 1 if self.modality == "audio" else self.channels


@runtime_checkable
class Source(Protocol):
    """A stream of samples."""

    description: str
    sample_rate: float
    channels: int
    live: bool
    rejected: int

    def chunks(self) -> Iterator[Float32Array]:
        """Float32 chunks ``(n, channels)`` until the stream ends or :meth:`close` is called."""
        ...

    def close(self) -> None:
        """Stop: :meth:`chunks` returns soon; safe to call from any thread, more than once."""
        ...


class _UnitConversion:
    """A sensor stream's chunks in the bundle's units; the gravity check on its first seconds."""

    def __init__(self, fmt: StreamFormat, declared: object, where: str, rate: float) -> None:
        names = list(fmt.channel_names) if fmt.channel_names else None
        target = list(fmt.channel_units) if fmt.channel_units else None
        try:
            have = declared_units(declared, names, fmt.channels)
            self.factors = conversion_factors(have, target)
        except ConfigError as exc:
            raise ConfigError(f"{where}: units: {exc}") from None
        effective = [h if h is not None else t for h, t in zip(have, target or have, strict=True)]
        self.check = GravityCheck(effective, names, _UNITS_SETTING, round(_GRAVITY_CHECK_S * rate))
        self.where = where

    def __call__(self, chunk: Float32Array) -> Float32Array:
        warning = self.check.push(chunk)
        if warning:
            log.warning("%s: %s", self.where, warning)
        if self.factors is None:
            return chunk
        return np.asarray(chunk * self.factors, dtype=np.float32)


class _StoppableSource:
    description = "source"
    live = True

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.rejected = 0
        self._units: _UnitConversion | None = None

    def _convert_units(self, fmt: StreamFormat, declared: object, rate: float) -> None:
        """Convert this sensor stream from ``declared`` units to the bundle's (see the module)."""
        if fmt.modality == "sensor":
            self._units = _UnitConversion(fmt, declared, self.description, rate)

    def _in_bundle_units(self, chunk: Float32Array) -> Float32Array:
        return chunk if self._units is None else self._units(chunk)

    def close(self) -> None:
        self._stop.set()

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def _reject(self, what: str, why: str) -> None:
        """Count a malformed piece of input; log the first ones and then every 100th."""
        self.rejected += 1
        if self.rejected <= 5 or self.rejected % 100 == 0:
            log.warning(
                "%s: skipped %s (%s); %d skipped so far", self.description, what, why, self.rejected
            )


def _check_channels(channels: int, fmt: StreamFormat, where: str, hint: str = "") -> None:
    if channels != fmt.stream_channels:
        wanted = "mono audio (1 channel)" if fmt.modality == "audio" else f"{fmt.channels} channels"
        raise ConfigError(
            f"{where} delivers {channels} channel(s) but the bundle takes {wanted}{hint}"
        )


def _chunk_samples(chunk_s: float, rate: float) -> int:
    return max(1, round(chunk_s * rate))


class _ToBundleRate:
    """Chunks at a source's own rate → chunks at the bundle's (passed through when they agree)."""

    def __init__(self, rate: float, fmt: StreamFormat, channels: int, where: str) -> None:
        self._resampler: StreamResampler | None = None
        self._channels = channels
        if math.isclose(rate, fmt.sample_rate, rel_tol=1e-6):
            return
        if rate != int(rate):
            raise ConfigError(f"{where}: a sample rate of {rate:g} cannot be resampled; give Hz")
        self._resampler = StreamResampler(
            int(rate), fmt.sample_rate, None if channels == 1 else channels
        )
        log.log(
            logging.WARNING if rate < fmt.sample_rate else logging.INFO,
            "%s: %d samples/s resampled to the bundle's %d on the device%s",
            where,
            rate,
            fmt.sample_rate,
            " (upsampled: the stream holds nothing above its own Nyquist frequency)"
            if rate < fmt.sample_rate
            else "",
        )

    def push(self, chunk: Float32Array) -> Float32Array:
        if self._resampler is None:
            return chunk
        return self._shaped(self._resampler.push(chunk[:, 0] if self._channels == 1 else chunk))

    def flush(self) -> Float32Array:
        if self._resampler is None:
            return np.zeros((0, self._channels), np.float32)
        return self._shaped(self._resampler.flush())

    def _shaped(self, out: Float32Array) -> Float32Array:
        return out.reshape(-1, self._channels)


# ------------------------------------------------------------------------------------------------
# file


class FileSource(_StoppableSource):
    """An audio file (resampled to the bundle's rate, channels averaged) or a sensor recording.

    Read as fast as the pipeline takes it, or paced at the stream's rate with ``realtime``.
    Non-finite samples are passed on (the front-end replaces them); the stream ends with the file.
    A sensor CSV's columns are matched to the bundle's channels by their header's names, and its
    samples converted from ``units`` to the bundle's; the file's ``dataset.toml`` (beside it or
    above its label folder) gives its rate, column names and units.
    """

    def __init__(
        self,
        path: str | Path,
        fmt: StreamFormat,
        chunk_s: float = 0.1,
        realtime: bool = False,
        units: object = None,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.description = f"file:{self.path}"
        self.live = bool(realtime)
        self.realtime = bool(realtime)
        self.sample_rate = float(fmt.sample_rate)
        self.channels = fmt.stream_channels
        self.fmt = fmt
        suffix = self.path.suffix.lower()
        if not self.path.is_file():
            raise DataError("no such file", self.path)
        if suffix in AUDIO_SUFFIXES:
            if fmt.modality != "audio":
                raise ConfigError(
                    f"{self.path}: an audio file cannot feed a {fmt.modality} bundle; "
                    f"give a {' or '.join(SENSOR_SUFFIXES)} recording"
                )
            self._native_rate = self._probe_audio()
            self._chunk = _chunk_samples(chunk_s, self._native_rate)
            self._sensor: Float32Array | None = None
        elif suffix in SENSOR_SUFFIXES:
            if fmt.modality != "sensor":
                raise ConfigError(
                    f"{self.path}: a sensor recording cannot feed an audio bundle; "
                    f"give a {', '.join(AUDIO_SUFFIXES)} file"
                )
            from edgesiam.data.readers import SensorSpec, read_recording_for

            spec = SensorSpec(fmt.sample_rate, None, fmt.channel_names, fmt.channel_units)
            data = read_recording_for(self.path, spec, units=units, setting=_UNITS_SETTING)
            _check_channels(data.shape[1], fmt, str(self.path), " (one column per channel)")
            self._sensor = data
            self._chunk = _chunk_samples(chunk_s, self.sample_rate)
        else:
            raise DataError(
                f"unknown file type {suffix!r}; expected one of "
                f"{', '.join(AUDIO_SUFFIXES + SENSOR_SUFFIXES)}",
                self.path,
            )

    def _probe_audio(self) -> int:
        import soundfile as sf

        try:
            info = sf.info(str(self.path))
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise DataError(f"cannot read audio ({exc})", self.path) from exc
        if info.frames == 0:
            raise DataError("holds no audio samples", self.path)
        return int(info.samplerate)

    @property
    def duration_s(self) -> float:
        """Length of the stream in seconds."""
        if self._sensor is not None:
            return float(self._sensor.shape[0]) / self.sample_rate
        import soundfile as sf

        duration: float = sf.info(str(self.path)).duration
        return duration

    def chunks(self) -> Iterator[Float32Array]:
        raw = self._sensor_chunks() if self._sensor is not None else self._audio_chunks()
        yield from self._paced(raw) if self.realtime else raw

    def _sensor_chunks(self) -> Iterator[Float32Array]:
        assert self._sensor is not None
        for start in range(0, self._sensor.shape[0], self._chunk):
            if self.closed:
                return
            yield self._sensor[start : start + self._chunk]

    def _audio_chunks(self) -> Iterator[Float32Array]:
        import soundfile as sf
        import soxr

        resampler = (
            soxr.ResampleStream(self._native_rate, self.fmt.sample_rate, 1, dtype="float32")
            if self._native_rate != self.fmt.sample_rate
            else None
        )
        try:
            with sf.SoundFile(str(self.path)) as f:
                while not self.closed:
                    block = f.read(frames=self._chunk, dtype="float32", always_2d=True)
                    last = block.shape[0] < self._chunk
                    mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1)
                    mono = np.ascontiguousarray(mono, dtype=np.float32)
                    if resampler is not None:
                        mono = resampler.resample_chunk(mono, last=last)
                    if mono.shape[0]:
                        yield mono[:, None]
                    if last:
                        return
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise DataError(f"cannot read audio ({exc})", self.path) from exc

    def _paced(self, chunks: Iterator[Float32Array]) -> Iterator[Float32Array]:
        """Hand each chunk over when its last sample would have been recorded."""
        start = time.monotonic()
        sent = 0
        for chunk in chunks:
            sent += chunk.shape[0]
            due = start + sent / self.sample_rate
            while not self.closed and (wait := due - time.monotonic()) > 0:
                self._stop.wait(min(wait, _POLL_S))
            if self.closed:
                return
            yield chunk


# ------------------------------------------------------------------------------------------------
# standard input


_PCM: Final[dict[str, tuple[np.dtype[Any], float]]] = {
    "s16le": (np.dtype("<i2"), 1.0 / 32768.0),
    "f32le": (np.dtype("<f4"), 1.0),
}


@dataclass(frozen=True)
class WavHeader:
    sample_rate: int
    channels: int
    format: str  # s16le, f32le or something this source cannot read


def read_wav_header(read: Any) -> WavHeader:
    """Parse the chunks of a RIFF/WAVE header after its first 12 bytes, up to the data chunk."""

    def exactly(n: int) -> bytes:
        out = b""
        while len(out) < n:
            more = read(n - len(out))
            if not more:
                raise DataError("standard input ended inside a WAV header")
            out += more
        return out

    fmt: WavHeader | None = None
    while True:
        chunk_id, size = struct.unpack("<4sI", exactly(8))
        if chunk_id == b"data":
            if fmt is None:
                raise DataError("the WAV stream on standard input has no 'fmt ' chunk")
            return fmt
        body = exactly(size + (size & 1))
        if chunk_id == b"fmt ":
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == 0xFFFE and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]
            name = {(1, 16): "s16le", (3, 32): "f32le"}.get((tag, bits), f"tag {tag}, {bits} bit")
            fmt = WavHeader(int(rate), int(channels), name)


class StreamPacing:
    """Whether a stream arrives in real time (a microphone, ``arecord``) or faster (a file).

    A live stream is never ahead of the wall clock by more than what was buffered before the first
    read (``buffered_s``: a pipe holds 64 KiB by default); a recording read as fast as it can be is
    soon far ahead. :attr:`unpaced` is set, for good, once the stream is ahead by more than that.
    """

    def __init__(self, rate: float, buffered_s: float) -> None:
        self.rate = float(rate)
        self.limit_s = float(buffered_s) + 1.0  # and a second of the recorder's own buffer
        self.unpaced = False
        self._started: float | None = None
        self._frames = 0

    def add(self, frames: int) -> None:
        """Count ``frames`` that have just arrived."""
        now = time.monotonic()
        if self._started is None:
            self._started = now
        self._frames += frames
        if not self.unpaced and self.ahead_s(now) > self.limit_s:
            self.unpaced = True

    def ahead_s(self, now: float | None = None) -> float:
        """Seconds of stream received beyond the wall-clock time since the first samples."""
        if self._started is None:
            return 0.0
        return self._frames / self.rate - (
            (time.monotonic() if now is None else now) - self._started
        )


def _pipe_bytes(stream: Any) -> int:
    """What the pipe under ``stream`` holds before its writer blocks; 64 KiB if unknown."""
    with contextlib.suppress(ImportError, AttributeError, OSError, io.UnsupportedOperation):
        import fcntl  # POSIX; F_GETPIPE_SZ is Linux's

        return int(fcntl.fcntl(stream.fileno(), fcntl.F_GETPIPE_SZ))
    return 65536


def _is_regular_file(stream: Any) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (AttributeError, OSError, io.UnsupportedOperation):
        return False


class StdinSource(_StoppableSource):
    """Raw interleaved little-endian PCM from standard input (or any binary stream).

    ``live=True`` treats it as a microphone (drop when behind); ``live=False`` as a recording piped
    in (the pipe waits); ``live=None`` (the default) decides: a regular file (``< rec.raw``) waits,
    and so does a stream that runs ahead of real time (``cat rec.raw |``, see
    :class:`StreamPacing`). A rate other than the bundle's is resampled. A WAV header at the start
    (``arecord`` writes one unless given ``-t raw``) is read; its channels and encoding must be
    the configured ones, and so must its rate when ``sample_rate`` is given (else it sets it).
    """

    def __init__(
        self,
        fmt: StreamFormat,
        sample_rate: int | None = None,
        channels: int = 1,
        encoding: Literal["s16le", "f32le"] = "s16le",
        chunk_s: float = 0.1,
        stream: BinaryIO | None = None,
        live: bool | None = None,
        units: object = None,
    ) -> None:
        super().__init__()
        self.description = "stdin"
        self.fmt = fmt
        self.sample_rate = float(fmt.sample_rate)
        self.input_rate = int(sample_rate or fmt.sample_rate)
        self._rate_given = sample_rate is not None
        self.channels = int(channels)
        self.encoding = encoding
        hint = (
            f"; record mono, e.g. arecord -f S16_LE -r {fmt.sample_rate} -c 1"
            if fmt.modality == "audio"
            else ""
        )
        _check_channels(self.channels, fmt, "stdin", hint)
        self._rate = _ToBundleRate(self.input_rate, fmt, self.channels, "stdin")
        self._convert_units(fmt, units, self.sample_rate)
        self._stream = stream
        self._chunk_frames = _chunk_samples(chunk_s, self.input_rate)
        source = stream if stream is not None else getattr(sys.stdin, "buffer", None)
        self._live = False if live is None and _is_regular_file(source) else live
        frame_bytes = _PCM[encoding][0].itemsize * self.channels
        self.pacing = StreamPacing(
            self.input_rate, _pipe_bytes(source) / (frame_bytes * self.input_rate)
        )

    @property
    def live(self) -> bool:
        """Declared, or until the stream has run ahead of real time."""
        return self._live if self._live is not None else not self.pacing.unpaced

    @live.setter
    def live(self, value: bool | None) -> None:
        self._live = value

    @property
    def unpaced(self) -> bool:
        """The stream has run ahead of real time: a recording, not a microphone."""
        return self.pacing.unpaced

    def wait_for_room(self) -> bool:
        """Asked by the pipeline when its queue is full: wait (True) or drop the chunk (False)?

        Undecided, it waits while the stream is ahead of real time: a live stream can be so only
        by what the pipe held, which the wait cannot overflow."""
        if self._live is not None:
            return not self._live
        return self.pacing.unpaced or self.pacing.ahead_s() > 0.0

    def _reader(self) -> Any:
        stream = self._stream if self._stream is not None else sys.stdin.buffer
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            return stream.read

        def read(n: int) -> bytes:
            while not self.closed:
                ready, _, _ = select.select([fd], [], [], _POLL_S)
                if ready:
                    return os.read(fd, n)
            return b""

        return read

    def chunks(self) -> Iterator[Float32Array]:
        read = self._reader()
        dtype, scale = _PCM[self.encoding]
        frame_bytes = dtype.itemsize * self.channels
        pending = b""
        rate: _ToBundleRate | None = None
        while not self.closed:
            data = read(self._chunk_frames * frame_bytes - len(pending))
            if not data:
                break
            if rate is None:
                declared = self.input_rate
                data = self._skip_wav_header(read, data)
                rate = self._rate
                if self.input_rate != declared:  # the WAV header's rate
                    rate = _ToBundleRate(self.input_rate, self.fmt, self.channels, "stdin (WAV)")
            pending += data
            usable = len(pending) - len(pending) % frame_bytes
            if usable == 0:
                continue
            samples = np.frombuffer(pending[:usable], dtype=dtype).astype(np.float32)
            pending = pending[usable:]
            if scale != 1.0:
                samples *= np.float32(scale)
            self.pacing.add(samples.shape[0] // self.channels)
            out = rate.push(samples.reshape(-1, self.channels))
            if out.shape[0]:
                yield self._in_bundle_units(out)
        if rate is not None and not self.closed and (tail := rate.flush()).shape[0]:
            yield self._in_bundle_units(tail)
        if pending:
            log.warning("stdin: ignored %d trailing byte(s) of an incomplete frame", len(pending))

    def _skip_wav_header(self, read: Any, data: bytes) -> bytes:
        while len(data) < 12:
            more = read(12 - len(data))
            if not more:
                return data
            data += more
        if not (data[:4] == b"RIFF" and data[8:12] == b"WAVE"):
            return data
        body = io.BytesIO(data[12:])

        def read_rest(n: int) -> bytes:
            got = body.read(n)
            return got if len(got) == n else got + (read(n - len(got)) or b"")

        header = read_wav_header(read_rest)
        if not self._rate_given and header.sample_rate != self.input_rate:
            self.input_rate = header.sample_rate  # arecord -r 48000 | …: resampled
            self.pacing.rate = float(header.sample_rate)
        expected = WavHeader(self.input_rate, self.channels, self.encoding)
        if header != expected:
            raise DataError(
                f"standard input carries WAV at {header.sample_rate} Hz, {header.channels} "
                f"channel(s), {header.format}; this source expects {expected.sample_rate} Hz, "
                f"{expected.channels} channel(s), {expected.format} (arecord -f S16_LE -r "
                f"{self.fmt.sample_rate} -c {expected.channels}, or set the stdin source's "
                "sample_rate/channels/format)"
            )
        return body.read()


# ------------------------------------------------------------------------------------------------
# microphone


def _import_sounddevice() -> Any:
    try:
        import sounddevice
    except ModuleNotFoundError:
        raise MissingExtraError("sounddevice", "mic") from None
    except OSError as exc:  # the package is there, PortAudio is not
        raise DataError(
            f"the mic: source needs the PortAudio library ({exc}); on Debian or Raspberry Pi OS: "
            "sudo apt-get install libportaudio2"
        ) from None
    return sounddevice


class MicSource(_StoppableSource):
    """A PortAudio input device, read in float32.

    It records at ``sample_rate`` when given, else at the bundle's rate when the device can, else
    at the device's own default rate (many USB microphones do only 44.1 or 48 kHz); anything but
    the bundle's rate is resampled on the device.
    """

    def __init__(
        self,
        fmt: StreamFormat,
        device: str | int | None = None,
        sample_rate: int | None = None,
        channels: int = 1,
        chunk_s: float = 0.1,
    ) -> None:
        super().__init__()
        self.description = f"mic:{device if device is not None else 'default'}"
        self.live = True
        self.fmt = fmt
        self.sample_rate = float(fmt.sample_rate)
        self.channels = int(channels)
        _check_channels(self.channels, fmt, self.description)
        self.device = device
        self._sd = _import_sounddevice()
        self.capture_rate = self._capture_rate(sample_rate)
        self._rate = _ToBundleRate(self.capture_rate, fmt, self.channels, self.description)
        self._blocksize = _chunk_samples(chunk_s, self.capture_rate)
        self._queue: queue.Queue[Float32Array] = queue.Queue(maxsize=64)
        self.overflows = 0

    def _capture_rate(self, requested: int | None) -> int:
        """The rate to open the device at: the one asked for, the bundle's, or the device's own."""
        first = int(requested or self.fmt.sample_rate)
        failure = self._cannot_record(first)
        if failure is None:
            return first
        native = None if requested else self._default_rate()
        if native is None or native == first:
            raise failure
        if (other := self._cannot_record(native)) is not None:
            raise other
        log.info(
            "%s does not record at %d Hz; recording at its own %d Hz",
            self.description,
            first,
            native,
        )
        return native

    def _cannot_record(self, rate: int) -> DataError | None:
        try:
            self._sd.check_input_settings(
                device=self.device, channels=self.channels, samplerate=rate, dtype="float32"
            )
        except Exception as exc:  # PortAudio reports anything as PortAudioError/ValueError
            return DataError(
                f"{self.description} cannot record {self.channels} channel(s) at "
                f"{rate:g} Hz ({exc}); list devices with: python -m sounddevice"
            )
        return None

    def _default_rate(self) -> int | None:
        try:
            info = self._sd.query_devices(self.device, "input")
            return round(float(info["default_samplerate"]))
        except Exception:  # no such device, or no default rate: the first error says it
            return None

    def _callback(self, indata: np.ndarray, frames: int, when: Any, status: Any) -> None:
        if status and getattr(status, "input_overflow", False):
            self.overflows += 1
        try:
            self._queue.put_nowait(np.array(indata, dtype=np.float32))
        except queue.Full:
            self.overflows += 1

    def chunks(self) -> Iterator[Float32Array]:
        stream = self._sd.InputStream(
            device=self.device,
            channels=self.channels,
            samplerate=self.capture_rate,
            dtype="float32",
            blocksize=self._blocksize,
            callback=self._callback,
        )
        with stream:
            while not self.closed:
                try:
                    chunk = self._rate.push(self._queue.get(timeout=_POLL_S))
                except queue.Empty:
                    continue
                if chunk.shape[0]:
                    yield chunk


# ------------------------------------------------------------------------------------------------
# rows of sensor values (MQTT, serial)


def parse_sensor_payload(
    payload: bytes, encoding: Literal["json", "f32le"], channels: int
) -> Float32Array:
    """One MQTT message → rows ``(n, channels)`` float32; ``DataError`` says what is wrong.

    JSON: a row ``[x, y, …]``, a list of rows, or ``{"samples": rows}``; ``null`` is NaN.
    f32le: packed little-endian float32, ``channels`` values per row.
    """
    if encoding == "f32le":
        width = 4 * channels
        if len(payload) == 0 or len(payload) % width:
            raise DataError(
                f"{len(payload)} bytes is not a whole number of rows of {channels} float32 "
                f"({width} bytes each)"
            )
        return np.frombuffer(payload, dtype="<f4").astype(np.float32).reshape(-1, channels)
    try:
        data = json.loads(payload)
    except ValueError as exc:  # not UTF-8, not JSON, or an integer of over 4300 digits
        raise DataError(f"not JSON ({exc})") from None
    except RecursionError:
        raise DataError("not usable JSON (nested too deeply)") from None
    if isinstance(data, dict):
        if "samples" not in data:
            raise DataError(f"a JSON object needs a 'samples' list of rows; keys: {sorted(data)}")
        data = data["samples"]
    if isinstance(data, list) and data and not isinstance(data[0], list):
        data = [data]
    if not isinstance(data, list) or not data:
        raise DataError("expected a row [x, y, …] or a non-empty list of rows")
    for row in data:
        if not isinstance(row, list) or len(row) != channels:
            got = len(row) if isinstance(row, list) else type(row).__name__
            raise DataError(f"a row has {got} value(s); the bundle takes {channels} channels")
        if not all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in row
        ):
            raise DataError(f"a row holds something other than numbers: {row!r}")
    try:
        rows = [[np.nan if v is None else float(v) for v in row] for row in data]
    except OverflowError:
        raise DataError("a value is too large to be a number (beyond float range)") from None
    with np.errstate(over="ignore"):  # beyond float32's range is ±Inf, like any non-finite sample
        return np.array(rows, dtype=np.float32)


def parse_csv_row(line: str, channels: int, allow_header: bool = True) -> Float32Array | None:
    """One line of CSV → a row ``(channels,)``; None for a blank line or an allowed header.

    Values may be separated by commas, semicolons, tabs or spaces; ``nan`` is NaN. A line with
    the wrong number of values, or text once headers are no longer allowed, raises ``DataError``.
    """
    text = line.strip()
    if not text:
        return None
    fields = _csv_fields(text)
    try:
        values = [float(f) for f in fields]
    except ValueError:
        if allow_header and not any(_is_number(f) for f in fields):
            return None  # a header line
        raise DataError(f"not all values are numbers: {text[:80]!r}") from None
    if len(values) != channels:
        raise DataError(f"a line has {len(values)} value(s); the bundle takes {channels} channels")
    with np.errstate(over="ignore"):  # beyond float32's range is ±Inf, like any non-finite sample
        return np.array(values, dtype=np.float32)


def _csv_fields(text: str) -> list[str]:
    for sep in (",", ";", "\t"):
        if sep in text:
            return [f.strip() for f in text.split(sep)]
    return text.split()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class MqttSensorSource(_StoppableSource):
    """Sensor rows from an MQTT topic (JSON or packed float32), at a nominal rate.

    ``broker`` is the runtime's broker (address, credentials, TLS); ``url`` names another broker
    instead, reached without credentials. The subscription is renewed on every reconnect;
    :attr:`subscribed` is set once the broker has confirmed it (tests wait on it).
    """

    def __init__(
        self,
        fmt: StreamFormat,
        topic: str,
        encoding: Literal["json", "f32le"] = "json",
        *,
        channels: int | None = None,
        sample_rate: float | None = None,
        broker: MqttSettings | None = None,
        url: str | None = None,
        qos: int = 0,
        client_id: str | None = None,
        units: object = None,
    ) -> None:
        super().__init__()
        self.topic = topic
        self.encoding = encoding
        self.channels = int(channels or fmt.stream_channels)
        self.sample_rate = float(sample_rate or fmt.sample_rate)
        self.live = True
        _check_channels(self.channels, fmt, f"mqtt:{topic}")
        paho()  # a missing extra is said when the source is made, not on the network thread
        self.broker = broker if url is None else None
        self.address = (
            parse_broker_url(url)
            if url is not None
            else broker.address
            if broker is not None
            else parse_broker_url("mqtt://localhost:1883")
        )
        scheme = "mqtts" if self.address.tls else "mqtt"
        self.description = f"{scheme}://{self.address.host}:{self.address.port}/{topic}"
        self.qos = qos
        self.client_id = client_id
        self._convert_units(fmt, units, self.sample_rate)
        self._queue: queue.Queue[Float32Array] = queue.Queue(maxsize=1024)
        self.subscribed = threading.Event()
        self.overflows = 0

    def _client(self) -> Any:
        client = make_client(
            self.client_id or "", protocol="3.1.1", settings=self.broker, tls=self.address.tls
        )
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("%s: the broker refused the connection: %s", self.description, reason)
            return
        client.subscribe(self.topic, qos=self.qos)

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, reasons: Any, props: Any) -> None:
        if any(getattr(r, "is_failure", False) for r in reasons):
            log.warning("%s: the broker refused the subscription: %s", self.description, reasons)
            return
        self.subscribed.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.subscribed.clear()
        if not self.closed:
            log.warning("%s: disconnected (%s); reconnecting", self.description, reason)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            rows = parse_sensor_payload(bytes(message.payload), self.encoding, self.channels)
        except DataError as exc:
            self._reject(f"a message on {message.topic}", str(exc))
            return
        except Exception:  # a parser bug must not end paho's network loop, and the stream with it
            log.exception("%s: could not parse a message on %s", self.description, message.topic)
            self._reject(f"a message on {message.topic}", "unreadable")
            return
        try:
            self._queue.put_nowait(rows)
        except queue.Full:
            self.overflows += 1

    def chunks(self) -> Iterator[Float32Array]:
        client = self._client()
        keepalive = self.broker.keepalive if self.broker is not None else 30
        client.connect_async(self.address.host, self.address.port, keepalive=keepalive)
        client.loop_start()
        try:
            while not self.closed:
                try:
                    rows = self._queue.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                yield self._in_bundle_units(rows)
        finally:
            client.disconnect()
            client.loop_stop()


def _import_serial() -> Any:
    try:
        import serial
    except ModuleNotFoundError:
        raise MissingExtraError("pyserial", "serial") from None
    return serial


class SerialSource(_StoppableSource):
    """One sample per CSV line from a serial port (an Arduino, an IMU breakout, a pyserial URL).

    Lines are gathered into chunks of ``chunk_s`` seconds, or fewer when the line stops for a
    moment. A header line that names the bundle's channels sets the columns' order (one that names
    some but not all of them ends the stream with an error); a malformed line is counted in
    :attr:`rejected`.
    """

    def __init__(
        self,
        fmt: StreamFormat,
        port: str,
        baudrate: int = 115200,
        *,
        channels: int | None = None,
        sample_rate: float | None = None,
        chunk_s: float = 0.1,
        stream: Any | None = None,
        units: object = None,
    ) -> None:
        super().__init__()
        self.port = port
        self.description = f"serial:{port}"
        self.live = True
        self.channels = int(channels or fmt.stream_channels)
        self.sample_rate = float(sample_rate or fmt.sample_rate)
        _check_channels(self.channels, fmt, self.description)
        self._convert_units(fmt, units, self.sample_rate)
        self._names = fmt.channel_names
        self._chunk = _chunk_samples(chunk_s, self.sample_rate)
        if stream is None:
            serial = _import_serial()
            try:
                stream = serial.serial_for_url(port, baudrate=baudrate, timeout=_POLL_S)
            except (serial.SerialException, ValueError) as exc:
                raise DataError(f"cannot open the serial port ({exc})", port) from None
        self._stream = stream

    def chunks(self) -> Iterator[Float32Array]:
        rows: list[Float32Array] = []
        started = False  # a header may come before the first row, not after
        order: list[int] | None = None  # the bundle's channels among a header's columns
        try:
            while not self.closed:
                line = self._stream.readline()
                if line:
                    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
                    width = self.channels if order is None else len(_csv_fields(text.strip()))
                    try:
                        row = parse_csv_row(text, width, allow_header=not started)
                    except DataError as exc:
                        self._reject("a line", str(exc))
                        row = None
                    else:
                        if row is None and not started and text.strip():
                            order = self._header_order(_csv_fields(text.strip()))
                        started = started or row is not None
                    if row is not None:
                        rows.append(row if order is None else row[order])
                if rows and (len(rows) >= self._chunk or not line):
                    yield self._in_bundle_units(np.stack(rows))
                    rows = []
                if not line and self._at_end():
                    break
        finally:
            with contextlib.suppress(Exception):
                self._stream.close()

    def _header_order(self, columns: list[str]) -> list[int] | None:
        """Where the bundle's channels are among a header's ``columns`` (None: in order)."""
        if not self._names:
            return None
        from edgesiam.data.readers import column_order

        order = column_order(columns, self._names, self.description)
        if order is None:
            log.warning(
                "%s: its header (%s) names none of the bundle's channels: columns taken in the "
                "bundle's order (%s)",
                self.description,
                ", ".join(columns),
                ", ".join(self._names),
            )
        return order

    def _at_end(self) -> bool:
        """A port only times out; a file-like stream (tests, replays) ends."""
        return not hasattr(self._stream, "in_waiting")


# ------------------------------------------------------------------------------------------------
# construction


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
