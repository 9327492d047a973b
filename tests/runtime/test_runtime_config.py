"""The runtime config: strict sections, the ``type``-keyed source union, URIs, flags, secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from edgesiam.errors import ConfigError
from edgesiam.mqtt.client import MqttSettings
from edgesiam.runtime.config import (
    FileSourceConfig,
    MicSourceConfig,
    MqttConfig,
    MqttSourceConfig,
    RuntimeConfig,
    SerialSourceConfig,
    StdinSourceConfig,
    apply_overrides,
    default_state_dir,
    is_runtime_config,
    load_runtime_config,
    parse_source_uri,
)
from edgesiam.runtime.run_cli import (
    config_from_args,
    is_runtime_file,
    validate_runtime_file,
)
from tests.support.cli import run_args

CONFIGS = Path(__file__).parents[2] / "configs"


def minimal(**extra: Any) -> dict[str, Any]:
    return {"bundle": "b", "source": {"type": "file", "path": "x.wav"}, **extra}


def problems(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_runtime_config(None, data)
    return str(caught.value)


def test_defaults_are_the_documented_ones() -> None:
    c = load_runtime_config(None, minimal())
    assert c.matching.target_fmr == 1e-3 and c.matching.threshold is None
    assert (c.matching.decision.n_of, c.matching.decision.m) == (2, 3)
    assert c.matching.gate.enabled is None  # on for audio, off for sensors
    assert c.mqtt.enabled and c.mqtt.prefix == "edgesiam"
    assert c.gallery_path == c.state_dir / "gallery.npz"
    assert isinstance(c.source, FileSourceConfig) and not c.source.realtime


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            minimal(matching={"gate": {"treshold_db": -40}}),
            "matching.gate.treshold_db: unknown key",
        ),
        (minimal(source={"type": "file", "path": "x", "realtim": True}), "source.file.realtim"),
        (minimal(source={"type": "camera"}), "'camera'"),
        (minimal(matching={"target_fmr": 0.05}), "0.01, 0.001, 0.0001"),
        (minimal(matching={"target_fmr": 0.01, "threshold": 0.7}), "either target_fmr or"),
        (minimal(matching={"threshold": 1.5}), "matching.threshold"),
        (minimal(matching={"per_label": {"alice": 2.0}}), "[-1, 1]"),
        (minimal(matching={"decision": {"n_of": 4, "m": 3}}), "n_of (4) cannot exceed m (3)"),
        (minimal(device_id="kitchen/pi"), "device_id"),
        (minimal(mqtt={"username": "u", "password": "p"}), "without TLS"),
        (minimal(mqtt={"url": "mqtts://h", "tls_cert": "c.pem"}), "needs its key"),
        (minimal(mqtt={"url": "http://h"}), "mqtt://"),
        (minimal(outbox={"policy": "drop_all"}), "outbox.policy"),
        ({"source": {"type": "stdin"}}, "bundle: Field required"),
    ],
)
def test_every_problem_is_reported_with_its_path(data: dict[str, Any], message: str) -> None:
    assert message in problems(data)


def test_several_problems_are_reported_together() -> None:
    text = problems(minimal(metrics={"interval_s": 0}, processing={"queue_s": -1}))
    assert "2 problem(s)" in text and "metrics.interval_s" in text and "processing.queue_s" in text


def test_the_type_field_chooses_the_source() -> None:
    kinds = {
        "file": ({"path": "a.wav"}, FileSourceConfig),
        "stdin": ({}, StdinSourceConfig),
        "mic": ({"device": 2}, MicSourceConfig),
        "mqtt": ({"topic": "imu"}, MqttSourceConfig),
        "serial": ({"port": "/dev/ttyACM0"}, SerialSourceConfig),
    }
    for kind, (fields, cls) in kinds.items():
        config = load_runtime_config(None, minimal(source={"type": kind, **fields}))
        assert isinstance(config.source, cls)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:rec.wav", {"type": "file", "path": "rec.wav"}),
        (
            "file:/data/a b.csv?chunk_s=0.5",
            {"type": "file", "path": "/data/a b.csv", "chunk_s": 0.5},
        ),
        ("stdin:", {"type": "stdin"}),
        ("stdin:16000", {"type": "stdin", "sample_rate": 16000}),
        (
            "stdin:?sample_rate=8000&format=f32le",
            {"type": "stdin", "sample_rate": 8000, "format": "f32le"},
        ),
        ("mic:", {"type": "mic"}),
        ("mic:2", {"type": "mic", "device": 2}),
        ("mic:USB Audio", {"type": "mic", "device": "USB Audio"}),
        (
            "mqtt:sensors/imu?format=f32le",
            {"type": "mqtt", "topic": "sensors/imu", "format": "f32le"},
        ),
        (
            "mqtt://gw.lan:1884/sensors/+/imu",
            {"type": "mqtt", "url": "mqtt://gw.lan:1884", "topic": "sensors/+/imu"},
        ),
        (
            "serial:/dev/ttyACM0?baudrate=9600",
            {"type": "serial", "port": "/dev/ttyACM0", "baudrate": 9600},
        ),
    ],
)
def test_source_uris(uri: str, expected: dict[str, Any]) -> None:
    assert parse_source_uri(uri) == expected
    load_runtime_config(None, {"bundle": "b", "source": expected})  # and they validate


@pytest.mark.parametrize("uri", ["rec.wav", "camera:0", "file:", "mqtt:", "serial:", "mqtt://host"])
def test_bad_source_uris_say_what_is_expected(uri: str) -> None:
    with pytest.raises(ConfigError, match="--source"):
        parse_source_uri(uri)


def test_unknown_uri_parameter_is_an_unknown_key() -> None:
    text = problems({"bundle": "b", "source": parse_source_uri("stdin:?rate=16000")})
    assert "source.stdin.rate: unknown key" in text


def test_paths_in_a_file_are_relative_to_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "runtime.yaml"
    data = {
        "bundle": "bundles/speaker",
        "state_dir": "/var/lib/edgesiam",
        "source": {"type": "file", "path": "rec.wav"},
        "mqtt": {"url": "mqtts://dev@h", "password_file": "secret"},
    }
    path.write_text(yaml.safe_dump(data))
    config = load_runtime_config(path)
    assert config.bundle == folder / "bundles/speaker"
    assert config.state_dir == Path("/var/lib/edgesiam")
    assert isinstance(config.source, FileSourceConfig) and config.source.path == folder / "rec.wav"
    assert config.mqtt.password_file == folder / "secret"


def test_overrides_set_dotted_keys_and_replace_sections() -> None:
    data = minimal(matching={"decision": {"n_of": 1, "m": 1}})
    out = apply_overrides(data, {"matching.decision.m": 4, "source": {"type": "stdin"}})
    assert out["matching"]["decision"] == {"n_of": 1, "m": 4}
    assert out["source"] == {"type": "stdin"}
    assert data["matching"]["decision"]["m"] == 1  # the input is left alone


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "runtime.yaml"
    path.write_text(yaml.safe_dump(minimal(mqtt={"url": "mqtt://a:1883"})))
    args = run_args(
        "--config",
        str(path),
        "--source",
        "stdin:",
        "--broker",
        "mqtts://dev@b.lan:8884",
        "--device-id",
        "kitchen",
        "--state-dir",
        str(tmp_path / "state"),
        "--gallery",
        "g.npz",
        "--print-events",
    )
    config = config_from_args(args)
    assert isinstance(config.source, StdinSourceConfig)
    assert config.mqtt.url == "mqtts://dev@b.lan:8884" and config.mqtt.enabled
    assert config.device_id == "kitchen" and config.print_events
    assert config.state_dir == tmp_path / "state"
    assert config.gallery == Path("g.npz").resolve()
    assert not config_from_args(run_args("--config", str(path), "--no-mqtt")).mqtt.enabled


def test_flag_conflicts_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config CFG, or at least --bundle"):
        config_from_args(run_args("--source", "stdin:"))
    with pytest.raises(ConfigError, match="contradict"):
        config_from_args(
            run_args("--bundle", "b", "--source", "stdin:", "--no-mqtt", "--broker", "mqtt://h")
        )
    with pytest.raises(ConfigError, match=r"source\.stdin\.realtime"):
        config_from_args(run_args("--bundle", "b", "--source", "stdin:", "--realtime"))
    realtime = config_from_args(run_args("--bundle", "b", "--source", "file:a.wav", "--realtime"))
    assert isinstance(realtime.source, FileSourceConfig) and realtime.source.realtime
    assert realtime.source.path == Path("a.wav").resolve()


def test_mqtt_section_mirrors_the_publisher_settings() -> None:
    ours = set(MqttConfig.model_fields) - {"enabled"}
    theirs = set(MqttSettings.model_fields) - {"device_id"}
    assert ours == theirs
    config = load_runtime_config(
        None,
        minimal(
            device_id="pi4",
            mqtt={
                "url": "mqtts://dev@h:8883",
                "password_env": "EDGESIAM_TEST_PW",
                "prefix": "home/es",
            },
        ),
    )
    settings = config.mqtt.settings(config.device_id)
    assert settings.device_id == "pi4" and settings.topics.event == "home/es/pi4/event"
    assert settings.effective_username == "dev"


def test_secrets_are_read_when_connecting_not_when_validating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGESIAM_TEST_PW", raising=False)
    env = minimal(mqtt={"url": "mqtts://dev@h", "password_env": "EDGESIAM_TEST_PW"})
    settings = load_runtime_config(None, env).mqtt.settings("d")  # validates without the secret
    with pytest.raises(ConfigError, match="EDGESIAM_TEST_PW is not set"):
        settings.resolve_password()
    monkeypatch.setenv("EDGESIAM_TEST_PW", "s3cret")
    assert settings.resolve_password() == "s3cret"
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    in_file = minimal(mqtt={"url": "mqtts://dev@h", "password_file": str(secret)})
    assert load_runtime_config(None, in_file).mqtt.settings("d").resolve_password() == "from-file"
    literal = load_runtime_config(None, minimal(mqtt={"url": "mqtts://dev@h", "password": "lit"}))
    assert "lit" not in repr(literal)  # a SecretStr never shows
    assert literal.mqtt.settings("d").resolve_password() == "lit"


def test_state_dir_follows_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/edgesiam")
    assert default_state_dir() == Path("/var/lib/edgesiam")
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_STATE_HOME", "/tmp/xdg")
    assert default_state_dir() == Path("/tmp/xdg/edgesiam")


def test_validate_tells_runtime_configs_from_recipes(tmp_path: Path) -> None:
    recipe = sorted(CONFIGS.glob("*.yaml"))[0]
    assert not is_runtime_file(recipe)
    assert not is_runtime_config(yaml.safe_load(recipe.read_text()))
    path = tmp_path / "rt.yaml"
    path.write_text(yaml.safe_dump(minimal()))
    assert is_runtime_file(path)
    assert isinstance(validate_runtime_file(path), RuntimeConfig)
    path.write_text(yaml.safe_dump(minimal(matching={"n_of": 2})))
    with pytest.raises(ConfigError, match=r"rt\.yaml: 1 problem.*\n  matching\.n_of: unknown key"):
        validate_runtime_file(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        validate_runtime_file(path)
