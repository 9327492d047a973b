"""What every source shares: the stream format a bundle expects, the ``Source`` interface, unit
conversion, a stoppable reader, and resampling to the bundle's rate.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Final, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from edgesiam.core.embedder import DeviceEmbedder
from edgesiam.core.resample import StreamResampler
from edgesiam.core.units import GravityCheck, conversion_factors, declared_units
from edgesiam.errors import ConfigError

log = logging.getLogger("edgesiam.runtime")


Float32Array = npt.NDArray[np.float32]

__all__ = ["Source", "StreamFormat"]


AUDIO_SUFFIXES: Final = (".wav", ".flac", ".ogg", ".opus")
SENSOR_SUFFIXES: Final = (".csv", ".npy")
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
    """What the sources share: :meth:`close` from any thread, counting rejected input, the
    conversion to the bundle's units and rate."""

    live = True
    poll_s: ClassVar[float] = 0.2
    """How often a blocked read looks whether the source was closed."""

    def __init__(self, description: str = "source") -> None:
        self.description = description
        self._stop = threading.Event()
        self.rejected = 0
        self._units: _UnitConversion | None = None

    def _convert_units(self, fmt: StreamFormat, declared: object, rate: float) -> None:
        """Convert this sensor stream from ``declared`` units to the bundle's (see the module)."""
        if fmt.modality == "sensor":
            self._units = _UnitConversion(fmt, declared, self.description, rate)

    def _sensor_shape(
        self, fmt: StreamFormat, channels: int | None, sample_rate: float | None, where: str
    ) -> None:
        """A sensor stream's channels and rate (by default the bundle's), checked against the
        bundle's channels."""
        self.channels = int(channels or fmt.stream_channels)
        self.sample_rate = float(sample_rate or fmt.sample_rate)
        _check_channels(self.channels, fmt, where)

    def _resampled_from(self, rate: float, fmt: StreamFormat, chunk_s: float) -> int:
        """Resample this source's ``rate`` to the bundle's (``self._rate``); returns the frames of
        a ``chunk_s`` chunk at ``rate``."""
        self._rate = _ToBundleRate(rate, fmt, self.channels, self.description)
        return _chunk_samples(chunk_s, rate)

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
