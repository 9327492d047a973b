"""Rows of sensor values as they arrive from MQTT or a serial port: JSON or packed float32
payloads, CSV lines.
"""

from __future__ import annotations

import json
from typing import Literal

import numpy as np

from edgesiam.errors import DataError
from edgesiam.runtime.sources.base import Float32Array

__all__ = ["parse_csv_row", "parse_sensor_payload"]


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
    fields = csv_fields(text)
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


def csv_fields(text: str) -> list[str]:
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
