"""Config files against random YAML: training recipes (``edgesiam.train.config``) and the device's
runtime config (``edgesiam.runtime.config``), plus ``--source`` URIs.

Property: loading gives a validated config or a ``ConfigError`` that names the file, never
another exception. Inputs: random YAML documents built from the real keys (so that many get deep
into validation), random text and bytes, YAML aliases and tags, and mutations of the shipped
recipes and device profiles (a key dropped, a value replaced).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from edgesiam.errors import ConfigError
from edgesiam.runtime.config import load_runtime_config, parse_source_uri
from edgesiam.train.config import load_train_config
from tests.support.fuzz_scale import TIMEOUT_S, fuzz_settings

pytestmark = pytest.mark.timeout(TIMEOUT_S)

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "configs").glob("*.yaml"))
PROFILES = sorted((ROOT / "firmware_configs").glob("*.yaml"))

KEYS = [
    "name", "modality", "data", "train", "val", "sample_rate", "window_s", "hop_s", "frontend",
    "type", "encoder", "channels", "objective", "optim", "epochs", "augment", "bundle", "source",
    "path", "topic", "format", "url", "mqtt", "password", "password_env", "password_file",
    "tls_ca", "allow_plaintext_password", "matching", "per_label", "target_fmr", "threshold",
    "decision", "n_of", "m", "gate", "device_id", "state_dir", "gallery", "outbox", "metrics",
]  # fmt: skip
VALUES = [
    "audio", "sensor", "logmel", "file", "mqtt", "stdin", "serial", "mic", "mqtts://h:8883",
    "mqtt://[::1", "mqtt://u:p@h", "../..", "\x00", "a/b", "", "1e999", "-1", "edgesiam/+/#",
]  # fmt: skip

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(KEYS + VALUES),
)
documents = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(KEYS) | st.text(max_size=4) | st.integers(), inner, max_size=6
        )
    ),
    max_leaves=40,
)
ODD_YAML = [
    "&a [*a]",
    "a: &x [1]\nb: [*x, *x, *x]",
    "!!python/object/apply:os.system ['echo no']",
    "? [a]\n: 1",
    "a: !!binary 'zz'",
    "{a: 1, a: 2}",
    "bundle: x\nsource: {type: file, path: ''}",
    "bundle: x\nsource: {type: mqtt, topic: t, url: 'mqtt://[::1'}",
    "- &a [a, a, a]\n- &b [*a, *a, *a]\n- &c [*b, *b, *b]\n- &d [*c, *c, *c]\n- &e [*d, *d, *d]",
    "\t",
    "%YAML 9.9\n---\na: 1",
    "a: 1\n---\nb: 2",
]


def mutate(draw: st.DrawFn, data: Any) -> Any:
    """Replace or drop one value somewhere in a parsed config."""
    if isinstance(data, dict) and data:
        key = draw(st.sampled_from(sorted(data, key=str)))
        out = dict(data)
        choice = draw(st.integers(0, 2))
        if choice == 0:
            del out[key]
        elif choice == 1:
            out[key] = draw(leaves)
        else:
            out[key] = mutate(draw, data[key])
        return out
    if isinstance(data, list) and data:
        i = draw(st.integers(0, len(data) - 1))
        return [*data[:i], mutate(draw, data[i]), *data[i + 1 :]]
    return draw(leaves)


@st.composite
def config_texts(draw: st.DrawFn, shipped: list[Path]) -> str:
    kind = draw(st.integers(0, 5))
    if kind <= 1 and shipped:
        base = yaml.safe_load(draw(st.sampled_from(shipped)).read_text())
        for _ in range(draw(st.integers(1, 3))):
            base = mutate(draw, base)
        return yaml.safe_dump(base, allow_unicode=True)
    if kind == 2:
        return yaml.safe_dump(draw(documents), allow_unicode=True)
    if kind == 3:
        return draw(st.sampled_from(ODD_YAML))
    if kind == 4:
        return draw(st.binary(max_size=200)).decode("latin-1")
    return draw(st.text(max_size=200))


def check_loads(loader: Any, path: Path) -> None:
    try:
        loader(path)
    except ConfigError as exc:
        assert str(path) in str(exc)


@fuzz_settings(150)
@given(text=config_texts(RECIPES))
@example(text="name: x\nmodality: audio\ndata: {train: ~0, window_s: 1, hop_s: 1}\n")
def test_training_recipes_load_or_fail_clearly(tmp_path: Path, text: str) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, errors="surrogateescape")
    check_loads(load_train_config, path)


@fuzz_settings(150)
@given(text=config_texts(PROFILES))
@example(text="bundle: ~0\nsource: {type: mic}\n")  # RuntimeError: Could not determine home …
def test_runtime_configs_load_or_fail_clearly(tmp_path: Path, text: str) -> None:
    path = tmp_path / "device.yaml"
    path.write_text(text, errors="surrogateescape")
    check_loads(load_runtime_config, path)


@fuzz_settings(300)
@given(
    uri=st.one_of(
        st.text(max_size=40),
        st.tuples(
            st.sampled_from(["file:", "stdin:", "mic:", "mqtt:", "mqtt://", "serial:"]),
            st.text(max_size=30),
        ).map("".join),
    )
)
def test_source_uris_parse_or_fail_clearly(uri: str) -> None:
    try:
        data = parse_source_uri(uri)
    except ConfigError as exc:
        assert "--source" in str(exc)
        return
    assert data["type"] in ("file", "stdin", "mic", "mqtt", "serial")


@pytest.mark.parametrize("uri", ["mqtt://[::1/imu", "mqtt://u@[zz/imu"])
def test_a_source_uri_with_a_broken_ipv6_host_is_a_config_error(uri: str) -> None:
    """urlsplit raised ValueError('Invalid IPv6 URL')."""
    with pytest.raises(ConfigError, match="not a usable broker address"):
        parse_source_uri(uri)


def test_a_source_uri_never_echoes_a_password() -> None:
    with pytest.raises(ConfigError, match="expected mqtt://HOST") as info:
        parse_source_uri("mqtt://user:secret@/imu")
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("mqtt://[::1", "Invalid IPv6"),
        ("mqtt://h:99999", "out of range"),
        ("http://h", "expected mqtt://"),
        ("mqtt://user:secret@h", "no password in the URL"),
    ],
)
def test_an_mqtt_source_broker_url_is_checked_with_the_config(url: str, match: str) -> None:
    """It was only parsed when the source opened (ValueError for a broken IPv6 host)."""
    with pytest.raises(ConfigError, match=match) as info:
        load_runtime_config(
            None, {"bundle": "b", "source": {"type": "mqtt", "topic": "t", "url": url}}
        )
    assert "secret" not in str(info.value)
