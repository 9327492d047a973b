"""Remote commands against a real runtime: the shipped ``export/events`` (audio) and
``export/motion`` (sensor) bundles, their TFLite interpreters and a gallery file on disk.

Property, for every verb and any payload: :meth:`CommandHandler.handle` answers a result that is
strict JSON (no NaN/Infinity), never ``internal`` (an exception that escaped the runtime), and
the gallery on disk stays loadable, bound to its model and holding only labels that pass the
gallery's rule. Inputs: random bytes and JSON, requests with nasty labels (``/ \\ + #``, ``..``,
control characters, unicode, 65+ characters), embeddings of the wrong size or beyond float32,
WAVs of every format, rate and channel count (and damaged ones, and bad base64), huge and
deeply nested payloads.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from hypothesis import event, given
from hypothesis import strategies as st

from edgesiam.errors import ConfigError
from edgesiam.mqtt.contract import VERBS
from edgesiam.runtime.config import load_runtime_config
from edgesiam.runtime.gallery_store import validate_label
from edgesiam.runtime.pipeline import Runtime
from edgesiam.runtime.publishers import MemoryPublisher
from tests.support.fuzz_scale import TIMEOUT_S, fuzz_settings
from tests.support.hostile_files import mutated, wavs

pytestmark = pytest.mark.timeout(TIMEOUT_S)

ROOT = Path(__file__).resolve().parents[2]


def make_runtime(bundle: str, folder: Path) -> Runtime:
    folder.mkdir(parents=True, exist_ok=True)
    if bundle == "events":
        source = folder / "stream.wav"
        sf.write(source, np.zeros(16000, dtype=np.float32), 16000)
    else:
        source = folder / "stream.npy"
        np.save(source, np.zeros((200, 6), dtype=np.float32))
    config = load_runtime_config(
        None,
        {
            "bundle": str(ROOT / "export" / bundle),
            "gallery": str(folder / "gallery.npz"),
            "source": {"type": "file", "path": str(source)},
            "state_dir": str(folder / "state"),
            "device_id": f"fuzz-{bundle}",
            "mqtt": {"enabled": False},
        },
    )
    return Runtime(config, publisher=lambda outbox: MemoryPublisher(f"fuzz-{bundle}", outbox))


@pytest.fixture(scope="module", params=["events", "motion"])
def runtime(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runtime]:
    rt = make_runtime(request.param, tmp_path_factory.mktemp(f"cmd-{request.param}"))
    yield rt
    rt.outbox.close()


nasty_labels = st.one_of(
    st.sampled_from(
        [
            "alice",
            "bob",
            "a/b",
            "a\\b",
            "a+b",
            "#",
            "..",
            ".",
            " a",
            "a ",
            "\x00",
            "a\nb",
            "\u202e",
            "é",
            "名前",
            "x" * 64,
            "x" * 65,
            "",
            "a\u200bb",
        ]
    ),
    st.text(max_size=70),
)
floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 3.5e38, 1e-45, 0.0]),
)


def embeddings(dim: int) -> st.SearchStrategy[list[list[float]]]:
    width = st.sampled_from([dim, dim, dim, 1, dim + 1])
    return width.flatmap(
        lambda w: st.lists(st.lists(floats, min_size=w, max_size=w), min_size=1, max_size=3)
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


wav_texts = st.one_of(
    wavs.map(b64),
    mutated(wavs).map(b64),
    st.text(max_size=30),
    st.binary(max_size=60).map(b64),
    st.just("UklGRg=="),  # "RIFF" alone
)


def requests(verb: str, dim: int) -> st.SearchStrategy[dict[str, Any]]:
    """Mostly the verb's own request shape (so that requests get past the schema), sometimes
    another verb's."""
    cid = st.none() | st.text(max_size=130)
    labels = st.sampled_from(["alice", "bob", "carol"]) | nasty_labels
    shapes = {
        "enroll": st.one_of(
            st.fixed_dictionaries({"label": labels, "wav_base64": wav_texts}),
            st.fixed_dictionaries({"label": labels, "embeddings": embeddings(dim)}),
        ),
        "forget": st.fixed_dictionaries({"label": labels}),
        "threshold": st.fixed_dictionaries(
            {},
            optional={
                "label": labels,
                "value": floats | st.integers(-3, 3),
                "target_fmr": floats | st.sampled_from([0.01, 0.001, 0.0001, 0.5]),
            },
        ),
        "list": st.just({}),
        "reload": st.just({}),
    }
    own = shapes.get(verb, st.just({}))
    any_shape = st.one_of(*shapes.values())
    request = st.integers(0, 9).flatmap(lambda pick: own if pick < 8 else any_shape)
    return st.tuples(request, cid, st.booleans()).map(
        lambda t: {**t[0], "correlation_id": t[1]} if t[2] else t[0]
    )


def check_invariants(rt: Runtime, result: dict[str, Any], verb: str) -> None:
    text = json.dumps(result, allow_nan=False)  # strict JSON for every consumer
    assert result["schema"] == "edgesiam.cmd_result.v1" and result["verb"] == verb[:64]
    assert result.get("error_code") != "internal", text
    if rt.store.exists():
        gallery = rt.store.load()  # loadable and bound to this bundle's model
        for label in gallery.labels:
            validate_label(label)
        assert gallery.dim == int(rt.embedder.embedding_dim)
        assert np.all(np.isfinite(gallery.embeddings))
        assert set(gallery.labels) == set(rt.gallery.labels)  # the running gallery follows


@fuzz_settings(60)
@given(data=st.data())
def test_commands_of_every_verb_never_fail_inside(runtime: Runtime, data: st.DataObject) -> None:
    dim = int(runtime.embedder.embedding_dim)
    verb = data.draw(st.sampled_from(VERBS), label="verb")
    request = data.draw(requests(verb, dim), label="request")
    result = runtime.command_handler.handle(verb, json.dumps(request).encode())
    event(f"{verb}: {'ok' if result['ok'] else result['error_code']}")
    check_invariants(runtime, result, verb)
    if "label" in request:
        try:
            validate_label(request["label"])
        except ConfigError:  # a label the gallery refuses never gets in
            assert request["label"] not in runtime.gallery.labels
            assert not result["ok"]


@fuzz_settings(60)
@given(
    verb=st.sampled_from(VERBS) | st.text(max_size=80),
    payload=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.text(max_size=10) | st.integers(),
            lambda inner: (
                st.lists(inner, max_size=5)
                | st.dictionaries(st.sampled_from(["label", "value", "embeddings", "x"]), inner)
            ),
            max_leaves=40,
        ).map(lambda v: json.dumps(v).encode()),
    ),
)
def test_random_payloads_get_an_error_result(runtime: Runtime, verb: str, payload: bytes) -> None:
    result = runtime.command_handler.handle(verb, payload)
    check_invariants(runtime, result, verb)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"[" * 200_000 + b"]" * 200_000, "bad_json"),
        (b'{"label": "a", "wav_base64": "' + b"A" * (3 * 1024 * 1024) + b'"}', "too_large"),
        (b'{"label": "a", "wav_base64": "' + b"QUJD" * 180_000 + b'"}', "too_large"),
        (b'{"label": "a", "wav_base64": "not base64!"}', "invalid"),
        (b'{"label": "a", "embeddings": [[1e308, 1]]}', "invalid"),  # was Inf in float32
        (b'{"label": "a", "embeddings": [[NaN, 1]]}', "invalid"),
        (b'{"label": "a/../../etc", "embeddings": [[1, 0]]}', "invalid"),
        (b'{"label": "a", "embeddings": [' + b"[1]," * 300 + b"[1]]}", "invalid"),
        (b'{"label": "\\u0000"}', "invalid"),
        ('{"label": "\u0000"}'.encode(), "bad_json"),  # a raw control character in a string
        (b"\xff\xfe{}", "bad_json"),
    ],
)
def test_hostile_payloads(runtime: Runtime, payload: bytes, code: str) -> None:
    verb = "enroll" if b"label" in payload else "list"
    result = runtime.command_handler.handle(verb, payload)
    check_invariants(runtime, result, verb)
    assert result["ok"] is False and result["error_code"] == code, result


def test_enrolled_embeddings_near_zero_are_refused(runtime: Runtime) -> None:
    """An embedding of norm 1e-40 was stored as a (useless) near-zero template."""
    dim = int(runtime.embedder.embedding_dim)
    row = [1e-40] + [0.0] * (dim - 1)
    request = json.dumps({"label": "tiny", "embeddings": [row]}).encode()
    result = runtime.command_handler.handle("enroll", request)
    assert result["error_code"] == "failed" and "non-zero" in result["error"], result
    assert "tiny" not in runtime.gallery.labels
