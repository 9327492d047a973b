"""aisfx, a pretrained sound-effect embedding network (512-d), as a peer in evaluations and a
teacher for the events models.

The weights are the "X-Sequential-CE" checkpoint of Ma and Lerch, "Representation Learning for the
Automatic Indexing of Sound Effects Libraries" (ISMIR 2022; CC BY 4.0), trained on several
commercial sound-effect libraries. They are read from the ``aisfx`` wheel on PyPI, which carries
them as a pickled ``(state dict, dataset table)`` pair; :func:`load_aisfx` downloads that wheel
once into ``ROOT/.cache`` (as the data recipes do), keeps only the checkpoint and checks its
SHA-256. The package itself is never installed: it pins numpy 1.23 and librosa 0.9, which would
break the workstation's numpy 2. Nothing here reaches a bundle or the device install.

The network, written here from the published description (a 9-layer CNN with 2-D convolutions, as
in the DCASE cross-task baseline):

- four blocks of two 3×3 convolutions (no bias) each followed by batch norm and ReLU, with 64, 128,
  256 and 512 channels; 2×2 max pooling after the first three blocks;
- the mean over the frequency axis, then the maximum over time: one 512-d vector per block of 100
  spectrogram frames (about 2.3 s).

The checkpoint also holds nine classification heads (one per training library); an embedding
needs none of them, so they are left out.

Input features follow the package's own pipeline: audio at 44.1 kHz scaled to a peak of 1; frames
of 2048 samples (a Hann window) every 1024, the first centred on the first sample; power spectrum
through 96 triangular filters linear on the HTK mel scale from 0 Hz to Nyquist, each summing to 1;
``log10(1 + 10 000 · x)``, divided by the largest value over the authors' training sets (9.458).
A recording is cut into blocks of 100 frames every 50 (a shorter one, or the tail, is padded with
zeros to one block; a partial last block is dropped otherwise); its embedding is the mean of its
blocks', L2-normalised.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgesiam.errors import ModelError
from edgesiam.train.teachers.campplus import mel_filters, sha256_of

NAME = "aisfx"
SAMPLE_RATE = 44100
N_MELS = 96
EMBEDDING_DIM = 512
WHEEL = "aisfx==0.1.2"
WEIGHTS_MEMBER = "aisfx/models/checkpoint.pth"
WEIGHTS_SHA256 = "499ea75909c932a2f94c35fa722fa4fabc5bcb7e84917209cc5f7402627b7eb5"

FRAME_LENGTH = 2048
FRAME_SHIFT = 1024
LOG_SCALE = 1e4
SPEC_MAX = 9.457798957824707  # the authors' normalisation: the largest log value they saw
BLOCK_FRAMES = 100
BLOCK_HOP = 50
WIDTHS = (64, 128, 256, 512)
UPSTREAM_PREFIX = "embedding_net."
HEAD_PREFIX = "fc."


def aisfx_filters() -> np.ndarray:
    """``(96, 1025)`` mel triangles from 0 Hz to Nyquist at 44.1 kHz, each summing to 1."""
    weights = mel_filters(N_MELS, FRAME_LENGTH, SAMPLE_RATE, low_hz=0.0).astype(np.float64)
    sums = weights.sum(axis=1, keepdims=True)
    return (weights / np.where(sums > 0, sums, 1.0)).astype(np.float32)


_WINDOW = torch.hann_window(FRAME_LENGTH, periodic=False)
_FILTERS = torch.from_numpy(aisfx_filters().T.copy())


def spectrogram(audio: np.ndarray) -> torch.Tensor:
    """One 44.1 kHz recording ``(n,)`` → normalised log mel frames ``(frames, 96)``."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"expected a non-empty mono recording (n,), got shape {x.shape}")
    peak = float(np.max(np.abs(x)))
    wav = torch.from_numpy(x / peak if peak > 0 else x)
    stft = torch.stft(
        wav,
        n_fft=FRAME_LENGTH,
        hop_length=FRAME_SHIFT,
        window=_WINDOW,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    power = stft.abs().square().T  # (frames, bins)
    return torch.log10(1.0 + LOG_SCALE * (power @ _FILTERS)) / SPEC_MAX


def blocks(spec: torch.Tensor) -> torch.Tensor:
    """Frames ``(T, 96)`` → blocks ``(B, 100, 96)`` every 50 frames (zero-padded to one block)."""
    n = int(spec.shape[0])
    count = max(1, math.floor((n - BLOCK_FRAMES) / BLOCK_HOP) + 1) if n >= BLOCK_FRAMES else 1
    padded = F.pad(spec, (0, 0, 0, max(0, BLOCK_FRAMES - n)))
    return torch.stack([padded[i * BLOCK_HOP : i * BLOCK_HOP + BLOCK_FRAMES] for i in range(count)])


class _ConvBlock(nn.Module):
    """Two 3×3 convolutions with batch norm and ReLU, then optional 2×2 max pooling."""

    def __init__(self, c_in: int, c_out: int, pool: bool) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.norm_a = nn.BatchNorm2d(c_out)
        self.conv_b = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm_b = nn.BatchNorm2d(c_out)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm_a(self.conv_a(x)))
        x = F.relu(self.norm_b(self.conv_b(x)))
        return F.max_pool2d(x, 2) if self.pool else x


class AiSfx(nn.Module):
    """Blocks of normalised log mel ``(B, 100, 96)`` → embeddings ``(B, 512)`` (not normalised).

    :meth:`embed` takes a 44.1 kHz recording and returns its L2-normalised numpy embedding.
    ``weights_sha256`` names the weights loaded (empty for random ones); caches key on it.
    """

    name = NAME
    sample_rate = SAMPLE_RATE
    revision = 1
    """Raise it when a change here alters what :meth:`embed` returns (cached embeddings expire)."""

    def __init__(self) -> None:
        super().__init__()
        widths = (1, *WIDTHS)
        self.blocks = nn.ModuleList(
            _ConvBlock(widths[i], widths[i + 1], pool=i < len(WIDTHS) - 1)
            for i in range(len(WIDTHS))
        )
        self.weights_sha256 = ""
        self.eval()

    def forward(self, spec_blocks: torch.Tensor) -> torch.Tensor:
        x = spec_blocks.unsqueeze(1)  # (B, 1, time, mel)
        for block in self.blocks:
            x = block(x)
        pooled: torch.Tensor = x.mean(dim=3).amax(dim=2)
        return pooled

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """One 44.1 kHz float32 recording → its L2-normalised embedding ``(512,)``."""
        with torch.inference_mode():
            mean = self(blocks(spectrogram(audio))).mean(dim=0)
            row: np.ndarray = F.normalize(mean, dim=0).numpy()
        return row


def upstream_key(key: str) -> str:
    """Our state-dict key → the checkpoint's (``blocks.0.conv_a.weight`` →
    ``embedding_net.conv_block1.conv1.weight``)."""
    parts = {"conv_a": "conv1", "norm_a": "bn1", "conv_b": "conv2", "norm_b": "bn2"}
    head, index, part, rest = key.split(".", 3)
    if head != "blocks" or part not in parts:
        raise KeyError(f"no published name for {key}")
    return f"{UPSTREAM_PREFIX}conv_block{int(index) + 1}.{parts[part]}.{rest}"


def convert_state_dict(
    published: dict[str, torch.Tensor], model: AiSfx, source: object = "weights"
) -> dict[str, torch.Tensor]:
    """The checkpoint's embedding network under our keys (its classification heads dropped);
    every other key on both sides must be used, with the same shape (:class:`ModelError` naming
    the first key at fault otherwise)."""
    ours = model.state_dict()
    mapping = {upstream_key(k): k for k in ours}
    kept = {k: v for k, v in published.items() if not k.startswith(HEAD_PREFIX)}
    unused, missing = sorted(set(kept) - set(mapping)), sorted(set(mapping) - set(kept))
    if unused or missing:
        what = f"unexpected key {unused[0]}" if unused else f"missing key {missing[0]}"
        raise ModelError(
            f"{source}: not aisfx weights: {what} ({len(unused)} unexpected, {len(missing)} missing)"
        )
    for theirs, key in mapping.items():
        if tuple(kept[theirs].shape) != tuple(ours[key].shape):
            raise ModelError(
                f"{source}: {theirs} has shape {tuple(kept[theirs].shape)}, "
                f"aisfx needs {tuple(ours[key].shape)}"
            )
    return {key: kept[theirs] for theirs, key in mapping.items()}


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of the published ``(state dict, dataset table)`` checkpoint.

    Read with ``weights_only`` (no code runs): the table's numpy scalars are the only non-tensor
    objects it holds, allowed by name.
    """
    from numpy._core.multiarray import scalar

    allowed: list[Callable[..., Any] | tuple[Callable[..., Any], str]] = [
        (scalar, "numpy.core.multiarray.scalar"),  # as numpy 1 wrote it
        scalar,
        np.dtype,
        np.dtypes.Int64DType,
    ]
    try:
        with torch.serialization.safe_globals(allowed):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors alike: not a readable checkpoint
        raise ModelError(f"{path}: not a readable aisfx checkpoint ({exc})") from None
    state = loaded[0] if isinstance(loaded, tuple | list) else loaded
    if not isinstance(state, dict):
        raise ModelError(f"{path}: holds no state dict")
    return state


def fetch_weights(root: Path = Path("data")) -> Path:
    """The published checkpoint, downloaded once into ``ROOT/.cache`` and checked."""
    from edgesiam.data.recipes.base import pypi_file

    path = pypi_file(WHEEL, WEIGHTS_MEMBER, root)
    found = sha256_of(path)
    if found != WEIGHTS_SHA256:
        raise ModelError(
            f"{path}: SHA-256 {found} is not the expected {WEIGHTS_SHA256}; delete the file to "
            "download it again"
        )
    return path


def load_aisfx(root: Path = Path("data"), weights: Path | None = None) -> AiSfx:
    """aisfx with the published weights, ready to embed (evaluation mode, on the CPU).

    ``root`` is the data root whose ``.cache`` receives the download; ``weights`` names an
    already-downloaded checkpoint instead (it is checked).
    """
    path = fetch_weights(root) if weights is None else Path(weights)
    digest = sha256_of(path)
    if weights is not None and digest != WEIGHTS_SHA256:
        raise ModelError(f"{path}: SHA-256 {digest} is not the published aisfx weights'")
    model = AiSfx()
    model.load_state_dict(convert_state_dict(read_checkpoint(path), model, path), strict=True)
    model.weights_sha256 = digest
    return model.eval()
