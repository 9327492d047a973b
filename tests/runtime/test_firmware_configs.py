"""The shipped device profiles and the systemd unit."""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from edgesiam.runtime.config import MicSourceConfig, MqttSourceConfig, SerialSourceConfig
from edgesiam.runtime.run_cli import is_runtime_file, validate_runtime_file
from tests.support.paths import EVENTS_BUNDLE
from tests.support.signals import voice

FIRMWARE = Path(__file__).parents[2] / "firmware_configs"
PROFILES = sorted(FIRMWARE.glob("*.yaml"))
UNIT = FIRMWARE / "edgesiam.service"


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_every_profile_validates(path: Path) -> None:
    assert is_runtime_file(path)
    config = validate_runtime_file(path)
    assert config.bundle.is_absolute() and config.state_dir == Path("/var/lib/edgesiam")
    imu = "-imu" in path.stem
    assert config.bundle.name == (
        "motion" if imu else "events" if "events" in path.stem else "speaker"
    )
    if imu:
        assert isinstance(config.source, MqttSourceConfig | SerialSourceConfig)
        assert config.matching.gate.enabled is False
    else:
        assert isinstance(config.source, MicSourceConfig)
    coral = "coral" in path.stem
    assert (config.interpreter.delegate == "edgetpu") == coral
    settings = config.mqtt.settings("device")
    assert settings.password_file is not None  # never a password in the file itself


def test_the_boards_and_variants_are_covered() -> None:
    names = {p.stem for p in PROFILES}
    for board in ("pi-zero-2w", "pi4", "pi5", "pi-coral-usb", "coral-devboard"):
        assert any(n.startswith(board) for n in names), board
    assert any(n.endswith("-audio") for n in names) and any(n.endswith("-imu") for n in names)


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_restarts_runs_as_its_own_user_and_keeps_state() -> None:
    service = unit()["Service"]
    assert service["Restart"] == "always" and int(service["RestartSec"]) > 0
    assert unit()["Unit"]["StartLimitIntervalSec"] == "0"
    assert service["User"] == "edgesiam" and service["User"] != "root"
    assert service["StateDirectory"] == "edgesiam"
    assert service["KillSignal"] == "SIGTERM"
    assert service["Type"] == "notify" and int(service["WatchdogSec"]) > 0
    assert service["ExecStart"].split()[1:] == ["run", "--config", "/etc/edgesiam/runtime.yaml"]
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    copy = tmp_path / "edgesiam.service"
    copy.write_text(UNIT.read_text().replace("/opt/edgesiam/venv/bin/edgesiam", "/bin/true"))
    done = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    complaints = [line for line in done.stderr.splitlines() if str(copy) in line]
    assert done.returncode == 0 and not complaints, done.stderr


def test_the_events_profile_fits_the_events_bundle_and_a_long_sound_is_one_event(
    events_gallery: Path, tmp_path: Path
) -> None:
    """The profile with the shipped events bundle in place of its device path: its target FMR is
    backed by the bundle's calibration, and a 9 s continuous sound gives one event (without
    ``hold`` the same stream fires each time the refractory period runs out)."""
    import soundfile as sf

    from edgesiam.runtime.config import load_runtime_config
    from edgesiam.runtime.pipeline import Runtime

    profile = FIRMWARE / "pi4-events.yaml"
    stream = tmp_path / "long.wav"
    sf.write(stream, voice(8.8, seed=5), 16000, subtype="PCM_16")
    overrides = {
        "bundle": str(EVENTS_BUNDLE),
        "gallery": str(events_gallery),
        "state_dir": str(tmp_path / "state"),
        "source": {"type": "file", "path": str(stream)},
        "mqtt.enabled": False,
    }
    config = load_runtime_config(profile, overrides)
    manifest = json.loads((EVENTS_BUNDLE / "manifest.json").read_text())
    assert manifest["thresholds"]["window"]["supported"]["0.001"]
    assert config.matching.target_fmr == 0.001 and config.matching.decision.hold

    def events(**decision: object) -> int:
        c = config.model_copy(update={"state_dir": tmp_path / f"state{len(decision)}"})
        if decision:
            d = c.matching.decision.model_copy(update=decision)
            c = c.model_copy(update={"matching": c.matching.model_copy(update={"decision": d})})
        return Runtime(c).run().events

    assert events() == 1
    assert events(hold=False) >= 3
