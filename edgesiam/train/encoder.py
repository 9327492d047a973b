"""The Siamese encoder: one module embeds every branch of a pair or triplet (weights are shared by
construction, not by copying).

Only ops that convert to a clean int8 TFLite graph are used: optionally each input channel's mean
over time subtracted (MEAN, SUB), Conv1d with symmetric zero padding (a TFLite CONV_2D after a PAD),
optionally depthwise-separable after the first block (a per-channel DEPTHWISE_CONV_2D, then a 1×1
CONV_2D), BatchNorm (folded into the convolution on export), ReLU, optionally a residual connection
around a block that keeps its width and length (ADD), a mean over time, optionally with each channel's
spread around it beside it (statistics pooling: MEAN, SUB, RELU, CONCATENATION), a linear
projection and L2 normalisation.

>>> import torch
>>> enc = Conv1dEncoder(in_channels=40, channels=[32, 64], kernel_sizes=[5, 3], strides=[2, 1],
...                     dilations=[1, 2], embedding_dim=16)
>>> enc(torch.randn(8, 40, 98)).shape
torch.Size([8, 16])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgesiam.train.config import EncoderConfig


def _same_conv(
    in_channels: int, out_channels: int, kernel_size: int, stride: int, dilation: int, groups: int
) -> nn.Conv1d:
    """A bias-free Conv1d with torch's symmetric zero padding: 'same' length at stride 1."""
    return nn.Conv1d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=dilation * (kernel_size - 1) // 2,
        dilation=dilation,
        groups=groups,
        bias=False,
    )


class SeparableConv1d(nn.Module):
    """Depthwise Conv1d (one filter per input channel) → pointwise 1×1 Conv1d, both bias-free.

    The same receptive field and output shape as a full convolution for ``C_in·K + C_in·C_out``
    weights instead of ``C_in·C_out·K``: the bytes saved buy width or depth within the int8
    budget.

    >>> SeparableConv1d(32, 64, kernel_size=3, stride=2, dilation=1)(torch.randn(4, 32, 128)).shape
    torch.Size([4, 64, 64])
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, dilation: int
    ) -> None:
        super().__init__()
        self.depthwise = _same_conv(
            in_channels, in_channels, kernel_size, stride, dilation, groups=in_channels
        )
        self.pointwise = _same_conv(in_channels, out_channels, 1, 1, 1, groups=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.pointwise(self.depthwise(x))
        return out


class ConvBlock(nn.Module):
    """Conv1d (full, or depthwise-separable) → BatchNorm → ReLU, 'same' length at stride 1.

    >>> ConvBlock(6, 32, kernel_size=3, stride=2)(torch.randn(4, 6, 128)).shape
    torch.Size([4, 32, 64])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        separable: bool = False,
    ) -> None:
        super().__init__()
        self.conv: nn.Conv1d | SeparableConv1d = (
            SeparableConv1d(in_channels, out_channels, kernel_size, stride, dilation)
            if separable
            else _same_conv(in_channels, out_channels, kernel_size, stride, dilation, groups=1)
        )
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


def stats_pool(h: torch.Tensor) -> torch.Tensor:
    """``(B, C, T)`` → ``(B, 2C)``: each channel's mean over time and its spread around it.

    The spread is the mean of the positive part of the deviation, ``mean(relu(h - mean))``: half
    the mean absolute deviation (the positive and negative parts have equal means). Unlike the
    standard deviation it involves no square, so it keeps the range of the features and survives
    int8 quantisation (a squared variance lost 2% of cosine to torch in int8), and it lowers to
    MEAN, SUB and RELU, which the Edge TPU runs. The Keras mirror computes the same expression.

    >>> stats_pool(torch.tensor([[[1.0, 3.0]]])).tolist()  # mean 2, mean absolute deviation 1
    [[2.0, 0.5]]
    """
    mean = h.mean(dim=2, keepdim=True)
    spread = F.relu(h - mean).mean(dim=2)
    return torch.cat([mean.squeeze(2), spread], dim=1)


class Conv1dEncoder(nn.Module):
    """Features ``(B, C_in, T)`` → L2-normalised embeddings ``(B, D)``.

    Time runs along the convolution axis; mel bins (audio) or sensor channels are the input
    channels.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        kernel_sizes: Sequence[int],
        strides: Sequence[int],
        dilations: Sequence[int],
        embedding_dim: int,
        dropout: float = 0.0,
        input_norm: str = "none",
        pooling: str = "mean",
        residual: bool = False,
        separable: bool = False,
    ) -> None:
        super().__init__()
        if input_norm not in ("none", "mean"):
            raise ValueError(f"input_norm must be 'none' or 'mean', got {input_norm!r}")
        if pooling not in ("mean", "stats"):
            raise ValueError(f"pooling must be 'mean' or 'stats', got {pooling!r}")
        if separable and len(channels) < 2:
            raise ValueError(
                "separable needs at least two blocks: the first block stays a full convolution"
            )
        self.input_norm = input_norm
        self.pooling = pooling
        blocks: list[nn.Module] = []
        skips: list[bool] = []
        width = in_channels
        for i, (out, k, s, d) in enumerate(
            zip(channels, kernel_sizes, strides, dilations, strict=True)
        ):
            blocks.append(ConvBlock(width, out, k, s, d, separable=separable and i > 0))
            skips.append(residual and out == width and s == 1)
            width = out
        self.blocks = nn.Sequential(*blocks)
        self.skips = skips
        self.dropout = nn.Dropout(dropout)
        pooled = 2 * width if pooling == "stats" else width
        self.projection = nn.Linear(pooled, embedding_dim)
        self.in_channels = in_channels
        self.embedding_dim = embedding_dim

    @classmethod
    def from_config(cls, in_channels: int, config: EncoderConfig) -> Conv1dEncoder:
        return cls(
            in_channels,
            config.channels,
            config.kernel_sizes,
            config.strides,
            config.dilations,
            config.embedding_dim,
            config.dropout,
            config.input_norm,
            config.pooling,
            config.residual,
            config.separable,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected features of shape (batch, {self.in_channels}, time), "
                f"got {tuple(x.shape)}"
            )
        if self.input_norm == "mean":
            x = x - x.mean(dim=2, keepdim=True)
        return F.normalize(self.projection(self.dropout(self.pooled(x))), dim=1)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features before the projection: ``(B, C)``, or ``(B, 2C)`` with stats."""
        h = x
        for block, skip in zip(self.blocks, self.skips, strict=True):
            h = h + block(h) if skip else block(h)
        return stats_pool(h) if self.pooling == "stats" else h.mean(dim=2)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
