"""``edgesiam calibrate``: per-label thresholds for a target in false matches per hour, from the
device's own background.

The background (a file, a folder of recordings, or the microphone for a few minutes; none of the
enrolled labels in it) runs through the device pipeline itself — a :class:`Runtime` with its
windowing, energy gate, front-end and model — and each window's embedding is kept. Each label's
threshold then comes from :func:`edgesiam.core.calibration.calibrate_label`: the background windows,
the other labels' templates and the bundle's cohort scored against the label, with the decision
rule's N-of-M share measured on the stream. The result (and the device's impostor cohort: at most
:data:`~edgesiam.runtime.calibration_store.MAX_COHORT` background windows) is written beside the
gallery and used by ``edgesiam run`` ahead of the config's thresholds.
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgesiam.argparsing import add_command
from edgesiam.core.calibration import DEFAULT_FALSE_PER_HOUR
from edgesiam.data.readers import modality_of
from edgesiam.errors import ConfigError, DataError
from edgesiam.runtime.calibration_store import Calibration
from edgesiam.runtime.config import RuntimeConfig, load_runtime_config, parse_source_uri
from edgesiam.runtime.gallery_calibration import Background, calibrate_gallery
from edgesiam.runtime.run_cli import add_runtime_inputs

if TYPE_CHECKING:
    from edgesiam.model.interpreters import BundleEmbedder
    from edgesiam.runtime.pipeline import Runtime

__all__ = [
    "add_calibrate_parser",
    "cmd_calibrate",
    "collect_background",
    "report_lines",
    "run_calibration",
]

log = logging.getLogger("edgesiam.runtime")


def _background_sources(spec: str, modality: str) -> list[dict[str, Any]]:
    """``--background`` → source sections: one per recording of a folder, else the URI's."""
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and modality_of(p) == modality)
        if not files:
            raise DataError(f"no {modality} recordings in the background folder", path)
        return [{"type": "file", "path": str(p.resolve())} for p in files]
    if path.is_file():
        return [{"type": "file", "path": str(path.resolve())}]
    if ":" in spec:
        return [parse_source_uri(spec)]
    raise DataError("the background is neither a file, a folder nor a source URI (mic:)", path)


def _runtimes(
    config: RuntimeConfig, spec: str, embedder: BundleEmbedder, state_dir: Path
) -> Iterator[Runtime]:
    from edgesiam.runtime.pipeline import Runtime
    from edgesiam.runtime.publishers import NullPublisher
    from edgesiam.runtime.sources import source_config

    modality = "audio" if embedder.manifest.modality == "audio" else "sensor"
    for source in _background_sources(spec, modality):
        cfg = config.model_copy(update={"source": source_config(source), "state_dir": state_dir})
        yield Runtime(cfg, embedder=embedder, publisher=NullPublisher)


class _Collector:
    """A runtime's window observer: keeps each window's embedding (NaN when gated) until
    ``left`` seconds of stream have passed, then stops the runtime."""

    def __init__(self, runtime: Runtime, left: float, dim: int) -> None:
        self.runtime, self.left, self.dim = runtime, left, dim
        self.kept: list[np.ndarray] = []

    def __call__(self, offset_s: float, embedding: np.ndarray | None) -> None:
        if offset_s > self.left:
            self.runtime.stop("minutes")
            return
        row = np.full(self.dim, np.nan) if embedding is None else np.asarray(embedding).ravel()
        self.kept.append(row)


def collect_background(
    config: RuntimeConfig, spec: str, minutes: float, embedder: BundleEmbedder | None = None
) -> Background:
    """Run the background through the device pipeline for at most ``minutes`` of stream."""
    from edgesiam.model.interpreters import load_model

    i = config.interpreter
    embedder = embedder or load_model(
        config.bundle, i.delegate, backend=i.backend, num_threads=i.num_threads
    )
    dim = int(embedder.embedding_dim)
    gap = np.full((config.matching.decision.m, dim), np.nan, dtype=np.float32)
    rows: list[np.ndarray] = []
    budget = minutes * 60.0
    seconds = 0.0
    separators = 0
    with tempfile.TemporaryDirectory(prefix="edgesiam-calibrate-") as folder:
        for runtime in _runtimes(config, spec, embedder, Path(folder)):
            collector = _Collector(runtime, budget - seconds, dim)
            runtime.window_observer = collector
            summary = runtime.run(max_wall_s=collector.left if runtime.source.live else None)
            seconds += min(summary.stream_s, collector.left)
            if collector.kept:
                rows.extend([np.asarray(collector.kept, dtype=np.float32), gap])
                separators += len(gap)
            if seconds >= budget:
                break
    if not rows:
        raise DataError(f"the background gave no window: {spec}")
    return Background(np.concatenate(rows), spec, round(seconds, 1), separators)


# --- the command -------------------------------------------------------------------------------

HELP = "set the thresholds for a target in false matches per hour of the device's background"
DESCRIPTION = textwrap.dedent(
    """
    Set each enrolled label's threshold for a target number of false matches per hour, from
    this device's own background: a recording, a folder of recordings, or the microphone
    (mic:[DEVICE]) for --minutes, with none of the enrolled labels in it (an empty room, the
    usual noise, other people talking).

    The background runs through the same pipeline as `edgesiam run` (windows, energy gate,
    front-end, model). The device names each window's best label, so the threshold is set on
    the best label's score: the background's windows, each enrolled template against the other
    labels and the bundle's cohort would give at most --max-false-per-hour false events for the
    whole device, the N-of-M decision rule of the config included. A few minutes of background
    cannot show a rate of once a day, so the highest impostor scores are extrapolated with an
    exponential tail. Each label starts from that threshold (rejected windows raise it) and is
    reported with its expected hit rate on its own enrollment clips (leave-one-out).

    A folder's recordings are heard one after the other; one shorter than a window (1 s for
    speech) gives no window, so record stretches of talk or sound, not single short clips. With
    matching.centre: background in the config, scores are then centred on the background's
    mean (docs/RUNTIME.md).

    Written beside the gallery (gallery.calibration.json and the device's impostor cohort
    gallery.cohort.npz), bound to the bundle's model; `edgesiam run` uses it ahead of the
    config's thresholds (cmd/threshold over MQTT still wins). Run it again after enrolling.

    Examples:
      edgesiam calibrate --bundle export/speaker --gallery g.npz --background room.wav
      edgesiam calibrate --config /etc/edgesiam/pi4-audio.yaml --background mic: --minutes 5
    """
)


def add_calibrate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``calibrate`` to an ``argparse`` sub-parser collection; returns the new parser."""
    p = add_command(subparsers, "calibrate", help=HELP, description=DESCRIPTION)
    add_runtime_inputs(
        p, "runtime config (YAML): rule, gate, gallery", bundle_help="bundle directory"
    )
    p.add_argument(
        "--background",
        required=True,
        metavar="SOURCE",
        help="a recording, a folder of recordings, or mic:[DEVICE]",
    )
    p.add_argument(
        "--minutes",
        type=float,
        default=10.0,
        metavar="N",
        help="at most this much background (default 10; a microphone records this long)",
    )
    p.add_argument(
        "--max-false-per-hour",
        type=float,
        default=DEFAULT_FALSE_PER_HOUR,
        metavar="X",
        help="target false matches per hour for the whole device, all labels together "
        "(default 1/24: one a day)",
    )
    p.set_defaults(func=cmd_calibrate)
    return p  # type: ignore[no-any-return]


def report_lines(calibration: Calibration) -> list[str]:
    """One line per label: threshold, what it rests on, and the leave-one-out hit rate."""
    b = calibration.background
    lines = [
        f"background: {b['seconds']:.0f} s, {b['active']} of {b['windows']} windows active; "
        f"target {calibration.max_false_per_hour:.3g} false matches/hour "
        f"({calibration.score} scores)"
    ]
    for label, c in sorted(calibration.labels.items()):
        hits = "n/a (one clip)" if c.hit_rate is None else f"{100 * c.hit_rate:.0f}%"
        lines.append(
            f"  {label}: threshold {c.threshold:.4f} (highest impostor {c.highest_impostor:.4f} "
            f"of {c.impostor_trials}; {c.window_rate:.2g} per window, rule share "
            f"{c.rule_share:.2f}); own clips matched (leave-one-out): {hits}"
        )
        if c.hit_rate is not None and c.hit_rate < 0.5:
            lines.append(
                f"  warning: at this target '{label}' would rarely match even its own clips: "
                "enroll clearer, longer clips of it, or allow more false matches "
                "(--max-false-per-hour)"
            )
    return lines


def _config(args: argparse.Namespace) -> RuntimeConfig:
    overrides: dict[str, Any] = {"mqtt.enabled": False}
    if args.bundle:
        overrides["bundle"] = str(Path(args.bundle).expanduser().resolve())
    if args.gallery:
        overrides["gallery"] = str(Path(args.gallery).expanduser().resolve())
    if not args.config and not (args.bundle and args.gallery):
        raise ConfigError("edgesiam calibrate needs --config CFG, or --bundle DIR and --gallery G")
    if not args.config:
        overrides["source"] = {"type": "stdin"}
    if not (args.max_false_per_hour > 0 and math.isfinite(args.max_false_per_hour)):
        raise ConfigError(f"--max-false-per-hour must be > 0, got {args.max_false_per_hour}")
    if not args.minutes > 0:
        raise ConfigError(f"--minutes must be > 0, got {args.minutes}")
    return load_runtime_config(args.config, overrides)


def run_calibration(
    config: RuntimeConfig, background: str, minutes: float, max_false_per_hour: float
) -> Calibration:
    """Collect the background, calibrate every label, save both files; returns the calibration."""
    from edgesiam.model.bundle import load_manifest
    from edgesiam.runtime.pipeline import Runtime
    from edgesiam.runtime.publishers import NullPublisher
    from edgesiam.runtime.sources import source_config

    found = collect_background(config, background, minutes)
    with tempfile.TemporaryDirectory(prefix="edgesiam-calibrate-") as folder:
        # a runtime that reads nothing (an empty, unpaced stdin): only its scorers are used
        channels = load_manifest(config.bundle, verify=False).channels
        empty = {"type": "stdin", "live": False, "channels": channels}
        cfg = config.model_copy(update={"state_dir": Path(folder), "source": source_config(empty)})
        runtime = Runtime(cfg, publisher=NullPublisher, stdin=io.BytesIO())
        try:
            old = runtime.device_cohort
            calibration, cohort = calibrate_gallery(runtime, found, max_false_per_hour, old)
            runtime.calibration_store.save_cohort(cohort)
            return runtime.calibration_store.save(calibration)
        finally:
            runtime.outbox.close()


def cmd_calibrate(args: argparse.Namespace) -> int:
    config = _config(args)
    calibration = run_calibration(config, args.background, args.minutes, args.max_false_per_hour)
    for line in report_lines(calibration):
        print(line)
    print(f"wrote {calibration.path} (edgesiam run uses it ahead of the config's thresholds)")
    return 0
