"""The dashboard in tests: a dashboard running in this process (history, ingester, web server) with
helpers to call its HTTP API, the event payloads a device publishes, and Debian's Chromium for the
browser tests (Playwright's own browser download is not used).
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgesiam.dashboard.history import SqlHistory
from edgesiam.dashboard.ingest import Ingester
from edgesiam.dashboard.server import DashboardServer
from tests.support.mqtt import MosquittoBroker, Subscriber, wait_until

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


OpenHistory = Callable[..., SqlHistory]


def with_migrations(cls: Any, migrations: Any) -> Any:
    """``cls`` limited to the ``migrations`` steps (a history written by an older edgesiam)."""
    return (
        cls
        if migrations is None
        else type(f"Older{cls.__name__}", (cls,), {"MIGRATIONS": migrations})
    )


def publisher(broker: MosquittoBroker, client_id: str = "") -> Subscriber:
    """A plain MQTT client to publish with (subscribed to nothing of interest)."""
    return Subscriber(broker.host, broker.port, ["test/unused"], client_id=client_id).start()


def open_page(page: Any, dashboard: Dashboard) -> None:
    """Load the page and wait until its data is loaded and its live stream is connected."""
    page.goto(dashboard.url + "/")
    # selectors, not script: the page's Content-Security-Policy forbids evaluating strings
    page.wait_for_selector('body[data-live="connected"][data-loaded="true"]', timeout=20_000)
    assert wait_until(lambda: dashboard.server.app.feed.listeners >= 1, 10)
