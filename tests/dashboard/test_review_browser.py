"""The review loop in a real browser against a running ``edgesiam run`` (shipped speaker bundle,
real Mosquitto): "wrong" on a false match raises the label's threshold on the device so the same
window no longer matches; "this was <label>" on a near miss enrolls it, so it matches on replay;
both are recorded with who and when, and can be undone."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgesiam.model.interpreters import load_model
from edgesiam.runtime.enrollment import enroll_recordings
from edgesiam.runtime.gallery_store import GalleryStore, model_sha256
from tests.support.dashboard import Dashboard, open_page
from tests.support.mqtt import wait_until
from tests.support.paths import ENV, SPEAKER_BUNDLE
from tests.support.signals import make_voice, to_pcm, voice_clip

HOP = 8000


def play(proc: subprocess.Popen[bytes], clip: np.ndarray) -> None:
    """One second of silence, the clip, one second of silence: whole hops, so every play cuts the
    clip into the same windows."""
    silence = np.zeros(16000, dtype=np.float32)
    x = np.concatenate([silence, clip, silence])
    x = np.concatenate([x, np.zeros(-len(x) % HOP, dtype=np.float32)])
    assert proc.stdin is not None
    proc.stdin.write(to_pcm(x))
    proc.stdin.flush()


@pytest.fixture
def device(dashboard: Dashboard, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``edgesiam run`` with 'grandma' enrolled, each matching window an event, reading stdin."""
    embedder = load_model(SPEAKER_BUNDLE)
    gallery = tmp_path / "gallery.npz"
    store = GalleryStore(gallery, model_sha256(embedder.manifest))
    enroll_recordings(store, embedder, "grandma", [voice_clip(tmp_path / "grandma.wav")])
    config = tmp_path / "device.yaml"
    config.write_text(
        f"bundle: {SPEAKER_BUNDLE}\ngallery: {gallery}\nstate_dir: {tmp_path / 'state'}\n"
        "device_id: livingroom\nsource: {type: stdin, live: false}\n"
        f"mqtt: {{url: '{dashboard.broker.url}'}}\n"
        "matching: {decision: {n_of: 1, m: 1, refractory_s: 0.0}}\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgesiam",
            "run",
            "--config",
            str(config),
            "--log-level",
            "warning",
        ],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        online = wait_until(
            lambda: (dashboard.history.device("livingroom") or {}).get("status") == "online", 60
        )
        if not online:
            proc.kill()
            pytest.fail(f"edgesiam run did not come online:\n{proc.stderr.read().decode()}")  # type: ignore[union-attr]
        yield proc
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def settle(
    dashboard: Dashboard, kind: str, before: int, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """Wait until the device's results of a play stop arriving; what arrived (newest first)."""
    rows = dashboard.history.events if kind == "events" else dashboard.history.near_misses
    assert wait_until(lambda: len(rows("livingroom")) > before, timeout)
    seen = -1
    while len(rows("livingroom")) != seen:
        seen = len(rows("livingroom"))
        time.sleep(1.0)
    return rows("livingroom")[: seen - before]


def test_wrong_and_this_was_reach_the_device_and_can_be_undone(
    page: Any, dashboard: Dashboard, device: subprocess.Popen[bytes]
) -> None:
    someone_else = make_voice(150.0, 0.7, 2.0, 16000, np.random.default_rng(8))
    open_page(page, dashboard)
    page.fill("#reviewer", "sam")
    play(device, someone_else)
    false_matches = settle(dashboard, "events", 0)
    strongest = max(false_matches, key=lambda e: e["score"])
    assert all("embedding" in e for e in false_matches)

    row = f'#events tbody tr[data-id="{strongest["id"]}"]'
    page.click(f'{row} button[data-action="wrong"]')
    page.wait_for_selector(
        '#command-result[data-ok="true"]:has-text("wrong grandma done")', timeout=60_000
    )
    page.wait_for_selector(f'{row} td.reviewed:has-text("marked wrong by sam")', timeout=10_000)
    (reviewed,) = dashboard.history.reviews("livingroom")
    assert reviewed["action"] == "wrong" and reviewed["by"] == "sam"
    assert reviewed["result"]["threshold"] > strongest["score"]
    page.wait_for_selector(
        '#review-log li[data-action="wrong"][data-undone="false"]', timeout=10_000
    )

    # the same windows again: no event any more, near misses instead
    events_before = len(dashboard.history.events("livingroom"))
    play(device, someone_else)
    near = settle(dashboard, "near_misses", 0)
    assert len(dashboard.history.events("livingroom")) == events_before
    assert all(n["label"] == "grandma" and n["score"] < n["threshold"] for n in near)

    # a near miss confirmed as grandma: on replay, that window matches
    closest = max(near, key=lambda n: n["score"])
    near_row = f'#near-misses tbody tr[data-ts="{closest["ts"]}"]'
    page.click(f'{near_row} button[data-action="this_was"]')
    page.wait_for_selector(
        '#command-result[data-ok="true"]:has-text("this was grandma done")', timeout=60_000
    )
    assert "2 recording(s)" in page.inner_text("#command-result")
    play(device, someone_else)
    matched = settle(dashboard, "events", events_before)
    assert matched and all(e["label"] == "grandma" for e in matched)

    # undo the confirmation: the template leaves the device, the review shows who undid it
    page.click('#review-log li[data-action="this_was"] button.undo')
    page.wait_for_selector(
        '#review-log li[data-action="this_was"][data-undone="true"]:has-text("undone by sam")',
        timeout=60_000,
    )
    confirmed = next(
        r for r in dashboard.history.reviews("livingroom") if r["action"] == "this_was"
    )
    assert confirmed["undone_by"] == "sam" and confirmed["undone_ts"] >= confirmed["ts"]
    assert page.errors == []
