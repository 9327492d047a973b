"""``edgesiam dashboard``: argument parsing and wiring.

``add_dashboard_parser(subparsers)`` adds the verb; ``cmd_dashboard`` builds the history, the MQTT
ingester and the web server and runs them until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import textwrap
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from edgesiam.argparsing import add_log_level, pass_through
from edgesiam.errors import ConfigError
from edgesiam.paths import expand_user

if TYPE_CHECKING:
    from edgesiam.dashboard.history import SqlHistory

__all__ = ["add_dashboard_parser", "cmd_dashboard", "open_history"]

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "~/.local/state/edgesiam/dashboard"
_BROKER_OPTIONS = (
    "prefix",
    "ha_prefix",
    "username",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "tls_insecure",
    "allow_plaintext_password",
    "protocol",
)
"""The broker options handed to the :class:`~edgesiam.dashboard.ingest.Ingester` as they are."""

DASHBOARD_DESCRIPTION = textwrap.dedent(
    f"""
    Serve a web page that shows every edgesiam device on an MQTT broker, live: which devices are
    online (from their retained status and last will), when each was last seen, its model,
    enrolled labels and metrics; a live feed of match events (score against threshold); a score
    timeline per device; near misses to review; and enrollment (list and forget labels, enroll a
    WAV clip) through the devices' commands. Everything is kept in a SQLite history under
    --data-dir that survives restarts (events de-duplicated by id) and is served as JSON too
    (docs/DASHBOARD.md lists the endpoints). The page loads nothing from the internet.

    Access: bound to 127.0.0.1 (the default) no token is needed. To serve the LAN, give a token:
    --token-file FILE or the environment variable EDGESIAM_DASHBOARD_TOKEN (--token works too,
    but is visible in the process list); open http://HOST:PORT/?token=TOKEN once or log in, and
    scripts send "Authorization: Bearer TOKEN". Without a token, binding beyond this machine is
    refused unless --allow-unauthenticated.

    Several machines: with --history postgresql://USER@HOST/DB the history lives in PostgreSQL;
    then run any number of "--ingest-only --share GROUP --client-id NAME" processes (MQTT 5
    shared subscription: the broker splits the devices' events among them, and any of them may
    die) and one or more "--serve-only" web pages on the same database (docs/SCALING.md).

    Broker: the MQTT password comes from --password-file or --password-env, never the command
    line; over plain mqtt:// it is refused unless --allow-plaintext-password.

    Examples:
      edgesiam dashboard --broker mqtt://localhost:1883
      edgesiam dashboard --history postgresql://edgesiam@db.lan/edgesiam --ingest-only \\
          --share ingest --client-id ingest-1 --broker mqtt://broker.lan
      edgesiam dashboard --history postgresql://edgesiam@db.lan/edgesiam --serve-only \\
          --broker mqtt://broker.lan --host 0.0.0.0 --token-file /etc/edgesiam/dash.token
      EDGESIAM_DASHBOARD_TOKEN=$(cat /etc/edgesiam/dash.token) edgesiam dashboard \\
          --host 0.0.0.0 --port 8080 --data-dir /var/lib/edgesiam/dashboard \\
          --broker mqtts://dashboard@broker.lan:8883 --tls-ca /etc/ssl/lan-ca.pem \\
          --password-file /etc/edgesiam/dashboard.pass

    Default data directory: {DEFAULT_DATA_DIR}.
    """
)


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_broker_arguments(parser: argparse.ArgumentParser) -> None:
    """The broker flags the dashboard shares with the runtime's settings."""
    group = parser.add_argument_group("MQTT broker")
    group.add_argument(
        "--broker",
        default="mqtt://localhost:1883",
        metavar="URL",
        help="mqtt[s]://[user@]host[:port] (default: %(default)s)",
    )
    group.add_argument("--prefix", default="edgesiam", help="the devices' topic prefix")
    group.add_argument(
        "--ha-prefix", default="homeassistant", help="Home Assistant's discovery prefix"
    )
    group.add_argument("--username", help="MQTT username (default: the user@ of the URL)")
    group.add_argument(
        "--password-file", type=Path, metavar="FILE", help="file holding the MQTT password"
    )
    group.add_argument("--password-env", metavar="VAR", help="environment variable holding it")
    group.add_argument(
        "--allow-plaintext-password",
        action="store_true",
        help="send the password over mqtt:// without TLS (trusted networks only)",
    )
    group.add_argument(
        "--tls-ca", type=Path, metavar="FILE", help="CA bundle for mqtts:// (default: the system's)"
    )
    group.add_argument("--tls-cert", type=Path, metavar="FILE", help="client certificate (PEM)")
    group.add_argument("--tls-key", type=Path, metavar="FILE", help="client key (PEM)")
    group.add_argument(
        "--tls-insecure", action="store_true", help="skip the host-name check (test brokers only)"
    )
    group.add_argument(
        "--protocol", choices=["5", "3.1.1"], default="5", help="MQTT version (default: 5)"
    )
    group.add_argument(
        "--client-id",
        help="fixed MQTT client id (default: derived from --data-dir, so restarts resume the session)",
    )


def _add_token_options(group: Any) -> None:
    """Where the access token comes from (read by :func:`~edgesiam.dashboard.auth.resolve_token`)."""
    group.add_argument(
        "--token-file", type=Path, metavar="FILE", help="file holding the access token"
    )
    group.add_argument(
        "--token-env",
        default="EDGESIAM_DASHBOARD_TOKEN",
        metavar="VAR",
        help="environment variable holding the token (default: %(default)s)",
    )
    group.add_argument("--token", help="the access token itself (visible in the process list)")


def add_dashboard_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``dashboard`` to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "dashboard",
        help="a live web dashboard of the devices on a broker (history, enrollment)",
        description=DASHBOARD_DESCRIPTION,
        formatter_class=_formatter,
    )
    web = p.add_argument_group("web server")
    web.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    web.add_argument(
        "--port", type=int, default=8080, help="port (default: %(default)s; 0: any free one)"
    )
    _add_token_options(web)
    web.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve beyond this machine without a token (anyone reaching it may send commands)",
    )
    web.add_argument(
        "--secure-cookie",
        action="store_true",
        help="mark the session cookie Secure (when a TLS proxy serves the page over https)",
    )
    store = p.add_argument_group("history")
    store.add_argument(
        "--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR", help="where the SQLite history lives"
    )
    store.add_argument(
        "--history",
        metavar="TARGET",
        help="a SQLite file, or postgresql://user@host/db for a history shared by several "
        "ingesters and pages (password from PGPASSWORD or ~/.pgpass; default: "
        "DIR/history.sqlite3 under --data-dir)",
    )
    store.add_argument(
        "--retention-days",
        type=float,
        default=30.0,
        metavar="DAYS",
        help="keep what was received in the last DAYS days (default: %(default)g; 0: for ever)",
    )
    roles = p.add_argument_group("several processes (docs/SCALING.md)")
    only = roles.add_mutually_exclusive_group()
    only.add_argument(
        "--ingest-only",
        action="store_true",
        help="store what devices publish, serve no page (run several with --share)",
    )
    only.add_argument(
        "--serve-only",
        action="store_true",
        help="serve the page and API from the history, store nothing (ingesters do that)",
    )
    roles.add_argument(
        "--share",
        metavar="GROUP",
        help="take events, near misses, metrics and command results through the MQTT 5 shared "
        "subscription $share/GROUP/…, split among every ingester of GROUP (each needs its own "
        "--client-id; needs --protocol 5)",
    )
    add_broker_arguments(p)
    p.add_argument(
        "--command-timeout",
        type=float,
        default=20.0,
        metavar="S",
        help="how long the page waits for a device's command result (default: %(default)g s)",
    )
    add_log_level(p, help="log detail")
    p.set_defaults(func=cmd_dashboard)
    return p  # type: ignore[no-any-return]


def resolve_broker_password(args: argparse.Namespace) -> str | None:
    """The MQTT password from --password-file / --password-env (validated like the runtime's)."""
    from edgesiam.mqtt.client import MqttSettings

    if args.password_file is None and args.password_env is None:
        return None
    settings = MqttSettings.from_dict(
        {
            "url": args.broker,
            "device_id": "dashboard",
            "username": args.username,
            "password_file": args.password_file,
            "password_env": args.password_env,
            "allow_plaintext_password": args.allow_plaintext_password,
        },
        source="dashboard broker settings",
    )
    return settings.resolve_password()


def _serve_forever(stop: threading.Event, purge_every_s: float, purge: Any) -> None:
    while not stop.wait(purge_every_s):
        removed = purge()
        if any(removed.values()):
            log.info("dashboard: retention removed %s", removed)


def open_history(target: str | None, data_dir: str, retention: float | None) -> SqlHistory:
    """The history ``--history`` names: PostgreSQL for a ``postgresql://`` URL, else SQLite."""
    from edgesiam.dashboard.history import History
    from edgesiam.dashboard.history_pg import PostgresHistory, is_postgres_url

    if target is not None and is_postgres_url(target):
        return PostgresHistory(target, retention_days=retention)
    if target is not None:
        return History(expand_user(target, "--history"), retention_days=retention)
    path = expand_user(data_dir, "--data-dir").resolve() / "history.sqlite3"
    return History(path, retention_days=retention)


def _check_roles(args: argparse.Namespace) -> None:
    if args.share is not None and args.protocol != "5":
        raise ConfigError("--share: shared subscriptions need MQTT 5 (--protocol 5)")
    if args.share is not None and args.serve_only:
        raise ConfigError("--share: a --serve-only page takes no share of the devices' messages")


def _client_id(args: argparse.Namespace, history: SqlHistory) -> str | None:
    """``--client-id``, or one derived from the history and the role (stable across restarts)."""
    from edgesiam.dashboard.ingest import default_client_id

    if args.client_id:
        return str(args.client_id)
    role = "serve" if args.serve_only else f"share:{args.share}" if args.share else ""
    return default_client_id(f"{history.location}{'#' + role if role else ''}")


def cmd_dashboard(args: argparse.Namespace) -> int:
    from edgesiam.dashboard.auth import TokenAuth, check_bind, resolve_token
    from edgesiam.dashboard.ingest import Ingester
    from edgesiam.dashboard.server import DashboardApp, DashboardServer, LiveFeed

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: a port is 0-65535")
    if args.retention_days < 0:
        raise ConfigError("--retention-days: a number of days ≥ 0 (0 keeps everything)")
    if args.command_timeout <= 0:
        raise ConfigError("--command-timeout: a positive number of seconds")
    _check_roles(args)
    token = resolve_token(args.token, args.token_file, args.token_env)
    check_bind(args.host, token, args.allow_unauthenticated)
    if token is None and args.allow_unauthenticated:
        log.warning(
            "dashboard: serving on %s WITHOUT a token: anyone reaching it may send commands",
            args.host,
        )
    password = resolve_broker_password(args)
    retention = args.retention_days or None
    history = open_history(args.history, args.data_dir, retention)
    feed = LiveFeed()
    ingester = Ingester(
        args.broker,
        history,
        client_id=_client_id(args, history),
        password=password,
        on_update=feed.publish,
        **pass_through(args, *_BROKER_OPTIONS, "share"),
        store=not args.serve_only,
        # a page needs no queue kept for it while it is stopped: its session ends with it
        session_expiry_s=0 if args.serve_only else 7 * 24 * 3600,
    )
    app = DashboardApp(
        history,
        ingester,
        TokenAuth(token),
        feed=feed,
        command_timeout_s=args.command_timeout,
        secure_cookie=args.secure_cookie,
    )
    server = None if args.ingest_only else DashboardServer(app, args.host, args.port)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    ingester.start()
    if server is not None:
        server.start()
    where = "ingesting only" if server is None else f"on {server.url}"
    print(
        f"edgesiam dashboard {where} (history {history.location}, broker {args.broker}, "
        f"{'token required' if token else 'no token'}); Ctrl-C stops it",
        flush=True,
    )
    purge_every = 3600.0 if retention is None else max(60.0, min(3600.0, retention * 8640.0))
    try:
        _serve_forever(stop, purge_every, history.purge)
    finally:
        if server is not None:
            server.stop()
        ingester.stop()
        history.close()
    return 0
