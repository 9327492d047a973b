from __future__ import annotations

import pytest
import torch

from edgesiam.train.config import EncoderConfig, TrainConfig
from edgesiam.train.encoder import (
    Conv1dEncoder,
    ConvBlock,
    SeparableConv1d,
    parameter_count,
)
from edgesiam.train.objectives import build_objective


def test_embeddings_are_unit_length_and_sized() -> None:
    enc = Conv1dEncoder.from_config(40, EncoderConfig())
    out = enc.eval()(torch.randn(5, 40, 98))
    assert out.shape == (5, 64)
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-5)


def test_one_module_embeds_every_branch() -> None:
    """Weight sharing is structural: the same input gives the same embedding in any branch."""
    enc = Conv1dEncoder.from_config(
        6, EncoderConfig(channels=[8, 8], kernel_sizes=[3, 3], strides=[1, 2], dilations=[1, 1])
    )
    enc.eval()
    a = torch.randn(1, 6, 50)
    pair = enc(torch.cat([a, a]))
    assert torch.allclose(pair[0], pair[1])


def test_default_size_fits_the_int8_budget() -> None:
    """One int8 byte per weight: the default speaker encoder must stay below 150 KB."""
    enc = Conv1dEncoder.from_config(40, EncoderConfig())
    assert parameter_count(enc) < 150_000


def test_wrong_input_shape_is_explained() -> None:
    enc = Conv1dEncoder.from_config(40, EncoderConfig())
    with pytest.raises(ValueError, match=r"\(batch, 40, time\)"):
        enc(torch.randn(2, 20, 98))


@pytest.mark.parametrize(
    "objective",
    [
        {"type": "contrastive"},
        {"type": "triplet", "mining": "semihard"},
        {"type": "triplet", "mining": "hard"},
        {"type": "subcenter_arcface"},
        {"type": "supcon"},
    ],
)
def test_each_objective_learns_to_separate_two_clusters(objective: dict[str, object]) -> None:
    config = TrainConfig.model_validate(
        {
            "name": "t",
            "modality": "sensor",
            "data": {"train": "x", "window_s": 1, "hop_s": 1},
            "frontend": {"type": "sensor"},
            "objective": objective,
        }
    )
    torch.manual_seed(0)
    obj = build_objective(config.objective, num_classes=2, embedding_dim=8)
    head = torch.nn.Linear(4, 8)
    params = list(head.parameters()) + list(obj.loss.parameters())
    opt = torch.optim.Adam(params, lr=0.05)
    x = torch.cat([torch.randn(16, 4) + 2, torch.randn(16, 4) - 2])
    y = torch.tensor([0] * 16 + [1] * 16)
    for _ in range(60):
        emb = torch.nn.functional.normalize(head(x), dim=1)
        loss = obj(emb, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    emb = torch.nn.functional.normalize(head(x), dim=1)
    sim = emb @ emb.T
    same = sim[y[:, None] == y[None, :]].mean()
    diff = sim[y[:, None] != y[None, :]].mean()
    assert same > diff + 0.5


def test_mean_input_norm_ignores_a_constant_colouring_of_each_channel() -> None:
    torch.manual_seed(0)
    kwargs = dict(channels=[8, 8], kernel_sizes=[3, 3], strides=[1, 1], dilations=[1, 1])
    centred = Conv1dEncoder(in_channels=5, embedding_dim=4, input_norm="mean", **kwargs).eval()
    plain = Conv1dEncoder(in_channels=5, embedding_dim=4, **kwargs).eval()
    plain.load_state_dict(centred.state_dict())
    x = torch.randn(3, 5, 40)
    colour = torch.randn(1, 5, 1) * 3  # a microphone's fixed gain per mel band, in log units
    with torch.no_grad():
        torch.testing.assert_close(centred(x + colour), centred(x), atol=1e-5, rtol=0)
        assert not torch.allclose(plain(x + colour), plain(x), atol=1e-3)
    with pytest.raises(ValueError, match="input_norm"):
        Conv1dEncoder(in_channels=5, embedding_dim=4, input_norm="max", **kwargs)


def test_stats_pooling_sees_what_the_mean_cannot() -> None:
    """Two inputs with the same mean over time but different spread: mean pooling maps them to
    the same features, statistics pooling does not (what the classic mean/std descriptor sees)."""
    steady = torch.full((1, 1, 8), 0.5)
    varying = torch.tensor([[[1.0, 0.0] * 4]])
    for pooling, differ in (("mean", False), ("stats", True)):
        enc = Conv1dEncoder(1, [1], [1], [1], [1], 4, pooling=pooling).eval()
        with torch.no_grad():
            enc.blocks[0].conv.weight.fill_(1.0)  # the identity (BatchNorm at rest, x ≥ 0)
            a, b = enc.pooled(steady), enc.pooled(varying)
        assert a.shape == (1, 2 if pooling == "stats" else 1)
        assert (not torch.allclose(a, b)) == differ


def test_residual_connections_only_where_width_and_length_are_kept() -> None:
    enc = Conv1dEncoder(
        40, [64, 64, 96, 96], [3, 3, 3, 3], [2, 1, 1, 1], [1, 1, 1, 2], 32, residual=True
    )
    assert enc.skips == [False, True, False, True]
    plain = Conv1dEncoder(40, [64, 64, 96, 96], [3, 3, 3, 3], [2, 1, 1, 1], [1, 1, 1, 2], 32)
    assert plain.skips == [False] * 4
    assert parameter_count(enc) == parameter_count(plain)  # an addition costs no weights
    x = torch.randn(3, 40, 50)
    enc.eval()
    with torch.no_grad():
        out = enc(x)
        h = enc.blocks[0](x)
        h = h + enc.blocks[1](h)
        h = enc.blocks[2](h)
        h = h + enc.blocks[3](h)
        expected = torch.nn.functional.normalize(enc.projection(h.mean(dim=2)), dim=1)
    assert torch.allclose(out, expected, atol=1e-6)


def test_unknown_pooling_is_refused() -> None:
    with pytest.raises(ValueError, match="pooling"):
        Conv1dEncoder(4, [8], [3], [1], [1], 4, pooling="max")


SPEAKER_LIKE = dict(
    channels=[64, 96, 128, 128],
    kernel_sizes=[5, 3, 3, 3],
    strides=[2, 2, 1, 1],
    dilations=[1, 1, 2, 4],
    embedding_dim=64,
)


def test_separable_replaces_every_block_but_the_first_and_costs_fewer_weights() -> None:
    full = Conv1dEncoder(40, **SPEAKER_LIKE, residual=True)
    separable = Conv1dEncoder(40, **SPEAKER_LIKE, residual=True, separable=True)
    kinds = [type(b.conv) for b in separable.blocks]
    assert kinds == [torch.nn.Conv1d] + [SeparableConv1d] * 3
    assert separable.skips == full.skips == [False, False, False, True]
    x = torch.randn(3, 40, 98)
    with torch.no_grad():
        h_full, h_sep = x, x
        for a, b in zip(full.blocks, separable.blocks, strict=True):
            h_full, h_sep = a(h_full), b(h_sep)
            assert h_sep.shape == h_full.shape
        assert separable.eval()(x).shape == (3, 64)
    # per separable block: C_in·K (depthwise) + C_in·C_out (pointwise) instead of C_in·C_out·K
    saved = sum(
        cin * cout * k - (cin * k + cin * cout)
        for cin, cout, k in ((64, 96, 3), (96, 128, 3), (128, 128, 3))
    )
    assert parameter_count(full) - parameter_count(separable) == saved
    assert parameter_count(separable) < parameter_count(full)


def test_separable_block_is_a_full_conv_with_a_factorised_kernel() -> None:
    """Depthwise then pointwise equals one convolution whose kernel is pointwise × depthwise."""
    torch.manual_seed(0)
    sep = ConvBlock(6, 10, kernel_size=3, stride=2, dilation=2, separable=True).eval()
    full = ConvBlock(6, 10, kernel_size=3, stride=2, dilation=2).eval()
    assert isinstance(sep.conv, SeparableConv1d)
    with torch.no_grad():
        depthwise = sep.conv.depthwise.weight[:, 0, :]  # (C_in, K)
        pointwise = sep.conv.pointwise.weight[:, :, 0]  # (C_out, C_in)
        full.conv.weight.copy_(pointwise[:, :, None] * depthwise[None, :, :])
        full.norm.load_state_dict(sep.norm.state_dict())
        x = torch.randn(4, 6, 33)
        torch.testing.assert_close(sep(x), full(x), atol=1e-5, rtol=0)
    assert sep.conv.depthwise.groups == 6 and sep.conv.depthwise.bias is None


def test_separable_is_off_by_default_and_keeps_the_checkpoint_layout() -> None:
    """Existing recipes, checkpoints and bundles load unchanged: same blocks, same state keys."""
    config = EncoderConfig()
    assert config.separable is False
    enc = Conv1dEncoder.from_config(40, config)
    assert all(type(b.conv) is torch.nn.Conv1d for b in enc.blocks)
    assert "blocks.1.conv.weight" in enc.state_dict()
    sep = Conv1dEncoder.from_config(40, EncoderConfig(separable=True))
    keys = set(sep.state_dict())
    assert {
        "blocks.0.conv.weight",
        "blocks.1.conv.depthwise.weight",
        "blocks.1.conv.pointwise.weight",
    } <= keys
    assert "blocks.1.conv.weight" not in keys


def test_separable_needs_a_block_after_the_first() -> None:
    with pytest.raises(ValueError, match="separable"):
        Conv1dEncoder(4, [8], [3], [1], [1], 4, separable=True)
    with pytest.raises(ValueError, match="separable applies to the blocks after the first"):
        EncoderConfig(channels=[8], kernel_sizes=[3], strides=[1], dilations=[1], separable=True)
