"""The recording readers (``edgesiam.data.readers``) against damaged and hostile files.

Property: ``read_audio`` / ``read_sensor`` return what their contract says (float32 mono audio,
finite; float32 ``(n, C)`` sensor rows) or raise ``DataError`` naming the file, never another
exception and never a hang. Inputs: real WAVs of every common sample format, rate and channel
count, then truncated, with random bytes overwritten and with their size, rate, channel and bit
depth fields set to extreme values; CSV text built from numbers, non-numbers, separators and
control characters; ``.npy`` files of every dtype and shape, with damaged and oversized headers.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given
from hypothesis import strategies as st

from edgesiam.data.readers import read_audio, read_sensor
from edgesiam.errors import DataError
from tests.support.fuzz_scale import TIMEOUT_S, fuzz_settings
from tests.support.hostile_files import mutated, wavs

pytestmark = pytest.mark.timeout(TIMEOUT_S)


def check_audio(path: Path, rate: int) -> None:
    try:
        x = read_audio(path, rate)
    except DataError as exc:
        assert path.name in str(exc)
        return
    assert x.dtype == np.float32 and x.ndim == 1 and x.size > 0
    assert np.all(np.isfinite(x))


@fuzz_settings(150)
@given(data=mutated(wavs), rate=st.sampled_from([16000, 8000, 50]))
def test_wav_files_damaged_or_odd_read_or_fail_clearly(
    tmp_path: Path, data: bytes, rate: int
) -> None:
    path = tmp_path / "clip.wav"
    path.write_bytes(data)
    check_audio(path, rate)


@fuzz_settings(100)
@given(data=st.binary(max_size=200), prefix=st.sampled_from([b"", b"RIFF", b"RIFF\0\0\0\0WAVE"]))
def test_garbage_with_a_wav_name_fails_clearly(tmp_path: Path, data: bytes, prefix: bytes) -> None:
    path = tmp_path / "garbage.wav"
    path.write_bytes(prefix + data)
    check_audio(path, 16000)


# --- CSV ------------------------------------------------------------------------------------------

CSV_TOKENS = [
    "1", "-2.5", "3e4", "nan", "NaN", "inf", "-inf", "1e999", "", " ", "x", "acc_x", '"4"', "'5'",
    "1,5", "0x10", "1_000", "١", "\x00", "\x1b", "\u2028", "\ufeff", "#", "é",
]  # fmt: skip
CSV_SEPARATORS = [",", ";", "\t", " ", "\n", "\r\n", "\n\n", '"']


def check_sensor(path: Path, channels: int | None) -> None:
    try:
        x = read_sensor(path, channels=channels)
    except DataError as exc:
        assert path.name in str(exc)
        return
    assert x.dtype == np.float32 and x.ndim == 2 and x.shape[0] > 0 and x.shape[1] > 0
    if channels is not None:
        assert x.shape[1] == channels


@fuzz_settings(200)
@given(
    parts=st.lists(st.tuples(st.sampled_from(CSV_TOKENS), st.sampled_from(CSV_SEPARATORS))),
    channels=st.none() | st.integers(1, 4),
    encoding=st.sampled_from(["utf-8", "utf-16", "latin-1"]),
)
def test_csv_text_reads_or_fails_clearly(
    tmp_path: Path, parts: list[tuple[str, str]], channels: int | None, encoding: str
) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes("".join(t + s for t, s in parts).encode(encoding, "replace"))
    check_sensor(path, channels)


@fuzz_settings(60)
@given(data=st.binary(max_size=300))
def test_csv_random_bytes_read_or_fail_clearly(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bytes.csv"
    path.write_bytes(data)
    check_sensor(path, None)


# --- NPY ------------------------------------------------------------------------------------------

DTYPES = ["<f4", ">f8", "<f2", "<i2", "|u1", "|b1", "<c8", "<U3", "|S2", "<M8[s]", "|V4", "|O"]
SHAPES = [(5,), (7, 3), (0,), (2, 0), (2, 2, 2), (), (1, 1), (3, 6)]


def npy_file(dtype: str, shape: tuple[int, ...], special: str) -> bytes:
    array = np.zeros(shape, dtype=dtype)
    if array.size and array.dtype.kind == "f" and special != "none":
        with np.errstate(over="ignore"):  # 1e300 is Inf in float16/32
            array.flat[0] = {"nan": np.nan, "inf": np.inf, "big": 1e300}[special]
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


npys = st.builds(
    npy_file,
    st.sampled_from(DTYPES),
    st.sampled_from(SHAPES),
    st.sampled_from(["none", "nan", "inf", "big"]),
)


@fuzz_settings(200)
@given(data=mutated(npys), channels=st.none() | st.integers(1, 6))
def test_npy_files_damaged_or_odd_read_or_fail_clearly(
    tmp_path: Path, data: bytes, channels: int | None
) -> None:
    path = tmp_path / "rows.npy"
    path.write_bytes(data)
    check_sensor(path, channels)


def npy_with_header(header: str, payload: bytes = b"\0" * 40) -> bytes:
    text = header.encode("latin-1")
    pad = 64 - (10 + len(text) + 1) % 64
    return (
        b"\x93NUMPY\x01\x00" + (len(text) + pad + 1).to_bytes(2, "little") + text + b" " * pad
    ) + b"\n" + payload  # fmt: skip


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ("(1000000000000,)", "truncated or damaged"),  # numpy would try to allocate 3.6 TiB
        ("(4000000000, 3)", "truncated or damaged"),  # … or 45 GiB
        ("(100000000,)", "truncated or damaged"),
        ("\n), ", r"cannot read \.npy"),  # numpy raised tokenize.TokenError
    ],
)
def test_an_npy_header_promising_more_than_the_file_holds_is_refused_before_allocating(
    tmp_path: Path, shape: str, match: str
) -> None:
    path = tmp_path / "huge.npy"
    path.write_bytes(
        npy_with_header(f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}")
    )
    with pytest.raises(DataError, match=match):
        read_sensor(path)


def test_an_npy_header_with_bytes_keys_is_refused(tmp_path: Path) -> None:
    """numpy raised TypeError ('<' between bytes and str) on this damaged header."""
    path = tmp_path / "keys.npy"
    path.write_bytes(
        npy_with_header("{'desc\x9f': '<i2',B'fortran_order': False, 'shape': (5,), }")
    )
    with pytest.raises(DataError, match=r"cannot read \.npy"):
        read_sensor(path)


def test_complex_and_object_npy_are_refused(tmp_path: Path) -> None:
    complex_path = tmp_path / "complex.npy"
    np.save(complex_path, np.ones((4, 2), dtype=np.complex64))
    with pytest.raises(DataError, match="complex"):
        read_sensor(complex_path)
    object_path = tmp_path / "objects.npy"
    np.save(object_path, np.array([1, "a"], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="Python objects"):
        read_sensor(object_path)


def test_audio_too_short_to_resample_is_refused(tmp_path: Path) -> None:
    """One sample at 8 kHz is no sample at 50 Hz: soxr returned an empty array."""
    path = tmp_path / "one.wav"
    sf.write(path, np.array([0.5], dtype=np.float32), 8000, subtype="PCM_16")
    with pytest.raises(DataError, match="too short"):
        read_audio(path, 50)


def test_float_samples_too_large_to_resample_are_refused(tmp_path: Path) -> None:
    """Found by atheris: finite float32 samples near 3e38 came out of soxr as NaN."""
    path = tmp_path / "loud.wav"
    x = np.full((9, 2), 3e38, dtype=np.float32)
    x[::2] *= -1
    sf.write(path, x, 8000, subtype="FLOAT")
    with pytest.raises(DataError, match="far outside"):
        read_audio(path, 16000)
    assert np.all(np.isfinite(read_audio(path, 8000)))  # no resampling: kept as they are
