"""The fleet benchmark: simulated devices through a real Mosquitto into the dashboard's history
(every event published reaches it), and its command's help."""

from __future__ import annotations

from edgesiam.tools.fleet import FleetSpec, format_report, run_fleet
from tests.support.cli import run_edgesiam
from tests.support.mqtt import MosquittoBroker


def test_fleet_smoke_loses_nothing(mosquitto: MosquittoBroker) -> None:
    """10 simulated devices × 5 events/s × 3 s through Mosquitto into the history."""
    report = run_fleet(FleetSpec(devices=10, rate=5, seconds=3, processes=1), broker=mosquitto.url)
    print("\n" + format_report(report))
    assert report["published"] == report["expected"] == 150
    assert report["acked_by_broker"] == 150
    assert report["missing"] == 0
    assert report["stored"] == 150
    assert report["invalid"] == 0 and report["storage_errors"] == 0


def test_fleet_bench_cli_help() -> None:
    done = run_edgesiam("fleet-bench", "--help", timeout=60)
    assert done.returncode == 0 and "--devices" in done.stdout and "missing" in done.stdout
