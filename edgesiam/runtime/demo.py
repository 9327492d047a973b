"""``edgesiam demo``: the main job end to end, on real data, on this machine.

Real held-out speech (``data/speech/test``: speakers the shipped model never heard) → the shipped int8
bundle (``export/speaker``) → a few-shot gallery of N speakers, each enrolled from a few clips → a
stream made of *other* clips of those speakers and of speakers never enrolled, with short gaps of
low-level room noise → the device :class:`~edgesiam.runtime.pipeline.Runtime` reading that stream
as a file source → match events over real MQTT (an embedded amqtt broker on a free localhost port,
or the broker given) → a subscriber in this process that prints each event as it arrives, with the
speaker who was really talking at that moment, and a scored summary at the end.

Scoring (an event's window is ``[offset_s - window_s, offset_s]``):

- **hit**: the event names an enrolled speaker whose turn overlaps the event's window;
- **false match**: any other event (a never-enrolled speaker, another enrolled speaker, or noise);
- **miss**: a turn of an enrolled speaker that got no hit.

So ``hits + false matches = events`` and ``detected + missed = enrolled turns``.

``add_demo_parser(subparsers)`` adds the sub-command, ``cmd_demo(args)`` runs it, and
:func:`run_demo` is the same as a function (it returns a :class:`DemoReport`).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import math
import shutil
import signal
import socket
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TextIO

import numpy as np

from edgesiam.errors import BundleError, ConfigError, DataError, EdgesiamError

__all__ = [
    "DemoReport",
    "Segment",
    "add_demo_parser",
    "cmd_demo",
    "run_demo",
    "score_events",
]

log = logging.getLogger(__name__)

AUDIO_SUFFIXES: Final = (".wav", ".flac", ".ogg", ".opus")
NOISE_DBFS: Final = -55.0
"""Level of the room noise between clips and turns (below the runtime's -45 dBFS gate)."""
LEAD_S: Final = 0.5
CLIP_GAP_S: Final = 0.15
TURN_GAP_S: Final = 0.6
TURN_S: Final = 3.0
"""A turn holds clips of one speaker until it lasts at least this long (or the clips run out)."""
DEVICE_ID: Final = "demo"

DESCRIPTION = textwrap.dedent(
    """
    The main job end to end on this machine, with real data and real MQTT:

      1. prepare the real speech data (a no-op when DATA/speech is there);
      2. load the shipped int8 bundle;
      3. pick --labels held-out speakers of DATA/speech/test (never seen in training, seeded) and
         enroll each from --enroll-clips clips;
      4. start an MQTT broker (embedded amqtt on a free localhost port) or use --broker, and
         subscribe to the device's event topic;
      5. write a stream (WORKDIR/stream.wav): other clips of the enrolled speakers and clips of
         speakers never enrolled, in turns separated by low-level room noise;
      6. run the device runtime on it (file source, MQTT publisher, durable outbox) and print each
         event as it reaches the subscriber, with the speaker really talking at that moment;
      7. summarise: hits, misses, false matches, windows/s and the real-time factor.

    Everything it writes goes to WORKDIR (stream.wav, stream.json with the true turns,
    gallery.npz, state/, summary.json).
    """
)


# ------------------------------------------------------------------------------------------------
# the stream and its truth


@dataclass(frozen=True)
class Segment:
    """One turn of the stream: a speaker talking from ``start_s`` to ``end_s``."""

    label: str
    start_s: float
    end_s: float
    enrolled: bool
    clips: tuple[str, ...] = ()

    def overlap(self, a: float, b: float) -> float:
        return max(0.0, min(b, self.end_s) - max(a, self.start_s))


@dataclass
class ScoredEvent:
    """An event as the subscriber received it, and what was really happening then."""

    seq: int
    id: str
    label: str
    score: float
    threshold: float
    offset_s: float
    received: float
    speaking: list[str]
    verdict: str  # hit | never_enrolled | wrong_label | noise
    segment: int | None = None

    @property
    def hit(self) -> bool:
        return self.verdict == "hit"


@dataclass
class DemoReport:
    """What a demo run found (also written as WORKDIR/summary.json)."""

    bundle: str
    data: str
    enrolled: list[str]
    never_enrolled: list[str]
    target_fmr: float
    threshold: float
    stream_s: float
    turns: int
    enrolled_turns: int
    events_decided: int
    events_received: int
    hits: int
    false_matches: int
    false_never_enrolled: int
    false_wrong_label: int
    false_noise: int
    detected_turns: int
    missed_turns: int
    near_misses: int
    windows: int
    gated_windows: int
    wall_s: float
    windows_per_s: float
    real_time_factor: float
    inference_ms_p50: float | None
    inference_ms_p95: float | None
    broker: str
    workdir: str
    statuses: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    phase: str = "before calibration"
    thresholds: dict[str, float] | None = None
    """per-label thresholds in force (after calibration)"""
    before: dict[str, Any] | None = None
    """the same stream before calibration (this report's fields)"""
    calibration: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _window_overlaps(segments: Sequence[Segment], a: float, b: float) -> list[tuple[int, float]]:
    """Indices of the segments overlapping ``[a, b]`` and by how much, the largest first."""
    found = [(i, s.overlap(a, b)) for i, s in enumerate(segments)]
    return sorted(((i, o) for i, o in found if o > 0), key=lambda x: -x[1])


def score_events(
    events: Sequence[dict[str, Any]],
    segments: Sequence[Segment],
    window_s: float,
    received: Sequence[float] | None = None,
) -> list[ScoredEvent]:
    """Judge each event against the true turns (see the module docstring)."""
    out = []
    for k, event in enumerate(events):
        end = float(event["offset_s"])
        overlaps = _window_overlaps(segments, end - window_s, end)
        speaking = [segments[i].label for i, _ in overlaps]
        label = str(event["label"])
        matching = [i for i, _ in overlaps if segments[i].label == label and segments[i].enrolled]
        if matching:
            verdict, segment = "hit", matching[0]
        elif not overlaps:
            verdict, segment = "noise", None
        elif segments[overlaps[0][0]].enrolled:
            verdict, segment = "wrong_label", None
        else:
            verdict, segment = "never_enrolled", None
        out.append(
            ScoredEvent(
                seq=int(event["seq"]),
                id=str(event["id"]),
                label=label,
                score=float(event["score"]),
                threshold=float(event["threshold"]),
                offset_s=end,
                received=float(received[k]) if received is not None else math.nan,
                speaking=speaking,
                verdict=verdict,
                segment=segment,
            )
        )
    return out


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)


def _speakers(test_dir: Path) -> dict[str, list[Path]]:
    speakers = {}
    for folder in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        files = _audio_files(folder)
        if files:
            speakers[folder.name] = files
    return speakers


@dataclass
class Plan:
    enrolled: list[str]
    never_enrolled: list[str]
    enroll: dict[str, list[Path]]
    pool: dict[str, list[Path]]


def make_plan(
    test_dir: Path,
    labels: int,
    enroll_clips: int,
    others: int,
    seed: int,
    window_s: float,
) -> Plan:
    """Pick the speakers (seeded), each enrolled speaker's enrolment clips, and the stream pools."""
    import soundfile as sf

    speakers = _speakers(test_dir)
    rng = np.random.default_rng(seed)
    order = [str(x) for x in rng.permutation(sorted(speakers))]
    need = enroll_clips + 2  # enrolment clips, and at least two for the stream
    eligible = [s for s in order if len(speakers[s]) >= need]
    if len(eligible) < labels:
        raise DataError(
            f"{len(eligible)} speaker(s) have at least {need} clips, {labels} are needed "
            f"(--labels {labels}, --enroll-clips {enroll_clips})",
            test_dir,
        )
    enrolled = eligible[:labels]
    never = [s for s in order if s not in enrolled][:others]
    enroll: dict[str, list[Path]] = {}
    pool: dict[str, list[Path]] = {}
    for speaker in enrolled + never:
        files = [speakers[speaker][i] for i in rng.permutation(len(speakers[speaker]))]
        if speaker in enrolled:
            # prefer clips of at least one window: a shorter one is padded with silence
            long_enough = sorted(files, key=lambda f: sf.info(str(f)).duration < window_s)
            enroll[speaker] = long_enough[:enroll_clips]
            files = [f for f in files if f not in enroll[speaker]]
        pool[speaker] = files
    return Plan(enrolled, never, enroll, pool)


def _turn_order(speakers: list[str], turns: int, rng: np.random.Generator) -> list[str]:
    """Each speaker ``turns`` times, shuffled so that no speaker follows itself (when possible)."""
    items = [s for s in speakers for _ in range(turns)]
    best = items
    for _ in range(200):
        order = [items[i] for i in rng.permutation(len(items))]
        if all(a != b for a, b in itertools.pairwise(order)):
            return order
        best = order
    return best


def build_stream(
    plan: Plan,
    rate: int,
    path: Path,
    *,
    turns: int = 2,
    seed: int = 0,
) -> tuple[list[Segment], float]:
    """Write the stream WAV (PCM 16 at ``rate``); return its true turns and its length in s."""
    import soundfile as sf

    from edgesiam.data.readers import read_audio

    rng = np.random.default_rng(seed + 1)
    noise_rms = 10 ** (NOISE_DBFS / 20)

    def noise(seconds: float) -> np.ndarray:
        return (noise_rms * rng.standard_normal(round(seconds * rate))).astype(np.float32)

    pools = {s: list(files) for s, files in plan.pool.items()}
    parts = [noise(LEAD_S)]
    at = parts[0].size
    segments: list[Segment] = []
    for speaker in _turn_order(plan.enrolled + plan.never_enrolled, turns, rng):
        if not pools[speaker]:
            continue
        start = at
        clips: list[str] = []
        while pools[speaker] and (at - start) / rate < TURN_S:
            if clips:
                gap = noise(CLIP_GAP_S)
                parts.append(gap)
                at += gap.size
            clip = pools[speaker].pop()
            x = read_audio(clip, rate)
            parts.append(x)
            at += x.size
            clips.append(clip.name)
        segments.append(
            Segment(speaker, start / rate, at / rate, speaker in plan.enrolled, tuple(clips))
        )
        gap = noise(TURN_GAP_S)
        parts.append(gap)
        at += gap.size
    samples = np.clip(np.concatenate(parts), -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, rate, subtype="PCM_16")
    return segments, samples.size / rate


# ------------------------------------------------------------------------------------------------
# MQTT: the broker and the subscriber


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Watcher:
    """A paho subscriber on the device's event and status topics that prints events on arrival."""

    def __init__(self, host: str, port: int, tls: bool, topics: Any, on_event: Any) -> None:
        from edgesiam.mqtt.client import make_client

        self.topics = topics
        self.on_event = on_event
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.received: list[float] = []
        self.ids: set[str] = set()
        self.duplicates = 0
        self.statuses: list[str] = []
        self.ready = threading.Event()
        self.client = make_client(
            f"edgesiam-demo-watcher-{uuid.uuid4().hex[:8]}", protocol="3.1.1", tls=tls
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._on_message
        self.host, self.port = host, port

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            client.subscribe([(self.topics.event, 1), (self.topics.status, 1)])

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        now = time.time()
        if message.topic == self.topics.status:
            with self.lock:
                self.statuses.append(message.payload.decode(errors="replace"))
            return
        try:
            event = json.loads(message.payload)
        except ValueError:
            return
        with self.lock:
            if event.get("id") in self.ids:  # at least once: a resent event
                self.duplicates += 1
                return
            self.ids.add(event.get("id"))
            self.events.append(event)
            self.received.append(now)
        try:
            self.on_event(event, now)
        except Exception:  # printing must never break the subscriber
            log.exception("printing an event failed")

    def start(self, timeout_s: float = 10.0) -> None:
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise EdgesiamError(
                f"cannot reach the MQTT broker at {self.host}:{self.port}: {exc}"
            ) from None
        self.client.loop_start()
        if not self.ready.wait(timeout_s):
            self.stop()
            raise EdgesiamError(
                f"the MQTT broker at {self.host}:{self.port} did not accept the subscription "
                f"within {timeout_s:.0f} s"
            )

    def last_status(self) -> str | None:
        with self.lock:
            return self.statuses[-1] if self.statuses else None

    def count(self) -> int:
        with self.lock:
            return len(self.events)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


# ------------------------------------------------------------------------------------------------
# the run


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
    if not test_dir.is_dir() or not _speakers(test_dir):
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

        port = _free_port()
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
    from edgesiam.runtime.gallery_store import GalleryStore, enroll_recordings, model_sha256
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
        return [segments[i] for i, _ in _window_overlaps(segments, a, b)]

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
        watcher = _Watcher(host, port, tls, settings.topics, show)
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
    spare = {s: files for s, files in _speakers(test_dir).items() if s not in used}
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


# ------------------------------------------------------------------------------------------------
# the command


def add_demo_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``demo`` to an ``argparse`` sub-parser collection; returns the new parser."""
    demo = subparsers.add_parser(
        "demo",
        help="the main job end to end: real speech → int8 bundle → enroll → stream → MQTT events",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--bundle", default="export/speaker", metavar="DIR", help="bundle (default: %(default)s)"
    )
    demo.add_argument(
        "--data", default="data", metavar="ROOT", help="data root (default: %(default)s)"
    )
    demo.add_argument(
        "--labels", type=int, default=4, metavar="N", help="speakers to enroll (default: 4)"
    )
    demo.add_argument(
        "--enroll-clips", type=int, default=3, metavar="K", help="clips per speaker (default: 3)"
    )
    demo.add_argument(
        "--others",
        type=int,
        default=3,
        metavar="M",
        help="never-enrolled speakers in the stream (default: 3)",
    )
    demo.add_argument(
        "--turns", type=int, default=2, metavar="T", help="turns per speaker (default: 2)"
    )
    demo.add_argument("--seed", type=int, default=0, help="picks speakers and clips (default: 0)")
    demo.add_argument(
        "--broker",
        default="embedded",
        metavar="URL",
        help="'embedded' (amqtt on a free localhost port, the default) or mqtt://host:port",
    )
    demo.add_argument(
        "--workdir", default="runs/demo", metavar="DIR", help="outputs (default: %(default)s)"
    )
    demo.add_argument(
        "--target-fmr",
        type=float,
        default=1e-3,
        metavar="FMR",
        help="false-match rate of the bundle's calibrated threshold (default: 1e-3)",
    )
    demo.add_argument(
        "--realtime", action="store_true", help="pace the stream at its real rate (like a mic)"
    )
    demo.add_argument(
        "--no-calibrate",
        action="store_true",
        help="stream once at the bundle's threshold, without the calibration step",
    )
    demo.add_argument(
        "--max-false-per-hour",
        type=float,
        default=1.0 / 24.0,
        metavar="X",
        help="the calibration's target (default 1/24: one false match a day)",
    )
    demo.add_argument(
        "--margin",
        type=float,
        default=0.0,
        metavar="X",
        help="open-set margin (matching.margin; default 0: off)",
    )
    demo.add_argument(
        "--score-norm",
        choices=["off", "cohort"],
        default="off",
        help="score windows with the bundle's cohort (matching.score_norm; default off)",
    )
    demo.set_defaults(func=cmd_demo)
    return demo  # type: ignore[no-any-return]


def cmd_demo(args: argparse.Namespace) -> int:
    from edgesiam.runtime.config import MatchingConfig

    try:
        fmr = MatchingConfig(target_fmr=args.target_fmr).target_fmr
    except Exception as exc:
        raise ConfigError(f"--target-fmr {args.target_fmr}: {exc}") from None
    run_demo(
        args.bundle,
        args.data,
        labels=args.labels,
        enroll_clips=args.enroll_clips,
        others=args.others,
        turns=args.turns,
        seed=args.seed,
        broker=args.broker,
        workdir=args.workdir,
        target_fmr=fmr,
        realtime=args.realtime,
        calibrate=not args.no_calibrate,
        max_false_per_hour=args.max_false_per_hour,
        margin=args.margin,
        score_norm=args.score_norm,
    )
    return 0
