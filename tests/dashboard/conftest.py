"""Fixtures for the dashboard tests: the real Mosquitto of ``tests/support/mqtt.py``, a dashboard
running in-process against it (history, ingester, web server on a free port), and a headless
Chromium driven by Playwright; the helpers they use live in ``tests/support/dashboard.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgesiam.dashboard.auth import TokenAuth
from edgesiam.dashboard.history import History, SqlHistory
from edgesiam.dashboard.ingest import Ingester
from edgesiam.dashboard.server import DashboardApp, DashboardServer, LiveFeed
from tests.support.dashboard import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Dashboard,
    OpenHistory,
    with_migrations,
)
from tests.support.mqtt import MosquittoBroker
from tests.support.postgres import PostgresServer


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
            sqlite = with_migrations(History, migrations)
            return sqlite(tmp_path / name / "history.sqlite3", retention_days)
        from edgesiam.dashboard.history_pg import PostgresHistory

        server: PostgresServer = request.getfixturevalue("postgres")
        if name not in urls:
            urls[name] = server.database()
        return with_migrations(PostgresHistory, migrations)(urls[name], retention_days)

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
