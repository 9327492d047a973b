"""The real ``edgesiam dashboard`` on the secured broker: over TLS with its own login, its
password read from a file. It receives a real device's events, sends it a command and gets the
result, and neither its output (at debug verbosity), the broker's log nor any command line shows a
password.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.mqtt import free_port, wait_until
from tests.support.secure_broker import SecureBroker, command_lines, start_secure_device
from tests.support.signals import to_pcm, voice

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]


def http(url: str, body: dict[str, Any] | None = None, timeout: float = 30) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"} if data else {}
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read())


def test_the_dashboard_over_tls_sees_events_and_sends_commands_without_leaking_passwords(
    secure_broker: SecureBroker, events_gallery: Path, tmp_path: Path
) -> None:
    b = secure_broker
    port = free_port()
    dashboard = subprocess.Popen(
        [
            sys.executable, "-m", "edgesiam", "dashboard",
            "--port", str(port), "--data-dir", str(tmp_path / "dash"),
            "--broker", f"mqtts://dashboard@localhost:{b.tls_port}",
            "--tls-ca", str(b.pki.ca),
            "--password-file", str(b.password_file(tmp_path, "dashboard")),
            "--log-level", "debug",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    output: list[bytes] = []

    def drain() -> None:
        assert dashboard.stdout is not None
        output.extend(dashboard.stdout)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    base = f"http://127.0.0.1:{port}"

    def text() -> str:
        return b"".join(output).decode(errors="replace")

    device = None
    try:
        device = start_secure_device(b, tmp_path / "porch", events_gallery, "porch")
        assert wait_until(lambda: b"edgesiam dashboard on" in b"".join(output), 60), text()
        # events are not retained: the dashboard must be subscribed (it has seen the device's
        # retained status) before the device has any to send
        assert wait_until(lambda: status(base, "porch") == "online", 60, 0.2), text() + device.text
        device.feed(to_pcm(voice(1.5, seed=3)))
        assert wait_until(
            lambda: len(http(f"{base}/api/events?device=porch")["events"]) >= 2, 60, 0.5
        ), text() + device.text
        answer = http(f"{base}/api/devices/porch/list", {})
        assert answer["ok"] is True, answer
        assert [entry["label"] for entry in answer["result"]["labels"]] == ["voice"]
        running = command_lines()
    finally:
        dashboard.send_signal(signal.SIGTERM)
        try:
            dashboard.wait(30)
        except subprocess.TimeoutExpired:
            dashboard.kill()
            dashboard.wait()
        reader.join(10)
        if device is not None:
            device.finish()
    assert device is not None
    out = text()
    assert "DEBUG" in out  # it really logged at debug level
    for user, password in b.passwords.items():
        assert password not in out, f"{user}'s password in the dashboard's output"
        assert password not in device.text, f"{user}'s password in the device's output"
        assert password not in b.log, f"{user}'s password in the broker's log"
        assert not any(password in line for line in running), f"{user}'s password on a command line"


def status(base: str, device: str) -> str | None:
    """The device's status as the dashboard's history has it (None: not seen yet)."""
    try:
        found = http(f"{base}/api/devices/{device}")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    value = found.get("status")
    return str(value) if value is not None else None
