"""Throwaway certificates made with ``openssl`` (EC P-256, valid two days) for the TLS tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def openssl(*args: str, cwd: Path) -> None:
    """One ``openssl`` command; its stderr in the error when it fails."""
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{done.stderr}")


def issue_certificates(folder: Path, cas: dict[str, str], leaves: dict[str, str]) -> None:
    """``NAME.crt``/``NAME.key`` in ``folder``: self-signed CAs (name → common name) and leaf
    certificates (name → common name) signed by the first CA; ``server`` also holds the
    ``localhost``/``127.0.0.1`` names a client checks. Keys are mode 600, as a device keeps them."""
    for ca, cn in cas.items():
        openssl("req", "-x509", *EC_KEY, "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
                "-subj", f"/CN={cn}", "-days", "2", cwd=folder)  # fmt: skip
    signer = next(iter(cas))
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, cn in leaves.items():
        openssl("req", *EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={cn}", cwd=folder)  # fmt: skip
        extra = ["-extfile", "san.ext"] if name == "server" else []
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{signer}.crt", "-CAkey",
                f"{signer}.key", "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *extra,
                cwd=folder)  # fmt: skip
        (folder / f"{name}.key").chmod(0o600)
