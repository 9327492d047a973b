"""Thresholds a user can see and set: what ``run`` reports at start, the ``--threshold`` and
``--target-fmr`` flags, near misses printed with ``--no-mqtt``, and thresholds set over MQTT that
survive a restart (a real ``edgesiam run`` process, a real Mosquitto, the shipped events bundle).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
import soundfile as sf

from edgesiam.model.interpreters import load_model
from edgesiam.runtime.pipeline import Runtime
from edgesiam.runtime.run_cli import add_run_parser, config_from_args
from edgesiam.runtime.threshold_store import SetThresholds, ThresholdStore, thresholds_path
from tests.support.mqtt import MosquittoBroker, Subscriber, wait_until
from tests.support.paths import EVENTS_BUNDLE
from tests.support.signals import voice

ROOT = Path(__file__).resolve().parents[2]
CALIBRATED = json.loads((EVENTS_BUNDLE / "manifest.json").read_text())["thresholds"]["window"]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edgesiam")
    add_run_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["run", *argv])


@pytest.fixture
def gallery(events_gallery: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "gallery" / "gallery.npz"
    copy.parent.mkdir()
    copy.write_bytes(events_gallery.read_bytes())
    return copy


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "stream.wav"
    sf.write(path, voice(2.5, seed=7), 16000, subtype="PCM_16")
    return path


def run_report(caplog: pytest.LogCaptureFixture, *argv: str) -> str:
    """Run ``edgesiam run ARGV`` in-process; the threshold report it logged at start."""
    caplog.set_level("INFO", logger="edgesiam.runtime")
    args = parse(*argv)
    assert args.func(args) == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("thresholds")]
    assert len(lines) == 1
    return lines[0]


def test_run_help_offers_threshold_and_target_fmr() -> None:
    parser = argparse.ArgumentParser(prog="edgesiam")
    run = add_run_parser(parser.add_subparsers(dest="command"))
    text = run.format_help()
    assert "--threshold COSINE" in text and "--target-fmr RATE" in text
    assert "where it comes from" in text and "near misses" in text


def test_run_reports_every_labels_threshold_and_its_source(
    gallery: Path, clip: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "device.yaml"
    config.write_text(
        f"bundle: {EVENTS_BUNDLE}\ngallery: {gallery}\nstate_dir: {tmp_path / 'state'}\n"
        f"source: {{type: file, path: {clip}}}\nmqtt: {{enabled: false}}\n"
        "matching:\n  per_label: {voice: 0.97, bell: 0.9}\n"
    )
    report = run_report(caplog, "--config", str(config))
    default = CALIBRATED["at_fmr"]["0.001"]
    expected = f"(default)  {default:.4f}  bundle calibration (window vs template) at target FMR"
    assert f"{expected} 0.001" in report
    assert "voice      0.9700  matching.per_label (config)" in report
    assert "bell       0.9000  matching.per_label (config) (not enrolled)" in report


def test_threshold_flags_override_the_config_file(
    gallery: Path, clip: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "device.yaml"
    config.write_text(
        f"bundle: {EVENTS_BUNDLE}\ngallery: {gallery}\nsource: {{type: file, path: {clip}}}\n"
        "matching: {target_fmr: 0.01}\n"
    )
    assert config_from_args(parse("--config", str(config), "--threshold", "0.7")).matching.threshold
    by_fmr = config_from_args(parse("--config", str(config), "--target-fmr", "0.0001")).matching
    assert by_fmr.target_fmr == 1e-4 and by_fmr.threshold is None
    with pytest.raises(Exception, match="--threshold and --target-fmr"):
        config_from_args(
            parse("--config", str(config), "--threshold", "0.7", "--target-fmr", "0.01")
        )

    common = ["--bundle", str(EVENTS_BUNDLE), "--gallery", str(gallery), "--source",
              f"file:{clip}", "--no-mqtt", "--state-dir", str(tmp_path / "s")]  # fmt: skip
    report = run_report(caplog, *common, "--threshold", "0.5")
    assert "(default)  0.5000  matching.threshold / --threshold" in report
    assert "voice      0.5000  the default" in report
    caplog.clear()
    report = run_report(caplog, *common, "--target-fmr", "0.01")
    assert f"(default)  {CALIBRATED['at_fmr']['0.01']:.4f}  bundle calibration" in report
    assert "target FMR 0.01" in report


def test_no_mqtt_prints_near_misses_with_score_and_gap(
    gallery: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse("--bundle", str(EVENTS_BUNDLE), "--gallery", str(gallery), "--source",
                 f"file:{clip}", "--no-mqtt", "--state-dir", str(tmp_path / "s"),
                 "--threshold", "1.0", "--log-level", "warning")  # fmt: skip
    assert args.func(args) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("near miss: ")]
    assert lines, err
    for line in lines:
        # "near miss: voice 0.9712 < 1.0000 (short by 0.0288) at 1.25 s"
        parts = line.split()
        score, threshold, gap = float(parts[3]), float(parts[5]), float(parts[8].rstrip(")"))
        assert parts[2] == "voice" and threshold == 1.0 and 0.95 <= score < 1.0
        assert gap == pytest.approx(threshold - score, abs=2e-4) and gap > 0
        assert len(parts[8].rstrip(")").split(".")[1]) == 4  # never "short by 0.000"


def test_a_thresholds_file_for_another_model_is_ignored(
    gallery: Path, clip: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ThresholdStore(thresholds_path(gallery), "f" * 64, "other").save(
        SetThresholds(0.2, {"voice": 0.1})
    )
    args = parse("--bundle", str(EVENTS_BUNDLE), "--gallery", str(gallery), "--source",
                 f"file:{clip}", "--no-mqtt", "--state-dir", str(tmp_path / "s"))  # fmt: skip
    runtime = Runtime(config_from_args(args))
    try:
        assert runtime.thresholds.default == pytest.approx(CALIBRATED["at_fmr"]["0.001"])
        assert runtime.thresholds.for_label("voice") == runtime.thresholds.default
        assert "set for another model" in caplog.text
    finally:
        runtime.outbox.close()


# --- set over MQTT, kept across a restart ------------------------------------------------------


class DeviceProcess:
    """``edgesiam run`` reading PCM from a pipe that stays open: a live device until stopped."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edgesiam", "run", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=env,
        )
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(self.process.stderr,))
        self._reader.start()

    def _read(self, stream: IO[bytes] | None) -> None:
        assert stream is not None
        for line in stream:
            self.stderr.append(line.decode("utf-8", "replace"))

    @property
    def log(self) -> str:
        return "".join(self.stderr)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self._reader.join(timeout=5)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        return code


@pytest.fixture
def devices() -> Iterator[list[DeviceProcess]]:
    started: list[DeviceProcess] = []
    yield started
    for device in started:
        if device.process.poll() is None:
            device.process.kill()
            device.process.wait()


def command(sub: Subscriber, device: str, verb: str, body: dict[str, Any]) -> dict[str, Any]:
    topic = f"edgesiam/{device}/cmd/{verb}/result"
    before = len(sub.on(topic))
    sub.publish(f"edgesiam/{device}/cmd/{verb}", json.dumps(body))
    results = sub.wait_for(topic, before + 1, timeout=20)
    assert len(results) > before, f"no answer to {verb}"
    result: dict[str, Any] = results[-1].json()
    return result


def test_a_threshold_set_over_mqtt_is_still_in_force_after_a_restart(
    mosquitto: MosquittoBroker,
    gallery: Path,
    tmp_path: Path,
    devices: list[DeviceProcess],
) -> None:
    name = "thresh-dev"
    args = ["--bundle", str(EVENTS_BUNDLE), "--gallery", str(gallery), "--source", "stdin:",
            "--broker", mosquitto.url, "--device-id", name,
            "--state-dir", str(tmp_path / "state")]  # fmt: skip
    sub = Subscriber(mosquitto.host, mosquitto.port, [f"edgesiam/{name}/#"]).start()
    try:
        status = f"edgesiam/{name}/status"
        first = DeviceProcess(args)
        devices.append(first)
        assert wait_until(lambda: any(m.payload == b"online" for m in sub.on(status)), 60), (
            first.log
        )
        result = command(sub, name, "threshold", {"label": "voice", "value": 0.9123})
        assert result["ok"], result
        assert result["result"]["threshold"] == 0.9123
        assert "set over MQTT" in result["result"]["source"]
        default = command(sub, name, "threshold", {"target_fmr": 0.01})
        assert default["ok"], default
        assert first.stop() == 0, first.log
        saved = json.loads(thresholds_path(gallery).read_text())
        assert saved["per_label"] == {"voice": 0.9123}
        assert saved["default"] == pytest.approx(CALIBRATED["at_fmr"]["0.01"])
        assert saved["bundle_sha256"] == load_model(EVENTS_BUNDLE).manifest.files["model.tflite"]

        sub.messages.clear()
        second = DeviceProcess(args)
        devices.append(second)
        assert wait_until(lambda: any(m.payload == b"online" for m in sub.on(status)), 60)
        listed = command(sub, name, "list", {})
        assert listed["ok"], listed
        [voice_row] = listed["result"]["labels"]
        assert voice_row["threshold"] == 0.9123
        assert "set over MQTT" in voice_row["threshold_source"]
        assert listed["result"]["default_threshold"] == pytest.approx(
            CALIBRATED["at_fmr"]["0.01"], abs=1e-5
        )
        assert wait_until(lambda: "set over MQTT" in second.log, 10)
        report = second.log
        assert "voice      0.9123  set over MQTT" in report, report

        cleared = command(sub, name, "threshold", {"label": "voice"})
        assert cleared["ok"] and cleared["result"]["source"] == "the default"
        assert second.stop() == 0
        assert json.loads(thresholds_path(gallery).read_text())["per_label"] == {}
    finally:
        sub.stop()


def test_thresholds_never_change_without_a_saved_file(gallery: Path, tmp_path: Path) -> None:
    """The file is written before the value is used: a failed write leaves the old in force."""
    blocked = thresholds_path(gallery)
    (blocked / "in-the-way").mkdir(parents=True)  # a folder where the file should go
    stdin = open(os.devnull, "rb")  # noqa: SIM115 - closed below
    args = parse("--bundle", str(EVENTS_BUNDLE), "--gallery", str(gallery), "--source",
                 "stdin:", "--no-mqtt", "--state-dir", str(tmp_path / "s"))  # fmt: skip
    runtime = Runtime(config_from_args(args), stdin=stdin)
    try:
        before = runtime.thresholds
        result = runtime.command_handler.handle("threshold", b'{"value": 0.5}')
        assert not result["ok"] and result["error_code"] == "failed"
        assert (
            "cannot save the thresholds" in result["error"] and "nothing changed" in result["error"]
        )
        assert runtime.thresholds == before
        assert not np.isclose(runtime.thresholds.default, 0.5)
    finally:
        runtime.outbox.close()
        stdin.close()


def test_score_norm_scores_windows_with_the_bundles_cohort(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, cohort_audio_bundle: Path
) -> None:
    """matching.score_norm: cohort — windows are AS-normalised against the bundle's cohort and the
    default threshold is the bundle's for the normalised score."""
    from edgesiam.core.normalise import NormalisedScorer
    from edgesiam.runtime.enrollment import enroll_recordings
    from edgesiam.runtime.gallery_store import GalleryStore, model_sha256

    speaker = cohort_audio_bundle
    embedder = load_model(speaker)
    clip = tmp_path / "v.wav"
    sf.write(clip, voice(2.5, seed=7), 16000, subtype="PCM_16")
    gallery = tmp_path / "g.npz"
    enroll_recordings(GalleryStore(gallery, model_sha256(embedder.manifest)), embedder, "v", [clip])
    config = tmp_path / "device.yaml"
    config.write_text(
        f"bundle: {speaker}\ngallery: {gallery}\nstate_dir: {tmp_path / 'state'}\n"
        f"source: {{type: file, path: {clip}}}\nmqtt: {{enabled: false}}\n"
        "matching: {score_norm: cohort}\n"
    )
    report = run_report(caplog, "--config", str(config))
    normalised = json.loads((speaker / "manifest.json").read_text())["cohort"]["window_thresholds"]
    assert f"{normalised['at_fmr']['0.001']:.4f}" in report
    assert "for the normalised score" in report
    runtime = Runtime(config_from_args(parse("--config", str(config))), embedder=embedder)
    try:
        assert isinstance(runtime.matcher.scorer, NormalisedScorer)
        assert runtime.score_kind == "adaptive-s-norm"
    finally:
        runtime.outbox.close()
