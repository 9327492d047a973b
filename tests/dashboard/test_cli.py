"""``edgesiam dashboard`` as a user runs it: a real process with a token file, against a Mosquitto
with TLS and a password (from a file), keeping its history across a restart."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.dashboard import TOKEN, event_payload
from tests.support.mqtt import MosquittoBroker, password_file, wait_until

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "dashboard-secret-pw-42"


@contextmanager
def dashboard_process(*args: str) -> Iterator[str]:
    """``edgesiam dashboard ARGS --port 0``; yields its URL (from its first line); SIGTERM at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgesiam", "dashboard", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "EDGESIAM_DASHBOARD_TOKEN": ""},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(
                f"the dashboard did not start:\n{proc.stderr.read() if proc.stderr else ''}"
            )
        yield line.split(" on ", 1)[1].split(" ", 1)[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        stderr = proc.stderr.read() if proc.stderr else ""
        assert code == 0, stderr
        assert PASSWORD not in stderr and TOKEN not in stderr  # never logged


def get(url: str, token: str | None = TOKEN) -> Any:
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def tls_publish(broker: MosquittoBroker, certificates: Path, topic: str, payload: str) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tls-pub", protocol=mqtt.MQTTv5)
    client.username_pw_set("device1", PASSWORD)
    client.tls_set(ca_certs=str(certificates / "ca.crt"), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.connect("localhost", broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_dashboard_over_tls_with_password_and_token_keeps_its_history(
    make_mosquitto: Callable[..., MosquittoBroker], certificates: Path, tmp_path: Path
) -> None:
    users = password_file(tmp_path, {"dashboard": PASSWORD, "device1": PASSWORD})
    broker = make_mosquitto(
        [
            f"cafile {certificates / 'ca.crt'}",
            f"certfile {certificates / 'server.crt'}",
            f"keyfile {certificates / 'server.key'}",
            "allow_anonymous false",
            f"password_file {users}",
        ],
        name="tls",
    )
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "mqtt-password").write_text(PASSWORD + "\n")
    args = (
        "--broker", f"mqtts://dashboard@localhost:{broker.port}",
        "--tls-ca", str(certificates / "ca.crt"),
        "--password-file", str(tmp_path / "mqtt-password"),
        "--token-file", str(tmp_path / "token"),
        "--data-dir", str(tmp_path / "data"),
    )  # fmt: skip
    with dashboard_process(*args) as url:
        assert wait_until(lambda: get(f"{url}/api/stats")["broker"]["connected"], 20)
        tls_publish(broker, certificates, "edgesiam/pi/status", "online")
        tls_publish(broker, certificates, "edgesiam/pi/event", json.dumps(event_payload("pi", 1)))
        assert wait_until(lambda: len(get(f"{url}/api/events")["events"]) == 1, 20)
        try:
            get(f"{url}/api/events", token=None)
            raise AssertionError("the API answered without the token")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
    # away: the broker keeps the dashboard's session and queues what devices send
    tls_publish(broker, certificates, "edgesiam/pi/event", json.dumps(event_payload("pi", 2)))
    with dashboard_process(*args) as url:
        assert wait_until(
            lambda: [e["seq"] for e in get(f"{url}/api/events")["events"]] == [2, 1], 20
        )
        (device,) = get(f"{url}/api/devices")["devices"]
        assert device["device"] == "pi" and device["events"] == 2
