"""Who may see the dashboard and send commands: a shared token, checked in constant time.

Rules:

- Bound to a loopback address (``127.0.0.1``, ``::1``, ``localhost``) the dashboard may run without
  a token: only this machine's users reach it.
- Bound to anything else it needs a token, or an explicit ``allow_unauthenticated`` (a network
  where everyone on it may enroll and forget labels on every device); :func:`check_bind` refuses
  otherwise.
- With a token, every page and API call needs it, reads and writes alike: as
  ``Authorization: Bearer <token>`` (scripts), or as the session cookie the page gets from the
  login form or from opening ``/?token=<token>`` once (HttpOnly, SameSite=Strict; the cookie holds
  an HMAC of the token, not the token).

The token comes from a file, an environment variable or (visible in process lists) the command
line; it is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Final

from edgesiam.errors import ConfigError

__all__ = [
    "COOKIE_NAME",
    "MIN_TOKEN_LENGTH",
    "TOKEN_ENV",
    "TokenAuth",
    "check_bind",
    "is_loopback",
    "resolve_token",
]

COOKIE_NAME: Final = "edgesiam_session"
TOKEN_ENV: Final = "EDGESIAM_DASHBOARD_TOKEN"
MIN_TOKEN_LENGTH: Final = 12


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach."""
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, allow_unauthenticated: bool) -> None:
    """Refuse to serve beyond this machine without a token (unless explicitly allowed)."""
    if token is None and not allow_unauthenticated and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve the dashboard on {host} without a token: anyone who can reach it "
            "could enroll and forget labels on your devices. Give --token-file FILE (or set "
            f"{TOKEN_ENV}), bind to 127.0.0.1, or pass --allow-unauthenticated on a network you "
            "trust"
        )


def resolve_token(
    token: str | None = None,
    token_file: Path | None = None,
    token_env: str | None = TOKEN_ENV,
) -> str | None:
    """The token from the first source given: ``token``, ``token_file`` (its first line), then the
    environment variable ``token_env`` if it is set. Errors name the source, never the value."""
    if token is not None and token_file is not None:
        raise ConfigError("give the dashboard token one way: --token or --token-file")
    value: str | None = token
    source = "--token"
    if value is None and token_file is not None:
        source = f"token file {token_file}"
        try:
            value = token_file.read_text(encoding="utf-8").splitlines()[0].strip()
        except IndexError:
            value = ""
        except OSError as exc:
            raise ConfigError(f"{source}: cannot be read ({exc.strerror})") from None
    if value is None and token_env:
        value = os.environ.get(token_env)
        source = f"environment variable {token_env}"
    if value is None:
        return None
    if len(value) < MIN_TOKEN_LENGTH or any(c.isspace() for c in value):
        raise ConfigError(
            f"dashboard token from {source}: use at least {MIN_TOKEN_LENGTH} characters and no "
            "spaces (e.g. the output of: python -c 'import secrets; print(secrets.token_urlsafe())')"
        )
    return value


class TokenAuth:
    """Checks requests against one token (``None``: every request is let in)."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token is not None else None
        self._session = (
            hmac.new(self._token, b"edgesiam-dashboard-session-v1", hashlib.sha256).hexdigest()
            if self._token is not None
            else None
        )

    @property
    def required(self) -> bool:
        return self._token is not None

    def check_token(self, candidate: str | None) -> bool:
        """The token itself (login form, ``?token=``, bearer header)."""
        if self._token is None:
            return True
        if candidate is None:
            return False
        return hmac.compare_digest(candidate.encode(), self._token)

    def check_cookie(self, cookie_header: str | None) -> bool:
        if self._session is None:
            return True
        if not cookie_header:
            return False
        try:
            cookie = SimpleCookie(cookie_header)
        except CookieError:
            return False
        morsel = cookie.get(COOKIE_NAME)
        return morsel is not None and hmac.compare_digest(
            morsel.value.encode(), self._session.encode()
        )

    def authorized(self, headers: Mapping[str, str]) -> bool:
        """A bearer token or the session cookie (header names as ``http.server`` gives them)."""
        if self._token is None:
            return True
        header = headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value:
            return self.check_token(value.strip())
        return self.check_cookie(headers.get("Cookie"))

    def session_cookie(self, *, secure: bool = False, max_age_s: int = 30 * 86400) -> str:
        """The ``Set-Cookie`` value that logs the browser in."""
        if self._session is None:
            raise ValueError("no token, no session")
        flags = f"Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}"
        return f"{COOKIE_NAME}={self._session}; {flags}{'; Secure' if secure else ''}"

    @staticmethod
    def clear_cookie() -> str:
        return f"{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
