"""A secured Mosquitto for the security tests (started once per session by their fixtures).

- A test CA, a server certificate for ``localhost``/``127.0.0.1`` and one client certificate per
  device, all made with ``openssl`` (EC P-256), plus a second, unrelated CA (a client that
  trusts only that one must fail the handshake).
- A password file made the way the README says, without a password on any command line: the
  ``user:password`` lines are written to the file and hashed in place with ``mosquitto_passwd -U``.
  The passwords are random per session, so that searching the logs for them means something.
- The shipped ``firmware_configs/mosquitto/mosquitto.conf`` and ``acl``, with only paths and ports
  rewritten: plaintext on loopback, TLS with client certificates required (the shipped listener),
  and one more TLS listener where a password alone is enough (the README's "to rely on passwords
  alone" variant, what a dashboard or a phone uses).
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.support.device import RUN_CLI
from tests.support.mqtt import MosquittoBroker, free_port, wait_until
from tests.support.paths import ENV, EVENTS_BUNDLE, ROOT
from tests.support.pki import issue_certificates

SAMPLES = ROOT / "firmware_configs" / "mosquitto"
DEVICES = ("kitchen", "hallway", "porch")
USERS = (*DEVICES, "dashboard", "homeassistant")


@dataclass(frozen=True)
class Pki:
    """Where the certificates are."""

    folder: Path
    ca: Path
    rogue_ca: Path

    def cert(self, name: str) -> Path:
        return self.folder / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.folder / f"{name}.key"


def make_pki(folder: Path) -> Pki:
    """The broker's CA and certificates (server, each device, the dashboard), and an unrelated CA."""
    cas = {ca: f"edgesiam {ca}" for ca in ("ca", "rogue-ca")}
    leaves = {"server": "localhost", **{name: name for name in (*DEVICES, "dashboard")}}
    issue_certificates(folder, cas, leaves)
    return Pki(folder, folder / "ca.crt", folder / "rogue-ca.crt")


@dataclass
class SecureBroker:
    """The running broker, its listeners and its users' passwords."""

    broker: MosquittoBroker
    plain_port: int
    mtls_port: int
    tls_port: int
    passwords: dict[str, str]
    pki: Pki

    @property
    def log(self) -> str:
        return self.broker.log_text()

    def password_file(self, folder: Path, user: str) -> Path:
        """The user's password in a file of its own (mode 600), as a systemd credential is."""
        path = folder / f"{user}.password"
        path.write_text(self.passwords[user] + "\n")
        path.chmod(0o600)
        return path


def make_password_file(path: Path, passwords: dict[str, str]) -> None:
    """``mosquitto_passwd -U`` hashes a file of ``user:password`` lines in place: no password on
    a command line."""
    path.write_text("".join(f"{user}:{pw}\n" for user, pw in passwords.items()))
    path.chmod(0o600)
    subprocess.run(["mosquitto_passwd", "-U", str(path)], check=True, capture_output=True)
    text = path.read_text()
    assert all(pw not in text for pw in passwords.values()), "mosquitto_passwd did not hash"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start_secure_broker(folder: Path, pki: Pki) -> SecureBroker:
    """The shipped config with paths and ports rewritten, a third listener for passwords alone, and
    every log type on; returns once all three listeners accept connections (``broker.stop()``)."""
    passwords = {user: f"pw-{user}-{secrets.token_urlsafe(12)}" for user in USERS}
    passwd = folder / "passwd"
    make_password_file(passwd, passwords)
    broker = MosquittoBroker(folder / "broker")
    mtls_port, tls_port = free_port(), free_port()
    text = (SAMPLES / "mosquitto.conf").read_text()
    for old, new in [
        ("/etc/mosquitto/passwd", str(passwd)),
        ("/etc/mosquitto/acl", str(SAMPLES / "acl")),
        ("/etc/mosquitto/certs/", f"{pki.folder}/"),
        ("/var/lib/mosquitto/", f"{folder}/"),
        ("/var/log/mosquitto/mosquitto.log", str(broker.log)),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    text = re.sub(
        r"^listener 1883 127\.0\.0\.1$", f"listener {broker.port} 127.0.0.1", text, flags=re.M
    )
    text = re.sub(r"^listener 8883$", f"listener {mtls_port} 127.0.0.1", text, flags=re.M)
    assert f"listener {mtls_port}" in text and "require_certificate true" in text
    text += (
        "\n# passwords alone (the README's variant without client certificates)\n"
        f"listener {tls_port} 127.0.0.1\n"
        f"cafile {pki.ca}\ncertfile {pki.cert('server')}\nkeyfile {pki.key('server')}\n"
        "tls_version tlsv1.2\n"
        # every kind of log line, so that the no-password check reads everything
        "log_type debug\nlog_type subscribe\nlog_type unsubscribe\n"
    )
    if os.geteuid() == 0:
        text += "user root\n"
    broker.config.write_text(text)
    broker.start()
    # start() waits for the plain listener; the TLS ones load their certificates after it
    assert wait_until(lambda: _listening(tls_port) and _listening(mtls_port), 10), broker.log
    return SecureBroker(broker, broker.port, mtls_port, tls_port, passwords, pki)


@dataclass
class SecureDevice:
    """``edgesiam run`` on the secured broker in its own process, fed PCM on stdin; its whole
    output (stdout and stderr, debug level) is kept, to be searched for passwords."""

    process: subprocess.Popen[bytes]
    config: Path
    output: list[bytes]

    def feed(self, pcm: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(pcm)
        self.process.stdin.flush()

    def finish(self, timeout: float = 60) -> str:
        """Close stdin (the stream ends), wait for the clean exit; the whole output."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.text

    @property
    def text(self) -> str:
        return b"".join(self.output).decode(errors="replace")


def start_secure_device(
    b: SecureBroker, folder: Path, gallery: Path, device: str, password: str | None = None
) -> SecureDevice:
    """A device logging in as ``device`` over mutual TLS with its password file, every window an
    event; ``password`` replaces the device's real one (in its password file)."""
    folder.mkdir(parents=True, exist_ok=True)
    password_file = b.password_file(folder, device)
    if password is not None:
        password_file.write_text(password + "\n")
    config = {
        "bundle": str(EVENTS_BUNDLE),
        "gallery": str(gallery),
        "device_id": device,
        "state_dir": str(folder / "state"),
        "source": {"type": "stdin", "live": False},
        "matching": {
            "threshold": -1.0,  # every window is an event: the stream decides how many
            "decision": {"n_of": 1, "m": 1, "refractory_s": 0.0},
            "gate": {"enabled": False},
        },
        "mqtt": {
            "url": f"mqtts://{device}@localhost:{b.mtls_port}",
            "password_file": str(password_file),
            "tls_ca": str(b.pki.ca),
            "tls_cert": str(b.pki.cert(device)),
            "tls_key": str(b.pki.key(device)),
            "reconnect_min_s": 1,
            "reconnect_max_s": 2,
        },
        "metrics": {"interval_s": 1.0},
    }
    path = folder / f"{device}.yaml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [sys.executable, "-c", RUN_CLI, "run", "--config", str(path), "--log-level", "debug"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=ENV,
    )
    output: list[bytes] = []

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)

    threading.Thread(target=drain, daemon=True).start()
    return SecureDevice(process, path, output)


def command_lines() -> list[str]:
    """Every process's command line on this machine, as ``ps`` shows them."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out.append(
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
            except OSError:
                continue
    return out
