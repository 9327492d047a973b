"""``edgesiam broker``: an MQTT broker inside this process (amqtt), for a single machine.

For trying edgesiam without installing anything else: the runtime, the dashboard and Home
Assistant on one host. It speaks MQTT 3.1.1 only (set the runtime's ``protocol: "3.1.1"``) and
keeps sessions and retained messages in memory (a restart forgets them). For several devices,
ACLs, TLS or persistence use Mosquitto (``firmware_configs/mosquitto/``).

Anonymous clients are allowed unless ``--password-file`` is given (amqtt's format:
``user:hash`` lines, argon2 or sha512-crypt hashes). It listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from edgesiam.argparsing import add_command
from edgesiam.errors import EdgesiamError
from edgesiam.extras import import_extra

__all__ = ["EmbeddedBroker", "add_broker_parser", "cmd_broker", "serve_broker"]

log = logging.getLogger(__name__)


def _broker_class() -> Any:
    return import_extra("amqtt.broker", "broker", package="amqtt").Broker


def broker_config(host: str, port: int, password_file: Path | None = None) -> dict[str, Any]:
    """amqtt's configuration for one TCP listener (no $SYS topics, no packet logging)."""
    if password_file is not None:
        if not password_file.is_file():
            raise EdgesiamError(f"broker password file {password_file}: no such file")
        auth: dict[str, Any] = {
            "amqtt.plugins.authentication.FileAuthPlugin": {"password_file": str(password_file)}
        }
    else:
        auth = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": auth,
    }


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmbeddedBroker:
    """An amqtt broker on ``host:port``: ``await start()``/``await stop()`` in an event loop, or
    ``start_in_thread()``/``stop_thread()`` from synchronous code (tests, a demo)."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 1883, password_file: Path | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.config = broker_config(host, port, password_file)
        self._broker: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        broker = _broker_class()(self.config)
        try:
            await broker.start()
        except Exception as exc:  # amqtt wraps bind errors in its own BrokerError
            raise EdgesiamError(
                f"cannot start the MQTT broker on {self.host}:{self.port}: {exc} "
                "(is another broker using the port?)"
            ) from exc
        self._broker = broker

    async def stop(self) -> None:
        if self._broker is not None:
            broker, self._broker = self._broker, None
            await broker.shutdown()

    def start_in_thread(self, timeout_s: float = 10.0) -> None:
        """Run the broker on its own event loop in a daemon thread; returns once it listens."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="amqtt-broker", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s):
            raise EdgesiamError(f"the MQTT broker did not start within {timeout_s} s")
        if failure:
            raise failure[0]

    def stop_thread(self, timeout_s: float = 10.0) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout_s)
            self._loop = None
            self._thread = None


STOP_TIMEOUT_S = 3.0
"""How long Ctrl-C waits for the broker to close its clients' sessions."""


def serve_broker(host: str, port: int, password_file: Path | None = None) -> None:
    """Run the broker until Ctrl-C or SIGTERM (handled explicitly: a broker started in the
    background by a script inherits SIGINT ignored, and systemd stops it with SIGTERM)."""

    async def main() -> None:
        broker = EmbeddedBroker(host, port, password_file)
        await broker.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        print(f"MQTT broker (amqtt, MQTT 3.1.1) listening on {host}:{port}; Ctrl-C to stop")
        try:
            await stop.wait()
        finally:
            try:  # amqtt can wait long on a client that is still closing: Ctrl-C stays prompt
                await asyncio.wait_for(broker.stop(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("the broker did not close within %s s; exiting anyway", STOP_TIMEOUT_S)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


HELP = "run an embedded MQTT broker (amqtt, MQTT 3.1.1) for a single machine"


def add_broker_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``broker`` to an ``argparse`` sub-parser collection; returns the new parser."""
    br = add_command(subparsers, "broker", help=HELP, description=__doc__)
    br.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    br.add_argument("--port", type=int, default=1883, help="TCP port (default: %(default)s)")
    br.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help="refuse anonymous clients; users and hashes from FILE (amqtt format)",
    )
    br.set_defaults(func=cmd_broker)
    return br  # type: ignore[no-any-return]


def cmd_broker(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise EdgesiamError(f"--port {args.port}: not a TCP port")
    if args.password_file is None and not _is_loopback(args.host):
        log.warning(
            "the broker on %s accepts anonymous clients from the network; "
            "give --password-file to require a login",
            args.host,
        )
    serve_broker(args.host, args.port, args.password_file)
    return 0
