"""atheris harness: MQTT sensor payloads and serial CSV lines (``edgesiam.runtime.sources``).

The first byte picks the parser (``j``: JSON rows, ``f``: packed float32, anything else: one CSV
line); the rest is the message. ``DataError`` is the expected answer to a bad message; any other
exception (which would end the MQTT source's network thread) is a crash.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["edgesiam"]):
    import numpy as np

    from edgesiam.errors import DataError
    from edgesiam.runtime.sources.rows import parse_csv_row, parse_sensor_payload

CHANNELS = 3


def test_one_input(data: bytes) -> None:
    if not data:
        return
    kind, body = data[:1], data[1:]
    try:
        if kind in (b"j", b"f"):
            rows = parse_sensor_payload(body, "json" if kind == b"j" else "f32le", CHANNELS)
            assert rows.dtype == np.float32 and rows.shape[1] == CHANNELS and rows.shape[0] >= 1
        else:
            row = parse_csv_row(body.decode("utf-8", "replace"), CHANNELS, allow_header=True)
            assert row is None or row.shape == (CHANNELS,)
    except DataError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
