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
from dataclasses import dataclass
from pathlib import Path

from tests.support.mqtt import MosquittoBroker, free_port, wait_until
from tests.support.paths import ROOT
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
