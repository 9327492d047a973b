"""``edgesiam broker``: the embedded amqtt broker carries the device's traffic (MQTT 3.1.1)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import soundfile as sf

from edgesiam.errors import EdgesiamError
from edgesiam.mqtt.broker import EmbeddedBroker, add_broker_parser, broker_config
from edgesiam.mqtt.client import MqttSettings
from edgesiam.mqtt.contract import event_builder
from edgesiam.mqtt.publisher import MqttPublisher
from edgesiam.runtime.outbox import Outbox
from tests.support.mqtt import Subscriber, free_port, wait_until
from tests.support.paths import EVENTS_BUNDLE
from tests.support.signals import voice

pytest.importorskip("amqtt")


@pytest.fixture
def amqtt_broker() -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker("127.0.0.1", free_port())
    broker.start_in_thread()
    yield broker
    broker.stop_thread()


def test_device_traffic_through_the_embedded_broker(
    amqtt_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    sub = Subscriber("127.0.0.1", amqtt_broker.port, ["edgesiam/#"], protocol=mqtt.MQTTv311).start()
    settings = MqttSettings(
        url=f"mqtt://127.0.0.1:{amqtt_broker.port}", device_id="pi", protocol="3.1.1"
    )
    with Outbox(tmp_path / "o.db", id_prefix="pi") as outbox:
        publisher = MqttPublisher(settings, outbox, "tiny")
        publisher.start()
        try:
            for i in range(50):
                build = event_builder(
                    device="pi", model="m", label="a", score=0.9, threshold=0.5, offset_s=i
                )
                publisher.publish_event(outbox.add(build))
            events = sub.wait_for("edgesiam/pi/event", 50)
            assert [json.loads(m.payload)["seq"] for m in events] == list(range(1, 51))
            assert wait_until(lambda: outbox.depth == 0)
        finally:
            publisher.stop()
    assert [m.payload for m in sub.wait_for("edgesiam/pi/status", 2)] == [b"online", b"offline"]
    sub.stop()


def test_a_busy_port_is_a_clear_error(amqtt_broker: EmbeddedBroker) -> None:
    with pytest.raises(EdgesiamError, match="cannot start the MQTT broker"):
        EmbeddedBroker("127.0.0.1", amqtt_broker.port).start_in_thread()


def test_config_and_parser(tmp_path: Path) -> None:
    assert "AnonymousAuthPlugin" in str(broker_config("127.0.0.1", 1883)["plugins"])
    with pytest.raises(EdgesiamError, match="no such file"):
        broker_config("127.0.0.1", 1883, tmp_path / "missing")
    (tmp_path / "pw").write_text("")
    assert "FileAuthPlugin" in str(broker_config("127.0.0.1", 1883, tmp_path / "pw")["plugins"])
    parser = argparse.ArgumentParser()
    add_broker_parser(parser.add_subparsers())
    args = parser.parse_args(["broker", "--port", "1999"])
    assert (args.host, args.port, args.password_file) == ("127.0.0.1", 1999, None)
    assert args.func.__name__ == "cmd_broker"


def test_ctrl_c_stops_the_broker_cleanly() -> None:
    port = free_port()
    code = (
        "import argparse, sys; from edgesiam.mqtt.broker import add_broker_parser; "
        "p = argparse.ArgumentParser(); add_broker_parser(p.add_subparsers()); "
        f"a = p.parse_args(['broker', '--port', '{port}']); sys.exit(a.func(a))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and "listening on" in proc.stdout.readline()
        sub = Subscriber("127.0.0.1", port, ["x"], protocol=mqtt.MQTTv311).start()
        sub.stop()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def edgesiam(*args: str) -> subprocess.Popen[str]:
    """``edgesiam ARGS`` as a user runs it: its own process, this checkout's code."""
    return subprocess.Popen(
        [sys.executable, "-m", "edgesiam", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )


@pytest.fixture
def voice_stream(tmp_path: Path) -> Path:
    """8 s of the voice that ``events_gallery`` enrolled (so its windows match)."""
    path = tmp_path / "voice.wav"
    sf.write(path, np.tile(voice(3.0, seed=1), 3)[: 8 * 16000], 16000, subtype="PCM_16")
    return path


def test_edgesiam_broker_and_run_work_together_with_their_defaults(
    events_gallery: Path, voice_stream: Path, tmp_path: Path
) -> None:
    """``edgesiam broker`` (MQTT 3.1.1 only) and ``edgesiam run --broker mqtt://localhost:PORT``
    with no other option: the device finds that the broker does not speak MQTT 5 and uses 3.1.1."""
    port = free_port()
    broker = edgesiam("broker", "--port", str(port))
    try:
        assert broker.stdout is not None and "listening on" in broker.stdout.readline()
        sub = Subscriber("127.0.0.1", port, ["edgesiam/#"], protocol=mqtt.MQTTv311).start()
        run = edgesiam(
            *("run", "--bundle", str(EVENTS_BUNDLE), "--gallery", str(events_gallery)),
            *("--source", f"file:{voice_stream}", "--realtime", "--device-id", "pi"),
            *("--state-dir", str(tmp_path / "state"), "--broker", f"mqtt://localhost:{port}"),
        )
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err[-3000:]
        events = sub.wait_for("edgesiam/pi/event", 1, timeout=10)
        assert json.loads(events[0].payload)["device"] == "pi"
        statuses = [m.payload for m in sub.wait_for("edgesiam/pi/status", 2)]
        assert statuses[0] == b"online" and statuses[-1] == b"offline"
        assert "does not speak MQTT 5" in err and "0 event(s) refused" not in err
        sub.stop()
    finally:
        broker.send_signal(signal.SIGINT)
        broker.wait(timeout=10)


def test_run_says_why_the_broker_is_unreachable_and_retries(
    events_gallery: Path, voice_stream: Path, tmp_path: Path
) -> None:
    port = free_port()  # no broker there
    run = edgesiam(
        *("run", "--bundle", str(EVENTS_BUNDLE), "--gallery", str(events_gallery)),
        *("--source", f"file:{voice_stream}", "--realtime", "--device-id", "pi"),
        *("--state-dir", str(tmp_path / "state"), "--broker", f"mqtt://localhost:{port}"),
    )
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err[-3000:]
    assert f"MQTT: connection refused by localhost:{port}" in err
    assert "retrying in 1 s (attempt 1;" in err and "retrying in 2 s (attempt 2;" in err
    assert "Traceback" not in err
    assert "stay in the outbox for the next start" in err  # the events are kept, not lost
