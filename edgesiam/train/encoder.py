"""The Siamese encoder: one module embeds every branch of a pair or triplet (weights are shared by
construction, not by copying).

Only ops that convert to a clean int8 TFLite graph are used: optionally each input channel's mean
over time subtracted (MEAN, SUB), Conv1d with symmetric zero padding (a TFLite CONV_2D after a PAD),
BatchNorm (folded into the convolution on export), ReLU, a mean over time, a linear projection and
L2 normalisation.

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


class ConvBlock(nn.Module):
    """Conv1d → BatchNorm → ReLU, 'same' length at stride 1 (symmetric padding).

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
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=dilation * (kernel_size - 1) // 2,
            dilation=dilation,
            bias=False,
        )
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


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
    ) -> None:
        super().__init__()
        if input_norm not in ("none", "mean"):
            raise ValueError(f"input_norm must be 'none' or 'mean', got {input_norm!r}")
        self.input_norm = input_norm
        blocks: list[nn.Module] = []
        width = in_channels
        for out, k, s, d in zip(channels, kernel_sizes, strides, dilations, strict=True):
            blocks.append(ConvBlock(width, out, k, s, d))
            width = out
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(width, embedding_dim)
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
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected features of shape (batch, {self.in_channels}, time), "
                f"got {tuple(x.shape)}"
            )
        if self.input_norm == "mean":
            x = x - x.mean(dim=2, keepdim=True)
        h = self.blocks(x).mean(dim=2)
        return F.normalize(self.projection(self.dropout(h)), dim=1)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
