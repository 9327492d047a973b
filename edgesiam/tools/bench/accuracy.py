"""Accuracy side by side: each shipped bundle, the classic baselines and the peers on the same
held-out trials.

For every held-out test set of a bundle (labels, and for HAPT subjects, never seen in training)
the recordings are embedded by the int8 bundle, by the classic descriptor of the modality (MFCC
mean/std for audio, per-channel statistics for sensors) and, for speech, by Resemblyzer; all are
scored on one trial list (:func:`edgesiam.evaluation.trial_scores`) and drawn in one DET plot.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

HELD_OUT: Mapping[str, tuple[tuple[str, str], ...]] = {
    "speaker": (("speech/test", "14 speakers never seen in training"),),
    "events": (("events/test", "7 sound classes never seen in training"),),
    "motion": (
        ("hapt/transitions", "6 postural transitions never seen in training, subjects 21-30"),
        ("hapt/test", "the trained activities, subjects 21-30 never seen"),
    ),
}
"""Per bundle name: its held-out test sets under the data folder, with what they hold out."""

KEYS = ("eer", "min_dcf", "way5_shot1", "way5_shot5", "hard_eer", "loo_top1")
"""The metrics kept per system (fractions; min_dcf normalised)."""

PREPARE = {"speech": "speech", "events": "events", "hapt": "hapt"}


def accuracy_all(
    bundles: Mapping[str, Path],
    data_dir: str | Path,
    *,
    plots: str | Path | None = None,
    episodes: int = 1000,
    peers: bool = True,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Metrics of every system on every held-out test set that is prepared under ``data_dir``.

    ``bundles`` maps bundle names to bundle folders; names without known test sets are skipped.
    A test set that is not prepared is reported with the command that prepares it. With
    ``plots``, each test set gets ``<plots>/det_<bundle>_<set>.png``.
    """
    from edgesiam.data.readers import scan_dataset
    from edgesiam.evaluation import Report, plot_det
    from edgesiam.model.embedders import baseline_embeddings, embed_dataset
    from edgesiam.model.interpreters import BundleEmbedder
    from edgesiam.tools.bench.peers import resemblyzer_accuracy

    data = Path(data_dir)
    out: dict[str, Any] = {}
    for name, folder in sorted(bundles.items()):
        for rel, what in HELD_OUT.get(name, ()):
            key = f"{name}:{rel}"
            root = data / rel
            if not root.is_dir():
                recipe = PREPARE.get(rel.split("/")[0], rel.split("/")[0])
                out[key] = {
                    "status": "not prepared",
                    "reason": f"{root} is missing (run: edgesiam data prepare {recipe})",
                }
                continue
            log(f"accuracy: {name} on {root}")
            info = scan_dataset(root)
            embedder = BundleEmbedder(Path(folder))
            ours = embed_dataset(embedder, info, progress=False)
            systems: dict[str, Any] = {
                "edgesiam int8": (ours.embeddings, ours.labels, ours.groups),
            }
            base_name = "MFCC statistics" if info.modality == "audio" else "channel statistics"
            systems[base_name] = (
                baseline_embeddings(embedder, info, progress=False),
                ours.labels,
                ours.groups,
            )
            peer_status: dict[str, Any] = {}
            if peers and rel.startswith("speech/"):
                log("accuracy: Resemblyzer on the same recordings")
                with tempfile.TemporaryDirectory() as tmp:
                    res = resemblyzer_accuracy(root, out_npz=Path(tmp) / "resemblyzer.npz")
                    peer_status["Resemblyzer"] = {k: res.get(k) for k in ("status", "reason")}
                    if res.get("status") == "ok":
                        with np.load(res["npz"]) as saved:
                            if [str(x) for x in saved["labels"]] != ours.labels:
                                raise RuntimeError("Resemblyzer embedded other recordings")
                            embeddings = saved["embeddings"]
                        systems["Resemblyzer"] = (embeddings, ours.labels, ours.groups)
            report = Report.from_systems(systems, episodes=episodes)
            entry: dict[str, Any] = {
                "status": "ok",
                "bundle": name,
                "data": str(root),
                "held_out": what,
                "recordings": len(ours.labels),
                "labels": len(set(ours.labels)),
                "systems": {
                    system: {k: report.results[system].get(k) for k in KEYS}
                    for system in report.results
                },
                "peers": peer_status,
            }
            if plots is not None:
                target = Path(plots) / f"det_{name}_{rel.replace('/', '_')}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                title = f"{name}: {what}"
                entry["det_plot"] = str(plot_det(report.trials, target, title=title))
            out[key] = entry
    return out
