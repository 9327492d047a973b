"""The Keras mirror computes what the torch encoder computes (BatchNorm folded, torch padding)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgesiam.core.embedding import l2_normalize, recording_embedding
from edgesiam.export.convert import to_tflite
from edgesiam.export.gate import EDGETPU_OPS, GateLimits, HeldOutResult, evaluate_gate
from edgesiam.export.keras_mirror import build_keras_mirror, fold_batchnorm, mirror_spec
from edgesiam.model.interpreters import TFLiteModel, inspect_model
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
    ("strides", "dilations", "time_steps", "input_norm", "pooling", "residual", "separable"),
    [
        ([2, 1, 1], [1, 2, 4], 49, "none", "mean", False, False),
        ([1, 2, 3], [1, 2, 2], 40, "none", "mean", False, False),  # stride with dilation
        ([2, 1, 1], [1, 2, 4], 49, "mean", "mean", False, False),  # input centred over time
        ([2, 1, 1], [1, 2, 4], 49, "none", "stats", False, False),  # mean and deviation pooled
        ([2, 1, 1], [1, 2, 4], 49, "none", "mean", True, False),  # residual around the last block
        ([1, 1, 1], [1, 2, 4], 40, "mean", "stats", True, False),
        ([2, 1, 1], [1, 2, 4], 49, "none", "mean", False, True),  # depthwise + pointwise
        ([1, 2, 3], [1, 2, 2], 40, "none", "stats", False, True),  # depthwise stride, dilation
        ([2, 1, 1], [1, 2, 4], 49, "mean", "stats", True, True),
    ],
)
def test_keras_mirror_matches_torch(
    strides: list[int],
    dilations: list[int],
    time_steps: int,
    input_norm: str,
    pooling: str,
    residual: bool,
    separable: bool,
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
        separable=separable,
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
    depthwise = [layer.name for layer in model.layers if layer.name.startswith("depthwise")]
    assert depthwise == (["depthwise1", "depthwise2"] if separable else [])


def _tiny_separable(seed: int) -> Conv1dEncoder:
    torch.manual_seed(seed)
    return Conv1dEncoder(
        6,
        [8, 16, 16],
        [5, 3, 3],
        [2, 1, 1],
        [1, 2, 4],
        8,
        pooling="stats",
        residual=True,
        separable=True,
    ).eval()


def test_separable_weights_reach_keras_exactly() -> None:
    """The depthwise kernel is copied bit for bit; the pointwise one carries the folded BatchNorm."""
    encoder = _tiny_separable(0)
    _randomise_batchnorm(encoder, 3)
    model = build_keras_mirror(mirror_spec(encoder), 30)
    block = encoder.blocks[1]
    (depthwise,) = model.get_layer("depthwise1").get_weights()
    np.testing.assert_array_equal(
        depthwise, block.conv.depthwise.weight.detach().numpy().transpose(2, 0, 1)
    )
    kernel, bias = model.get_layer("conv1").get_weights()
    norm = block.norm
    w, b = fold_batchnorm(
        block.conv.pointwise.weight.detach().numpy(),
        norm.running_mean.numpy(),
        norm.running_var.numpy(),
        norm.weight.detach().numpy(),
        norm.bias.detach().numpy(),
        norm.eps,
    )
    np.testing.assert_array_equal(kernel, w.transpose(2, 1, 0).astype(np.float32))
    np.testing.assert_array_equal(bias, b.astype(np.float32))


def _synthetic_windows(rng: np.random.Generator, labels: int, recordings: int) -> list[np.ndarray]:
    """Per recording ``(4, 6, 40)`` windows: each label its own channel profile, plus noise."""
    profiles = rng.normal(size=(labels, 6, 1)) * 1.5
    return [
        (profiles[i] + rng.normal(size=(4, 6, 40))).astype(np.float32)
        for i in range(labels)
        for _ in range(recordings)
    ]


def test_separable_int8_model_passes_the_gate_with_edge_tpu_ops() -> None:
    encoder = _tiny_separable(1)
    rng = np.random.default_rng(0)
    calibration = np.concatenate(_synthetic_windows(rng, 6, 10))
    heldout = _synthetic_windows(rng, 4, 3)
    content = to_tflite(build_keras_mirror(mirror_spec(encoder), 40), "int8", calibration)
    int8 = TFLiteModel(model_content=content)
    with torch.no_grad():
        models = {
            "torch": [encoder(torch.from_numpy(w)).numpy() for w in heldout],
            "int8": [l2_normalize(int8.run(w), axis=1) for w in heldout],
        }
    result = HeldOutResult(
        Path("synthetic"),
        [str(i // 3) for i in range(len(heldout))],
        [None] * len(heldout),
        models,
        {name: np.stack([recording_embedding(w) for w in per]) for name, per in models.items()},
    )
    info = inspect_model(model_content=content)
    report = evaluate_gate(result, info, GateLimits())
    assert report.passed, report.render()
    assert info.ops.count("DEPTHWISE_CONV_2D") == 2 and info.ops.count("CONV_2D") == 3
    assert set(info.ops) <= EDGETPU_OPS
