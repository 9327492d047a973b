"""A recording read from a file, as fast as it goes or at real time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgesiam.errors import ConfigError, DataError
from edgesiam.runtime.sources.base import (
    _UNITS_SETTING,
    AUDIO_SUFFIXES,
    SENSOR_SUFFIXES,
    Float32Array,
    StreamFormat,
    _StoppableSource,
    check_channels,
    chunk_samples,
)

__all__ = ["FileSource"]


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
            self._chunk = chunk_samples(chunk_s, self._native_rate)
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
            check_channels(data.shape[1], fmt, str(self.path), " (one column per channel)")
            self._sensor = data
            self._chunk = chunk_samples(chunk_s, self.sample_rate)
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
                self._stop.wait(min(wait, self.poll_s))
            if self.closed:
                return
            yield chunk
