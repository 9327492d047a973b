"""Hypothesis strategies for damaged and hostile recordings: real WAVs of every common format,
then truncated, overwritten and with extreme header fields (the reader and command fuzz tests)."""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf
from hypothesis import strategies as st

SUBTYPES = ["PCM_16", "PCM_24", "PCM_32", "PCM_U8", "FLOAT", "DOUBLE", "ULAW", "ALAW", "IMA_ADPCM"]


EXTREME_U32 = [0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


def wav_file(subtype: str, channels: int, rate: int, frames: int, special: str) -> bytes:
    """A real WAV written by libsndfile; ``special`` puts NaN/Inf or out-of-range samples in."""
    x = np.random.default_rng(frames).uniform(-0.9, 0.9, (frames, channels))
    if frames and special != "none" and subtype in ("FLOAT", "DOUBLE"):
        # only float files can hold these; libsndfile 1.2 crashes writing 1e6 as ULAW/ALAW
        x[frames // 2, 0] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "big": 1e6}[special]
    if not sf.check_format("WAV", subtype) or (subtype.endswith("ADPCM") and channels > 2):
        subtype = "PCM_16"  # libsndfile cannot write this combination
    buf = io.BytesIO()
    sf.write(buf, x, rate, subtype=subtype, format="WAV")
    return buf.getvalue()


wavs = st.builds(
    wav_file,
    st.sampled_from(SUBTYPES),
    st.integers(1, 4),
    st.sampled_from([1, 8, 8000, 16000, 22050, 44100, 192000]),
    st.integers(1, 4000),
    st.sampled_from(["none", "none", "nan", "inf", "-inf", "big"]),
)


@st.composite
def mutated(draw: st.DrawFn, files: st.SearchStrategy[bytes]) -> bytes:
    """A file with a few of: a truncation, overwritten bytes, an extreme 16/32-bit header field,
    random bytes appended."""
    data = bytearray(draw(files))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["truncate", "byte", "u32", "u16", "append"]))
        if op == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif op == "append":
            data += draw(st.binary(max_size=64))
        elif data:
            at = draw(st.integers(0, min(len(data), 64) - 1))  # mostly the header
            if op == "byte":
                data[at] = draw(st.integers(0, 255))
            elif op == "u32":
                data[at : at + 4] = struct.pack("<I", draw(st.sampled_from(EXTREME_U32)))
            else:
                data[at : at + 2] = struct.pack("<H", draw(st.sampled_from([0, 1, 0xFFFF, 3])))
    return bytes(data)
