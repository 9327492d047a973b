"""Several ingesters on one PostgreSQL history, splitting the events through an MQTT 5 shared
subscription on a real Mosquitto: every event stored exactly once, and an ingester SIGKILLed in
the middle (then restarted by its supervisor, same client id) loses nothing; a --serve-only page
on the same database; the fleet benchmark with two ingesters."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgesiam.dashboard.auth import TokenAuth
from edgesiam.dashboard.cli import _client_id, add_dashboard_parser, cmd_dashboard
from edgesiam.dashboard.history_pg import PostgresHistory
from edgesiam.dashboard.ingest import Ingester
from edgesiam.dashboard.server import DashboardApp, DashboardServer, LiveFeed
from edgesiam.errors import ConfigError
from edgesiam.tools.fleet import FleetSpec, format_report, run_fleet
from tests.support.dashboard import event_payload, publisher
from tests.support.mqtt import MosquittoBroker, Subscriber, wait_until
from tests.support.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]


class IngestProcess:
    """``edgesiam dashboard --ingest-only --share GROUP`` in its own process."""

    def __init__(self, broker: MosquittoBroker, history: str, client_id: str, log: Path) -> None:
        self.args = [
            sys.executable, "-m", "edgesiam", "dashboard", "--ingest-only", "--share", "ingest",
            "--client-id", client_id, "--history", history, "--broker", broker.url,
            "--log-level", "info",
        ]  # fmt: skip
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> IngestProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=out, env=env, cwd=ROOT)
        return self

    def connects(self) -> int:
        return self.log.read_text().count("connected to the broker (session")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@pytest.fixture
def ingesters(
    mosquitto: MosquittoBroker, postgres: PostgresServer, tmp_path: Path
) -> Iterator[tuple[str, list[IngestProcess]]]:
    url = postgres.database()
    made = [
        IngestProcess(mosquitto, url, f"ingest-{n}", tmp_path / f"ingest-{n}.log") for n in "ab"
    ]
    yield url, made
    for ingester in made:
        ingester.stop()


def test_two_ingesters_share_the_events_and_a_killed_one_loses_nothing(
    mosquitto: MosquittoBroker, ingesters: tuple[str, list[IngestProcess]]
) -> None:
    url, (a, b) = ingesters
    for ingester in (a, b):
        ingester.start()
    assert wait_until(lambda: a.connects() == 1 and b.connects() == 1, 30), a.log.read_text()
    pub = publisher(mosquitto, client_id="fleet")
    devices, per_device = ("kitchen", "hall", "garage"), 100
    half = threading.Event()

    def publish() -> None:
        for seq in range(1, per_device + 1):
            for device in devices:
                pub.publish(f"edgesiam/{device}/event", json.dumps(event_payload(device, seq)))
            if seq == per_device // 2:
                half.set()
                assert wait_until(lambda: a.proc is not None and a.proc.poll() is not None, 30)

    sender = threading.Thread(target=publish)
    sender.start()
    assert half.wait(30)
    a.kill()  # mid-run: what it had taken and not acknowledged stays in its session
    sender.join(60)
    history = PostgresHistory(url, retention_days=None)
    try:
        everything = {d: list(range(1, per_device + 1)) for d in devices}
        counted: list[int] = []

        def settled() -> bool:  # b has stored all it was given (two reads alike, 1 s apart)
            counted.append(history.counts()["events"])
            return len(counted) > 1 and counted[-1] == counted[-2]

        assert wait_until(settled, 30, step=1.0)
        b_alone = counted[-1]
        print(f"b alone stored {b_alone} of {len(devices) * per_device}")
        a.start()  # its supervisor restarts it: same client id, the session resumes
        assert wait_until(lambda: {d: history.seqs(d) for d in devices} == everything, 60), (
            history.counts()
        )
        assert history.counts()["events"] == len(devices) * per_device  # each stored once
        assert a.connects() == 2 and "session resumed" in a.log.read_text()
        assert b_alone < len(devices) * per_device  # a's share waited for a: the load was split
    finally:
        pub.stop()
        history.close()


def test_fleet_bench_with_two_ingesters_on_postgresql_loses_nothing(
    mosquitto: MosquittoBroker, postgres: PostgresServer
) -> None:
    url = postgres.database()
    spec = FleetSpec(devices=10, rate=5, seconds=2, processes=1)
    report = run_fleet(spec, broker=mosquitto.url, history_target=url, ingesters=2)
    print("\n" + format_report(report))
    assert report["history_backend"] == "postgresql" and report["ingesters"] == 2
    assert report["published"] == report["stored"] == 100
    assert report["missing"] == 0 and report["storage_errors"] == 0
    with PostgresHistory(url, retention_days=None) as history:
        assert history.counts()["events"] == 100  # in the shared database, once each


def test_several_ingesters_need_postgresql(mosquitto: MosquittoBroker) -> None:
    with pytest.raises(ConfigError, match="needs --history postgresql"):
        run_fleet(FleetSpec(devices=1, seconds=1, processes=1), broker=mosquitto.url, ingesters=2)


def test_a_serve_only_page_reads_what_an_ingester_stores_and_sends_commands(
    mosquitto: MosquittoBroker, postgres: PostgresServer
) -> None:
    url = postgres.database()
    stored_by, shown_by = PostgresHistory(url), PostgresHistory(url)
    ingester = Ingester(mosquitto.url, stored_by, client_id="ingest-1", share="ingest")
    feed = LiveFeed()
    page = Ingester(mosquitto.url, shown_by, client_id="page", store=False, on_update=feed.publish)
    live = feed.subscribe()
    server = DashboardServer(
        DashboardApp(shown_by, page, TokenAuth(None), feed=feed), "127.0.0.1", 0
    )
    device = Subscriber(mosquitto.host, mosquitto.port, ["edgesiam/pi/cmd/+"]).start()

    def answer(client: Any, userdata: Any, message: Any) -> None:
        cid = json.loads(message.payload)["correlation_id"]
        result = {"verb": "list", "ok": True, "correlation_id": cid, "result": {"labels": ["al"]}}
        client.publish("edgesiam/pi/cmd/list/result", json.dumps(result), qos=1)

    device.client.on_message = answer
    for client in (ingester, page):
        client.start()
        assert client.wait_connected(15)
    server.start()
    pub = publisher(mosquitto)
    try:
        for seq in (1, 2, 3):
            pub.publish("edgesiam/pi/event", json.dumps(event_payload("pi", seq)))
        assert wait_until(lambda: stored_by.seqs("pi") == [1, 2, 3], 15)
        with urllib.request.urlopen(f"{server.url}/api/events?device=pi", timeout=10) as r:
            assert [e["seq"] for e in json.load(r)["events"]] == [3, 2, 1]
        result = page.command("pi", "list", {}, timeout=15)  # the page's own result subscription
        assert result["ok"] is True
        assert wait_until(lambda: (shown_by.device("pi") or {}).get("labels") == ["al"], 15)
        assert len(shown_by.command_results("pi")) == 1  # stored once, by the ingester
        assert page.counters.events_new == 0 and ingester.counters.events_new == 3
        heard: list[Any] = []

        def live_events() -> list[int]:  # what the page's live feed carried (it stored nothing)
            while not live.empty():
                heard.append(live.get_nowait())
            return [data["seq"] for kind, data in heard if kind == "event"]

        assert wait_until(lambda: live_events() == [1, 2, 3], 10), heard
    finally:
        for stop in (pub.stop, device.stop, server.stop, page.stop, ingester.stop):
            stop()
        stored_by.close()
        shown_by.close()


def _dashboard_args(*args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edgesiam")
    add_dashboard_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["dashboard", *args])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--share", "g", "--protocol", "3.1.1"], "shared subscriptions need MQTT 5"),
        (["--share", "g", "--serve-only"], "takes no share"),
    ],
)
def test_role_flags_that_contradict_each_other_are_refused(args: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cmd_dashboard(_dashboard_args(*args))


def test_ingest_only_and_serve_only_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _dashboard_args("--ingest-only", "--serve-only")
    assert "not allowed with argument" in capsys.readouterr().err


def test_each_role_gets_its_own_stable_client_id(tmp_path: Path) -> None:
    from edgesiam.dashboard.history import History

    with History(tmp_path / "h.sqlite3") as history:
        ids = {
            _client_id(_dashboard_args(*role), history)
            for role in ([], ["--serve-only"], ["--ingest-only", "--share", "a"])
        }
        assert len(ids) == 3
        again = _client_id(_dashboard_args("--serve-only"), history)
        assert again in ids
        assert _client_id(_dashboard_args("--client-id", "mine"), history) == "mine"
