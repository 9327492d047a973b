"""Measure the open-set margin rule (matching.margin) on held-out speakers.

For each seed, a few held-out speakers are enrolled from a few clips each (as ``enroll`` does);
every active window of their other clips is a genuine trial, every active window of the speakers
never enrolled an impostor trial. At the bundle's window threshold, for each margin: the share of
genuine windows matched to the right speaker, matched to a wrong enrolled speaker, and the share
of impostor windows matched at all.

    python scripts/margin_eval.py export/speaker data/speech/test
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edgesiam.core.embedding import l2_normalize, recording_embedding
from edgesiam.core.gate import EnergyGate
from edgesiam.core.matching import Gallery, threshold_for
from edgesiam.core.windowing import frame
from edgesiam.data.readers import iter_recordings, scan_dataset
from edgesiam.model.embedders import embed_windows
from edgesiam.model.interpreters import load_model


def embed(bundle: Path, data: Path) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    embedder = load_model(bundle)
    gate = EnergyGate.for_modality(embedder.modality)
    labels, windows, active = [], [], []
    info = scan_dataset(data)
    for rec, x in iter_recordings(info, sample_rate=embedder.sample_rate, progress=False):
        w = frame(x, embedder.window, embedder.hop)
        gate.reset()
        labels.append(rec.label)
        windows.append(l2_normalize(embed_windows(embedder, w), axis=1))
        active.append(gate.active_mask(w))
    return labels, windows, active


def decide(scores: np.ndarray, threshold: float, margin: float) -> np.ndarray:
    """The matched label index per window, -1 for none."""
    best = np.argmax(scores, axis=1)
    top = scores[np.arange(len(scores)), best]
    second = np.sort(scores, axis=1)[:, -2] if scores.shape[1] > 1 else np.full(len(top), -1.0)
    ok = (top >= threshold) & (top - second >= margin)
    return np.where(ok, best, -1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("bundle", type=Path)
    p.add_argument("data", type=Path)
    p.add_argument("--labels", type=int, default=4)
    p.add_argument("--enroll-clips", type=int, default=3)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--margins", default="0,0.01,0.02,0.05,0.1")
    a = p.parse_args()
    labels, windows, active = embed(a.bundle, a.data)
    embedder = load_model(a.bundle)
    threshold = threshold_for(embedder.manifest.thresholds.window.at_fmr, 1e-3)
    speakers = sorted(set(labels))
    margins = [float(m) for m in a.margins.split(",")]
    draws: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for seed in range(a.seeds):
        rng = np.random.default_rng(seed)
        enrolled = list(rng.permutation(speakers)[: a.labels])
        templates, owners, gen_w, gen_y, imp_w = [], [], [], [], []
        for s in enrolled:
            idx = [i for i, x in enumerate(labels) if x == s]
            rng.shuffle(idx)
            for i in idx[: a.enroll_clips]:
                templates.append(
                    recording_embedding(windows[i][active[i]] if active[i].any() else windows[i])
                )
                owners.append(s)
            for i in idx[a.enroll_clips :]:
                gen_w.append(windows[i][active[i]])
                gen_y += [s] * int(active[i].sum())
        for i, x in enumerate(labels):
            if x not in enrolled:
                imp_w.append(windows[i][active[i]])
        gallery = Gallery.from_templates(np.stack(templates), owners)
        truth = np.array([gallery.labels.index(y) for y in gen_y])
        g_scores = gallery.scores(np.concatenate(gen_w))
        i_scores = gallery.scores(np.concatenate(imp_w))
        draws.append((g_scores, truth, i_scores))
    print(f"threshold {threshold:.4f} (bundle, FMR 1e-3); {a.seeds} draws of {a.labels} speakers")
    print(
        "| margin | right label | wrong label | impostor windows matched | no margin, threshold "
        "raised to the same impostor rate: right / wrong |"
    )
    print("| --- | --- | --- | --- | --- |")
    for m in margins:
        right, wrong, imp = rates(draws, threshold, m)
        t = same_impostor_rate(draws, imp)
        r0, w0, _ = rates(draws, t, 0.0)
        print(
            f"| {m:g} | {100 * right:.2f}% | {100 * wrong:.3f}% | {100 * imp:.3f}% | "
            f"{100 * r0:.2f}% / {100 * w0:.3f}% (threshold {t:.4f}) |"
        )


def rates(
    draws: list[tuple[np.ndarray, np.ndarray, np.ndarray]], threshold: float, margin: float
) -> tuple[float, float, float]:
    right = wrong = n = imp = n_imp = 0
    for g_scores, truth, i_scores in draws:
        got = decide(g_scores, threshold, margin)
        right += int(np.sum(got == truth))
        wrong += int(np.sum((got >= 0) & (got != truth)))
        n += len(truth)
        imp += int(np.sum(decide(i_scores, threshold, margin) >= 0))
        n_imp += len(i_scores)
    return right / n, wrong / n, imp / n_imp


def same_impostor_rate(
    draws: list[tuple[np.ndarray, np.ndarray, np.ndarray]], target: float
) -> float:
    lo, hi = -1.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if rates(draws, mid, 0.0)[2] > target:
            lo = mid
        else:
            hi = mid
    return hi


if __name__ == "__main__":
    main()
