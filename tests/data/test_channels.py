"""Device channels: each renderer does to a signal what its channel does, and a rendered dataset
folder is a faithful, deterministic, resumable copy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgesiam.cli import main
from edgesiam.data.channels import (
    CHANNELS,
    FarField,
    add_noise,
    file_seed,
    make_channel,
    render_dataset,
)
from edgesiam.data.readers import scan_dataset
from edgesiam.errors import DataError
from tests.support.signals import write_audio_dataset

RATE = 16000


def white(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(
        np.float32
    )


def band_power(x: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(x.shape[0], 1 / RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum() / spectrum.sum())


def lag_and_sign(out: np.ndarray, ref: np.ndarray) -> tuple[int, bool]:
    xc = np.correlate(out, ref, "full")
    i = int(np.argmax(np.abs(xc)))
    return i - (ref.shape[0] - 1), bool(xc[i] > 0)


@pytest.mark.parametrize("name", ["gsm", "amr-nb", "ulaw"])
def test_phone_channels_keep_the_telephone_band_only(name: str) -> None:
    x = white()
    y = make_channel(name, RATE)(x, RATE, np.random.default_rng(0))
    assert y.shape == x.shape and y.dtype == np.float32
    assert band_power(y, 4000, 8000) < 1e-3  # nothing above the 8 kHz Nyquist
    assert band_power(y, 0, 200) < 0.02  # the phone's high-pass
    lag, positive = lag_and_sign(y, x)
    assert positive and 0 <= lag <= 160  # same polarity, at most 10 ms of codec delay
    if name == "ulaw":  # a waveform codec: close to the band-limited input
        assert np.corrcoef(np.roll(y, -lag), x)[0, 1] > 0.6


def test_codecs_differ_from_each_other() -> None:
    x = white()
    outs = {n: make_channel(n, RATE)(x, RATE, np.random.default_rng(0)) for n in ("gsm", "ulaw")}
    assert not np.allclose(outs["gsm"], outs["ulaw"], atol=1e-3)


def test_cheap_microphone_cuts_lows_and_highs_and_adds_its_noise() -> None:
    x = white(seed=1)
    y = make_channel("cheap-mic", RATE)(x, RATE, np.random.default_rng(0))
    assert y.shape == x.shape
    assert band_power(y, 0, 100) < 0.3 * band_power(x, 0, 100)
    assert band_power(y, 7000, 8000) < 0.3 * band_power(x, 7000, 8000)
    assert band_power(y, 2500, 3100) > band_power(x, 2500, 3100)  # the presence peak
    silent = make_channel("cheap-mic", RATE)(
        np.zeros(RATE, np.float32), RATE, np.random.default_rng(0)
    )
    assert not np.any(silent)  # self-noise is relative to the signal: silence stays silent


def test_add_noise_reaches_the_requested_snr() -> None:
    rng = np.random.default_rng(3)
    signal = rng.standard_normal(RATE).astype(np.float32)
    noise = 5 * rng.standard_normal(RATE).astype(np.float32)
    mixed = add_noise(signal, noise, 7.0)
    residual = mixed - signal
    snr = 10 * np.log10(np.mean(signal.astype(np.float64) ** 2) / np.mean(residual**2))
    assert snr == pytest.approx(7.0, abs=0.01)


def test_far_field_convolves_with_a_room_and_adds_noise_at_the_drawn_snr() -> None:
    rir = np.zeros(800, np.float32)
    rir[0], rir[400] = 1.0, 0.5  # direct path and one echo 25 ms later
    noise = white(3.0, seed=9)
    channel = FarField(rirs=(rir,), noises=(noise,), snr_db=(8.0, 8.0))
    click = np.zeros(RATE, np.float32)
    click[1000] = 1.0
    quiet = FarField(rirs=(rir,), noises=(np.zeros(10, np.float32),))
    echoed = quiet(click, RATE, np.random.default_rng(0))
    assert echoed[1000] == pytest.approx(1.0, abs=1e-4)
    assert echoed[1400] == pytest.approx(0.5, abs=1e-4)
    x = white(seed=2)
    y = channel(x, RATE, np.random.default_rng(0))
    wet = quiet(x, RATE, np.random.default_rng(0))
    assert y.shape == x.shape
    snr = 10 * np.log10(np.mean(wet.astype(np.float64) ** 2) / np.mean((y - wet) ** 2))
    assert snr == pytest.approx(8.0, abs=0.1)


def test_far_field_needs_the_noise_recipe(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="needs --noise"):
        make_channel("far-field", RATE)
    (tmp_path / "rir").mkdir()
    with pytest.raises(DataError, match="holds no rir"):
        make_channel("far-field", RATE, tmp_path)


def test_unknown_channel_is_named() -> None:
    with pytest.raises(DataError, match=r"unknown channel 'radio'.*gsm"):
        make_channel("radio", RATE)


def test_file_seed_depends_on_seed_and_path_only() -> None:
    assert file_seed(0, "a/x.wav") == file_seed(0, "a/x.wav")
    assert len({file_seed(0, "a/x.wav"), file_seed(1, "a/x.wav"), file_seed(0, "a/y.wav")}) == 3


def test_render_dataset_copies_labels_and_is_deterministic_and_idempotent(tmp_path: Path) -> None:
    source = write_audio_dataset(tmp_path / "src", labels=3, per_label=2, rate=22050)
    first = tmp_path / "a" / "gsm"
    assert render_dataset(source, first, "gsm", progress=False) == 6
    info = scan_dataset(first)
    assert info.modality == "audio" and info.sample_rate == RATE
    assert info.label_counts() == scan_dataset(source).label_counts()
    assert json.loads((first / "RENDER.json").read_text())["channel"] == "gsm"
    again = tmp_path / "b" / "gsm"
    render_dataset(source, again, "gsm", progress=False)
    for rec in info.recordings:
        a, rate = sf.read(rec.path)
        b, _ = sf.read(again / rec.label / rec.path.name)
        assert rate == RATE and np.array_equal(a, b)
    assert render_dataset(source, first, "gsm", progress=False) == 0  # already there
    assert render_dataset(source, first, "gsm", seed=1, progress=False) == 6  # other settings
    assert not (tmp_path / "a" / "gsm.partial").exists()


def test_render_dataset_refuses_sensor_folders(tmp_path: Path) -> None:
    folder = tmp_path / "s" / "walk"
    folder.mkdir(parents=True)
    np.save(folder / "a.npy", np.zeros((100, 3), np.float32))
    with pytest.raises(DataError, match="audio dataset folders only"):
        render_dataset(tmp_path / "s", tmp_path / "out", "gsm", progress=False)


def test_cli_renders_every_channel_asked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_audio_dataset(tmp_path / "src", labels=2, per_label=2)
    out = tmp_path / "ood"
    argv = ["data", "render", str(source), "--channel", "ulaw", "--channel", "cheap-mic"]
    assert main([*argv, "-o", str(out), "-q"]) == 0
    assert "ulaw: 4 recordings rendered" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["cheap-mic", "ulaw"]
    assert main([*argv, "-o", str(out), "-q"]) == 0
    assert "already rendered" in capsys.readouterr().out
    assert set(CHANNELS) == {"gsm", "amr-nb", "ulaw", "cheap-mic", "far-field"}
