"""Window embeddings in a compact, quantised form for MQTT payloads (the review loop).

An event or near miss carries its window's embedding as int8 with one scale (``real = scale * q``),
base64-encoded: 64 dimensions take 88 characters. :func:`decode_embedding` checks what a command
sends back and raises ``DataError`` saying what is wrong. No audio or sensor samples are in it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from edgesiam.errors import DataError

__all__ = ["decode_embedding", "embedding_id", "encode_embedding"]

_Q: Final = 127.0


def embedding_id(embedding: npt.ArrayLike) -> str:
    """A short stable id of an embedding (its float32 bytes' sha256)."""
    data = np.ascontiguousarray(np.asarray(embedding, dtype=np.float32)).tobytes()
    return hashlib.sha256(data).hexdigest()[:12]


def encode_embedding(embedding: npt.ArrayLike) -> dict[str, Any]:
    """``{"embedding": <base64 int8>, "embedding_scale": s}`` of a ``(D,)`` or ``(1, D)`` vector."""
    x = np.asarray(embedding, dtype=np.float64).ravel()
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    scale = peak / _Q if peak > 0.0 else 1.0
    q = np.clip(np.round(x / scale), -_Q, _Q).astype(np.int8)
    return {
        "embedding": base64.b64encode(q.tobytes()).decode("ascii"),
        "embedding_scale": float(np.float32(scale)),
    }


def decode_embedding(text: object, scale: object, dim: int) -> npt.NDArray[np.float32]:
    """The L2-normalised ``(dim,)`` embedding a payload's ``embedding``/``embedding_scale`` hold."""
    if not isinstance(text, str):
        raise DataError("embedding must be base64 text (the event's 'embedding' field)")
    if (
        isinstance(scale, bool)
        or not isinstance(scale, int | float)
        or not math.isfinite(scale)
        or scale <= 0
    ):
        raise DataError(f"embedding_scale must be a positive number, got {scale!r}")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise DataError(f"embedding is not valid base64: {exc}") from None
    if len(raw) != dim:
        raise DataError(f"embedding has {len(raw)} values, this bundle's embeddings have {dim}")
    x = np.frombuffer(raw, dtype=np.int8).astype(np.float64) * float(scale)
    norm = float(np.linalg.norm(x))
    if norm == 0.0:
        raise DataError("embedding is all zeros")
    out: npt.NDArray[np.float32] = (x / norm).astype(np.float32)
    return out
