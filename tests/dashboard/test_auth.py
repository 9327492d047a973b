"""Who gets in: refusal to serve the LAN without a token, 401s, the login cookie, bearer tokens."""

from __future__ import annotations

import base64
import http.client
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edgesiam.dashboard.auth import COOKIE_NAME, TokenAuth, check_bind, is_loopback, resolve_token
from edgesiam.errors import ConfigError
from tests.support.dashboard import TOKEN, Dashboard


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_token(host: str) -> None:
    assert is_loopback(host)
    check_bind(host, None, False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "dashboard.lan"])
def test_anything_else_is_refused_without_a_token(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match="without a token"):
        check_bind(host, None, False)
    check_bind(host, TOKEN, False)
    check_bind(host, None, True)  # explicitly told


def test_the_cli_refuses_to_bind_the_lan_without_a_token(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgesiam",
            "dashboard",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path),
            "--token-env",
            "EDGESIAM_TEST_UNSET_TOKEN",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "without a token" in done.stderr and "--allow-unauthenticated" in done.stderr
    assert not (tmp_path / "history.sqlite3").exists()  # refused before anything was created


def test_token_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGESIAM_DASHBOARD_TOKEN", raising=False)
    assert resolve_token() is None
    file = tmp_path / "token"
    file.write_text(TOKEN + "\n")
    assert resolve_token(token_file=file) == TOKEN
    monkeypatch.setenv("EDGESIAM_DASHBOARD_TOKEN", "from-the-environment-123")
    assert resolve_token() == "from-the-environment-123"
    assert resolve_token(token_file=file) == TOKEN  # the file wins over the environment
    with pytest.raises(ConfigError, match="at least 12") as info:
        resolve_token(token="short")
    assert "short" not in str(info.value)  # the value is never echoed
    with pytest.raises(ConfigError, match="cannot be read"):
        resolve_token(token_file=tmp_path / "missing")
    with pytest.raises(ConfigError, match="one way"):
        resolve_token(token=TOKEN, token_file=file)


def test_token_auth_checks_bearer_and_cookie() -> None:
    auth = TokenAuth(TOKEN)
    assert auth.required
    assert auth.authorized({"Authorization": f"Bearer {TOKEN}"})
    assert not auth.authorized({"Authorization": f"Bearer {TOKEN}x"})
    assert not auth.authorized(
        {"Authorization": "Basic " + base64.b64encode(TOKEN.encode()).decode()}
    )
    cookie = auth.session_cookie()
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    value = cookie.split(";")[0]
    assert auth.authorized({"Cookie": f"other=1; {value}"})
    assert not auth.authorized({"Cookie": f"{COOKIE_NAME}=forged"})
    assert not auth.authorized({})
    assert TokenAuth(None).authorized({})


def test_http_with_a_token(make_dashboard: Callable[..., Dashboard]) -> None:
    dash = make_dashboard(token=TOKEN)
    for path in ("/api/devices", "/api/events", "/api/stream", "/api/stats"):
        status, headers, body = dash.request(path, auth=False)
        assert status == 401, path
        assert body["error_code"] == "unauthorized"
        assert headers["WWW-Authenticate"].startswith("Bearer")
    status, _, body = dash.request(
        "/api/devices/pi/forget", method="POST", body={"label": "alice"}, auth=False
    )
    assert status == 401  # writes too
    status, _, page = dash.request("/", auth=False)
    assert status == 401 and 'name="token"' in page  # the login form
    status, _, _ = dash.request(
        "/api/devices", headers={"Authorization": "Bearer wrong-token-123456"}, auth=False
    )
    assert status == 401
    status, _, body = dash.request("/api/devices")
    assert status == 200 and body == {"devices": []}
    # header names and the scheme in any case (http.client sends them as given)
    host, port = dash.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", "/api/devices", headers={"authorization": f"bearer {TOKEN}"})
    assert conn.getresponse().status == 200
    conn.close()
    # static files and the health check carry no data and are open
    assert dash.request("/static/app.js", auth=False)[0] == 200
    assert dash.request("/healthz", auth=False)[0] == 200


def test_login_form_and_token_link_set_the_session_cookie(
    make_dashboard: Callable[..., Dashboard],
) -> None:
    dash = make_dashboard(token=TOKEN)
    status, headers, page = dash.request(
        "/login",
        method="POST",
        body=b"token=nope",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=False,
    )
    assert status == 401 and "not right" in page and "Set-Cookie" not in headers
    status, headers, _ = dash.request(
        "/login",
        method="POST",
        body=f"token={TOKEN}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=False,
    )
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"].split(";")[0]
    assert dash.request("/api/devices", headers={"Cookie": cookie}, auth=False)[0] == 200
    status, headers, _ = dash.request(f"/?token={TOKEN}&device=pi", auth=False)
    assert status == 303 and headers["Location"] == "/?device=pi"  # the token leaves the URL
    assert headers["Set-Cookie"].split(";")[0] == cookie
    assert dash.request("/?token=wrong-token-123456", auth=False)[0] == 401
    status, headers, _ = dash.request(
        "/logout", method="POST", body=b"", headers={"Cookie": cookie}, auth=False
    )
    assert status == 303 and "Max-Age=0" in headers["Set-Cookie"]
