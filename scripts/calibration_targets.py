"""Realised false matches per hour at ``edgesiam calibrate``'s thresholds, against the target.

For each draw: a few held-out labels are enrolled from a few clips each; ``edgesiam calibrate``
runs on the validation labels (never enrolled, never evaluated) as the device's background; then
the device pipeline (the runtime's windowing, gate, model) streams

- the held-out labels that were not enrolled (``held-out``), and the same recordings rendered
  through each out-of-domain channel (``ood/<channel>``): every event is a false match; the
  realised rate is events per hour of stream;
- the enrolled labels' other clips, one stream each: the hit rate is the share of clips with an
  event naming their label.

With ``--ood-background DIR``, each out-of-domain channel is calibrated on its own background,
``DIR/<channel>`` (the validation labels rendered through that channel), as a device calibrates on
what its own microphone hears, and its hit rate is measured on the enrolled labels' clips rendered
through the same channel (``hits/<channel>``).

    python scripts/calibration_targets.py speech export/speaker data/speech data/ood/speech \
        [--ood-background data/ood/speech-val]
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgesiam.core.decision import Decider
from edgesiam.errors import DataError
from edgesiam.model.interpreters import load_model
from edgesiam.runtime.calibrate import collect_background, run_calibration
from edgesiam.runtime.config import RuntimeConfig, load_runtime_config
from edgesiam.runtime.enrollment import enroll_recordings
from edgesiam.runtime.gallery_store import GalleryStore, model_sha256
from edgesiam.runtime.pipeline import Runtime
from edgesiam.runtime.publishers import NullPublisher

SUFFIXES = (".wav", ".flac", ".ogg")


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES)


def events(rt: Runtime, windows: np.ndarray, hop_s: float) -> list[str]:
    """The labels of the events the runtime's rule gives for a window sequence (NaN = gated)."""
    decider = Decider(rt.matcher.decider.rule)
    found = []
    for i, w in enumerate(windows):
        if not np.isfinite(w[0]):
            decisions = decider.push((i + 1) * hop_s, None, math.nan, 1.0)
        else:
            label, score = rt.matcher.match(w)
            threshold = rt.thresholds.for_label(label) if label else 1.0
            decisions = decider.push((i + 1) * hop_s, label, score, threshold)
        found += [d.label for d in decisions if d.kind == "event"]
    return found


def draw(args: Any, seed: int, work: Path, embedder: Any) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    test = args.data / "test"
    labels = sorted(p.name for p in test.iterdir() if p.is_dir())
    enrolled = [str(x) for x in rng.permutation(labels)[: args.labels]]
    others = [x for x in labels if x not in enrolled]
    gallery = work / f"g{seed}.npz"
    store = GalleryStore(gallery, model_sha256(embedder.manifest))
    genuine: list[tuple[str, Path]] = []
    for label in enrolled:
        clips = [files(test / label)[i] for i in rng.permutation(len(files(test / label)))]
        enroll_recordings(store, embedder, label, clips[: args.enroll_clips])
        genuine += [(label, p) for p in clips[args.enroll_clips :][: args.genuine_per_label]]
    config: RuntimeConfig = load_runtime_config(
        None,
        {
            "bundle": str(args.bundle.resolve()),
            "gallery": str(gallery),
            "source": {"type": "stdin"},
            "state_dir": str(work / "state"),
            "mqtt": {"enabled": False},
            "matching": {"margin": args.margin},
        },
    )
    run_calibration(config, str(args.data / "val"), args.minutes, args.target)
    rt = Runtime(config, publisher=NullPublisher)
    rt.outbox.close()
    out: dict[str, Any] = {}
    sets = {"held-out": test} | {
        f"ood/{c.name}": c for c in sorted(args.ood.iterdir()) if c.is_dir()
    }
    for name, root in sets.items():
        channel = root.name
        own = args.ood_background / channel if args.ood_background and name != "held-out" else None
        device, device_rt = config, rt
        if own is not None and own.is_dir():  # calibrated on this channel's own background
            copy = work / f"g{seed}-{channel}.npz"
            shutil.copy(gallery, copy)
            device = config.model_copy(update={"gallery": copy})
            run_calibration(device, str(own), args.minutes, args.target)
            device_rt = Runtime(device, publisher=NullPublisher)
            device_rt.outbox.close()
            clips = [(label, root / label / path.name) for label, path in genuine]
            out[f"hits/{channel}"] = _hits(device, device_rt, clips, embedder)
        folder = work / f"imp{seed}-{name.replace('/', '-')}"
        for label in others:
            if (root / label).is_dir():
                shutil.copytree(root / label, folder / label, dirs_exist_ok=True)
        bg = collect_background(device, str(folder), 1e9, embedder)
        out[name] = (len(events(device_rt, bg.windows, _hop_s(device_rt))), bg.seconds)
    out["hits"] = _hits(config, rt, genuine, embedder)
    return out


def _hop_s(rt: Runtime) -> float:
    return rt.embedder.hop / rt.format.sample_rate


def _hits(
    config: RuntimeConfig, rt: Runtime, clips: list[tuple[str, Path]], embedder: Any
) -> tuple[int, int]:
    """Clips with an event naming their label, of all clips."""
    hits = 0
    for label, path in clips:
        try:
            seq = collect_background(config, str(path), 1e9, embedder).windows
        except DataError:  # shorter than one window: the device never sees it (a miss)
            continue
        hits += label in events(rt, seq, _hop_s(rt))
    return hits, len(clips)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("modality")
    p.add_argument("bundle", type=Path)
    p.add_argument("data", type=Path, help="DATA/<recipe> with test/ and val/")
    p.add_argument("ood", type=Path, help="the out-of-domain renders: OOD/<channel>/<label>/")
    p.add_argument("--labels", type=int, default=4)
    p.add_argument("--enroll-clips", type=int, default=3)
    p.add_argument("--genuine-per-label", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--target", type=float, default=1 / 24)
    p.add_argument("--margin", type=float, default=0.0)
    p.add_argument(
        "--ood-background",
        type=Path,
        help="OOD_BACKGROUND/<channel>: calibrate each channel on its own background",
    )
    a = p.parse_args()
    embedder = load_model(a.bundle)
    totals: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(a.seeds):
            for key, (n, d) in draw(a, seed, Path(folder), embedder).items():
                t = totals.setdefault(key, [0.0, 0.0])
                t[0] += n
                t[1] += d
    hits, clips = totals.pop("hits")
    print(
        f"{a.modality}: target {a.target:.3g} false/hour, {a.seeds} draws of {a.labels} labels, "
        f"margin {a.margin}; hit rate {100 * hits / clips:.0f}% ({int(hits)}/{int(clips)} clips)"
    )
    rates = {k: v for k, v in totals.items() if k.startswith("hits/")}
    for name, (h, c) in rates.items():
        print(f"  {name}: hit rate {100 * h / max(c, 1):.0f}% ({int(h)}/{int(c)} clips)")
    print("| data | stream | false events | realised per hour | × target |")
    print("| --- | --- | --- | --- | --- |")
    for name, (n, seconds) in totals.items():
        if name in rates:
            continue
        rate = n / (seconds / 3600)
        print(
            f"| {name} | {seconds / 60:.1f} min | {int(n)} | {rate:.2f} | {rate / a.target:.1f} |"
        )


if __name__ == "__main__":
    main()
