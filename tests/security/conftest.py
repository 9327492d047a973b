"""A secured Mosquitto for the security tests, made once per session.

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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.mqtt import MosquittoBroker, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "firmware_configs" / "mosquitto"
DEVICES = ("kitchen", "hallway", "porch")
USERS = (*DEVICES, "dashboard", "homeassistant")


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{done.stderr}")


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


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The broker's CA and certificates, and an unrelated CA."""
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "rogue-ca"):
        _openssl("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
                 "-subj", f"/CN=edgesiam {ca}", "-days", "2", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", *DEVICES, "dashboard"):
        cn = "localhost" if name == "server" else name
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
                 cwd=d)  # fmt: skip
        extra = ["-extfile", "san.ext"] if name == "server" else []
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *extra, cwd=d)  # fmt: skip
        (d / f"{name}.key").chmod(0o600)
    return Pki(d, d / "ca.crt", d / "rogue-ca.crt")


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


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[SecureBroker]:
    folder = tmp_path_factory.mktemp("secure-mosquitto")
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
    yield SecureBroker(broker, broker.port, mtls_port, tls_port, passwords, pki)
    broker.stop()
