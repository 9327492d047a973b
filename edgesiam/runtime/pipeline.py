"""The device's composition root and its loop: source → windows → gate → front-end → model → match
→ decide → outbox → publisher.

:class:`Runtime` builds every part from a validated :class:`~edgesiam.runtime.config.RuntimeConfig`
(parts can be handed in instead: a ``MemoryPublisher`` and a file source make it testable), then
:meth:`Runtime.run` runs until the source ends (a file), :meth:`Runtime.stop` is called (a signal)
or the source fails.

Threads: the source runs in its own thread and hands chunks to the processing loop through a
bounded queue (:class:`ChunkQueue`); when a live source outruns the loop, new chunks are dropped
and counted, and the windower restarts at the next chunk so offsets stay true to the stream. The
publisher's command thread reaches the gallery and thresholds through :class:`RuntimeCommands`,
under the same lock as the loop, so a window is always matched against one consistent gallery.

Shutdown: stop the source, process what is queued, wait (``outbox.drain_timeout_s``) for pending
events while connected, publish ``offline``, close the outbox. A SIGKILL or a power cut loses
nothing that was stored: events reach the outbox (fsynced) before anything sends them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, Literal, TextIO

import numpy as np

from edgesiam.core.codec import decode_embedding, embedding_id, encode_embedding
from edgesiam.core.decision import Decider, Decision, DecisionRule
from edgesiam.core.gate import EnergyGate
from edgesiam.core.matching import Gallery, Thresholds, threshold_for
from edgesiam.core.normalise import (
    CentredScorer,
    NormalisedScorer,
    background_mean,
    centre_rows,
    centred_gallery,
)
from edgesiam.core.stream import Scorer, StreamMatcher, WindowResult
from edgesiam.errors import DataError, EdgesiamError, OutboxError
from edgesiam.mqtt.publisher import MqttPublisher
from edgesiam.runtime.calibration_store import Calibration, CalibrationStore, DeviceCohort
from edgesiam.runtime.chunk_queue import ChunkQueue, EndOfStream
from edgesiam.runtime.config import MatchingConfig, RuntimeConfig, load_runtime_config
from edgesiam.runtime.enrollment import enroll_recordings
from edgesiam.runtime.gallery_calibration import review_calibration
from edgesiam.runtime.gallery_store import GalleryStore, model_sha256
from edgesiam.runtime.metrics import RuntimeMetrics
from edgesiam.runtime.outbox import Outbox
from edgesiam.runtime.publishers import Publisher, StdoutPublisher
from edgesiam.runtime.sources import open_source
from edgesiam.runtime.sources.base import Source, StreamFormat
from edgesiam.runtime.systemd import sd_notify, watchdog_interval
from edgesiam.runtime.threshold_store import (
    SetThresholds,
    ThresholdSources,
    ThresholdStore,
    resolve_thresholds,
    thresholds_path,
)

if TYPE_CHECKING:
    from edgesiam.model.interpreters import BundleEmbedder
    from edgesiam.runtime.commands import Clip

__all__ = [
    "RunSummary",
    "Runtime",
    "RuntimeCommands",
]

log = logging.getLogger("edgesiam.runtime")

OUTBOX_ERROR_LOG_INTERVAL_S = 10.0
"""At most one log line per this many seconds for events the outbox refuses (a full disk)."""

OUTBOX_NAME: Final = "outbox.sqlite3"
_POLL_S: Final = 0.2
_GALLERY_CHECK_S: Final = 2.0
CENTRING_PENDING: Final = (
    "matching.centre is 'background' but there is no calibration with a background yet: scores "
    "are plain cosines until edgesiam calibrate runs"
)
"""How often the loop looks whether the gallery file changed (an ``edgesiam enroll`` beside it)."""


# ------------------------------------------------------------------------------------------------
# the runtime


@dataclass
class RunSummary:
    """How a run went."""

    reason: str
    stream_s: float
    wall_s: float
    windows: int
    gated_windows: int
    events: int
    near_misses: int
    dropped_frames: int
    rejected_input: int
    outbox_pending: int
    outbox_refused: int = 0
    """events the outbox refused this run (a full disk or its byte bound): counted, never sent"""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rule(matching: MatchingConfig) -> DecisionRule:
    d = matching.decision
    return DecisionRule(d.n_of, d.m, d.refractory_s, matching.near_miss_margin, hold=d.hold)


def _gate(matching: MatchingConfig, modality: str) -> EnergyGate:
    g = matching.gate
    return EnergyGate.for_modality(
        modality,
        g.threshold_db,
        g.hangover,
        enabled=g.enabled,
        sensor_threshold=g.sensor_threshold,
    )


class Runtime:
    """Everything that runs on a device, wired from one config.

    ``publisher``, ``embedder`` and ``source`` replace what the config would build (tests,
    benchmarks); ``publisher`` may be a factory that takes the runtime's outbox (e.g.
    ``lambda outbox: MemoryPublisher("dev", outbox)``). ``stdin`` replaces standard input for a
    ``stdin:`` source; ``config_path`` is where ``reload`` re-reads the matching settings from.
    An ``mqtt:`` source uses the ``mqtt`` section's broker even when publishing is off.
    A runtime runs once: :meth:`run` closes the outbox at the end.
    """

    def __init__(
        self,
        config: RuntimeConfig,
        *,
        publisher: Publisher | Callable[[Outbox], Publisher] | None = None,
        embedder: BundleEmbedder | None = None,
        source: Source | None = None,
        stdin: BinaryIO | None = None,
        out: TextIO | None = None,
        config_path: str | Path | None = None,
    ) -> None:
        self.config = config
        self.config_path = Path(config_path) if config_path is not None else None
        self.out = out
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._stop_reason = "stopped"
        self.embedder = embedder if embedder is not None else self._load_embedder()
        self.format = StreamFormat.of(self.embedder)
        self.model_sha256 = model_sha256(self.embedder.manifest)
        m = config.matching
        self._open_stores(m)
        self.matcher = StreamMatcher(
            self.embedder,
            self.make_scorer(self.gallery),
            self.threshold_sources.thresholds,
            decider=Decider(_rule(m)),
            gate=_gate(m, self.format.modality),
            margin=m.margin,
        )
        self.metrics = RuntimeMetrics(config.metrics.latency_window)
        self._open_outbox_and_io(publisher, source, stdin)
        self.matcher.sample_rate = float(self.source.sample_rate)
        self._wire_commands()
        self.queue = ChunkQueue(
            max(1, round(config.processing.queue_s * self.source.sample_rate)),
            block=getattr(self.source, "wait_for_room", not self.source.live),
        )
        self._pump_thread: threading.Thread | None = None
        self._stopped_at: float | None = None
        self._pending_after = 0
        self._expected_start = 0
        self._drops_logged = 0
        self._stream_end = 0
        self.outbox_errors = 0
        self._outbox_error_logged = -math.inf

    def _open_stores(self, m: MatchingConfig) -> None:
        """What sits beside the gallery and the bundle: the gallery, thresholds set over MQTT, the
        calibration and cohort; and the thresholds they resolve to."""
        config, manifest = self.config, self.embedder.manifest
        self.bundle_cohort, self.window_at_fmr = self._score_norm(m)
        self._warn_unsupported_threshold(m)
        self.store = GalleryStore(
            config.gallery_path,
            self.model_sha256,
            bundle_name=manifest.name,
            aggregate=config.matching.aggregate,
        )
        self.gallery = self._load_gallery()
        self._gallery_print = self.store.fingerprint()
        self.threshold_store = ThresholdStore(
            thresholds_path(config.gallery_path), self.model_sha256, manifest.name
        )
        self.matching = m
        self.set_thresholds = self.threshold_store.load()
        self.calibration_store = CalibrationStore(
            config.gallery_path, self.model_sha256, manifest.name
        )
        self.device_cohort = self.calibration_store.load_cohort(int(self.embedder.embedding_dim))
        self.calibration = self.calibration_store.load(self.score_kind)
        self.threshold_sources = self._resolve(m, self.set_thresholds)

    def _open_outbox_and_io(
        self,
        publisher: Publisher | Callable[[Outbox], Publisher] | None,
        source: Source | None,
        stdin: BinaryIO | None,
    ) -> None:
        """The outbox, then the source and the publisher; the outbox is closed again if either
        fails."""
        config = self.config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(
            config.state_dir / OUTBOX_NAME,
            config.outbox.max_pending,
            config.outbox.policy,
            id_prefix=config.device_id,
            keep_acked_s=config.outbox.keep_acked_s,
            keep_acked_max=config.outbox.keep_acked_max,
        )
        try:
            self.source = source if source is not None else self._open_source(stdin)
            if publisher is None:
                self.publisher: Publisher = self._make_publisher()
            elif isinstance(publisher, type) or not isinstance(publisher, Publisher):
                self.publisher = publisher(self.outbox)  # a factory (or a class) of publishers
            else:
                self.publisher = publisher
        except BaseException:
            self.outbox.close()
            raise

    def _wire_commands(self) -> None:
        """The publisher's commands reach this runtime; replay when the publisher can republish."""
        from edgesiam.runtime.commands import CommandHandler
        from edgesiam.runtime.replay import Replayer

        self.commands = RuntimeCommands(self)
        republish = getattr(self.publisher, "republish", None)
        self.command_handler = CommandHandler(
            self.commands,
            replay=Replayer(self.outbox, republish) if republish is not None else None,
        )
        self.publisher.set_command_handler(self.command_handler)
        self.publisher.set_labels(self.gallery.labels)

    def __repr__(self) -> str:
        return (
            f"Runtime(bundle={str(self.config.bundle)!r}, source={self.source.description!r}, "
            f"device={self.config.device_id!r}, labels={len(self.gallery.labels)})"
        )

    # --- building ------------------------------------------------------------------------------

    def _load_embedder(self) -> BundleEmbedder:
        from edgesiam.model.interpreters import load_model

        i = self.config.interpreter
        return load_model(
            self.config.bundle, i.delegate, backend=i.backend, num_threads=i.num_threads
        )

    def _score_norm(self, matching: MatchingConfig) -> tuple[np.ndarray | None, dict[str, float]]:
        """The bundle's cohort (None: raw cosines) and the window thresholds that go with it."""
        from edgesiam.model.bundle import load_cohort

        manifest = self.embedder.manifest
        if matching.score_norm == "off":
            return None, dict(manifest.thresholds.window.at_fmr)
        cohort = load_cohort(self.config.bundle, manifest)
        info = manifest.cohort
        if cohort is None or info is None or info.window_thresholds is None:
            raise DataError(
                "matching.score_norm is 'cohort' but the bundle ships no cohort with window "
                "thresholds for the normalised score (python -m edgesiam.export.recalibrate adds "
                "them); set matching.score_norm: off",
                self.config.bundle,
            )
        return cohort, dict(info.window_thresholds.at_fmr)

    @property
    def score_kind(self) -> str:
        """What a window's score is once calibrated: ``cosine`` or ``adaptive-s-norm``, prefixed
        ``centred-`` with ``matching.centre: background`` (fixed at start: a calibration is for
        one kind)."""
        kind = "cosine" if self.bundle_cohort is None else "adaptive-s-norm"
        return kind if self.config.matching.centre == "off" else f"centred-{kind}"

    def centre_of(self, device: DeviceCohort | None) -> np.ndarray | None:
        """The mean the scores are centred on (``matching.centre``), from ``device``'s background;
        None: no centring (off, or no background of at least MIN_CENTRE windows)."""
        if self.config.matching.centre == "off" or device is None:
            return None
        return background_mean(device.background)

    def cohort_for_norm(self, device: DeviceCohort | None) -> np.ndarray | None:
        """The impostors scores are normalised with: the bundle's cohort and the device's."""
        if self.bundle_cohort is None:
            return None
        if device is None:
            return self.bundle_cohort
        return np.concatenate([self.bundle_cohort, device.impostors()])

    def make_scorer(self, gallery: Gallery, device: DeviceCohort | bool | None = True) -> Scorer:
        """What scores windows against ``gallery``: the gallery itself (cosines) or AS-norm,
        centred on the background with ``matching.centre``. ``device``: the device cohort (True:
        the stored one, which centres only while its calibration is in use)."""
        found = self.device_cohort if device is True else device or None
        mean = self.centre_of(found if device is not True or self.calibration else None)
        cohort = self.cohort_for_norm(found)
        info = self.embedder.manifest.cohort
        if mean is not None and len(gallery):
            gallery = centred_gallery(gallery, mean)
            cohort = None if cohort is None else centre_rows(cohort, mean)
        inner: Scorer = gallery
        if cohort is not None and info is not None and len(gallery):
            inner = NormalisedScorer(
                gallery.embeddings, gallery.template_labels, cohort, info.top_k
            )
        return inner if mean is None or not len(gallery) else CentredScorer(inner, mean)

    def _resolve(self, matching: MatchingConfig, saved: SetThresholds) -> ThresholdSources:
        c = self.calibration
        calibrated = c.thresholds() if c is not None else None
        by = (
            ""
            if c is None
            else (f"edgesiam calibrate: {c.max_false_per_hour:.3g} false/hour ({c.path})")
        )
        sources = resolve_thresholds(matching, self.window_at_fmr, saved, calibrated, by)
        if self.bundle_cohort is None or not sources.default_source.startswith("bundle"):
            return sources
        note = sources.default_source + ", for the normalised score (matching.score_norm)"
        return replace(sources, default_source=note)

    @property
    def centring(self) -> Literal["off", "on", "pending"]:
        """Whether scores are centred on the background (``matching.centre``): ``pending`` when
        asked for but there is no calibration with a background yet (plain cosines meanwhile)."""
        if self.config.matching.centre == "off":
            return "off"
        return "on" if isinstance(self.matcher.scorer, CentredScorer) else "pending"

    def _log_centring(self) -> None:
        if self.centring == "on":
            windows = len(self.device_cohort.background) if self.device_cohort else 0
            log.info(
                "scores centred on the mean of %d background windows (matching.centre: "
                "background, %s)",
                windows,
                self.calibration_store.cohort_file,
            )
        elif self.centring == "pending":
            log.info("%s", CENTRING_PENDING)

    def _warn_uncalibrated(self) -> None:
        c = self.calibration
        missing = [x for x in self.gallery.labels if c is not None and x not in c.labels]
        if missing:
            log.warning(
                "%s enrolled after the calibration (%s): not calibrated; run edgesiam calibrate "
                "again",
                ", ".join(missing),
                c.path if c is not None else "",
            )

    def _warn_unsupported_threshold(self, matching: MatchingConfig) -> None:
        if matching.threshold is not None:
            return
        key = np.format_float_positional(matching.target_fmr, trim="-")
        supported = self.embedder.manifest.thresholds.window.supported.get(key, True)
        if not supported:
            log.warning(
                "the bundle's threshold for FMR %s rests on too few impostor trials; "
                "the real false-match rate may be higher",
                key,
            )

    def _load_gallery(self) -> Gallery:
        if not self.store.exists():
            log.warning(
                "no gallery at %s yet: nothing will match until labels are enrolled "
                "(edgesiam enroll, or the enroll command over MQTT)",
                self.store.path,
            )
            return Gallery(int(self.embedder.embedding_dim))
        gallery = self.store.load()
        if gallery.dim != int(self.embedder.embedding_dim):
            raise DataError(
                f"gallery embeddings have {gallery.dim} dimensions, the bundle's "
                f"{self.embedder.embedding_dim}",
                self.store.path,
            )
        return gallery

    def _open_source(self, stdin: BinaryIO | None) -> Source:
        c = self.config
        settings = c.mqtt.settings(c.device_id)
        return open_source(
            c.source,
            self.format,
            mqtt=settings,
            stdin=stdin,
            client_id=f"{settings.effective_client_id}-source",
        )

    def _make_publisher(self) -> Publisher:
        c = self.config
        if not c.mqtt.enabled:
            return StdoutPublisher(self.outbox, self.out)
        return MqttPublisher(
            c.mqtt.settings(c.device_id),
            self.outbox,
            self.embedder.manifest.name,
            labels=self.gallery.labels,
        )

    # --- running -------------------------------------------------------------------------------

    def stop(self, reason: str = "stopped") -> None:
        """Ask the run to end (thread- and signal-safe): the source stops, the loop drains."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stopped_at = time.monotonic()
            self._stop.set()
            self.source.close()
            self.queue.close()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, max_wall_s: float | None = None) -> RunSummary:
        """Process the stream until it ends, :meth:`stop` is called, or ``max_wall_s`` passes.

        A failing source raises its error here, after the clean shutdown.
        """
        started = time.monotonic()
        try:
            self.publisher.start()
        except BaseException:
            self.outbox.close()
            raise
        pump = threading.Thread(target=self._pump, name="edgesiam-source", daemon=True)
        self._pump_thread = pump
        pump.start()
        log.info(
            "running %s on %s (%s, %d Hz, window %d, hop %d) with %d label(s); device %s",
            self.embedder.manifest.name,
            self.source.description,
            self.format.modality,
            self.format.sample_rate,
            self.embedder.window,
            self.embedder.hop,
            len(self.gallery.labels),
            self.config.device_id,
        )
        log.info(
            "thresholds (a window matches when its score >= its label's threshold):\n%s",
            "\n".join(self.threshold_sources.report(self.gallery.labels)),
        )
        self._warn_uncalibrated()
        self._log_centring()
        sd_notify("READY=1")
        error: BaseException | None = None
        reason = "end"
        try:
            error, reason = self._loop(started, max_wall_s)
        finally:
            self.stop(reason)
            pump.join(timeout=2.0)
            sd_notify("STOPPING=1")
            self._finish()
        if error is not None:
            raise error
        if (unsaid := self.queue.dropped_samples - self._drops_logged) > 0:
            self._log_drop(unsaid, "at the end of the stream")
        summary = RunSummary(
            reason=reason,
            stream_s=round(self._stream_end / self.source.sample_rate, 3),
            wall_s=round(time.monotonic() - started, 3),
            windows=self.metrics.windows,
            gated_windows=self.metrics.gated,
            events=self.metrics.events,
            near_misses=self.metrics.near_misses,
            dropped_frames=self.queue.dropped_samples,
            rejected_input=int(getattr(self.source, "rejected", 0)),
            outbox_pending=self._pending_after,
            outbox_refused=self.outbox_errors,
        )
        log.info("run ended (%s): %s", reason, json.dumps(summary.to_dict()))
        return summary

    def _loop(self, started: float, max_wall_s: float | None) -> tuple[BaseException | None, str]:
        interval = self.config.metrics.interval_s
        next_metrics = time.monotonic() + interval
        next_gallery = time.monotonic() + _GALLERY_CHECK_S
        watchdog = watchdog_interval()
        next_ping = time.monotonic()
        while True:
            item = self.queue.get(_POLL_S)
            if isinstance(item, EndOfStream):
                if item.error is not None:
                    return item.error, "source failed"
                return None, self._stop_reason if self.stopping else "end"
            if item is not None:
                self._process(*item)
            elif self.stopping and self.queue.held == 0 and self._source_gone():
                return None, self._stop_reason
            now = time.monotonic()
            if now >= next_metrics:
                next_metrics = now + interval
                self._publish_metrics()
            if now >= next_gallery:
                next_gallery = now + _GALLERY_CHECK_S
                self._reload_if_changed()
            if watchdog is not None and now >= next_ping:
                next_ping = now + watchdog
                sd_notify("WATCHDOG=1")
            if max_wall_s is not None and now - started >= max_wall_s and not self.stopping:
                self.stop("time limit")

    def _source_gone(self) -> bool:
        """After a stop: the source thread ended, or had its time (a read it cannot interrupt)."""
        pump = self._pump_thread
        waited = time.monotonic() - (self._stopped_at or time.monotonic())
        return pump is None or not pump.is_alive() or waited > 2.0

    def _pump(self) -> None:
        """The source thread: read chunks, count samples, queue them (or drop them when full)."""
        start = 0
        try:
            for chunk in self.source.chunks():
                if chunk.shape[0] == 0:
                    continue
                self.queue.put(start, chunk)
                start += int(chunk.shape[0])
        except BaseException as exc:  # handed to the loop, which raises it after shutting down
            if not self.stopping:
                self.queue.end(exc)
                return
        self.queue.end()

    def _log_drop(self, dropped: int, when: str) -> None:
        """Say why samples were lost: a live source outran the device, or a recording was
        declared live."""
        self._drops_logged += dropped
        where = self.source.description
        if getattr(self.source, "unpaced", False):
            log.warning(
                "%s delivers faster than real time (a recording, not a live stream) but is set "
                "live: %d samples dropped %s; set the source's live: false "
                "(--source %s:?live=false) so that the pipeline waits for it",
                where,
                dropped,
                when,
                where.split(":", 1)[0],
            )
        else:
            log.warning(
                "processing fell behind the live source %s: %d samples dropped %s "
                "(this device processes more slowly than the stream arrives)",
                where,
                dropped,
                when,
            )

    # --- the matcher's state, replaced under the lock by commands and reloads ------------------

    @property
    def thresholds(self) -> Thresholds:
        """The thresholds in use (config, bundle, calibration and values set over MQTT)."""
        return self.matcher.thresholds

    @property
    def window_observer(self) -> Callable[[float, np.ndarray | None], None] | None:
        """Called with each window's end offset and embedding (None: gated): edgesiam calibrate."""
        return self.matcher.on_window

    @window_observer.setter
    def window_observer(self, observer: Callable[[float, np.ndarray | None], None] | None) -> None:
        self.matcher.on_window = observer

    def _process(self, start: int, chunk: np.ndarray) -> None:
        """One chunk through the matcher; then count its windows and publish its decisions."""
        if start != self._expected_start:  # chunks were dropped: restart the windows here
            self._log_drop(start - self._expected_start, f"before sample {start}")
            self.matcher.restart(start)
        n = int(chunk.shape[0])
        self._expected_start = start + n
        self._stream_end = start + n
        samples = chunk[:, 0] if self.format.modality == "audio" else chunk
        with self._lock:
            results = self.matcher.push_windows(samples)
            embedding_of = [[self.matcher.embedding_of(d) for d in r.decisions] for r in results]
        for result, embeddings in zip(results, embedding_of, strict=True):
            self._count(result)
            for decision, embedding in zip(result.decisions, embeddings, strict=True):
                self._emit(decision, embedding)
        self.metrics.samples += n  # last: once counted, a chunk's windows are all decided

    def _count(self, result: WindowResult) -> None:
        self.metrics.windows += 1
        if result.embedding is None:
            self.metrics.gated += 1
        else:
            self.metrics.inference.add(result.inference_ms)
            self.metrics.window_total.add(result.total_ms)

    def _review_fields(self, embedding: np.ndarray | None) -> dict[str, Any]:
        """``embedding`` (int8, base64) and ``embedding_scale`` when embeddings are sent."""
        if not self.config.send_embeddings or embedding is None:
            return {}
        return {**encode_embedding(embedding), "embedding_id": embedding_id(embedding)}

    def _emit(self, decision: Decision, embedding: np.ndarray | None = None) -> None:
        review = self._review_fields(embedding)
        if decision.kind == "near_miss":
            self.metrics.near_misses += 1
            self.publisher.publish_near_miss(
                {
                    "label": decision.label,
                    "score": round(decision.score, 5),
                    "threshold": round(decision.threshold, 5),
                    "offset_s": round(decision.offset_s, 3),
                    "model": self.embedder.manifest.name,
                    **review,
                }
            )
            return
        from edgesiam.mqtt.contract import event_builder

        build = event_builder(
            device=self.config.device_id,
            model=self.embedder.manifest.name,
            label=decision.label,
            score=decision.score,
            threshold=decision.threshold,
            offset_s=decision.offset_s,
            model_sha256=self.model_sha256,
            source=self.source.description,
            **review,
        )
        try:
            event = self.outbox.add(build)
        except OutboxError as exc:
            self.outbox_errors += 1
            now = time.monotonic()
            if now - self._outbox_error_logged >= OUTBOX_ERROR_LOG_INTERVAL_S:
                # a full disk refuses every event: one line per interval, not one per event
                self._outbox_error_logged = now
                log.error(
                    "event %s at %.2f s not stored (%d refused in all): %s",
                    decision.label,
                    decision.offset_s,
                    self.outbox_errors,
                    exc,
                )
            return
        self.metrics.events += 1
        log.info(
            "event seq %d: %s (score %.3f ≥ %.3f) at %.2f s",
            event.seq,
            decision.label,
            decision.score,
            decision.threshold,
            decision.offset_s,
        )
        if self.config.print_events and not isinstance(self.publisher, StdoutPublisher):
            print(event.text, file=self.out if self.out is not None else sys.stdout, flush=True)
        self.publisher.publish_event(event)

    def metrics_snapshot(self) -> dict[str, Any]:
        """The metrics message as it is published now."""
        self.metrics.dropped_samples = self.queue.dropped_samples
        self.metrics.dropped_chunks = self.queue.dropped_chunks
        return self.metrics.snapshot(
            outbox_depth=self.outbox.depth,
            outbox_dropped=self.outbox.dropped,
            outbox_errors=self.outbox_errors,
            rejected_input=int(getattr(self.source, "rejected", 0)),
            labels=len(self.gallery.labels),
            modality=self.format.modality,
            queue_samples=self.queue.held,
        )

    def _publish_metrics(self) -> None:
        snapshot = self.metrics_snapshot()
        log.info(
            "metrics: %.1f windows/s, p50 %s ms, p95 %s ms, %d dropped, outbox %d, RSS %.0f MiB, "
            "CPU %.0f %%",
            snapshot["windows_per_s"],
            snapshot["inference_ms_p50"],
            snapshot["inference_ms_p95"],
            snapshot["dropped_frames"],
            snapshot["outbox_depth"],
            snapshot["rss_mb"],
            snapshot["cpu_percent"],
        )
        try:
            self.publisher.publish_metrics(snapshot)
        except Exception:  # metrics must never stop the pipeline
            log.exception("publishing metrics failed")

    def _finish(self) -> None:
        """Flush: final metrics, pending events (while connected), ``offline``, close the outbox."""
        with contextlib.suppress(Exception):
            self._publish_metrics()
        try:
            self.publisher.stop(self.config.outbox.drain_timeout_s)
        except Exception:
            log.exception("stopping the publisher failed")
        self._pending_after = self.outbox.depth
        if self._pending_after:
            log.warning(
                "%d event(s) not yet delivered stay in the outbox for the next start",
                self._pending_after,
            )
        self.outbox.close()

    # --- the gallery and thresholds (also reached from commands) --------------------------------

    def replace_gallery(self, gallery: Gallery) -> None:
        scorer = self.make_scorer(gallery)
        with self._lock:
            self.gallery = gallery
            self.matcher.scorer = scorer
            self._gallery_print = self.store.fingerprint()
        self.publisher.set_labels(gallery.labels)

    def _reload_if_changed(self) -> None:
        fingerprint = self.store.fingerprint()
        if fingerprint == self._gallery_print:
            return
        try:
            gallery = self._load_gallery()
        except EdgesiamError as exc:
            log.error("the gallery changed on disk but cannot be used (keeping the old): %s", exc)
            self._gallery_print = fingerprint
            return
        log.info("gallery reloaded: %s", ", ".join(gallery.labels) or "(empty)")
        self.replace_gallery(gallery)

    def apply_matching(self, matching: MatchingConfig) -> None:
        """New thresholds, decision rule and gate (``reload``); the decider starts afresh.
        Thresholds set over MQTT (saved beside the gallery) still take precedence."""
        if matching.centre != self.config.matching.centre:
            log.warning(
                "matching.centre changes from '%s' to '%s' at the next start (a calibration is "
                "for one kind of score); kept for now",
                self.config.matching.centre,
                matching.centre,
            )
        sources = self._resolve(matching, self.set_thresholds)
        rule = _rule(matching)
        gate = _gate(matching, self.format.modality)
        with self._lock:
            self.matching = matching
            self.threshold_sources = sources
            self.matcher.thresholds = sources.thresholds
            self.matcher.decider = Decider(rule)
            self.matcher.gate = gate
            self.matcher.margin = matching.margin

    def apply_calibration(
        self, calibration: Calibration | None, cohort: DeviceCohort | None
    ) -> ThresholdSources:
        """A new calibration and device cohort (saved by the caller): scores and thresholds."""
        with self._lock:
            self.device_cohort = cohort
            self.calibration = calibration
            self.matcher.scorer = self.make_scorer(self.gallery)
            sources = self._resolve(self.matching, self.set_thresholds)
            self.threshold_sources = sources
            self.matcher.thresholds = sources.thresholds
        return sources

    def apply_set_thresholds(self, saved: SetThresholds, save: bool = True) -> ThresholdSources:
        """Thresholds set over MQTT: saved (atomically, beside the gallery) first, then used."""
        if save:
            saved = self.threshold_store.save(saved)
        sources = self._resolve(self.matching, saved)
        with self._lock:
            self.set_thresholds = saved
            self.threshold_sources = sources
            self.matcher.thresholds = sources.thresholds
        return sources


# ------------------------------------------------------------------------------------------------
# commands


class RuntimeCommands:
    """The :class:`~edgesiam.runtime.commands.CommandTarget` of a running :class:`Runtime`.

    Enrolments go to the gallery file first (atomic, bound to the bundle), then the running
    gallery is swapped. Threshold changes are saved beside the gallery (bound to the bundle,
    atomic) before they are used, so they stay in force across restarts and ``reload``.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def _labels(self) -> list[str]:
        return self.runtime.gallery.labels

    def _enrolled(self, enrolment: Any) -> dict[str, Any]:
        rt = self.runtime
        rt.replace_gallery(rt.store.load())
        return {
            "label": enrolment.label,
            "recordings": enrolment.recordings,
            "consistency": round(float(enrolment.consistency), 4),
            "replaced": enrolment.replaced,
            "warnings": list(enrolment.warnings),
            "clips": [clip.to_dict() for clip in getattr(enrolment, "clips", [])],
            "labels": self._labels(),
        }

    def enroll_embeddings(
        self, label: str, embeddings: np.ndarray, append: bool = False
    ) -> dict[str, Any]:
        """Each row is one recording's embedding (as ``edgesiam embed`` writes them)."""
        rt = self.runtime
        dim = int(rt.embedder.embedding_dim)
        if embeddings.ndim != 2 or embeddings.shape[1] != dim:
            raise ValueError(
                f"embeddings must be rows of {dim} numbers (this bundle's embedding size), "
                f"got shape {tuple(embeddings.shape)}"
            )
        return self._enrolled(rt.store.enroll(label, list(embeddings), append=append))

    def enroll_clips(self, label: str, clips: list[Clip], append: bool = False) -> dict[str, Any]:
        """Recordings sent with the command (WAVs for audio, CSVs for sensors), embedded here with
        the bundle from their active windows, as ``edgesiam enroll`` does."""
        rt = self.runtime
        wanted = "wav" if rt.format.modality == "audio" else "csv"
        for clip in clips:
            if clip.kind != wanted:
                raise ValueError(
                    f"{clip.name}: this bundle is for {rt.format.modality}: send "
                    f"{wanted}_base64 recordings, not {clip.kind}_base64"
                )
        with tempfile.TemporaryDirectory(prefix="edgesiam-enroll-") as folder:
            paths = [Path(folder) / f"{i:02d}.{c.kind}" for i, c in enumerate(clips, start=1)]
            for path, clip in zip(paths, clips, strict=True):
                path.write_bytes(clip.data)
            names = [clip.name for clip in clips]
            try:
                with rt._lock:  # the interpreter is not thread-safe
                    enrolment = enroll_recordings(
                        rt.store,
                        rt.embedder,
                        label,
                        paths,
                        gate=rt.matcher.gate,
                        append=append,
                        names=names,
                    )
            except DataError as exc:
                text = str(exc)
                for path, name in zip(paths, names, strict=True):
                    text = text.replace(str(path), name)
                raise DataError(text) from None
        return self._enrolled(enrolment)

    def forget(self, label: str) -> dict[str, Any]:
        rt = self.runtime
        removed = rt.store.forget(label)
        rt.replace_gallery(rt.store.load())
        return {"label": label, "removed": removed, "labels": self._labels()}

    def list(self) -> dict[str, Any]:
        rt = self.runtime
        with rt._lock:
            counts = rt.gallery.counts()
            templates = {label: rt.gallery.templates(label) for label in counts}
            sources = rt.threshold_sources
        thresholds = sources.thresholds
        info = {i.label: i for i in rt.store.list()} if rt.store.exists() else {}
        return {
            "labels": [
                {
                    "label": label,
                    "recordings": n,
                    "consistency": (
                        None
                        if label not in info or math.isnan(info[label].consistency)
                        else round(info[label].consistency, 4)
                    ),
                    "threshold": round(thresholds.for_label(label), 5),
                    "threshold_source": sources.source_of(label),
                    "templates": [embedding_id(t) for t in templates[label]],
                }
                for label, n in counts.items()
            ],
            "default_threshold": round(thresholds.default, 5),
            "default_threshold_source": sources.default_source,
            "model": rt.embedder.manifest.name,
            "modality": rt.format.modality,
        }

    def set_threshold(
        self, label: str | None, value: float | None, target_fmr: float | None
    ) -> dict[str, Any]:
        """Set (and save) the default or a label's threshold; a label with neither ``value``
        nor ``target_fmr`` drops the value set over MQTT for it (back to the config's)."""
        rt = self.runtime
        if target_fmr is not None:
            value = threshold_for(rt.window_at_fmr, target_fmr)
        old = rt.set_thresholds
        per_label = dict(old.per_label)
        default = old.default
        if label is None:
            assert value is not None  # the request schema guarantees one of them
            default = value
        elif value is None:
            per_label.pop(label, None)
        else:
            per_label[label] = value
        sources = rt.apply_set_thresholds(SetThresholds(default, per_label))
        new = sources.thresholds
        shown = new.default if label is None else new.for_label(label)
        listed = self.list()
        return {
            "label": label,
            "threshold": round(shown, 5),
            "source": sources.default_source if label is None else sources.source_of(label),
            "default": round(new.default, 5),
            "saved": str(rt.threshold_store.path),
            "labels": listed["labels"],
            "default_threshold": listed["default_threshold"],
        }

    # --- the review loop ----------------------------------------------------------------------

    def _decode(self, text: str, scale: float) -> np.ndarray:
        return decode_embedding(text, scale, int(self.runtime.embedder.embedding_dim))

    def _enrolled_label(self, label: str) -> None:
        if label not in self.runtime.gallery.labels:
            known = ", ".join(self._labels()) or "none"
            raise DataError(f"no label '{label}' is enrolled (enrolled: {known})")

    def reject(self, label: str, embedding: str, scale: float) -> dict[str, Any]:
        """A false match of ``label``: its window joins the impostor cohort, the label's
        threshold is recomputed above it (saved beside the gallery before it is used)."""
        rt = self.runtime
        self._enrolled_label(label)
        e = self._decode(embedding, scale)
        old = rt.device_cohort
        dim = int(rt.embedder.embedding_dim)
        empty = np.zeros((0, dim), dtype=np.float32)
        cohort = DeviceCohort(
            old.background if old is not None else empty,
            np.concatenate([old.rejected if old is not None else empty, e[None, :]]),
            [*(old.rejected_labels if old is not None else []), label],
        )
        return {"id": embedding_id(e), **self._reviewed(label, cohort)}

    def unreject(self, entry_id: str) -> dict[str, Any]:
        """Undo a ``reject``: the window leaves the cohort, its label's threshold is recomputed."""
        rt = self.runtime
        old = rt.device_cohort
        ids = old.rejected_ids if old is not None else []
        if old is None or entry_id not in ids:
            raise DataError(f"no rejected window {entry_id} on this device")
        i = ids.index(entry_id)
        label = old.rejected_labels[i]
        keep = [k for k in range(len(ids)) if k != i]
        cohort = DeviceCohort(
            old.background, old.rejected[keep], [old.rejected_labels[k] for k in keep]
        )
        return {"id": entry_id, **self._reviewed(label, cohort)}

    def _reviewed(self, label: str, cohort: DeviceCohort) -> dict[str, Any]:
        rt = self.runtime
        before = rt.thresholds.for_label(label)
        calibration = review_calibration(rt, cohort, label)
        rt.calibration_store.save_cohort(cohort)
        calibration = rt.calibration_store.save(calibration)
        sources = rt.apply_calibration(calibration, cohort)
        return {
            "label": label,
            "threshold_before": round(before, 5),
            "threshold": round(sources.thresholds.for_label(label), 5),
            "source": sources.source_of(label),
            "rejected": len(cohort.rejected_for(label)),
            "saved": str(rt.calibration_store.path),
        }

    def confirm(self, label: str, embedding: str, scale: float) -> dict[str, Any]:
        """A near miss that was ``label``: its window becomes one more template of the label."""
        rt = self.runtime
        e = self._decode(embedding, scale)
        enrolment = rt.store.enroll(
            label, [e], append=True, sources=[f"confirmed {embedding_id(e)}"]
        )
        gallery = rt.store.load()
        rt.replace_gallery(gallery)
        return {
            "label": label,
            "id": embedding_id(gallery.templates(label)[-1]),
            "recordings": enrolment.recordings,
            "labels": self._labels(),
        }

    def forget_template(self, label: str, template_id: str) -> dict[str, Any]:
        """Remove one template (undo of ``confirm``)."""
        rt = self.runtime
        left = rt.store.forget_template(label, template_id)
        rt.replace_gallery(rt.store.load())
        return {"label": label, "id": template_id, "recordings": left, "labels": self._labels()}

    def reload(self) -> dict[str, Any]:
        """Re-read the gallery file and, when the run came from a config file, its matching."""
        rt = self.runtime
        rt.replace_gallery(rt._load_gallery())
        reloaded = ["gallery"]
        rt.apply_set_thresholds(rt.threshold_store.load(), save=False)
        if rt.config_path is not None:
            fresh = load_runtime_config(rt.config_path)
            rt.apply_matching(fresh.matching)
            reloaded.append("matching")
        return {"reloaded": reloaded, "labels": self._labels()}
