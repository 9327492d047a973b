"""The shipped device profiles and the systemd unit."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from edgesiam.runtime.config import MicSourceConfig, MqttSourceConfig, SerialSourceConfig
from edgesiam.runtime.run_cli import is_runtime_file, validate_runtime_file

FIRMWARE = Path(__file__).parents[2] / "firmware_configs"
PROFILES = sorted(FIRMWARE.glob("*.yaml"))
UNIT = FIRMWARE / "edgesiam.service"


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_every_profile_validates(path: Path) -> None:
    assert is_runtime_file(path)
    config = validate_runtime_file(path)
    assert config.bundle.is_absolute() and config.state_dir == Path("/var/lib/edgesiam")
    imu = "-imu" in path.stem
    assert config.bundle.name == ("motion" if imu else "speaker")
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
