"""The Keras mirror computes what the torch encoder computes (BatchNorm folded, torch padding)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgesiam.export.keras_mirror import build_keras_mirror, fold_batchnorm, mirror_spec
from edgesiam.train.encoder import Conv1dEncoder, ConvBlock


def _randomise_batchnorm(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g))
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g))


def test_fold_batchnorm_equals_conv_then_batchnorm() -> None:
    torch.manual_seed(0)
    block = ConvBlock(3, 5, kernel_size=3).eval()
    _randomise_batchnorm(block, 1)
    w, b = fold_batchnorm(
        block.conv.weight.detach().numpy(),
        block.norm.running_mean.numpy(),
        block.norm.running_var.numpy(),
        block.norm.weight.detach().numpy(),
        block.norm.bias.detach().numpy(),
        block.norm.eps,
    )
    x = torch.randn(2, 3, 11)
    with torch.no_grad():
        expected = block.norm(block.conv(x)).numpy()
        folded = torch.nn.functional.conv1d(
            x, torch.from_numpy(w).float(), torch.from_numpy(b).float(), padding=1
        ).numpy()
    np.testing.assert_allclose(folded, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("strides", "dilations", "time_steps", "input_norm", "pooling", "residual"),
    [
        ([2, 1, 1], [1, 2, 4], 49, "none", "mean", False),
        ([1, 2, 3], [1, 2, 2], 40, "none", "mean", False),  # stride with dilation
        ([2, 1, 1], [1, 2, 4], 49, "mean", "mean", False),  # input channels centred over time
        ([2, 1, 1], [1, 2, 4], 49, "none", "stats", False),  # mean and deviation pooled
        ([2, 1, 1], [1, 2, 4], 49, "none", "mean", True),  # residual around the last block
        ([1, 1, 1], [1, 2, 4], 40, "mean", "stats", True),
    ],
)
def test_keras_mirror_matches_torch(
    strides: list[int],
    dilations: list[int],
    time_steps: int,
    input_norm: str,
    pooling: str,
    residual: bool,
) -> None:
    torch.manual_seed(0)
    encoder = Conv1dEncoder(
        in_channels=6,
        channels=[8, 12, 12],
        kernel_sizes=[5, 3, 3],
        strides=strides,
        dilations=dilations,
        embedding_dim=10,
        dropout=0.3,
        input_norm=input_norm,
        pooling=pooling,
        residual=residual,
    ).eval()
    assert any(encoder.skips) == residual
    _randomise_batchnorm(encoder, 2)
    model = build_keras_mirror(mirror_spec(encoder), time_steps)
    x = np.random.default_rng(0).normal(size=(3, 6, time_steps)).astype(np.float32)
    with torch.no_grad():
        expected = encoder(torch.from_numpy(x)).numpy()
    got = np.concatenate([np.asarray(model(x[i : i + 1].transpose(0, 2, 1))) for i in range(3)])
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert tuple(model.input.shape) == (1, time_steps, 6)
