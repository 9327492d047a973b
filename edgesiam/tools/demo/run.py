"""The demo run: data → bundle → gallery → broker → stream → device runtime → scored summary."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from edgesiam.errors import BundleError, ConfigError, DataError, EdgesiamError
from edgesiam.tools.demo.scoring import DemoReport, Segment, score_events, window_overlaps
from edgesiam.tools.demo.stream import (
    NOISE_DBFS,
    Plan,
    build_stream,
    make_plan,
    speakers_of,
    write_talk,
)
from edgesiam.tools.demo.watcher import EventWatcher, free_port

if TYPE_CHECKING:
    from edgesiam.model.interpreters import BundleEmbedder
    from edgesiam.mqtt.client import MqttSettings
    from edgesiam.runtime.config import RuntimeConfig
    from edgesiam.runtime.pipeline import RunSummary, Runtime

log = logging.getLogger(__name__)

__all__ = ["run_demo"]

DEVICE_ID: Final = "demo"
TRADEOFF: Final = (1.0, 10.0, 60.0)
"""Other targets (false matches per hour) the stream is also calibrated for, to show what each
buys: 60 per hour is one in the demo's minute."""


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


@dataclass(frozen=True)
class _BrokerAddress:
    """Where the demo's device and subscriber connect."""

    url: str
    host: str
    port: int
    tls: bool
    protocol: str
    embedded: bool

    def describe(self) -> str:
        """The broker as the summary names it."""
        return f"embedded amqtt ({self.url})" if self.embedded else self.url


@contextlib.contextmanager
def _broker(spec: str) -> Iterator[_BrokerAddress]:
    """The broker to use; an embedded one lives in here."""
    if spec == "embedded":
        from edgesiam.mqtt.broker import EmbeddedBroker

        port = free_port()
        broker = EmbeddedBroker("127.0.0.1", port)
        for name in ("amqtt", "transitions"):  # amqtt is chatty at INFO and WARNING
            logging.getLogger(name).setLevel(logging.ERROR)
        broker.start_in_thread()
        try:
            yield _BrokerAddress(
                f"mqtt://127.0.0.1:{port}", "127.0.0.1", port, False, "3.1.1", embedded=True
            )
        finally:
            broker.stop_thread()
        return
    from edgesiam.mqtt.client import parse_broker_url

    address = parse_broker_url(spec)
    if address.username:
        raise ConfigError(
            f"--broker {spec}: the demo connects anonymously; give a broker without user@"
        )
    yield _BrokerAddress(spec, address.host, address.port, address.tls, "5", embedded=False)


@dataclass
class _Demo:
    """What the steps of one demo run share: the inputs, the loaded model, the stream and its truth."""

    bundle: Path
    data: Path
    workdir: Path
    embedder: BundleEmbedder
    plan: Plan
    test_dir: Path
    matching: dict[str, Any]
    threshold: float
    realtime: bool
    say: Callable[..., None]
    segments: list[Segment] = field(default_factory=list)
    stream_s: float = 0.0
    quiet: bool = False
    """events are not printed one by one (the trade-off's extra runs)"""
    gallery: Path | None = None
    """the gallery the device uses, when not :attr:`gallery_path` (a calibrated copy)"""

    @property
    def window_s(self) -> float:
        return _window_s(self.embedder)

    @property
    def target_fmr(self) -> float:
        return float(self.matching["target_fmr"])

    @property
    def gallery_path(self) -> Path:
        return self.workdir / "gallery.npz"

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    @property
    def stream_path(self) -> Path:
        return self.workdir / "stream.wav"

    @property
    def enrolled_turns(self) -> int:
        return sum(s.enrolled for s in self.segments)


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
    centre: str = "background",
    aggregate: str = "mean",
    tradeoff: tuple[float, ...] = TRADEOFF,
    out: TextIO | None = None,
) -> DemoReport:
    """Run the demo (see the module docstring); prints as it goes to ``out`` (stdout)."""
    import sys

    from edgesiam.model.interpreters import load_model

    stream_out: TextIO = out if out is not None else sys.stdout
    _check_counts(labels, enroll_clips, others, turns)
    bundle, data, workdir = Path(bundle), Path(data), Path(workdir)
    _check_bundle(bundle)
    test_dir = _prepare_data(data, stream_out)
    matching = {
        "target_fmr": target_fmr,
        "margin": margin,
        "score_norm": score_norm,
        "centre": centre,
        "aggregate": aggregate,
    }
    say = _sayer(stream_out)
    embedder = load_model(bundle)
    threshold = float(embedder.threshold(target_fmr))
    _say_bundle(bundle, embedder, say)
    plan = make_plan(test_dir, labels, enroll_clips, others, seed, _window_s(embedder))
    demo = _Demo(
        bundle, data, workdir, embedder, plan, test_dir, matching, threshold, realtime, say
    )
    _fresh_workdir(demo)
    _enroll(demo, labels, enroll_clips)
    _write_stream(demo, turns, seed)
    with _broker(broker) as address:
        demo.say(f"mqtt     {'embedded amqtt broker at ' if address.embedded else ''}{address.url}")
        before = _phase(demo, "before calibration", demo.state_dir / "before", address)
        _print_summary(before, demo.say)
        report = before
        rate = int(embedder.sample_rate)
        background = _background(demo.plan, test_dir, workdir, rate) if calibrate else None
        if background is not None:
            report = _calibrated_phase(
                demo, address, background, before, calibrate_minutes, max_false_per_hour
            )
            report.tradeoff = _tradeoff(demo, address, background, calibrate_minutes, tradeoff)
    (workdir / "summary.json").write_text(
        json.dumps(report.to_dict(), indent=1) + "\n", encoding="utf-8"
    )
    if report is not before:
        _print_summary(report, demo.say)
        _print_comparison(before, report, demo.say)
        _print_tradeoff(report, demo.say)
    return report


def _check_counts(labels: int, enroll_clips: int, others: int, turns: int) -> None:
    if labels < 1:
        raise ConfigError(f"--labels {labels}: enroll at least one speaker")
    if not 1 <= enroll_clips <= 10:
        raise ConfigError(f"--enroll-clips {enroll_clips}: enroll from 1 to 10 clips")
    if others < 0 or turns < 1:
        raise ConfigError("--others must be 0 or more and --turns at least 1")


def _sayer(stream_out: TextIO) -> Callable[..., None]:
    """A print to ``stream_out`` that the subscriber's thread and the main thread can share."""
    say_lock = threading.Lock()

    def say(text: str = "") -> None:
        with say_lock:
            print(text, file=stream_out, flush=True)

    return say


def _say_bundle(bundle: Path, embedder: BundleEmbedder, say: Callable[..., None]) -> None:
    manifest, rate = embedder.manifest, int(embedder.sample_rate)
    say(
        f"bundle   {bundle} ({manifest.name}, {manifest.model}, {rate} Hz, window "
        f"{embedder.window / rate:g} s, hop {embedder.hop / rate:g} s, "
        f"{getattr(embedder, 'backend', '?')})"
    )


def _window_s(embedder: BundleEmbedder) -> float:
    return embedder.window / int(embedder.sample_rate)


def _fresh_workdir(demo: _Demo) -> None:
    """No gallery, calibration, cohort or device state left from an earlier run."""
    from edgesiam.runtime.calibration_store import calibration_path, cohort_path

    demo.workdir.mkdir(parents=True, exist_ok=True)
    demo.gallery_path.unlink(missing_ok=True)
    calibration_path(demo.gallery_path).unlink(missing_ok=True)
    cohort_path(demo.gallery_path).unlink(missing_ok=True)
    shutil.rmtree(demo.state_dir, ignore_errors=True)


def _enroll(demo: _Demo, labels: int, enroll_clips: int) -> None:
    from edgesiam.runtime.enrollment import enroll_recordings
    from edgesiam.runtime.gallery_store import GalleryStore, model_sha256

    manifest, plan = demo.embedder.manifest, demo.plan
    store = GalleryStore(demo.gallery_path, model_sha256(manifest), bundle_name=manifest.name)
    demo.say(
        f"enroll   {labels} held-out speaker(s) from {demo.test_dir}, {enroll_clips} clip(s) each:"
    )
    for speaker in plan.enrolled:
        result = enroll_recordings(store, demo.embedder, speaker, plan.enroll[speaker])
        names = ", ".join(p.name for p in plan.enroll[speaker])
        demo.say(f"         {speaker:<14} consistency {result.consistency_text:<6} ({names})")
        for warning in result.warnings:
            demo.say(f"           note: {warning}")


def _write_stream(demo: _Demo, turns: int, seed: int) -> None:
    """WORKDIR/stream.wav and its truth, stream.json."""
    rate = int(demo.embedder.sample_rate)
    demo.segments, demo.stream_s = build_stream(
        demo.plan, rate, demo.stream_path, turns=turns, seed=seed
    )
    segments = demo.segments
    (demo.workdir / "stream.json").write_text(
        json.dumps([asdict(s) for s in segments], indent=1) + "\n", encoding="utf-8"
    )
    enrolled_turns = demo.enrolled_turns
    demo.say(
        f"stream   {demo.stream_path}: {demo.stream_s:.1f} s, {len(segments)} turns "
        f"({enrolled_turns} by enrolled speakers, {len(segments) - enrolled_turns} by "
        f"never-enrolled {', '.join(demo.plan.never_enrolled) or '-'}), room noise at "
        f"{NOISE_DBFS:.0f} dBFS between"
    )


def _show(demo: _Demo, event: dict[str, Any], at: float) -> None:
    """One event as the subscriber received it, with who was really speaking then."""
    if demo.quiet:
        return
    end, window_s = float(event["offset_s"]), demo.window_s
    scored = score_events([event], demo.segments, window_s)[0]
    who = [demo.segments[i] for i, _ in window_overlaps(demo.segments, end - window_s, end)]
    truth = (
        " + ".join(s.label + ("" if s.enrolled else " (never enrolled)") for s in who) or "(noise)"
    )
    clock = datetime.fromtimestamp(at).strftime("%H:%M:%S.%f")[:-3]
    demo.say(
        f"  {clock}  seq {event['seq']:>3}  @ {end:6.1f} s  {event['label']:<14} "
        f"{event['score']:.3f} >= {event['threshold']:.3f}   speaking: {truth:<34} "
        f"{_verdict_text(scored.verdict)}"
    )


def _phase(demo: _Demo, name: str, state: Path, address: _BrokerAddress) -> DemoReport:
    """Stream once through a fresh device (its own state dir and MQTT name, so the first
    run's retained status is not the second's) and score what arrived."""
    names = {"before": DEVICE_ID, "after": f"{DEVICE_ID}-calibrated"}
    device = names.get(state.name, f"{DEVICE_ID}-{state.parent.name.replace('.', '_')}")
    config = _device_config(demo, state, device, address)
    settings = config.mqtt.settings(device)
    watcher = EventWatcher(
        address.host, address.port, address.tls, settings.topics, partial(_show, demo)
    )
    watcher.start()
    try:
        runtime = _connected_runtime(demo, config, settings, address.url)
        _announce(demo, name, device, settings.topics.event, runtime)
        summary = _run_device(runtime, watcher)
    finally:
        watcher.stop()
    return _phase_report(demo, name, runtime, summary, watcher, address.describe())


def _device_config(demo: _Demo, state: Path, device: str, address: _BrokerAddress) -> RuntimeConfig:
    """The demo device: the stream file as its source, MQTT on, the demo's matching."""
    from edgesiam.runtime.config import load_runtime_config

    return load_runtime_config(
        None,
        {
            "bundle": str(demo.bundle.resolve()),
            "gallery": str((demo.gallery or demo.gallery_path).resolve()),
            "source": {
                "type": "file",
                "path": str(demo.stream_path.resolve()),
                "realtime": demo.realtime,
            },
            "state_dir": str(state.resolve()),
            "device_id": device,
            "mqtt": {
                "enabled": True,
                "url": address.url,
                "protocol": address.protocol,
                "homeassistant": False,
                "session_expiry_s": 600,
            },
            "matching": demo.matching,
            "metrics": {"interval_s": 10.0},
        },
    )


def _connected_runtime(
    demo: _Demo, config: RuntimeConfig, settings: MqttSettings, url: str
) -> Runtime:
    """The device runtime, its publisher connected before the first window (nothing waits in
    the outbox)."""
    from edgesiam.mqtt.publisher import MqttPublisher
    from edgesiam.runtime.pipeline import Runtime

    name, enrolled = demo.embedder.manifest.name, demo.plan.enrolled
    runtime = Runtime(
        config,
        embedder=demo.embedder,
        publisher=lambda outbox: MqttPublisher(settings, outbox, name, labels=enrolled),
    )
    publisher = runtime.publisher
    assert isinstance(publisher, MqttPublisher)
    publisher.start()
    deadline = time.monotonic() + 15
    while not publisher.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    if not publisher.connected:
        publisher.stop(0.0, timeout_s=1.0)
        runtime.outbox.close()
        raise EdgesiamError(f"the device could not connect to the MQTT broker at {url}")
    return runtime


def _announce(demo: _Demo, name: str, device: str, topic: str, runtime: Runtime) -> None:
    per_label = runtime.thresholds.per_label
    using = (
        "calibrated thresholds " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(per_label.items()))
        if per_label
        else f"target FMR {_fmt_fmr(demo.target_fmr)}: threshold {demo.threshold:.3f}"
    )
    if demo.quiet:
        return
    demo.say(
        f"run      {name}: device '{device}' → {topic} (QoS 1, durable outbox), {using}"
        f"{', paced in real time' if demo.realtime else ', as fast as it goes'}"
    )
    demo.say("events as they reach the subscriber:")


def _run_device(runtime: Runtime, watcher: EventWatcher) -> RunSummary:
    """Run the device to the stream's end (Ctrl-C stops it cleanly), then give the subscriber
    a moment for the last events and the offline status."""
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread: no signal handler
        previous = signal.signal(signal.SIGINT, lambda *_: runtime.stop("interrupted (Ctrl-C)"))
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
    return summary


def _phase_report(
    demo: _Demo,
    name: str,
    runtime: Runtime,
    summary: RunSummary,
    watcher: EventWatcher,
    broker: str,
) -> DemoReport:
    """What arrived, judged against the stream's truth, with the device's own figures."""
    with watcher.lock:
        arrived = sorted(zip(watcher.events, watcher.received, strict=True), key=_by_seq)
        statuses = list(watcher.statuses)
    events = [e for e, _ in arrived]
    scored = score_events(events, demo.segments, demo.window_s, [t for _, t in arrived])
    hits = [s for s in scored if s.hit]
    detected = {s.segment for s in hits}
    return DemoReport(
        phase=name,
        thresholds=dict(runtime.thresholds.per_label) or None,
        bundle=str(demo.bundle),
        data=str(demo.data),
        enrolled=demo.plan.enrolled,
        never_enrolled=demo.plan.never_enrolled,
        target_fmr=demo.target_fmr,
        threshold=round(demo.threshold, 5),
        stream_s=round(demo.stream_s, 3),
        turns=len(demo.segments),
        enrolled_turns=demo.enrolled_turns,
        events_decided=summary.events,
        events_received=len(events),
        hits=len(hits),
        false_matches=len(scored) - len(hits),
        false_never_enrolled=sum(s.verdict == "never_enrolled" for s in scored),
        false_wrong_label=sum(s.verdict == "wrong_label" for s in scored),
        false_noise=sum(s.verdict == "noise" for s in scored),
        detected_turns=len(detected),
        missed_turns=demo.enrolled_turns - len(detected),
        near_misses=summary.near_misses,
        windows=summary.windows,
        gated_windows=summary.gated_windows,
        wall_s=summary.wall_s,
        windows_per_s=round(summary.windows / summary.wall_s, 1) if summary.wall_s else 0.0,
        real_time_factor=round(summary.wall_s / summary.stream_s, 5) if summary.stream_s else 0.0,
        inference_ms_p50=runtime.metrics.inference.percentile(50),
        inference_ms_p95=runtime.metrics.inference.percentile(95),
        broker=broker,
        workdir=str(demo.workdir),
        statuses=statuses,
        events=[
            {**asdict(s), "speaking": s.speaking, "hit": s.hit}
            for s in scored  # the judged events, for whoever reads summary.json
        ],
    )


def _calibrated_phase(
    demo: _Demo,
    address: _BrokerAddress,
    background: Path,
    before: DemoReport,
    minutes: float,
    max_false_per_hour: float,
) -> DemoReport:
    """Calibrate on the background, then stream again with the calibrated thresholds."""
    from edgesiam.runtime.calibrate import report_lines

    found = _calibrate(
        demo.bundle,
        demo.gallery_path,
        demo.state_dir,
        background,
        minutes,
        max_false_per_hour,
        demo.matching,
    )
    demo.say()
    demo.say(
        f"calibrate on {background.name}/: never-enrolled speakers that are not in the "
        "stream (edgesiam calibrate)"
    )
    for line in report_lines(found):
        demo.say(f"         {line.strip()}")
    report = _phase(demo, "after calibration", demo.state_dir / "after", address)
    report.before = before.to_dict()
    report.calibration = {k: v.threshold for k, v in found.labels.items()}
    return report


def _tradeoff(
    demo: _Demo,
    address: _BrokerAddress,
    background: Path,
    minutes: float,
    targets: tuple[float, ...],
) -> list[dict[str, Any]]:
    """The same stream, calibrated for each of ``targets`` on a copy of the gallery."""
    rows = []
    for target in targets:
        folder = demo.workdir / "tradeoff" / f"{target:g}-per-hour"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        gallery = folder / "gallery.npz"
        shutil.copy(demo.gallery_path, gallery)
        _calibrate(demo.bundle, gallery, folder, background, minutes, target, demo.matching)
        demo.quiet, demo.gallery = True, gallery
        try:
            found = _phase(demo, f"calibrated for {target:g} per hour", folder / "run", address)
        finally:
            demo.quiet, demo.gallery = False, None
        rows.append(
            {
                "max_false_per_hour": target,
                "thresholds": dict(found.thresholds or {}),
                "hits": found.hits,
                "false_matches": found.false_matches,
                "detected_turns": found.detected_turns,
                "enrolled_turns": found.enrolled_turns,
            }
        )
    return rows


def _print_tradeoff(report: DemoReport, say: Callable[..., None]) -> None:
    if not report.tradeoff:
        return
    say("  other targets  the same stream, calibrated for more false matches per hour:")
    for row in report.tradeoff:
        say(
            f"                 {row['max_false_per_hour']:>5g} per hour: hits {row['hits']}, "
            f"false matches {row['false_matches']}, turns detected "
            f"{row['detected_turns']}/{row['enrolled_turns']}"
        )


def _print_comparison(before: DemoReport, after: DemoReport, say: Callable[..., None]) -> None:
    say(
        f"  calibration    before → after: hits {before.hits} → {after.hits}, false matches "
        f"{before.false_matches} → {after.false_matches}, turns detected "
        f"{before.detected_turns}/{before.enrolled_turns} → "
        f"{after.detected_turns}/{after.enrolled_turns}"
    )


def _background(plan: Plan, test_dir: Path, workdir: Path, rate: int) -> Path | None:
    """WORKDIR/background/: one recording per held-out speaker (test and validation labels, none
    of them trained on) neither enrolled nor in the stream, their clips back to back as a device
    would hear them talk. A device's background holds none of tomorrow's visitors: no speaker who
    may be one of their people (:func:`~edgesiam.data.recipes.speech.person_of`) either."""
    from edgesiam.data.recipes.speech import person_of

    used = {person_of(s) for s in plan.enrolled + plan.never_enrolled}
    folder = workdir / "background"
    shutil.rmtree(folder, ignore_errors=True)
    candidates = speakers_of(test_dir)
    val_dir = test_dir.parent / "val"  # never trained on either: more people for the background
    if val_dir.is_dir():
        candidates.update(speakers_of(val_dir))
    spare = {s: f for s, f in candidates.items() if person_of(s) not in used}
    if not spare:
        return None
    for i, (speaker, files) in enumerate(sorted(spare.items())):
        write_talk(files, rate, folder / f"{speaker}.wav", seed=i)
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
