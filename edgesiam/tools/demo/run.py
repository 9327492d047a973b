"""The demo run: data → bundle → gallery → broker → stream → device runtime → scored summary."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TextIO

from edgesiam.errors import BundleError, ConfigError, DataError, EdgesiamError
from edgesiam.tools.demo.scoring import DemoReport, Segment, score_events, window_overlaps
from edgesiam.tools.demo.stream import NOISE_DBFS, Plan, build_stream, make_plan, speakers_of
from edgesiam.tools.demo.watcher import EventWatcher, free_port

log = logging.getLogger(__name__)

__all__ = ["run_demo"]

DEVICE_ID: Final = "demo"


def _fmt_fmr(fmr: float) -> str:
    return f"{fmr:.0e}".replace("e-0", "e-")


def _verdict_text(verdict: str) -> str:
    return {
        "hit": "HIT",
        "never_enrolled": "FALSE (speaker never enrolled)",
        "wrong_label": "FALSE (another enrolled speaker)",
        "noise": "FALSE (noise only)",
    }[verdict]


def _check_bundle(bundle: Path) -> None:
    from edgesiam.model.bundle import MANIFEST_NAME, is_bundle

    if not bundle.exists():
        raise BundleError(
            f"{bundle}: no such bundle; the speaker bundle ships in export/speaker (a checkout "
            "of the repository has it), or make one with: make export-all"
        )
    if not is_bundle(bundle):
        raise BundleError(
            f"{bundle}: not a bundle directory (it has no {MANIFEST_NAME}); give the folder "
            "edgesiam export wrote, e.g. --bundle export/speaker"
        )


def _prepare_data(data: Path, out: TextIO) -> Path:
    from edgesiam.data.recipes import prepare
    from edgesiam.data.recipes.base import read_summary

    if read_summary(data / "speech") is None:
        print(
            f"preparing the real speech data into {data / 'speech'} (first time only: fetches "
            "public recordings, a few minutes) ...",
            file=out,
            flush=True,
        )
    try:
        prepare(["speech"], data)
    except EdgesiamError as exc:
        raise DataError(
            f"the speech data could not be prepared ({exc}); run: edgesiam data prepare speech "
            f"--root {data}",
            data / "speech",
        ) from exc
    test_dir = data / "speech" / "test"
    if not test_dir.is_dir() or not speakers_of(test_dir):
        raise DataError(
            "no held-out speakers here; prepare them with: edgesiam data prepare speech "
            f"--root {data} (or make demo)",
            test_dir,
        )
    return test_dir


@contextlib.contextmanager
def _broker(spec: str) -> Iterator[tuple[str, str, int, bool, str]]:
    """(url, host, port, tls, protocol) of the broker to use; an embedded one lives in here."""
    if spec == "embedded":
        from edgesiam.mqtt.broker import EmbeddedBroker

        port = free_port()
        broker = EmbeddedBroker("127.0.0.1", port)
        for name in ("amqtt", "transitions"):  # amqtt is chatty at INFO and WARNING
            logging.getLogger(name).setLevel(logging.ERROR)
        broker.start_in_thread()
        try:
            yield f"mqtt://127.0.0.1:{port}", "127.0.0.1", port, False, "3.1.1"
        finally:
            broker.stop_thread()
        return
    from edgesiam.mqtt.client import parse_broker_url

    address = parse_broker_url(spec)
    if address.username:
        raise ConfigError(
            f"--broker {spec}: the demo connects anonymously; give a broker without user@"
        )
    yield spec, address.host, address.port, address.tls, "5"


def run_demo(
    bundle: str | Path = "export/speaker",
    data: str | Path = "data",
    *,
    labels: int = 4,
    enroll_clips: int = 3,
    others: int = 3,
    turns: int = 2,
    seed: int = 0,
    broker: str = "embedded",
    workdir: str | Path = "runs/demo",
    target_fmr: float = 1e-3,
    realtime: bool = False,
    calibrate: bool = True,
    calibrate_minutes: float = 10.0,
    max_false_per_hour: float = 1.0 / 24.0,
    margin: float = 0.0,
    score_norm: str = "off",
    out: TextIO | None = None,
) -> DemoReport:
    """Run the demo (see the module docstring); prints as it goes to ``out`` (stdout)."""
    import sys

    from edgesiam.model.interpreters import load_model
    from edgesiam.mqtt.publisher import MqttPublisher
    from edgesiam.runtime.calibrate import report_lines
    from edgesiam.runtime.calibration_store import calibration_path, cohort_path
    from edgesiam.runtime.config import load_runtime_config
    from edgesiam.runtime.enrollment import enroll_recordings
    from edgesiam.runtime.gallery_store import GalleryStore, model_sha256
    from edgesiam.runtime.pipeline import Runtime

    stream_out: TextIO = out if out is not None else sys.stdout
    matching = {"target_fmr": target_fmr, "margin": margin, "score_norm": score_norm}
    say_lock = threading.Lock()

    def say(text: str = "") -> None:
        with say_lock:
            print(text, file=stream_out, flush=True)

    if labels < 1:
        raise ConfigError(f"--labels {labels}: enroll at least one speaker")
    if not 1 <= enroll_clips <= 10:
        raise ConfigError(f"--enroll-clips {enroll_clips}: enroll from 1 to 10 clips")
    if others < 0 or turns < 1:
        raise ConfigError("--others must be 0 or more and --turns at least 1")
    bundle, data, workdir = Path(bundle), Path(data), Path(workdir)
    _check_bundle(bundle)
    test_dir = _prepare_data(data, stream_out)

    embedder = load_model(bundle)
    manifest = embedder.manifest
    rate = int(embedder.sample_rate)
    window_s = embedder.window / rate
    threshold = float(embedder.threshold(target_fmr))
    say(
        f"bundle   {bundle} ({manifest.name}, {manifest.model}, {rate} Hz, window "
        f"{window_s:g} s, hop {embedder.hop / rate:g} s, {getattr(embedder, 'backend', '?')})"
    )
    plan = make_plan(test_dir, labels, enroll_clips, others, seed, window_s)

    workdir.mkdir(parents=True, exist_ok=True)
    gallery_path = workdir / "gallery.npz"
    state_dir = workdir / "state"
    gallery_path.unlink(missing_ok=True)
    calibration_path(gallery_path).unlink(missing_ok=True)
    cohort_path(gallery_path).unlink(missing_ok=True)
    shutil.rmtree(state_dir, ignore_errors=True)
    store = GalleryStore(gallery_path, model_sha256(manifest), bundle_name=manifest.name)
    say(f"enroll   {labels} held-out speaker(s) from {test_dir}, {enroll_clips} clip(s) each:")
    for speaker in plan.enrolled:
        result = enroll_recordings(store, embedder, speaker, plan.enroll[speaker])
        names = ", ".join(p.name for p in plan.enroll[speaker])
        say(f"         {speaker:<14} consistency {result.consistency_text:<6} ({names})")
        for warning in result.warnings:
            say(f"           note: {warning}")

    stream_path = workdir / "stream.wav"
    segments, stream_s = build_stream(plan, rate, stream_path, turns=turns, seed=seed)
    (workdir / "stream.json").write_text(
        json.dumps([asdict(s) for s in segments], indent=1) + "\n", encoding="utf-8"
    )
    enrolled_turns = sum(s.enrolled for s in segments)
    say(
        f"stream   {stream_path}: {stream_s:.1f} s, {len(segments)} turns ({enrolled_turns} by "
        f"enrolled speakers, {len(segments) - enrolled_turns} by never-enrolled "
        f"{', '.join(plan.never_enrolled) or '-'}), room noise at {NOISE_DBFS:.0f} dBFS between"
    )

    def speaking_at(a: float, b: float) -> list[Segment]:
        return [segments[i] for i, _ in window_overlaps(segments, a, b)]

    def show(event: dict[str, Any], at: float) -> None:
        end = float(event["offset_s"])
        scored = score_events([event], segments, window_s)[0]
        who = speaking_at(end - window_s, end)
        truth = (
            " + ".join(s.label + ("" if s.enrolled else " (never enrolled)") for s in who)
            or "(noise)"
        )
        clock = datetime.fromtimestamp(at).strftime("%H:%M:%S.%f")[:-3]
        say(
            f"  {clock}  seq {event['seq']:>3}  @ {end:6.1f} s  {event['label']:<14} "
            f"{event['score']:.3f} >= {event['threshold']:.3f}   speaking: {truth:<34} "
            f"{_verdict_text(scored.verdict)}"
        )

    def phase(
        name: str, state: Path, url: str, host: str, port: int, tls: bool, protocol: Any
    ) -> DemoReport:
        """Stream once through a fresh device (its own state dir and MQTT name, so the first
        run's retained status is not the second's) and score what arrived."""
        device = DEVICE_ID if state.name == "before" else f"{DEVICE_ID}-calibrated"
        config = load_runtime_config(
            None,
            {
                "bundle": str(bundle.resolve()),
                "gallery": str(gallery_path.resolve()),
                "source": {
                    "type": "file",
                    "path": str(stream_path.resolve()),
                    "realtime": realtime,
                },
                "state_dir": str(state.resolve()),
                "device_id": device,
                "mqtt": {
                    "enabled": True,
                    "url": url,
                    "protocol": protocol,
                    "homeassistant": False,
                    "session_expiry_s": 600,
                },
                "matching": matching,
                "metrics": {"interval_s": 10.0},
            },
        )
        settings = config.mqtt.settings(device)
        watcher = EventWatcher(host, port, tls, settings.topics, show)
        watcher.start()
        try:
            runtime = Runtime(
                config,
                embedder=embedder,
                publisher=lambda outbox: MqttPublisher(
                    settings, outbox, manifest.name, labels=plan.enrolled
                ),
            )
            publisher = runtime.publisher
            assert isinstance(publisher, MqttPublisher)
            publisher.start()  # connected before the first window: nothing waits in the outbox
            deadline = time.monotonic() + 15
            while not publisher.connected and time.monotonic() < deadline:
                time.sleep(0.02)
            if not publisher.connected:
                publisher.stop(0.0, timeout_s=1.0)
                runtime.outbox.close()
                raise EdgesiamError(f"the device could not connect to the MQTT broker at {url}")
            per_label = runtime.thresholds.per_label
            using = (
                "calibrated thresholds "
                + ", ".join(f"{k} {v:.3f}" for k, v in sorted(per_label.items()))
                if per_label
                else f"target FMR {_fmt_fmr(target_fmr)}: threshold {threshold:.3f}"
            )
            say(
                f"run      {name}: device '{device}' → {settings.topics.event} (QoS 1, "
                f"durable outbox), {using}"
                f"{', paced in real time' if realtime else ', as fast as it goes'}"
            )
            say("events as they reach the subscriber:")
            previous = None
            with contextlib.suppress(ValueError):  # not the main thread: no signal handler
                previous = signal.signal(
                    signal.SIGINT, lambda *_: runtime.stop("interrupted (Ctrl-C)")
                )
            try:
                summary = runtime.run()
            finally:
                if previous is not None:
                    signal.signal(signal.SIGINT, previous)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (
                watcher.count() < summary.events or watcher.last_status() != "offline"
            ):
                time.sleep(0.02)
        finally:
            watcher.stop()

        with watcher.lock:
            arrived = sorted(zip(watcher.events, watcher.received, strict=True), key=_by_seq)
            statuses = list(watcher.statuses)
        events = [e for e, _ in arrived]
        received = [t for _, t in arrived]
        scored = score_events(events, segments, window_s, received)
        hits = [s for s in scored if s.hit]
        detected = {s.segment for s in hits}
        return DemoReport(
            phase=name,
            thresholds=dict(runtime.thresholds.per_label) or None,
            bundle=str(bundle),
            data=str(data),
            enrolled=plan.enrolled,
            never_enrolled=plan.never_enrolled,
            target_fmr=target_fmr,
            threshold=round(threshold, 5),
            stream_s=round(stream_s, 3),
            turns=len(segments),
            enrolled_turns=enrolled_turns,
            events_decided=summary.events,
            events_received=len(events),
            hits=len(hits),
            false_matches=len(scored) - len(hits),
            false_never_enrolled=sum(s.verdict == "never_enrolled" for s in scored),
            false_wrong_label=sum(s.verdict == "wrong_label" for s in scored),
            false_noise=sum(s.verdict == "noise" for s in scored),
            detected_turns=len(detected),
            missed_turns=enrolled_turns - len(detected),
            near_misses=summary.near_misses,
            windows=summary.windows,
            gated_windows=summary.gated_windows,
            wall_s=summary.wall_s,
            windows_per_s=round(summary.windows / summary.wall_s, 1) if summary.wall_s else 0.0,
            real_time_factor=round(summary.wall_s / summary.stream_s, 5)
            if summary.stream_s
            else 0.0,
            inference_ms_p50=runtime.metrics.inference.percentile(50),
            inference_ms_p95=runtime.metrics.inference.percentile(95),
            broker=url if broker != "embedded" else f"embedded amqtt ({url})",
            workdir=str(workdir),
            statuses=statuses,
            events=[
                {**asdict(s), "speaking": s.speaking, "hit": s.hit}
                for s in scored  # the judged events, for whoever reads summary.json
            ],
        )

    with _broker(broker) as (url, host, port, tls, protocol):
        say(f"mqtt     {'embedded amqtt broker at ' if broker == 'embedded' else ''}{url}")
        before = phase("before calibration", state_dir / "before", url, host, port, tls, protocol)
        _print_summary(before, say)
        report = before
        background = _background(plan, test_dir, workdir) if calibrate else None
        if background is not None:
            found = _calibrate(
                bundle,
                gallery_path,
                state_dir,
                background,
                calibrate_minutes,
                max_false_per_hour,
                matching,
            )
            say()
            say(
                f"calibrate on {background.name}/: never-enrolled speakers that are not in the "
                "stream (edgesiam calibrate)"
            )
            for line in report_lines(found):
                say(f"         {line.strip()}")
            report = phase("after calibration", state_dir / "after", url, host, port, tls, protocol)
            report.before = before.to_dict()
            report.calibration = {k: v.threshold for k, v in found.labels.items()}
    (workdir / "summary.json").write_text(
        json.dumps(report.to_dict(), indent=1) + "\n", encoding="utf-8"
    )
    if report is not before:
        _print_summary(report, say)
        say(
            f"  calibration    before → after: hits {before.hits} → {report.hits}, false matches "
            f"{before.false_matches} → {report.false_matches}, turns detected "
            f"{before.detected_turns}/{before.enrolled_turns} → "
            f"{report.detected_turns}/{report.enrolled_turns}"
        )
    return report


def _background(plan: Plan, test_dir: Path, workdir: Path) -> Path | None:
    """WORKDIR/background/: the recordings of the held-out speakers neither enrolled nor in the
    stream (linked), as a device's background would hold none of tomorrow's visitors."""
    used = set(plan.enrolled) | set(plan.never_enrolled)
    folder = workdir / "background"
    shutil.rmtree(folder, ignore_errors=True)
    spare = {s: files for s, files in speakers_of(test_dir).items() if s not in used}
    if not spare:
        return None
    for speaker, files in spare.items():
        (folder / speaker).mkdir(parents=True)
        for f in files:
            (folder / speaker / f.name).symlink_to(f.resolve())
    return folder


def _calibrate(
    bundle: Path,
    gallery: Path,
    state_dir: Path,
    background: Path,
    minutes: float,
    max_false_per_hour: float,
    matching: dict[str, Any],
) -> Any:
    """``edgesiam calibrate`` on the background, with the demo device's matching."""
    from edgesiam.runtime.calibrate import run_calibration
    from edgesiam.runtime.config import load_runtime_config

    config = load_runtime_config(
        None,
        {
            "bundle": str(bundle.resolve()),
            "gallery": str(gallery.resolve()),
            "source": {"type": "stdin"},
            "state_dir": str((state_dir / "calibrate").resolve()),
            "mqtt": {"enabled": False},
            "matching": matching,
        },
    )
    return run_calibration(config, str(background), minutes, max_false_per_hour)


def _by_seq(item: tuple[dict[str, Any], float]) -> int:
    return int(item[0]["seq"])


def _print_summary(r: DemoReport, say: Any) -> None:
    def ms(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f} ms"

    say()
    say(f"summary ({r.phase})")
    say(
        f"  speakers       enrolled {', '.join(r.enrolled)}; never enrolled "
        f"{', '.join(r.never_enrolled) or '-'}"
    )
    say(
        f"  stream         {r.stream_s:.1f} s, {r.turns} turns ({r.enrolled_turns} by enrolled "
        f"speakers); threshold {r.threshold:.3f} (FMR {_fmt_fmr(r.target_fmr)})"
    )
    say(
        f"  events         {r.events_received} received over MQTT "
        f"({r.events_decided} decided on the device), {r.near_misses} near misses"
    )
    say(f"  hits           {r.hits:>3}   events naming the enrolled speaker who was talking")
    say(
        f"  false matches  {r.false_matches:>3}   ({r.false_never_enrolled} during never-enrolled "
        f"speakers, {r.false_wrong_label} naming another enrolled speaker, {r.false_noise} on "
        "noise)"
    )
    say(
        f"  misses         {r.missed_turns:>3}   enrolled turns without a hit "
        f"({r.detected_turns} of {r.enrolled_turns} detected)"
    )
    speed = f"{1 / r.real_time_factor:.0f}x real time" if r.real_time_factor else "-"
    say(
        f"  speed          {r.windows} windows ({r.gated_windows} skipped as silent) in "
        f"{r.wall_s:.2f} s (the run, MQTT flush included): {r.windows_per_s:.1f} windows/s, "
        f"real-time factor "
        f"{r.real_time_factor:.4f} ({speed})"
    )
    say(f"  model          {ms(r.inference_ms_p50)} p50, {ms(r.inference_ms_p95)} p95 per window")
    say(f"  written        {r.workdir}/summary.json, stream.wav, stream.json, gallery.npz")
