"""The soak: a long stream through a real device-only ``edgesiam run`` (``scripts/soak.py``).

``make soak`` runs it for one hour of wall clock (``SOAK_SECONDS``, default 3600) at 20× real
time: 20 h of held-out speech (looped) over ``stdin:`` into a local Mosquitto. ``make test-slow``
runs it too, for 180 s unless ``SOAK_SECONDS`` says otherwise. It writes ``runs/soak/soak.json``
and ``runs/soak/soak.png`` (``SOAK_OUT`` moves them) and prints the figures.

Asserted: the run ends cleanly, every event the runtime decided reached the subscriber (no
``seq`` gap, one ``id`` per ``seq``), and resident memory grew by at most 5 MB between the first
and the last tenth of the run (after warm-up). Latency drift is reported, not asserted (it
depends on what else the machine runs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT

SECONDS = float(os.environ.get("SOAK_SECONDS", "180"))
OUT = Path(os.environ.get("SOAK_OUT", str(ROOT / "runs" / "soak")))


@pytest.mark.slow
@pytest.mark.soak
@pytest.mark.timeout(SECONDS + 900)
def test_soak_memory_stays_flat_and_nothing_is_lost() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "soak.py"),
            "--seconds",
            str(SECONDS),
            "--out",
            str(OUT),
        ],
        capture_output=True,
        text=True,
        timeout=SECONDS + 600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((OUT / "soak.json").read_text())
    assert (OUT / "soak.png").stat().st_size > 0
    delivery, rss = report["delivery"], report["rss"]
    summary = report["run_summary"]
    print(
        f"\nsoak: {report['audio_hours']} h of audio in {report['wall_s']} s ({report['venv']}); "
        f"RSS {rss['first_10pct_median_mb']} -> {rss['last_10pct_median_mb']} MB "
        f"(growth {rss.get('growth_mb')} MB, goal <= {rss['goal_growth_mb']}); "
        f"event latency p50 {report['event_latency_ms']['first_10pct_p50']} -> "
        f"{report['event_latency_ms']['last_10pct_p50']} ms, p95 "
        f"{report['event_latency_ms']['first_10pct_p95']} -> "
        f"{report['event_latency_ms']['last_10pct_p95']} ms; "
        f"{delivery['events_received_distinct']} events, {delivery['missing_seqs']} missing"
    )
    assert summary.get("events", 0) > 0, "the soak decided no event"
    assert delivery["max_seq"] == summary["events"]
    assert delivery["missing_seqs"] == 0
    assert delivery["seqs_with_several_ids"] == 0
    assert rss["growth_mb"] <= rss["goal_growth_mb"], rss
