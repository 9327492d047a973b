"""``~user`` in every path a user writes: a ``ConfigError`` naming the key, never
``RuntimeError: Could not determine home directory.`` (found by hypothesis as ``bundle: ~0``)."""

from __future__ import annotations

import pwd
from pathlib import Path

import pytest
import yaml

from edgesiam.cli import main
from edgesiam.errors import ConfigError
from edgesiam.paths import expand_user
from edgesiam.runtime.config import default_state_dir, load_runtime_config
from edgesiam.train.config import load_train_config

ROOT = Path(__file__).resolve().parents[1]
NOBODY = "~nosuchuser-edgesiam/x"


def no_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user with neither $HOME nor an entry in the password database (a bare container uid)."""

    def missing(uid: int) -> pwd.struct_passwd:
        raise KeyError(uid)

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", missing)


@pytest.mark.parametrize("text", ["~0", NOBODY])
def test_an_unknown_user_is_a_config_error_naming_the_key(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--bundle: cannot expand .*no user named") as info:
        expand_user(text, "--bundle")
    assert text in str(info.value)


def test_home_and_plain_paths_expand_as_usual() -> None:
    assert expand_user("~/b", "k") == Path.home() / "b"
    assert expand_user("rel/~b", "k") == Path("rel/~b")
    assert expand_user(Path("/abs"), "k") == Path("/abs")


def test_no_home_directory_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    no_home(monkeypatch)
    with pytest.raises(ConfigError, match=r"^k: cannot expand '~/b'.*\$HOME is not set"):
        expand_user("~/b", "k")


def test_the_default_state_dir_without_a_home_says_to_set_state_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    no_home(monkeypatch)
    for var in ("STATE_DIRECTORY", "XDG_STATE_HOME"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match=r"^state_dir: "):
        default_state_dir()


RUNTIME_PATHS = [
    "bundle",
    "gallery",
    "state_dir",
    "source.path",
    "mqtt.password_file",
    "mqtt.tls_ca",
    "mqtt.tls_cert",
    "mqtt.tls_key",
]


def runtime_file(tmp_path: Path, dotted: str, value: str) -> Path:
    data: dict[str, object] = {
        "bundle": "b",
        "source": {"type": "file", "path": "x.wav"},
        "mqtt": {"url": "mqtts://dev@broker.lan", "tls_cert": "c.pem", "tls_key": "k.pem"},
    }
    section, _, key = dotted.rpartition(".")
    node = data[section] if section else data
    assert isinstance(node, dict)
    node[key] = value
    path = tmp_path / "device.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("dotted", RUNTIME_PATHS)
def test_every_runtime_path_key_names_itself(tmp_path: Path, dotted: str) -> None:
    path = runtime_file(tmp_path, dotted, NOBODY)
    with pytest.raises(ConfigError) as info:
        load_runtime_config(path)
    message = str(info.value)
    shown = dotted.replace("source.", "source.file.")  # the source union's error path has its type
    assert str(path) in message and f"  {shown}: " in message and "no user named" in message


@pytest.mark.parametrize("dotted", RUNTIME_PATHS)
def test_every_runtime_path_key_expands_home(tmp_path: Path, dotted: str) -> None:
    config = load_runtime_config(runtime_file(tmp_path, dotted, "~/edgesiam-x"))
    node: object = config
    for key in dotted.split("."):
        node = getattr(node, key)
    assert node == Path.home() / "edgesiam-x"


@pytest.mark.parametrize(
    ("dotted", "value", "shown"),
    [
        ("data.train", NOBODY, "data.train.0"),
        ("data.train", [str(ROOT), NOBODY], "data.train.1"),
        ("data.val", NOBODY, "data.val"),
        ("augment.noise_dir", NOBODY, "augment.audio.noise_dir"),
        ("augment.rir_dir", NOBODY, "augment.audio.rir_dir"),
    ],
)
def test_every_recipe_path_key_names_itself(
    tmp_path: Path, dotted: str, value: object, shown: str
) -> None:
    recipe = yaml.safe_load((ROOT / "configs" / "speaker.yaml").read_text())
    section, key = dotted.split(".")
    recipe[section][key] = value
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(ConfigError) as info:
        load_train_config(path)
    assert f"  {shown}: Value error, cannot expand '{NOBODY}'" in str(info.value)


def test_recipe_paths_expand_home(tmp_path: Path) -> None:
    recipe = yaml.safe_load((ROOT / "configs" / "speaker.yaml").read_text())
    recipe["data"]["val"] = "~/val"
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert load_train_config(path).data.val == Path.home() / "val"


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["run", "--bundle", NOBODY, "--source", "stdin:", "--no-mqtt"], "--bundle"),
        (["run", "--bundle", "b", "--gallery", NOBODY, "--source", "stdin:"], "--gallery"),
        (["run", "--bundle", "b", "--source", f"file:{NOBODY}", "--no-mqtt"], "--source"),
        (["run", "--bundle", "b", "--source", "stdin:", "--state-dir", NOBODY], "--state-dir"),
        (["dashboard", "--data-dir", NOBODY], "--data-dir"),
    ],
)
def test_cli_path_options_name_the_option(
    argv: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"edgesiam: error: {option}: cannot expand") and "Traceback" not in err


def test_validate_reports_the_key_of_a_tilde_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = runtime_file(tmp_path, "bundle", "~0")
    assert main(["validate", str(path)]) != 0
    out = capsys.readouterr()
    assert "bundle: " in out.out + out.err and "no user named '0'" in out.out + out.err
