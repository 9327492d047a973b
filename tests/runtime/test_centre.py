"""One threshold for the whole device from the best label's score, and scores centred on the
device's background (``matching.centre: background``): through the real pipeline, the shipped
events bundle and ``edgesiam calibrate``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from edgesiam.cli import main
from edgesiam.core.matching import Gallery
from edgesiam.core.normalise import CentredScorer, background_mean, centre_rows
from edgesiam.runtime.calibrate import collect_background, run_calibration
from edgesiam.runtime.calibration_store import calibration_path
from edgesiam.runtime.config import RuntimeConfig
from edgesiam.runtime.pipeline import Runtime
from edgesiam.runtime.publishers import NullPublisher
from tests.support.paths import EVENTS_BUNDLE
from tests.support.runtime import make_config
from tests.support.signals import make_voice, voice

RATE = 16000


def wav(path: Path, x: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, RATE, subtype="PCM_16")
    return path


def talk(path: Path, seed: int) -> Path:
    """People other than the enrolled ones talking in the room, 12 s."""
    rng = np.random.default_rng(seed)
    pitches = ((150, 0.8), (175, 0.5), (205, 0.9))
    return wav(path, np.concatenate([make_voice(f, t, 4.0, RATE, rng) for f, t in pitches]))


@pytest.fixture
def gallery(tmp_path: Path) -> Path:
    """Two labels for ``export/events``: a voice and a low voice."""
    path = tmp_path / "device" / "gallery.npz"
    rng = np.random.default_rng(11)
    own = wav(tmp_path / "own.wav", voice(3.0, seed=1))
    low = wav(tmp_path / "low.wav", make_voice(110, 0.5, 3.0, RATE, rng))
    base = ["enroll", "--bundle", str(EVENTS_BUNDLE), "--gallery", str(path)]
    assert main([*base, "--label", "voice", str(own)]) == 0
    assert main([*base, "--label", "low", str(low)]) == 0
    return path


def config(gallery: Path, source: Path, state: Path, **matching: Any) -> RuntimeConfig:
    return make_config(EVENTS_BUNDLE, gallery, source, state, matching=matching)


def test_the_target_is_the_devices_one_threshold_on_the_best_labels_score(
    gallery: Path, tmp_path: Path
) -> None:
    background = tmp_path / "background"
    talk(background / "monday.wav", seed=3)
    talk(background / "tuesday.wav", seed=4)
    cfg = config(gallery, background / "monday.wav", tmp_path / "state")
    heard = collect_background(cfg, str(background), 10.0)
    m = cfg.matching.decision.m
    # recordings are kept apart by m empty rows, which are not windows the device heard
    assert heard.separators == 2 * m
    assert heard.heard == len(heard.windows) - 2 * m
    found = run_calibration(cfg, str(background), 10.0, 1.0)
    saved = json.loads(calibration_path(gallery).read_text())
    b = saved["background"]
    assert b["windows"] == heard.heard and b["active"] == len(heard.active)
    voice_, low = found.labels["voice"], found.labels["low"]
    # the device decides on the best label: one threshold for the whole target, for every label
    assert voice_.threshold == low.threshold
    hop_s = saved["hop_s"]
    per_hour = 3600.0 / hop_s * voice_.active_fraction * voice_.rule_share
    assert voice_.window_rate == pytest.approx(1.0 / per_hour)
    assert voice_.active_fraction == pytest.approx(b["active"] / b["windows"])
    assert voice_.highest_impostor != low.highest_impostor  # each label's own background score
    # a tenfold target lowers the threshold
    looser = run_calibration(cfg, str(background), 10.0, 10.0)
    assert looser.labels["voice"].threshold < voice_.threshold


def test_scores_are_centred_on_the_background_once_calibrated(
    gallery: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgesiam.runtime")
    background = tmp_path / "background"
    talk(background / "monday.wav", seed=3)
    tomorrow = talk(tmp_path / "tomorrow.wav", seed=5)
    cfg = config(gallery, tomorrow, tmp_path / "s1", centre="background")
    before = Runtime(cfg, publisher=NullPublisher)
    assert isinstance(before.matcher.scorer, Gallery)  # nothing to centre on yet
    before.run()
    assert "no calibration with a background yet" in caplog.text
    caplog.clear()  # `edgesiam run` says so as a warning, before the first window
    base = ["run", "--bundle", str(EVENTS_BUNDLE), "--gallery", str(gallery)]
    config_file = tmp_path / "device.yaml"
    config_file.write_text("matching: {centre: background}\n")
    run = [*base, "--config", str(config_file), "--source", f"file:{tomorrow}", "--no-mqtt"]
    assert main([*run, "--state-dir", str(tmp_path / "s0")]) == 0
    warned = [r for r in caplog.records if "no calibration with a background" in r.message]
    assert warned and warned[0].levelno == logging.WARNING

    found = run_calibration(cfg, str(background), 10.0, 1.0)
    assert found.score == "centred-cosine"
    caplog.clear()
    after = Runtime(
        config(gallery, tomorrow, tmp_path / "s2", centre="background"), publisher=NullPublisher
    )
    scorer = after.matcher.scorer
    assert isinstance(scorer, CentredScorer) and after.device_cohort is not None
    mean = background_mean(after.device_cohort.background)
    assert mean is not None and scorer.mean == pytest.approx(mean)
    # a window's score: the cosine of the window and each template, both centred on the mean
    window = after.device_cohort.background[:3]
    templates = centre_rows(after.gallery.embeddings, mean)
    expected = centre_rows(window, mean) @ templates.T
    owners = np.array(after.gallery.template_labels)
    got = scorer.scores(window)
    for j, label in enumerate(scorer.labels):
        assert got[:, j] == pytest.approx(expected[:, owners == label].max(axis=1), abs=1e-5)
    after.run()
    assert "scores centred on the mean of" in caplog.text
    assert after.thresholds.for_label("voice") == pytest.approx(found.labels["voice"].threshold)

    # the centred calibration is never applied to plain cosines
    plain = Runtime(config(gallery, tomorrow, tmp_path / "s3"), publisher=NullPublisher)
    plain.outbox.close()
    assert plain.calibration is None and isinstance(plain.matcher.scorer, Gallery)
    assert "calibrated for centred-cosine scores but the run scores cosine" in caplog.text


def test_enroll_warns_of_confusions_in_the_centred_score(
    gallery: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    background = tmp_path / "background"
    talk(background / "monday.wav", seed=3)
    cfg = config(gallery, background / "monday.wav", tmp_path / "state", centre="background")
    run_calibration(cfg, str(background), 10.0, 1000.0)  # loose: look-alikes are confused
    again = wav(tmp_path / "again.wav", voice(3.0, seed=2))  # the enrolled voice, another take
    base = ["enroll", "--bundle", str(EVENTS_BUNDLE), "--gallery", str(gallery)]
    assert main([*base, "--label", "voice-again", str(again)]) == 0
    err = capsys.readouterr().err
    assert "'voice-again' and 'voice' would be confused" in err
    assert "score (centred on the background)" in err and "the calibrated threshold" in err
