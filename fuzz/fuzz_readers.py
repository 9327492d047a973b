"""atheris harness: the recording readers (``edgesiam.data.readers``) on arbitrary files.

The first byte picks the reader (``w``: WAV through ``read_audio``, ``c``: CSV, anything else:
NPY through ``read_sensor``); the rest is the file. A ``DataError`` is the expected answer to a
bad file; any other exception, or a result that breaks the contract, is a crash.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["edgesiam"]):
    import numpy as np

    from edgesiam.data.readers import read_audio, read_sensor
    from edgesiam.errors import DataError

from common import scratch

FOLDER = scratch()


def test_one_input(data: bytes) -> None:
    if not data:
        return
    kind, body = data[:1], data[1:]
    suffix = {b"w": ".wav", b"c": ".csv"}.get(kind, ".npy")
    path = FOLDER / f"input{suffix}"
    path.write_bytes(body)
    try:
        if suffix == ".wav":
            x = read_audio(path, 16000)
            assert x.dtype == np.float32 and x.ndim == 1 and x.size and np.isfinite(x).all()
        else:
            x = read_sensor(path)
            assert x.dtype == np.float32 and x.ndim == 2 and x.shape[0] and x.shape[1]
    except DataError:
        pass


if __name__ == "__main__":
    np.seterr(all="ignore")
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
