"""Sensor rows from a serial port (CSV lines), through pyserial."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from edgesiam.errors import DataError
from edgesiam.extras import import_extra
from edgesiam.runtime.sources.base import (
    Float32Array,
    StreamFormat,
    _chunk_samples,
    _StoppableSource,
    log,
)
from edgesiam.runtime.sources.rows import _csv_fields, parse_csv_row

__all__ = ["SerialSource"]


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
        super().__init__(f"serial:{port}")
        self.port = port
        self._sensor_shape(fmt, channels, sample_rate, self.description)
        self._convert_units(fmt, units, self.sample_rate)
        self._names = fmt.channel_names
        self._chunk = _chunk_samples(chunk_s, self.sample_rate)
        if stream is None:
            serial = import_extra("serial", "serial", package="pyserial")
            try:
                stream = serial.serial_for_url(port, baudrate=baudrate, timeout=self.poll_s)
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
