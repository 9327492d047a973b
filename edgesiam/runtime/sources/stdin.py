"""Samples piped to standard input: raw PCM or a WAV stream, live or a recording
(:class:`StreamPacing` tells which).
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import stat
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Final, Literal

import numpy as np

from edgesiam.errors import DataError
from edgesiam.runtime.sources.base import (
    Float32Array,
    StreamFormat,
    _check_channels,
    _StoppableSource,
    _ToBundleRate,
    log,
)

__all__ = ["StdinSource", "StreamPacing", "WavHeader", "read_wav_header"]


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
        super().__init__("stdin")
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
        self._chunk_frames = self._resampled_from(self.input_rate, fmt, chunk_s)
        self._convert_units(fmt, units, self.sample_rate)
        self._stream = stream
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
                ready, _, _ = select.select([fd], [], [], self.poll_s)
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
