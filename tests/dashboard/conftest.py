"""Fixtures for the dashboard tests: the runtime tests' real Mosquitto, a dashboard running
in-process against it (history, ingester, web server on a free port), and a headless Chromium
driven by Playwright (Debian's ``chromium``; Playwright's own browser download is not used).
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgesiam.dashboard.auth import TokenAuth
from edgesiam.dashboard.history import History, SqlHistory
from edgesiam.dashboard.ingest import Ingester
from edgesiam.dashboard.server import DashboardApp, DashboardServer, LiveFeed
from tests.support.mqtt import (
    MosquittoBroker,
    Subscriber,
)
from tests.support.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "test-token-0123456789"


def event_payload(
    device: str, seq: int, label: str = "alice", score: float = 0.82, **kw: Any
) -> dict[str, Any]:
    """An ``edgesiam.event.v1`` payload as the runtime makes it."""
    return {
        "schema": "edgesiam.event.v1",
        "id": f"{device}-0a1b2c3d-{seq}",
        "seq": seq,
        "device": device,
        "ts": round(time.time(), 3),
        "label": label,
        "event_type": label,
        "score": score,
        "threshold": 0.7,
        "offset_s": 1.5 * seq,
        "model": "speaker",
        **kw,
    }


@dataclass
class Dashboard:
    """A dashboard running in this process, and helpers to call its HTTP API."""

    history: SqlHistory
    ingester: Ingester
    server: DashboardServer
    broker: MosquittoBroker
    token: str | None

    @property
    def url(self) -> str:
        return self.server.url

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        body: Any = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> tuple[int, dict[str, str], Any]:
        """``(status, headers, JSON or text)``; follows no redirects."""
        data = None
        sent = dict(headers or {})
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        if auth and self.token is not None:
            sent.setdefault("Authorization", f"Bearer {self.token}")
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=sent)
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(req, timeout=60) as response:
                status, got, raw = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            status, got, raw = exc.code, dict(exc.headers), exc.read()
        kind = got.get("Content-Type", "")
        return status, got, json.loads(raw) if kind.startswith("application/json") else raw.decode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One private PostgreSQL server for the session (each test takes fresh databases)."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def history_backend() -> str:
    """The backend of :func:`open_history`: SQLite here; the history, REST and ingest tests
    override it with both (``sqlite``, ``postgresql``)."""
    return "sqlite"


OpenHistory = Callable[..., SqlHistory]


def _older(cls: Any, migrations: Any) -> Any:
    return (
        cls
        if migrations is None
        else type(f"Older{cls.__name__}", (cls,), {"MIGRATIONS": migrations})
    )


@pytest.fixture
def open_history(
    history_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> OpenHistory:
    """``open_history(name="h", retention_days=30.0)``: a history of the test's backend; the same
    name opens the same data again (a restart)."""
    urls: dict[str, str] = {}

    def open_one(
        name: str = "h", retention_days: float | None = 30.0, migrations: Any = None
    ) -> SqlHistory:
        """``migrations``: only these steps (a history written by an older edgesiam)."""
        if history_backend == "sqlite":
            sqlite = _older(History, migrations)
            return sqlite(tmp_path / name / "history.sqlite3", retention_days)
        from edgesiam.dashboard.history_pg import PostgresHistory

        server: PostgresServer = request.getfixturevalue("postgres")
        if name not in urls:
            urls[name] = server.database()
        return _older(PostgresHistory, migrations)(urls[name], retention_days)

    return open_one


@pytest.fixture
def make_dashboard(
    mosquitto: MosquittoBroker,
    open_history: OpenHistory,
) -> Iterator[Callable[..., Dashboard]]:
    made: list[Dashboard] = []

    def make(token: str | None = None, retention_days: float | None = 30.0, **kw: Any) -> Dashboard:
        history = open_history(f"dash{len(made)}", retention_days)
        feed = LiveFeed()
        ingester = Ingester(mosquitto.url, history, on_update=feed.publish)
        app = DashboardApp(history, ingester, TokenAuth(token), feed=feed, **kw)
        server = DashboardServer(app, "127.0.0.1", 0)
        ingester.start()
        server.start()
        assert ingester.wait_connected(15), "the dashboard could not connect to Mosquitto"
        dash = Dashboard(history, ingester, server, mosquitto, token)
        made.append(dash)
        return dash

    yield make
    for dash in made:
        dash.server.stop()
        dash.ingester.stop()
        dash.history.close()


@pytest.fixture
def dashboard(make_dashboard: Callable[..., Dashboard]) -> Dashboard:
    return make_dashboard()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, launched by Playwright (no browser download)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make apt)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 1100})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.errors = errors
    yield page
    context.close()


def publisher(broker: MosquittoBroker, client_id: str = "") -> Subscriber:
    """A plain MQTT client to publish with (subscribed to nothing of interest)."""
    return Subscriber(broker.host, broker.port, ["test/unused"], client_id=client_id).start()
