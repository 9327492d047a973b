"""Realised false matches per hour at ``edgesiam calibrate``'s thresholds, against the target.

For each draw: a few held-out labels are enrolled from a few clips each; ``edgesiam calibrate``
runs on the validation labels (never enrolled, never evaluated) as the device's background; then
the device pipeline (the runtime's windowing, gate, model) streams

- the held-out labels that were not enrolled (``held-out``), and the same recordings rendered
  through each out-of-domain channel (``ood/<channel>``): every event is a false match; the
  realised rate is events per hour of stream;
- the enrolled labels' other clips, in turns of about 3 s: the hit rate is the share of turns
  with an event naming their label.

Every stream is what a device hears: one recording per label, its clips back to back with quiet
room noise between them (``edgesiam.tools.demo.stream.write_talk``), so clips shorter than a
window still reach the model. For speech, labels that may be one person
(:func:`~edgesiam.data.recipes.speech.person_of`) are enrolled at most once, and no impostor or
background speaker is one of the enrolled people.

With ``--ood-background DIR``, each out-of-domain channel is calibrated on its own background,
``DIR/<channel>`` (the validation labels rendered through that channel), as a device calibrates on
what its own microphone hears, and its hit rate is measured on the enrolled labels' turns rendered
through the same channel (``hits/<channel>``).

    python scripts/calibration_targets.py speech export/speaker data/speech data/ood/speech \
        [--ood-background data/ood/speech-val] [--target 10] [--centre background --aggregate mean]
    python scripts/calibration_targets.py events export/events data/events data/ood/events \
        --more-impostors data/events-extra/test --ood-background data/ood/events-val
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from edgesiam.core.decision import Decider
from edgesiam.data.recipes.speech import person_of
from edgesiam.model.interpreters import load_model
from edgesiam.runtime.calibrate import collect_background, run_calibration
from edgesiam.runtime.config import RuntimeConfig, load_runtime_config
from edgesiam.runtime.enrollment import enroll_recordings
from edgesiam.runtime.gallery_store import GalleryStore, model_sha256
from edgesiam.runtime.pipeline import Runtime
from edgesiam.runtime.publishers import NullPublisher
from edgesiam.tools.demo.stream import TURN_S, write_talk

SUFFIXES = (".wav", ".flac", ".ogg")


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES)


def labels_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and files(p))


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


def talks(root: Path, labels: list[str], out: Path, rate: int) -> Path:
    """OUT/<label>.wav: each label's clips under ROOT back to back."""
    for i, label in enumerate(labels):
        if (root / label).is_dir():
            write_talk(files(root / label), rate, out / f"{label}.wav", seed=i)
    return out


def turns(clips: list[Path], most: int) -> list[list[Path]]:
    """Clips grouped into turns of at least TURN_S seconds (at most ``most`` turns)."""
    out: list[list[Path]] = [[]]
    length = 0.0
    for clip in clips:
        if length >= TURN_S:
            if len(out) == most:
                break
            out.append([])
            length = 0.0
        out[-1].append(clip)
        length += sf.info(str(clip)).duration
    return [t for t in out if t]


def device(args: Any, gallery: Path, work: Path) -> RuntimeConfig:
    return load_runtime_config(
        None,
        {
            "bundle": str(args.bundle.resolve()),
            "gallery": str(gallery),
            "source": {"type": "stdin"},
            "state_dir": str(work / "state"),
            "mqtt": {"enabled": False},
            "matching": {
                "margin": args.margin,
                "centre": args.centre,
                "aggregate": args.aggregate,
            },
        },
    )


def calibrated(config: RuntimeConfig, background: Path, args: Any) -> Runtime:
    run_calibration(config, str(background), args.minutes, args.target)
    rt = Runtime(config, publisher=NullPublisher)
    rt.outbox.close()
    return rt


def draw(args: Any, seed: int, work: Path, embedder: Any) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    rate = int(embedder.sample_rate)
    test = args.data / "test"
    person = person_of if args.modality == "speech" else (lambda label: label)
    enrolled: list[str] = []
    for label in (str(x) for x in rng.permutation(labels_in(test))):
        if len(enrolled) < args.labels and person(label) not in {person(e) for e in enrolled}:
            enrolled.append(label)
    people = {person(e) for e in enrolled}
    others = [x for x in labels_in(test) if person(x) not in people]
    background = [x for x in labels_in(args.data / "val") if person(x) not in people]
    gallery = work / f"g{seed}.npz"
    store = GalleryStore(gallery, model_sha256(embedder.manifest))
    genuine: list[tuple[str, list[Path]]] = []
    for label in enrolled:
        clips = [files(test / label)[i] for i in rng.permutation(len(files(test / label)))]
        enroll_recordings(store, embedder, label, clips[: args.enroll_clips])
        rest = clips[args.enroll_clips :]
        genuine += [(label, t) for t in turns(rest, args.turns_per_label)]
    config = device(args, gallery, work)
    rt = calibrated(config, talks(args.data / "val", background, work / f"bg{seed}", rate), args)
    out: dict[str, Any] = {"hits": _hits(config, rt, genuine, embedder, work, rate)}
    sets = {"held-out": test} | {
        f"ood/{c.name}": c for c in sorted(args.ood.iterdir()) if c.is_dir()
    }
    for name, root in sets.items():
        channel = root.name
        own = args.ood_background / channel if args.ood_background and name != "held-out" else None
        config_here, rt_here = config, rt
        if own is not None and own.is_dir():  # calibrated on this channel's own background
            copy = work / f"g{seed}-{channel}.npz"
            shutil.copy(gallery, copy)
            config_here = config.model_copy(update={"gallery": copy})
            folder = talks(own, background, work / f"bg{seed}-{channel}", rate)
            rt_here = calibrated(config_here, folder, args)
            there = [(label, [root / label / p.name for p in t]) for label, t in genuine]
            out[f"hits/{channel}"] = _hits(config_here, rt_here, there, embedder, work, rate)
        folder = talks(root, others, work / f"imp{seed}-{name.replace('/', '-')}", rate)
        if name == "held-out" and args.more_impostors:  # never-enrolled labels of another set
            talks(args.more_impostors, labels_in(args.more_impostors), folder, rate)
        heard = collect_background(config_here, str(folder), 1e9, embedder)
        out[name] = (len(events(rt_here, heard.windows, _hop_s(rt_here))), heard.seconds)
    return out


def _hop_s(rt: Runtime) -> float:
    return rt.embedder.hop / rt.format.sample_rate


def _hits(
    config: RuntimeConfig,
    rt: Runtime,
    genuine: list[tuple[str, list[Path]]],
    embedder: Any,
    work: Path,
    rate: int,
) -> tuple[int, int]:
    """Turns with an event naming their label, of all turns."""
    hits = 0
    for i, (label, clips) in enumerate(genuine):
        path = work / "turn.wav"
        write_talk(clips, rate, path, seed=i)
        seq = collect_background(config, str(path), 1e9, embedder).windows
        hits += label in events(rt, seq, _hop_s(rt))
    return hits, len(genuine)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("modality")
    p.add_argument("bundle", type=Path)
    p.add_argument("data", type=Path, help="DATA/<recipe> with test/ and val/")
    p.add_argument("ood", type=Path, help="the out-of-domain renders: OOD/<channel>/<label>/")
    p.add_argument("--labels", type=int, default=4)
    p.add_argument("--enroll-clips", type=int, default=3)
    p.add_argument("--turns-per-label", type=int, default=4)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--target", type=float, default=1 / 24)
    p.add_argument("--margin", type=float, default=0.0)
    p.add_argument("--centre", choices=["off", "background"], default="off")
    p.add_argument("--aggregate", choices=["max", "mean"], default="max")
    p.add_argument(
        "--more-impostors",
        type=Path,
        help="a folder of label folders none of which is ever enrolled: more held-out impostors",
    )
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
    hits, count = totals.pop("hits")
    print(
        f"{a.modality}: target {a.target:.3g} false/hour, {a.seeds} draws of {a.labels} labels, "
        f"margin {a.margin}, centre {a.centre}, aggregate {a.aggregate}; hit rate "
        f"{100 * hits / count:.0f}% ({int(hits)}/{int(count)} turns)"
    )
    rates = {k: v for k, v in totals.items() if k.startswith("hits/")}
    for name, (h, c) in rates.items():
        print(f"  {name}: hit rate {100 * h / max(c, 1):.0f}% ({int(h)}/{int(c)} turns)")
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
