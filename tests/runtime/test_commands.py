"""Commands: strict requests, an error result for anything wrong, never an exception."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesiam.mqtt.client import MqttSettings
from edgesiam.mqtt.contract import VERBS, event_builder
from edgesiam.mqtt.publisher import MqttPublisher
from edgesiam.runtime.commands import CommandHandler, validate_label
from edgesiam.runtime.outbox import Outbox
from tests.support.mqtt import MosquittoBroker, Subscriber, wait_until
from tests.support.runtime import FakeRuntime
from tests.support.signals import wav_bytes


def req(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
def handler(runtime: FakeRuntime) -> CommandHandler:
    return CommandHandler(runtime, max_wav_bytes=64 * 1024)


def test_enroll_embeddings(handler: CommandHandler, runtime: FakeRuntime) -> None:
    result = handler.handle(
        "enroll", req(label="bob", embeddings=[[1, 0, 0, 0], [0, 1, 0, 0]], correlation_id="c1")
    )
    assert result["ok"] is True and result["correlation_id"] == "c1"
    assert result["result"]["templates"] == 2 and result["schema"] == "edgesiam.cmd_result.v1"
    name, (label, arr) = runtime.calls[-1]
    assert name == "enroll_embeddings" and label == "bob"
    assert arr.dtype == np.float32 and arr.shape == (2, 4)


def test_enroll_wav(handler: CommandHandler, runtime: FakeRuntime) -> None:
    data = wav_bytes(0.1)
    result = handler.handle(
        "enroll", req(label="carol", wav_base64=base64.b64encode(data).decode())
    )
    assert result["ok"] is True
    assert runtime.calls[-1] == (
        "enroll_clips",
        ("carol", [("clip1.wav", "wav", len(data))], False),
    )


def test_enroll_several_clips_a_csv_and_append(
    handler: CommandHandler, runtime: FakeRuntime
) -> None:
    data = wav_bytes(0.1)
    clips = [
        {"name": "saw1.wav", "wav_base64": base64.b64encode(data).decode()},
        {"wav_base64": base64.b64encode(data).decode()},
    ]
    result = handler.handle("enroll", req(label="saw", clips=clips, append=True))
    assert result["ok"] is True, result
    assert runtime.calls[-1] == (
        "enroll_clips",
        ("saw", [("saw1.wav", "wav", len(data)), ("clip2.wav", "wav", len(data))], True),
    )
    csv = b"acc_x,acc_y,acc_z\n0.1,0.2,0.98\n"
    result = handler.handle("enroll", req(label="wave", csv_base64=base64.b64encode(csv).decode()))
    assert result["ok"] is True, result
    assert runtime.calls[-1] == ("enroll_clips", ("wave", [("clip1.csv", "csv", len(csv))], False))


def test_all_clips_of_a_request_share_one_size_cap(runtime: FakeRuntime) -> None:
    h = CommandHandler(runtime, max_wav_bytes=64 * 1024, max_enroll_bytes=100 * 1024)
    clip = {"wav_base64": base64.b64encode(wav_bytes(1.5)).decode()}  # 48 KiB each
    assert h.handle("enroll", req(label="x", clips=[clip, clip]))["ok"] is True
    result = h.handle("enroll", req(label="x", clips=[clip, clip, clip]))
    assert result["error_code"] == "too_large" and "send the rest with append" in result["error"]


@pytest.mark.parametrize(
    "payload, code, words",
    [
        (
            req(
                label="x",
                wav_base64="bm90IGEgd2F2ZSBmaWxlIGF0IGFsbCwgbm90IGF0IGFsbCwgbm90IGF0IGFsbCE=",
            ),
            "invalid",
            "RIFF",
        ),
        (req(label="x", wav_base64="***"), "invalid", "base64"),
        (req(label="x", wav_base64=base64.b64encode(wav_bytes(3.0)).decode()), "too_large", "WAV"),
        (req(label="x"), "invalid", "either"),
        (req(label="x", wav_base64="UklGRg==", csv_base64="YQ=="), "invalid", "either"),
        (req(label="x", clips=[]), "invalid", "clips"),
        (req(label="x", clips=[{"name": "a.wav"}]), "invalid", "wav_base64 or csv_base64"),
        (req(label="x", clips=[{"name": "../a", "csv_base64": "YQ=="}]), "invalid", "file name"),
        (req(label="x", clips=[{"csv_base64": "AAAA"}]), "invalid", "text CSV"),
        (req(label="x", clips=[{"csv_base64": "YQ=="}] * 11), "invalid", "clips"),
        (req(label="x", embeddings=[[1, 0, 0, 0]], append="yes"), "invalid", "append"),
        (req(label="x", embeddings=[[1, 2], [3]]), "invalid", "same length"),
        (req(label="x", embeddings=[]), "invalid", "embeddings"),
        (req(label="x", embeddings=[[1, 2, 3]]), "failed", "4 values"),
        (b'{"label": "x", "embeddings": [[NaN, 1, 2, 3]]}', "invalid", "finite"),
        (req(label="a/b", embeddings=[[1, 0, 0, 0]]), "invalid", "label"),
        (req(label="", embeddings=[[1, 0, 0, 0]]), "invalid", "label"),
        (req(label="x" * 65, embeddings=[[1, 0, 0, 0]]), "invalid", "label"),
        (req(label="x", embeddings=[[1, 0, 0, 0]], colour="red"), "invalid", "unknown key"),
        (b"{not json", "bad_json", "JSON"),
        (b"[1, 2]", "bad_json", "object"),
        (b"\xff\xfe", "bad_json", "JSON"),
    ],
)
def test_bad_enroll_requests_get_error_results(
    handler: CommandHandler, payload: bytes, code: str, words: str
) -> None:
    result = handler.handle("enroll", payload)
    assert result["ok"] is False
    assert result["error_code"] == code, result
    assert words in result["error"]


def test_correlation_id_is_echoed_on_errors_when_readable(handler: CommandHandler) -> None:
    assert handler.handle("enroll", req(correlation_id="abc"))["correlation_id"] == "abc"
    assert handler.handle("nope", req(correlation_id="abc"))["correlation_id"] == "abc"
    assert handler.handle("forget", b"garbage")["correlation_id"] is None


def test_forget_list_threshold_reload(handler: CommandHandler, runtime: FakeRuntime) -> None:
    assert handler.handle("list", b"")["result"] == {"labels": {"alice": 3}}
    assert handler.handle("forget", req(label="alice"))["ok"] is True
    missing = handler.handle("forget", req(label="alice"))
    assert missing["error_code"] == "failed" and "no label 'alice'" in missing["error"]
    assert handler.handle("threshold", req(value=0.7))["result"]["threshold"] == 0.7
    assert handler.handle("threshold", req(label="bob", target_fmr=1e-3))["ok"] is True
    assert runtime.calls[-1] == ("set_threshold", ("bob", None, 1e-3))
    assert handler.handle("threshold", req(label="bob"))["ok"] is True  # clears bob's own
    assert handler.handle("threshold", req())["error_code"] == "invalid"
    assert handler.handle("threshold", req(value=0.5, target_fmr=1e-3))["error_code"] == "invalid"
    assert handler.handle("threshold", req(value=1.5))["error_code"] == "invalid"
    assert handler.handle("threshold", req(target_fmr=0.2))["error_code"] == "failed"
    crashed = handler.handle("reload", b"{}")
    assert crashed["error_code"] == "internal" and "disk on fire" not in crashed["error"]


def test_unknown_verb(handler: CommandHandler) -> None:
    result = handler.handle("format_disk", b"{}")
    assert result["ok"] is False and result["error_code"] == "unknown_verb"
    assert all(v in result["error"] for v in VERBS)


def test_oversized_payload_is_refused_before_parsing(runtime: FakeRuntime) -> None:
    h = CommandHandler(runtime, max_wav_bytes=1024, max_payload_bytes=10)
    assert h.max_payload_bytes > 1024  # never below what a maximal WAV needs
    result = h.handle("list", b" " * (h.max_payload_bytes + 1))
    assert result["error_code"] == "too_large"


def test_deeply_nested_json_is_an_error_not_a_crash(handler: CommandHandler) -> None:
    result = handler.handle("enroll", b"[" * 100_000 + b"]" * 100_000)
    assert result["ok"] is False


def test_labels_follow_the_gallery_rule() -> None:
    for good in ("alice", "Zoë", "door bell", "a.b-c_d", "o'brien", "café (kitchen)", "x" * 64):
        assert validate_label(good) == good
    for bad in ("", " alice", "alice ", "a/b", "a\\b", "a+b", "a#b", "x" * 65, "a\nb", ".."):
        with pytest.raises(ValueError):
            validate_label(bad)


def test_a_result_that_is_not_json_is_an_error(runtime: FakeRuntime) -> None:
    runtime.list = lambda: {"labels": {1, 2}}  # type: ignore[method-assign]
    result = CommandHandler(runtime).handle("list", b"{}")
    assert result["ok"] is False and result["error_code"] == "internal"


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
request_like = st.fixed_dictionaries(
    {},
    optional={
        "label": st.text(max_size=70) | st.integers(),
        "correlation_id": st.text(max_size=200) | st.integers(),
        "embeddings": st.lists(st.lists(st.floats(), max_size=5), max_size=3) | json_values,
        "wav_base64": st.text(max_size=50)
        | st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()),
        "value": st.floats() | st.text(max_size=5),
        "target_fmr": st.floats(),
        "extra": json_values,
    },
)
verbs = st.sampled_from([*VERBS, "", "bogus", "enroll/x"]) | st.text(max_size=10)


def check_result(result: Any, verb: str) -> None:
    assert isinstance(result, dict)
    assert isinstance(result["ok"], bool)
    assert "correlation_id" in result
    if not result["ok"]:
        assert isinstance(result["error"], str) and result["error_code"]
    json.dumps(result)  # publishable as it is


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(verb=verbs, payload=st.binary(max_size=300))
def test_fuzz_random_bytes_never_raise(verb: str, payload: bytes) -> None:
    handler = CommandHandler(FakeRuntime())
    check_result(handler.handle(verb, payload), verb)


@settings(max_examples=300, deadline=None)
@given(verb=verbs, data=request_like | json_values)
def test_fuzz_random_json_never_raises(verb: str, data: Any) -> None:
    handler = CommandHandler(FakeRuntime())
    payload = json.dumps(data).encode()
    result = handler.handle(verb, payload)
    check_result(result, verb)
    if (
        isinstance(data, dict)
        and isinstance(data.get("correlation_id"), str)
        and len(data["correlation_id"]) <= 128
        and verb in VERBS
    ):
        assert result["correlation_id"] == data["correlation_id"]


# ------------------------------------------------------------------------------------------------
# through Mosquitto


@pytest.fixture
def device(mosquitto: MosquittoBroker, tmp_path: Path, runtime: FakeRuntime) -> Any:
    outbox = Outbox(tmp_path / "o.db", id_prefix="dev1")
    settings_ = MqttSettings(
        url=mosquitto.url, device_id="dev1", command_queue=2, homeassistant=False
    )
    publisher = MqttPublisher(settings_, outbox, "tiny")
    publisher.set_command_handler(CommandHandler(runtime))
    publisher.start()
    assert wait_until(lambda: publisher.connected)
    time.sleep(0.1)  # SUBACK
    yield publisher, outbox
    runtime.block.set()
    publisher.stop(drain_timeout_s=0)
    outbox.close()


def test_command_round_trip_with_correlation_id(
    device: Any, subscriber: Callable[..., Subscriber]
) -> None:
    client = subscriber("edgesiam/dev1/cmd/+/result")
    # one command at a time: the 'busy' answer of a full queue is tested on its own below
    client.publish(
        "edgesiam/dev1/cmd/enroll",
        req(label="bob", embeddings=[[0, 0, 1, 0]], correlation_id="r-1"),
    )
    (enroll_ok,) = client.wait_for("edgesiam/dev1/cmd/enroll/result", 1)
    assert enroll_ok.json()["ok"] is True and enroll_ok.json()["correlation_id"] == "r-1"
    client.publish("edgesiam/dev1/cmd/list", req(correlation_id="r-2"))
    (listed,) = client.wait_for("edgesiam/dev1/cmd/list/result")
    assert listed.json()["correlation_id"] == "r-2"
    assert listed.json()["result"]["labels"] == {"alice": 3, "bob": 1}
    client.publish("edgesiam/dev1/cmd/enroll", b"\x00garbage")
    _, enroll_bad = client.wait_for("edgesiam/dev1/cmd/enroll/result", 2)
    assert enroll_bad.json()["ok"] is False and enroll_bad.json()["error_code"] == "bad_json"
    client.publish("edgesiam/dev1/cmd/explode", b"{}")
    (unknown,) = client.wait_for("edgesiam/dev1/cmd/explode/result")
    assert unknown.json()["error_code"] == "unknown_verb"


def test_mqtt5_correlation_data_is_echoed(
    device: Any, subscriber: Callable[..., Subscriber]
) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = subscriber("edgesiam/dev1/cmd/+/result")
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.CorrelationData = b"\x01\x02"
    client.publish("edgesiam/dev1/cmd/list", b"", properties=props)
    (result,) = client.wait_for("edgesiam/dev1/cmd/list/result")
    assert result.properties.CorrelationData == b"\x01\x02"


def test_a_slow_command_blocks_neither_events_nor_the_connection(
    device: Any, runtime: FakeRuntime, subscriber: Callable[..., Subscriber]
) -> None:
    publisher, outbox = device
    client = subscriber("edgesiam/dev1/#")
    runtime.block.clear()  # enroll_clips hangs until released
    wav = base64.b64encode(wav_bytes(0.1)).decode()
    client.publish(
        "edgesiam/dev1/cmd/enroll", req(label="slow", wav_base64=wav, correlation_id="s")
    )
    assert wait_until(lambda: any(c[0] == "enroll_clips" for c in runtime.calls))
    for i in range(5):
        build = event_builder(
            device="dev1", model="m", label="alice", score=0.9, threshold=0.5, offset_s=i
        )
        publisher.publish_event(outbox.add(build))
    assert len(client.wait_for("edgesiam/dev1/event", 5)) == 5  # events flow meanwhile
    for i in range(4):  # the queue holds 2: the rest are answered 'busy' at once
        client.publish("edgesiam/dev1/cmd/list", req(correlation_id=f"q{i}"))
    busy = [m.json() for m in client.wait_for("edgesiam/dev1/cmd/list/result", 2)]
    assert {r["error_code"] for r in busy} == {"busy"}
    runtime.block.set()
    (slow,) = client.wait_for("edgesiam/dev1/cmd/enroll/result")
    assert slow.json()["ok"] is True and slow.json()["correlation_id"] == "s"
    assert len(client.wait_for("edgesiam/dev1/cmd/list/result", 4)) == 4


def test_fuzzed_payloads_through_the_broker_all_get_results(
    device: Any, subscriber: Callable[..., Subscriber]
) -> None:
    rng = np.random.default_rng(0)
    client = subscriber("edgesiam/dev1/cmd/+/result")
    payloads = [rng.bytes(int(rng.integers(0, 200))) for _ in range(20)]
    for p in payloads:
        client.publish("edgesiam/dev1/cmd/forget", p)
        time.sleep(0.01)  # the queue holds 2; pace them so none is 'busy'
    results = [m.json() for m in client.wait_for("edgesiam/dev1/cmd/forget/result", 20)]
    assert len(results) == 20 and all(r["ok"] is False for r in results)
    publisher, _ = device
    assert publisher.connected
