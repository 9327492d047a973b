"""A microphone through PortAudio (``sounddevice``), resampled to the bundle's rate when needed."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import numpy as np

from edgesiam.errors import DataError
from edgesiam.extras import import_extra
from edgesiam.runtime.sources.base import (
    Float32Array,
    StreamFormat,
    _check_channels,
    _StoppableSource,
    log,
)

__all__ = ["MicSource"]


def _import_sounddevice() -> Any:
    try:
        return import_extra("sounddevice", "mic")
    except OSError as exc:  # the package is there, PortAudio is not
        raise DataError(
            f"the mic: source needs the PortAudio library ({exc}); on Debian or Raspberry Pi OS: "
            "sudo apt-get install libportaudio2"
        ) from None


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
        super().__init__(f"mic:{device if device is not None else 'default'}")
        self.fmt = fmt
        self.sample_rate = float(fmt.sample_rate)
        self.channels = int(channels)
        _check_channels(self.channels, fmt, self.description)
        self.device = device
        self._sd = _import_sounddevice()
        self.capture_rate = self._capture_rate(sample_rate)
        self._blocksize = self._resampled_from(self.capture_rate, fmt, chunk_s)
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
                    chunk = self._rate.push(self._queue.get(timeout=self.poll_s))
                except queue.Empty:
                    continue
                if chunk.shape[0]:
                    yield chunk
