"""The model seam: what any model offers to the numpy core (features in, embeddings out).

The device's int8 bundle (:class:`edgesiam.model.interpreters.BundleEmbedder`) and the
workstation's checkpoint (:class:`edgesiam.train.checkpoint.CheckpointEmbedder`) both have this
shape, so windowing, the front-end, pooling and the streaming matcher feed every model the same way
without importing it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from edgesiam.core.frontend import FrontEnd

__all__ = ["DeviceEmbedder"]


@runtime_checkable
class DeviceEmbedder(Protocol):
    """A model behind the front-end: its input format and ``embed_features``."""

    @property
    def modality(self) -> str: ...

    @property
    def sample_rate(self) -> int: ...

    @property
    def window(self) -> int: ...

    @property
    def hop(self) -> int: ...

    @property
    def channels(self) -> int: ...

    @property
    def frontend(self) -> FrontEnd: ...

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        """``(B, C_in, T)`` float32 features → ``(B, D)`` L2-normalised float32 embeddings."""
        ...
