"""The page in a real headless Chromium (Debian's, driven by Playwright), fed by a real Mosquitto:
a device and its event published by another MQTT client appear within a second; a device's last
will turns it offline on the page; an enrollment from the page reaches a running ``edgesiam run``
and its result is shown; the page is kept as a screenshot in ``test-artifacts/dashboard.png``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from edgesiam.mqtt.contract import Topics
from edgesiam.mqtt.homeassistant import discovery_messages
from tests.support.dashboard import Dashboard, event_payload, open_page, publisher
from tests.support.mqtt import wait_until
from tests.support.paths import ARTIFACTS, ENV, ROOT, SPEAKER_BUNDLE
from tests.support.signals import make_motion, voice_clip


def test_a_device_and_its_event_appear_within_a_second(page: Any, dashboard: Dashboard) -> None:
    """Measured by the page itself: each row and card notes when it was first shown (``Date.now()``,
    the same clock as ``time.time()`` here), so the polling of the test adds nothing."""
    open_page(page, dashboard)
    pub = publisher(dashboard.broker)
    event = event_payload("porch", 1, label="alice", score=0.91)
    published = time.time()
    pub.publish("edgesiam/porch/status", "online", retain=True)
    pub.publish("edgesiam/porch/event", json.dumps(event))
    card = page.wait_for_selector(
        '#devices article[data-device="porch"][data-status="online"]', timeout=10_000
    )
    row = page.wait_for_selector(f'#events tbody tr[data-id="{event["id"]}"]', timeout=10_000)
    assert card is not None and row is not None
    card_s = int(card.get_attribute("data-status-shown") or 0) / 1000 - published
    row_s = int(row.get_attribute("data-shown") or 0) / 1000 - published
    print(f"\npublish → on the page: device {card_s * 1000:.0f} ms, event {row_s * 1000:.0f} ms")
    assert 0 <= card_s < 1.0 and 0 <= row_s < 1.0
    assert (
        "porch" in row.inner_text() and "alice" in row.inner_text() and "0.910" in row.inner_text()
    )
    assert page.errors == []
    pub.stop()


def test_the_last_will_turns_the_device_offline_on_the_page(
    page: Any, dashboard: Dashboard, tmp_path: Path
) -> None:
    open_page(page, dashboard)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests/runtime/publisher_proc.py"),
            dashboard.broker.url,
            "garage",
            str(tmp_path / "outbox.db"),
            "2",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        card = '#devices article[data-device="garage"]'
        page.wait_for_selector(f'{card}[data-status="online"]', timeout=15_000)
        proc.send_signal(signal.SIGKILL)  # no clean exit: only the broker's last will says so
        page.wait_for_selector(f'{card}[data-status="offline"]', timeout=20_000)
        assert page.locator(f"{card} [data-role=status]").inner_text() == "offline"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert page.errors == []


@pytest.fixture
def device_run(dashboard: Dashboard, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``edgesiam run`` with the shipped speaker bundle, fed silence on stdin, on the broker."""
    if not (SPEAKER_BUNDLE / "manifest.json").exists():
        pytest.skip("the shipped bundle export/speaker is missing")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgesiam",
            "run",
            "--bundle",
            str(SPEAKER_BUNDLE),
            "--gallery",
            str(tmp_path / "gallery.npz"),
            "--source",
            "stdin:",
            "--broker",
            dashboard.broker.url,
            "--device-id",
            "livingroom",
            "--state-dir",
            str(tmp_path / "state"),
            "--log-level",
            "warning",
        ],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    assert proc.stdin is not None
    proc.stdin.write(b"\x00\x00" * 16000)  # a second of silence: the source is live
    proc.stdin.flush()
    try:
        online = wait_until(
            lambda: (dashboard.history.device("livingroom") or {}).get("status") == "online", 60
        )
        if not online:
            proc.kill()
            stderr = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"edgesiam run did not come online:\n{stderr}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def populate(dashboard: Dashboard) -> None:
    """A few more devices with events, near misses and metrics, so the page shows a fleet."""
    pub = publisher(dashboard.broker)
    now = time.time()
    for i, (device, labels) in enumerate(
        [("kitchen", ["alice", "bob"]), ("hallway", ["door_knock", "doorbell"])]
    ):
        pub.publish(f"edgesiam/{device}/status", "online", retain=True)
        for topic, config in discovery_messages(
            topics=Topics("edgesiam", device), model_name="speaker", labels=labels
        ):
            pub.publish(topic, json.dumps(config), retain=True)
        for seq in range(1, 9):
            label = labels[seq % 2]
            score = round(0.72 + 0.2 * ((seq * 37 + i * 11) % 10) / 10, 3)
            pub.publish(
                f"edgesiam/{device}/event",
                json.dumps(
                    {
                        **event_payload(device, seq, label=label, score=score),
                        "ts": round(now - 300 + seq * 30 + i * 7, 3),
                    }
                ),
            )
            near = {
                "schema": "edgesiam.near_miss.v1",
                "device": device,
                "ts": round(now - 290 + seq * 30 + i * 5, 3),
                "label": labels[(seq + 1) % 2],
                "score": round(0.62 + 0.07 * ((seq * 13) % 10) / 10, 3),
                "threshold": 0.7,
                "model": "speaker",
            }
            pub.publish(f"edgesiam/{device}/near_miss", json.dumps(near))
        metrics = {
            "schema": "edgesiam.metrics.v1",
            "device": device,
            "ts": now,
            "windows_per_s": 31.2 - i,
            "inference_ms_p50": 0.31 + i / 10,
            "rss_mb": 72.8 + i,
            "cpu_percent": 6.0 + i,
            "outbox_depth": 0,
            "uptime_s": 5400 + i * 900,
        }
        pub.publish(f"edgesiam/{device}/metrics", json.dumps(metrics))
    pub.publish("edgesiam/attic/status", "offline", retain=True)
    pub.stop()


def test_enroll_from_the_page_round_trips_to_a_running_device(
    page: Any, dashboard: Dashboard, device_run: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    populate(dashboard)
    assert wait_until(
        lambda: (
            dashboard.history.counts()["events"] >= 16 and len(dashboard.history.devices()) >= 4
        ),
        15,
    )
    open_page(page, dashboard)
    page.select_option("#enroll-device", "livingroom")
    assert page.get_attribute("#enroll-label", "placeholder") == "e.g. alice"  # a speaker model
    page.fill("#enroll-label", "grandma")
    page.set_input_files("#enroll-file", str(voice_clip(tmp_path / "grandma.wav")))
    page.click("#enroll-submit")
    page.wait_for_selector('#command-result[data-ok="true"]', timeout=60_000)
    assert "enroll grandma done" in page.inner_text("#command-result")
    page.wait_for_selector('#labels-list li[data-label="grandma"]', timeout=10_000)
    stored = dashboard.history.device("livingroom")
    assert stored is not None and stored["labels"] == ["grandma"]  # from the device's own result
    (result,) = dashboard.history.command_results("livingroom", limit=1)
    assert (
        result["verb"] == "enroll"
        and result["ok"] is True
        and result["result"]["label"] == "grandma"
    )

    # the device itself answers list with the new label
    page.click("#refresh-labels")
    page.wait_for_selector(
        '#command-result[data-ok="true"]:has-text("list labels done")', timeout=60_000
    )
    # a WAV over the device's cap is refused on the page, before anything is sent
    big = tmp_path / "big.wav"
    sf.write(big, np.zeros(300_000, dtype=np.float32), 16000, subtype="PCM_16")  # 600 KB
    page.set_input_files("#enroll-file", str(big))
    page.click("#enroll-submit")
    page.wait_for_selector('#command-result[data-ok="false"]', timeout=10_000)
    assert "512 KiB" in page.inner_text("#command-result")

    # a silent clip is refused by the device, with the reason
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(32000, dtype=np.float32), 16000, subtype="PCM_16")
    page.set_input_files("#enroll-file", str(silent))
    page.click("#enroll-submit")
    page.wait_for_selector(
        '#command-result[data-ok="false"]:has-text("silent.wav: refused: no active window")',
        timeout=60_000,
    )

    # several clips of one label at once, then one more added to them
    takes = [voice_clip(tmp_path / f"grandpa{i}.wav", f0=95.0 + i) for i in (1, 2)]
    page.set_input_files("#enroll-file", [str(p) for p in takes])
    page.fill("#enroll-label", "grandpa")
    page.click("#enroll-submit")
    page.wait_for_selector('#labels-list li[data-label="grandpa"]', timeout=60_000)
    page.wait_for_selector('#command-result[data-ok="true"]:has-text("grandpa")', timeout=60_000)
    shown = page.inner_text("#command-result")
    assert "2 recording(s)" in shown and "grandpa1.wav: 3 of 3 windows active" in shown
    page.select_option("#enroll-mode", "append")
    page.set_input_files("#enroll-file", str(voice_clip(tmp_path / "grandpa3.wav", f0=97.0)))
    page.click("#enroll-submit")
    page.wait_for_selector(
        '#command-result[data-ok="true"]:has-text("3 recording(s)")', timeout=60_000
    )
    page.select_option("#timeline-device", "kitchen")
    page.wait_for_selector("#timeline circle >> nth=15", timeout=10_000)
    page.wait_for_timeout(300)  # let the row highlight fade before the screenshot
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000

    # forget, confirmed in the browser's dialog, reaches the device too
    page.select_option("#enroll-device", "livingroom")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click('#labels-list li[data-label="grandma"] button')
    page.wait_for_selector(
        '#labels-list li[data-label="grandma"]', state="detached", timeout=60_000
    )
    assert wait_until(
        lambda: (dashboard.history.device("livingroom") or {}).get("labels") == ["grandpa"], 15
    )
    assert page.errors == []


@pytest.fixture
def imu_device(dashboard: Dashboard, tmp_path: Path) -> Iterator[Any]:
    """A running runtime with the shipped motion bundle, reading IMU rows from MQTT."""
    from edgesiam.runtime.pipeline import Runtime
    from tests.support.runtime import make_config

    config = make_config(
        ROOT / "export" / "motion",
        tmp_path / "gallery.npz",
        {"type": "mqtt", "topic": "sensors/wrist/imu"},
        tmp_path / "state",
        device_id="wrist",
        mqtt={"enabled": True, "url": dashboard.broker.url, "homeassistant": False},
        metrics={"interval_s": 0.5},
    )
    runtime = Runtime(config)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    assert wait_until(lambda: (dashboard.history.device("wrist") or {}).get("metrics") or {})
    yield runtime
    runtime.stop()
    thread.join(15)


def test_an_imu_device_enrolls_csv_clips_from_the_page(
    page: Any, dashboard: Dashboard, imu_device: Any, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    takes = []
    for i in (1, 2):
        takes.append(tmp_path / f"wave{i}.csv")
        np.savetxt(
            takes[-1],
            make_motion(2, 300, 50, rng),
            delimiter=",",
            header="acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z",
            comments="",
        )
    open_page(page, dashboard)
    page.select_option("#enroll-device", "wrist")
    page.wait_for_selector('#enroll-form[data-modality="sensor"]', timeout=10_000)
    assert page.get_attribute("#enroll-label", "placeholder") == "e.g. wave"
    assert page.get_attribute("#enroll-file", "accept") == ".csv,text/csv"
    assert "CSVs of the motion" in page.inner_text("#enroll-hint")

    page.fill("#enroll-label", "wave")
    page.set_input_files("#enroll-file", [str(p) for p in takes])
    page.click("#enroll-submit")
    page.wait_for_selector('#command-result[data-ok="true"]', timeout=60_000)
    page.wait_for_selector('#labels-list li[data-label="wave"]', timeout=10_000)
    assert page.inner_text('#command-result li[data-clip="wave2.csv"]') == (
        "wave2.csv: 6 of 6 windows active"
    )
    assert imu_device.gallery.counts() == {"wave": 2}

    # a WAV is not what this device takes: refused on the page, nothing sent
    wav = voice_clip(tmp_path / "voice.wav")
    page.set_input_files("#enroll-file", str(wav))
    page.click("#enroll-submit")
    page.wait_for_selector('#command-result[data-ok="false"]', timeout=10_000)
    assert "voice.wav is not a CSV text file" in page.inner_text("#command-result")
    assert page.errors == []


def test_a_labels_threshold_is_shown_and_set_from_the_page(
    page: Any, dashboard: Dashboard, device_run: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """The page shows each label's threshold as the device reports it, and a new value set there
    reaches the running device, which keeps it beside its gallery."""
    open_page(page, dashboard)
    page.select_option("#enroll-device", "livingroom")
    page.fill("#enroll-label", "grandma")
    page.set_input_files("#enroll-file", str(voice_clip(tmp_path / "grandma.wav")))
    page.click("#enroll-submit")
    page.wait_for_selector('#labels-list li[data-label="grandma"]', timeout=60_000)
    page.click("#refresh-labels")  # the device's list carries each label's threshold
    field = '#labels-list li[data-label="grandma"] input[name="threshold"]'
    calibrated = json.loads((SPEAKER_BUNDLE / "manifest.json").read_text())["thresholds"]["window"]
    shown = f"{calibrated['at_fmr']['0.001']:.4f}"
    page.wait_for_selector(f'{field}[value="{shown}"]', timeout=60_000)

    page.fill(field, "0.8125")
    page.click('#labels-list li[data-label="grandma"] form.threshold button')
    page.wait_for_selector(
        '#command-result[data-ok="true"]:has-text("threshold grandma done")', timeout=60_000
    )
    assert "0.8125" in page.inner_text("#command-result")
    page.wait_for_selector(f'{field}[value="0.8125"]', timeout=10_000)
    stored = dashboard.history.device("livingroom")
    assert stored is not None and stored["thresholds"]["labels"]["grandma"] == 0.8125
    saved = json.loads((tmp_path / "gallery.thresholds.json").read_text())
    assert saved["per_label"] == {"grandma": 0.8125}  # on the device, kept across restarts
    assert page.errors == []


def chip_colour(page: Any, selector: str) -> str:
    style = page.get_attribute(selector, "style") or ""
    return style.split("--c:")[1].split(";")[0].strip()


def test_a_near_miss_a_fraction_of_a_thousandth_short_never_reads_zero(
    page: Any, dashboard: Dashboard
) -> None:
    pub = publisher(dashboard.broker)
    near = {"schema": "edgesiam.near_miss.v1", "device": "porch", "ts": time.time(),
            "label": "alice", "score": 0.6996, "threshold": 0.7, "model": "speaker"}  # fmt: skip
    pub.publish("edgesiam/porch/near_miss", json.dumps(near))
    assert wait_until(lambda: dashboard.history.counts()["near_misses"] == 1, 10)
    pub.stop()
    open_page(page, dashboard)
    assert page.inner_text("#near-misses tbody tr >> nth=0 >> td.num") == "0.0004"
    assert page.errors == []


def test_label_colours_stay_when_labels_are_added(page: Any, dashboard: Dashboard) -> None:
    pub = publisher(dashboard.broker)
    first = event_payload("porch", 1, label="alice")
    pub.publish("edgesiam/porch/event", json.dumps(first))
    assert wait_until(lambda: dashboard.history.counts()["events"] == 1, 10)
    open_page(page, dashboard)
    row = f'#events tbody tr[data-id="{first["id"]}"] .chip'
    before = chip_colour(page, row)

    for seq, label in enumerate(["zoe", "bob", "carol"], start=2):  # newer: shown above alice
        pub.publish("edgesiam/porch/event", json.dumps(event_payload("porch", seq, label=label)))
    assert wait_until(lambda: dashboard.history.counts()["events"] == 4, 10)
    pub.stop()
    open_page(page, dashboard)  # a fresh page meets the labels in another order
    assert page.inner_text(row) == "alice"
    assert chip_colour(page, row) == before
    assert page.errors == []
