"""aisfx teacher: its spectrogram against hand-computable cases, the blocking of long and short
recordings, and the reading of the published checkpoint layout (random weights; no download)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from edgesiam.errors import ModelError
from edgesiam.train.teachers import aisfx as sfx
from edgesiam.train.teachers.aisfx import (
    AiSfx,
    aisfx_filters,
    blocks,
    convert_state_dict,
    read_checkpoint,
    spectrogram,
    upstream_key,
)
from edgesiam.train.teachers.campplus import mel_centres_hz
from tests.support.teachers import randomised_aisfx

RATE = sfx.SAMPLE_RATE


def tone(hz: float, seconds: float = 1.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


# --- features -------------------------------------------------------------------------------


def test_filters_sum_to_one_and_span_zero_to_nyquist() -> None:
    filters = aisfx_filters()
    assert filters.shape == (96, 1025)
    np.testing.assert_allclose(filters.sum(axis=1), 1.0, rtol=1e-5)
    centres = mel_centres_hz(96, RATE)  # HTK and Kaldi share the mel scale
    assert centres[0] < 60 and centres[-1] > 20000
    assert filters[:, 0].sum() == 0.0 and filters[:, -1].sum() == 0.0


@pytest.mark.parametrize("hz", [500.0, 3000.0, 12000.0])
def test_a_tone_peaks_in_the_band_centred_nearest_to_it(hz: float) -> None:
    spec = spectrogram(tone(hz)).numpy()
    centres = mel_centres_hz(96, RATE)
    assert abs(int(spec[10].argmax()) - int(np.abs(centres - hz).argmin())) <= 1


def test_frames_every_1024_samples_the_first_centred_on_the_first_sample() -> None:
    for n in (1, 1023, 1024, 44100):
        assert spectrogram(tone(440.0, n / RATE) + 0.01).shape == (1 + n // 1024, 96)


def test_peak_normalisation_makes_the_level_irrelevant_and_values_sit_in_the_unit_range() -> None:
    quiet, loud = spectrogram(tone(1000.0, amplitude=0.01)), spectrogram(tone(1000.0))
    np.testing.assert_allclose(quiet.numpy(), loud.numpy(), atol=1e-4)
    assert float(loud.min()) >= 0.0 and float(loud.max()) <= 1.2
    assert float(spectrogram(np.zeros(4096, np.float32)).abs().max()) == 0.0


@pytest.mark.parametrize(
    ("frames", "count"), [(1, 1), (99, 1), (100, 1), (149, 1), (150, 2), (250, 4)]
)
def test_blocks_of_100_frames_every_50_short_ones_padded(frames: int, count: int) -> None:
    spec = torch.arange(frames * 96, dtype=torch.float32).reshape(frames, 96) + 1
    out = blocks(spec)
    assert out.shape == (count, 100, 96)
    assert torch.equal(out[-1, 0], spec[(count - 1) * 50])  # each block starts 50 frames on
    if frames < 100:
        assert float(out[0, frames:].abs().sum()) == 0.0  # zeros after the recording


def test_a_recording_that_is_no_mono_array_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty mono"):
        spectrogram(np.zeros((2, 100), np.float32))


# --- network and weights --------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> AiSfx:
    return randomised_aisfx()


def published_style(model: AiSfx) -> dict[str, torch.Tensor]:
    """The checkpoint's layout: our tensors under its names, plus a classification head."""
    state = {upstream_key(k): v.clone() for k, v in model.state_dict().items()}
    state["fc.0.0.weight"] = torch.zeros(256, 512)
    state["fc.0.4.bias"] = torch.zeros(78)
    return state


def test_our_names_map_onto_the_published_layout(model: AiSfx) -> None:
    keys = {upstream_key(k) for k in model.state_dict()}
    assert len(keys) == 48  # 4 blocks × (2 convolutions + 2 batch norms × 5 tensors)
    assert "embedding_net.conv_block1.conv1.weight" in keys
    assert "embedding_net.conv_block4.bn2.running_var" in keys
    assert model.state_dict()["blocks.3.conv_b.weight"].shape == (512, 512, 3, 3)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(4.69e6, rel=0.01)


def test_published_weights_load_strictly_heads_dropped_and_reproduce_the_outputs(
    model: AiSfx,
) -> None:
    copy = AiSfx()
    copy.load_state_dict(convert_state_dict(published_style(model), copy), strict=True)
    x = torch.rand(2, 100, 96)
    with torch.inference_mode():
        np.testing.assert_allclose(copy(x).numpy(), model(x).numpy(), atol=1e-5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("embedding_net.conv_block2.bn1.weight"), "missing key embedding_net"),
        (lambda d: d.update({"embedding_net.extra": torch.zeros(1)}), "unexpected key embedding"),
        (
            lambda d: d.update({"embedding_net.conv_block1.conv1.weight": torch.zeros(8, 1, 3, 3)}),
            "conv_block1.conv1.weight has shape (8, 1, 3, 3)",
        ),
    ],
)
def test_weights_that_are_not_aisfx_are_refused_by_key(
    model: AiSfx, change: object, message: str
) -> None:
    published = published_style(model)
    change(published)  # type: ignore[operator]
    with pytest.raises(ModelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        convert_state_dict(published, AiSfx(), "c.pth")


def test_the_checkpoint_pair_with_numpy_scalars_is_read_without_running_code(
    tmp_path: Path, model: AiSfx
) -> None:
    """The published file is ``(state dict, {library: (index, classes)})`` with numpy integers."""
    path = tmp_path / "checkpoint.pth"
    table = {"PSE": (np.int64(0), np.int64(78))}
    torch.save((published_style(model), table), path)
    assert set(read_checkpoint(path)) == set(published_style(model))

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("ran",))

    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump(Payload(), f, protocol=2)
    with pytest.raises(ModelError, match="not a readable aisfx checkpoint"):
        read_checkpoint(evil)


def test_embeddings_are_512_unit_vectors_of_the_mean_block(model: AiSfx) -> None:
    clip = np.random.default_rng(1).normal(0, 0.1, 4 * RATE).astype(np.float32)
    row = model.embed(clip)
    assert row.shape == (512,) and row.dtype == np.float32
    assert np.linalg.norm(row) == pytest.approx(1.0, abs=1e-5)
    with torch.inference_mode():
        per_block = model(blocks(spectrogram(clip)))
    assert per_block.shape[0] == 2  # 173 frames: blocks at 0 and 50, the partial third dropped
    expected = per_block.mean(dim=0)
    np.testing.assert_allclose(row, (expected / expected.norm()).numpy(), atol=1e-5)
    assert not np.allclose(model.embed(tone(300.0)), row, atol=1e-3)


def test_weights_with_another_digest_are_refused(tmp_path: Path, model: AiSfx) -> None:
    fake = tmp_path / "checkpoint.pth"
    torch.save((published_style(model), {}), fake)
    with pytest.raises(ModelError, match="not the published aisfx weights"):
        sfx.load_aisfx(weights=fake)


def test_the_loader_reads_a_checkpoint_with_the_expected_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: AiSfx
) -> None:
    """The loader end to end on a stand-in file: the digest it checks is patched to the file's."""
    weights = tmp_path / "checkpoint.pth"
    torch.save((published_style(model), {"PSE": (np.int64(0), np.int64(78))}), weights)
    monkeypatch.setattr(sfx, "WEIGHTS_SHA256", sfx.sha256_of(weights))
    monkeypatch.setattr("edgesiam.data.recipes.base.pypi_file", lambda *a, **k: weights)
    loaded = sfx.load_aisfx(tmp_path)
    assert loaded.weights_sha256 == sfx.WEIGHTS_SHA256 and not loaded.training
    clip = tone(700.0)
    np.testing.assert_allclose(loaded.embed(clip), model.embed(clip), atol=1e-5)


def test_a_download_with_another_digest_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "checkpoint.pth"
    bad.write_bytes(b"not the weights")
    monkeypatch.setattr("edgesiam.data.recipes.base.pypi_file", lambda *a, **k: bad)
    with pytest.raises(ModelError, match=r"SHA-256 .* is not the expected"):
        sfx.load_aisfx(tmp_path)
