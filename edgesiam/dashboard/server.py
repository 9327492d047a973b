"""The dashboard's HTTP server: the page, a REST/JSON API over the history, live updates, commands.

Built on the standard library's ``ThreadingHTTPServer`` (one thread per connection): the dashboard
serves a handful of people and one live stream each, so a framework would add dependencies and
nothing else. Routes (``docs/DASHBOARD.md`` documents each):

- ``GET /`` the page; ``GET /static/<file>`` its script and style (no CDN: works offline);
  ``GET|POST /login``, ``POST /logout``; ``GET /healthz``.
- ``GET /api/stats``, ``/api/devices``, ``/api/devices/<id>``, ``/api/events``,
  ``/api/near_misses``, ``/api/timeline``, ``/api/commands``: JSON from the history.
- ``GET /api/stream``: Server-Sent Events (``event``, ``near_miss``, ``status``, ``metrics``,
  ``labels``, ``command_result``, ``broker``), one JSON object per message.
- ``POST /api/devices/<id>/enroll|forget|list|threshold``: a command to the device; the answer is
  its result (``threshold``: ``{"label": …, "value": cosine}``, no label = the default).
- ``POST /api/devices/<id>/review`` ``{"action": "wrong" | "this_was", "label", "embedding",
  "embedding_scale", "ref", "by"}``: an event marked wrong (the device's ``reject``) or a near
  miss confirmed as the label (``confirm``), recorded with who and when; ``GET /api/reviews``;
  ``POST /api/reviews/<n>/undo`` ``{"by"}`` sends ``unreject`` / ``forget_template``.

Every response carries a strict Content-Security-Policy (the page loads nothing from elsewhere) and
API responses are never cached. Request bodies are JSON (``Content-Type: application/json``: a form
on another site cannot send that without the browser asking first) and capped in size.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import html
import json
import logging
import math
import queue
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Final, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

from edgesiam import __version__
from edgesiam.dashboard.auth import TokenAuth
from edgesiam.dashboard.history import DEVICE_ID, SqlHistory
from edgesiam.dashboard.ingest import IngestCounters, Ingester
from edgesiam.errors import BadRequest, CommandFailed, HistoryError

__all__ = [
    "MAX_WAV_BYTES",
    "Commander",
    "DashboardApp",
    "DashboardServer",
    "LiveFeed",
    "Response",
]

log = logging.getLogger(__name__)

MAX_WAV_BYTES: Final = 512 * 1024
"""The runtime's cap on one enrolled clip, WAV or CSV (``CommandHandler.max_wav_bytes``)."""
MAX_ENROLL_BYTES: Final = 2 * 1024 * 1024
"""The runtime's cap on all the clips of one enroll command (``CommandHandler.max_enroll_bytes``)."""
MAX_CLIPS: Final = 10
MAX_BODY_BYTES: Final = 4 * ((MAX_ENROLL_BYTES + 2) // 3) + 64 * 1024
MAX_LIMIT: Final = 10_000
STATIC_FILES: Final = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_LABEL_FORBIDDEN = re.compile(r"[/\\+#\x00-\x1f\x7f]")
_NAME_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")


class Commander(Protocol):
    """What the server needs from the MQTT side (:class:`~edgesiam.dashboard.ingest.Ingester`)."""

    connected: threading.Event
    counters: IngestCounters
    last_error: str | None

    @property
    def broker_url(self) -> str: ...

    @property
    def client_id(self) -> str: ...

    def command(
        self, device: str, verb: str, request: dict[str, Any], timeout: float = 15.0
    ) -> dict[str, Any]: ...


# ------------------------------------------------------------------------------------------------
# live updates


class LiveFeed:
    """Fans updates out to every open ``/api/stream`` (one bounded queue per listener; a listener
    too slow to keep up is dropped, and its page reconnects and reloads)."""

    def __init__(self, queue_size: int = 2000) -> None:
        self._listeners: set[queue.Queue[tuple[str, dict[str, Any]] | None]] = set()
        self._lock = threading.Lock()
        self._queue_size = queue_size
        self.closed = False

    def subscribe(self) -> queue.Queue[tuple[str, dict[str, Any]] | None]:
        q: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue(self._queue_size)
        with self._lock:
            self._listeners.add(q)
        return q

    def unsubscribe(self, q: queue.Queue[tuple[str, dict[str, Any]] | None]) -> None:
        with self._lock:
            self._listeners.discard(q)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for q in listeners:
            try:
                q.put_nowait((kind, data))
            except queue.Full:
                self.unsubscribe(q)
                with contextlib.suppress(queue.Full):
                    q.put_nowait(None)

    @property
    def listeners(self) -> int:
        with self._lock:
            return len(self._listeners)

    def close(self) -> None:
        """Ends every stream (the server is stopping)."""
        self.closed = True
        with self._lock:
            listeners = list(self._listeners)
            self._listeners.clear()
        for q in listeners:
            with contextlib.suppress(queue.Full):
                q.put_nowait(None)


# ------------------------------------------------------------------------------------------------
# the application: requests → responses, no sockets


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200, **headers: str) -> Response:
        body = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
        return cls(status, body, "application/json", dict(headers))

    @classmethod
    def error(cls, status: int, message: str, code: str, **headers: str) -> Response:
        return cls.json({"ok": False, "error": message, "error_code": code}, status, **headers)


def _static(name: str) -> bytes:
    return (resources.files("edgesiam.dashboard") / "static" / name).read_bytes()


def _number_arg(query: dict[str, list[str]], name: str) -> float | None:
    if name not in query:
        return None
    try:
        value = float(query[name][-1])
    except ValueError:
        raise BadRequest(f"{name}: expected a number (Unix seconds)") from None
    if not math.isfinite(value):
        raise BadRequest(f"{name}: expected a finite number")
    return value


def _limit_arg(query: dict[str, list[str]], default: int) -> int:
    if "limit" not in query:
        return default
    try:
        value = int(query["limit"][-1])
    except ValueError:
        raise BadRequest("limit: expected an integer") from None
    if not 1 <= value <= MAX_LIMIT:
        raise BadRequest(f"limit: between 1 and {MAX_LIMIT}")
    return value


def _device_arg(query: dict[str, list[str]], required: bool = False) -> str | None:
    if "device" not in query:
        if required:
            raise BadRequest("device: required")
        return None
    device = query["device"][-1]
    if not DEVICE_ID.match(device):
        raise BadRequest("device: 1-64 of A-Z a-z 0-9 _ -")
    return device


_REVIEW_VERBS: Final = {"wrong": "reject", "this_was": "confirm"}
_UNDO_VERBS: Final = {"wrong": "unreject", "this_was": "forget_template"}


def check_review(data: dict[str, Any]) -> dict[str, Any]:
    """A review request from the page, checked before anything is sent to the device."""
    unknown = set(data) - {"action", "label", "embedding", "embedding_scale", "ref", "by"}
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    if data.get("action") not in _REVIEW_VERBS:
        raise BadRequest("action: 'wrong' (an event) or 'this_was' (a near miss)")
    text, scale = data.get("embedding"), data.get("embedding_scale")
    if not isinstance(text, str) or not 4 <= len(text) <= 8192:
        raise BadRequest("embedding: the event's or near miss's base64 embedding")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
        raise BadRequest("embedding_scale: a positive number")
    ref = data.get("ref")
    if ref is not None and (not isinstance(ref, str) or len(ref) > 200):
        raise BadRequest("ref: what was reviewed (an event id), at most 200 characters")
    return {
        "action": data["action"],
        "label": check_label(data.get("label")),
        "embedding": text,
        "embedding_scale": float(scale),
        "ref": ref,
        "by": check_reviewer(data.get("by")),
    }


def check_reviewer(by: Any) -> str:
    """Who reviewed: a name typed on the page (the token is shared, so it names no one)."""
    if by is None or by == "":
        return "dashboard"
    if not isinstance(by, str) or len(by) > 64 or _LABEL_FORBIDDEN.search(by):
        raise BadRequest("by: a name of at most 64 characters")
    return by.strip() or "dashboard"


def check_label(label: Any) -> str:
    """The gallery's rule for a label, checked before a command is sent (the device checks too)."""
    if not isinstance(label, str) or not 1 <= len(label) <= 64:
        raise BadRequest("label: 1-64 characters")
    if label != label.strip() or _LABEL_FORBIDDEN.search(label):
        raise BadRequest("label: no / \\ + #, control characters, or leading/trailing spaces")
    return label


def _decoded_clip(data: Any, key: str, what: str) -> bytes:
    """A base64 clip within the runtime's cap on one clip, decoded."""
    if not isinstance(data, str) or not data:
        raise BadRequest(f"{key}: a base64 string is required")
    if len(data) > 4 * ((MAX_WAV_BYTES + 2) // 3):
        raise BadRequest(f"the {what} is over {MAX_WAV_BYTES // 1024} KiB", 413, "too_large")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{key}: not valid base64") from None
    if len(raw) > MAX_WAV_BYTES:
        raise BadRequest(f"the {what} is over {MAX_WAV_BYTES // 1024} KiB", 413, "too_large")
    return raw


def check_wav(data: Any) -> str:
    """A base64 WAV within the runtime's cap; returns it unchanged."""
    raw = _decoded_clip(data, "wav_base64", "WAV")
    if len(raw) < 44 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise BadRequest("the file is not a WAV (RIFF/WAVE header missing)")
    return str(data)


def check_csv(data: Any) -> str:
    """A base64 sensor CSV (text) within the runtime's cap; returns it unchanged."""
    raw = _decoded_clip(data, "csv_base64", "CSV")
    if not raw.strip() or b"\x00" in raw:
        raise BadRequest("the file is not a text CSV")
    return str(data)


def _check_clip(clip: Any) -> dict[str, Any]:
    if not isinstance(clip, dict) or set(clip) - {"name", "wav_base64", "csv_base64"}:
        raise BadRequest('clips: each clip is {"name", "wav_base64" or "csv_base64"}')
    if ("wav_base64" in clip) == ("csv_base64" in clip):
        raise BadRequest("clips: each clip gives either wav_base64 or csv_base64")
    out: dict[str, Any] = {}
    name = clip.get("name")
    if name is not None:
        if not isinstance(name, str) or not 1 <= len(name) <= 128 or _NAME_FORBIDDEN.search(name):
            raise BadRequest("clips: a clip name is a file name (1-128 characters, no / or \\)")
        out["name"] = name
    if "wav_base64" in clip:
        out["wav_base64"] = check_wav(clip["wav_base64"])
    else:
        out["csv_base64"] = check_csv(clip["csv_base64"])
    return out


def check_enroll(data: dict[str, Any]) -> dict[str, Any]:
    """An enroll request as the device takes it (``docs/MQTT.md``), checked before it is sent."""
    unknown = set(data) - {"label", "wav_base64", "csv_base64", "clips", "append"}
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    request: dict[str, Any] = {"label": check_label(data.get("label"))}
    sources = [key for key in ("wav_base64", "csv_base64", "clips") if key in data]
    if len(sources) != 1:
        raise BadRequest("give one of wav_base64, csv_base64 or clips")
    if "wav_base64" in data:
        request["wav_base64"] = check_wav(data["wav_base64"])
    elif "csv_base64" in data:
        request["csv_base64"] = check_csv(data["csv_base64"])
    else:
        clips = data["clips"]
        if not isinstance(clips, list) or not 1 <= len(clips) <= MAX_CLIPS:
            raise BadRequest(f"clips: a list of 1 to {MAX_CLIPS} clips")
        request["clips"] = [_check_clip(clip) for clip in clips]
        total = sum(
            len(str(v)) * 3 // 4 for c in request["clips"] for k, v in c.items() if k != "name"
        )
        if total > MAX_ENROLL_BYTES:
            raise BadRequest(
                f"the clips are over {MAX_ENROLL_BYTES // (1024 * 1024)} MiB together; send the "
                "rest with append",
                413,
                "too_large",
            )
    if "append" in data:
        if not isinstance(data["append"], bool):
            raise BadRequest("append: true or false")
        request["append"] = data["append"]
    return request


def check_threshold(data: dict[str, Any]) -> dict[str, Any]:
    """A ``threshold`` request: a cosine ``value`` for ``label`` (or, without one, the default);
    a ``label`` with ``value`` null drops the value set over MQTT for it."""
    request: dict[str, Any] = {}
    if data.get("label") is not None:
        request["label"] = check_label(data["label"])
    value = data.get("value")
    if value is None and "label" not in request:
        raise BadRequest("value: a cosine threshold in [-1, 1] is required")
    if value is not None:
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not -1.0 <= value <= 1.0
        ):
            raise BadRequest(f"value: a cosine threshold in [-1, 1], got {value!r}")
        request["value"] = float(value)
    return request


class DashboardApp:
    """Routes requests to the history, the live feed and the commander; knows nothing of sockets."""

    def __init__(
        self,
        history: SqlHistory,
        commander: Commander | None,
        auth: TokenAuth,
        *,
        feed: LiveFeed | None = None,
        command_timeout_s: float = 20.0,
        secure_cookie: bool = False,
    ) -> None:
        self.history = history
        self.commander = commander
        self.auth = auth
        self.feed = feed or LiveFeed()
        self.command_timeout_s = command_timeout_s
        self.secure_cookie = secure_cookie
        self.started = time.time()

    # -- entry point ------------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None
    ) -> Response:
        """One request (not the live stream) → its response."""
        parts = urlsplit(target)
        path = parts.path
        query = parse_qs(parts.query)
        try:
            if path == "/favicon.ico":
                return Response(204, headers={"Cache-Control": "max-age=86400"})
            if path == "/healthz" and method == "GET":
                return Response(200, b"ok\n", "text/plain; charset=utf-8")
            if path.startswith("/static/") and method == "GET":
                return self._static_file(path[len("/static/") :])
            if path == "/login":
                return self._login(method, headers, body)
            if path == "/logout" and method == "POST":
                return Response(
                    303, headers={"Location": "/", "Set-Cookie": self.auth.clear_cookie()}
                )
            if self.auth.required and "token" in query and method == "GET":
                return self._token_link(path, query)
            if not self.auth.authorized(headers):
                if path.startswith("/api/"):
                    return Response.error(
                        401,
                        "a token is needed: Authorization: Bearer <token>",
                        "unauthorized",
                        **{"WWW-Authenticate": 'Bearer realm="edgesiam"'},
                    )
                return self._login_page(401, "")
            if path == "/" and method == "GET":
                return Response(200, _static("index.html"), "text/html; charset=utf-8")
            if path == "/metrics" and method == "GET":
                from edgesiam.dashboard.metrics import CONTENT_TYPE, render_metrics

                ingester = self.commander if isinstance(self.commander, Ingester) else None
                return Response(200, render_metrics(self.history, ingester), CONTENT_TYPE)
            if path.startswith("/api/"):
                return self._api(method, path[len("/api/") :], query, headers, body)
            return Response.error(404, f"no such page: {path}", "not_found")
        except BadRequest as exc:
            return Response.error(exc.status, str(exc), exc.code)
        except HistoryError as exc:
            log.error("dashboard: %s", exc)
            return Response.error(500, str(exc), "history")

    # -- pages ------------------------------------------------------------------------------------

    def _static_file(self, name: str) -> Response:
        if name not in STATIC_FILES:
            return Response.error(404, f"no such file: {name}", "not_found")
        return Response(200, _static(name), STATIC_FILES[name], {"Cache-Control": "no-cache"})

    def _login_page(self, status: int, message: str) -> Response:
        page = _static("login.html").decode()
        note = f'<p class="login-error" role="alert">{html.escape(message)}</p>' if message else ""
        return Response(
            status, page.replace("<!--message-->", note).encode(), "text/html; charset=utf-8"
        )

    def _login(self, method: str, headers: dict[str, str], body: bytes | None) -> Response:
        if method == "GET":
            if not self.auth.required:
                return Response(303, headers={"Location": "/"})
            return self._login_page(200, "")
        if method != "POST":
            return Response.error(405, "GET or POST", "method")
        form = parse_qs((body or b"").decode("utf-8", "replace"))
        token = form.get("token", [""])[-1]
        if not self.auth.required or self.auth.check_token(token):
            cookie = {"Set-Cookie": self.auth.session_cookie(secure=self.secure_cookie)}
            return Response(
                303, headers={"Location": "/", **(cookie if self.auth.required else {})}
            )
        return self._login_page(401, "That token is not right.")

    def _token_link(self, path: str, query: dict[str, list[str]]) -> Response:
        """``/?token=…`` once: set the cookie and send the browser to the same page without it."""
        if not self.auth.check_token(query["token"][-1]):
            return self._login_page(401, "The token in the link is not right.")
        rest = {k: v for k, v in query.items() if k != "token"}
        location = path + (f"?{urlencode(rest, doseq=True)}" if rest else "")
        return Response(
            303,
            headers={
                "Location": location,
                "Set-Cookie": self.auth.session_cookie(secure=self.secure_cookie),
            },
        )

    # -- the API ----------------------------------------------------------------------------------

    def _api(
        self,
        method: str,
        route: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes | None,
    ) -> Response:
        h = self.history
        if method == "GET":
            if route == "stats":
                return Response.json(self.stats())
            if route == "devices":
                return Response.json({"devices": h.devices()})
            if route.startswith("devices/") and "/" not in route[len("devices/") :]:
                name = route[len("devices/") :]
                found = h.device(name) if DEVICE_ID.match(name) else None
                if found is None:
                    return Response.error(404, f"no device {name!r} in the history", "not_found")
                return Response.json(found)
            if route == "events":
                rows = h.events(
                    _device_arg(query), _number_arg(query, "since"), _limit_arg(query, 200)
                )
                return Response.json({"events": rows})
            if route == "near_misses":
                rows = h.near_misses(
                    _device_arg(query), _number_arg(query, "since"), _limit_arg(query, 200)
                )
                return Response.json({"near_misses": rows})
            if route == "timeline":
                device = _device_arg(query, required=True)
                assert device is not None
                points = h.timeline(device, _number_arg(query, "since"), _limit_arg(query, 2000))
                return Response.json({"device": device, "points": points})
            if route == "reviews":
                return Response.json(
                    {"reviews": h.reviews(_device_arg(query), _limit_arg(query, 100))}
                )
            if route == "commands":
                correlation = query.get("correlation_id", [None])[-1]
                rows = h.command_results(
                    _device_arg(query), correlation_id=correlation, limit=_limit_arg(query, 50)
                )
                return Response.json({"results": rows})
            return Response.error(404, f"no such endpoint: GET /api/{route}", "not_found")
        if method == "POST":
            undo = re.fullmatch(r"reviews/([0-9]{1,12})/undo", route)
            if undo is not None:
                return self._undo(int(undo.group(1)), self._json_body(headers, body))
            match = re.fullmatch(r"devices/([^/]+)/(enroll|forget|list|threshold|review)", route)
            if match is None:
                return Response.error(404, f"no such endpoint: POST /api/{route}", "not_found")
            device, verb = match.groups()
            if not DEVICE_ID.match(device):
                raise BadRequest("device: 1-64 of A-Z a-z 0-9 _ -")
            return self._command(device, verb, self._json_body(headers, body))
        return Response.error(405, f"{method} is not supported here", "method")

    @staticmethod
    def _json_body(headers: dict[str, str], body: bytes | None) -> dict[str, Any]:
        kind = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise BadRequest("send the request as Content-Type: application/json", 415, "invalid")
        try:
            data = json.loads(body or b"{}")
        except (ValueError, RecursionError):
            raise BadRequest("the request body is not JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("the request body must be a JSON object")
        return data

    def _send(
        self, device: str, verb: str, request: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, Response | None]:
        """A command's result, or the response that says why there is none."""
        if self.commander is None:
            return None, Response.error(503, "this dashboard has no MQTT connection", "offline")
        try:
            return self.commander.command(device, verb, request, self.command_timeout_s), None
        except CommandFailed as exc:
            status = 504 if exc.code == "timeout" else 503 if exc.code == "offline" else 400
            return None, Response.error(status, str(exc), exc.code)

    def _review(self, device: str, data: dict[str, Any]) -> Response:
        r = check_review(data)
        request = {"label": r["label"], "embedding": r["embedding"]}
        request["embedding_scale"] = r["embedding_scale"]
        result, failed = self._send(device, _REVIEW_VERBS[r["action"]], request)
        if result is None:
            assert failed is not None
            return failed
        if not result.get("ok"):
            return Response.json(result)
        found = result.get("result") or {}
        review = self.history.add_review(
            device, r["action"], r["label"], str(found.get("id", "")), r["by"], found, r["ref"]
        )
        self.feed.publish("review", review)
        return Response.json({**result, "review": review})

    def _undo(self, n: int, data: dict[str, Any]) -> Response:
        unknown = set(data) - {"by"}
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
        by = check_reviewer(data.get("by"))
        review = self.history.review(n)
        if review is None:
            return Response.error(404, f"no review {n}", "not_found")
        if review["undone_ts"] is not None:
            raise BadRequest(f"review {n} was undone already", 409, "conflict")
        verb = _UNDO_VERBS[review["action"]]
        request = {"id": review["entry_id"]}
        if verb == "forget_template":
            request["label"] = review["label"]
        result, failed = self._send(review["device"], verb, request)
        if result is None:
            assert failed is not None
            return failed
        if not result.get("ok"):
            return Response.json(result)
        done = self.history.mark_undone(n, by)
        self.feed.publish("review", done or review)
        return Response.json({**result, "review": done})

    def _command(self, device: str, verb: str, data: dict[str, Any]) -> Response:
        if verb == "review":
            return self._review(device, data)
        unknown: set[str] = set()
        if verb == "enroll":
            request = check_enroll(data)
        elif verb == "forget":
            unknown = set(data) - {"label"}
            request = {"label": check_label(data.get("label"))}
        elif verb == "threshold":
            unknown = set(data) - {"label", "value"}
            request = check_threshold(data)
        else:
            unknown = set(data)
            request = {}
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
        if self.commander is None:
            return Response.error(503, "this dashboard has no MQTT connection", "offline")
        try:
            result = self.commander.command(device, verb, request, self.command_timeout_s)
        except CommandFailed as exc:
            status = 504 if exc.code == "timeout" else 503 if exc.code == "offline" else 400
            return Response.error(status, str(exc), exc.code)
        return Response.json(result)

    def stats(self) -> dict[str, Any]:
        c = self.commander
        broker: dict[str, Any] = {"connected": False}
        if c is not None:
            broker = {
                "url": c.broker_url,
                "client_id": c.client_id,
                "connected": c.connected.is_set(),
                "last_error": c.last_error,
                "counters": vars(c.counters).copy(),
            }
        return {
            "version": __version__,
            "now": time.time(),
            "started": self.started,
            "broker": broker,
            "history": {
                "path": self.history.location,
                "retention_days": self.history.retention_days,
                **self.history.counts(),
            },
            "live_listeners": self.feed.listeners,
            "auth_required": self.auth.required,
            "max_wav_bytes": MAX_WAV_BYTES,
            "max_enroll_bytes": MAX_ENROLL_BYTES,
        }


# ------------------------------------------------------------------------------------------------
# the socket side


class _Handler(BaseHTTPRequestHandler):
    server_version = f"edgesiam-dashboard/{__version__}"
    app: DashboardApp  # set on the subclass made by DashboardServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s: " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/api/stream":
            self._stream()
        else:
            self._reply(self.app.handle("GET", self.path, self._headers(), None))

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length")
        try:
            size = int(length) if length is not None else -1
        except ValueError:
            size = -1
        if size < 0:
            self._reply(Response.error(411, "Content-Length is required", "invalid"))
            return
        if size > MAX_BODY_BYTES:
            self.close_connection = True
            self._reply(
                Response.error(
                    413, f"the request is over {MAX_BODY_BYTES // 1024} KiB", "too_large"
                )
            )
            return
        body = self.rfile.read(size)
        self._reply(self.app.handle("POST", self.path, self._headers(), body))

    def _headers(self) -> dict[str, str]:
        """Header names in one spelling (``Content-Type``), whatever case the client sent."""
        return {"-".join(p.capitalize() for p in k.split("-")): v for k, v in self.headers.items()}

    def _common_headers(self) -> None:
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")

    def _reply(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            self._common_headers()
            if response.body or response.status not in (204, 303):
                self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            if "Cache-Control" not in response.headers:
                self.send_header("Cache-Control", "no-store")
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _stream(self) -> None:
        app = self.app
        if not app.auth.authorized(self._headers()):
            self._reply(
                Response.error(
                    401,
                    "a token is needed: Authorization: Bearer <token>",
                    "unauthorized",
                    **{"WWW-Authenticate": 'Bearer realm="edgesiam"'},
                )
            )
            return
        feed = app.feed
        q = feed.subscribe()
        try:
            self.send_response(200)
            self._common_headers()
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Accel-Buffering", "no")
            self.end_headers()
            hello = json.dumps(app.stats(), separators=(",", ":"))
            self.wfile.write(f"retry: 2000\nevent: hello\ndata: {hello}\n\n".encode())
            self.wfile.flush()
            while not feed.closed:
                try:
                    item = q.get(timeout=15.0)
                except queue.Empty:
                    self.wfile.write(b": keepalive\n\n")
                    self.wfile.flush()
                    continue
                if item is None:
                    break
                kind, data = item
                text = json.dumps(data, separators=(",", ":"), default=str)
                self.wfile.write(f"event: {kind}\ndata: {text}\n\n".encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            feed.unsubscribe(q)
            self.close_connection = True


class _ThreadingHTTPServer6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class DashboardServer:
    """Serves a :class:`DashboardApp` on ``host:port`` (port 0: a free one) in a thread."""

    def __init__(self, app: DashboardApp, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.app = app
        handler = type("DashboardHandler", (_Handler,), {"app": app})
        server_class = _ThreadingHTTPServer6 if ":" in host else ThreadingHTTPServer
        try:
            self._httpd = server_class((host, port), handler)
        except OSError as exc:
            from edgesiam.errors import ConfigError

            raise ConfigError(f"cannot serve on {host}:{port}: {exc.strerror}") from None
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.host = host

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        shown = "127.0.0.1" if self.host in ("", "0.0.0.0") else host
        return f"http://{shown}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="dashboard-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.app.feed.close()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
