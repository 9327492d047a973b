"""Metrics report and plots for any set of recording embeddings (learned or baseline).

All metrics are fractions in [0, 1] (EER, accuracies, top-1), in the returned dicts and in the JSON;
only :func:`markdown_table` shows percentages. A metric that the data cannot support (too few
recordings per label, no groups) is ``None`` and a line in ``notes`` says why, so reports hold no
NaN. matplotlib and scipy (the ``train`` extra) are imported only by the plotting functions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from edgesiam.core.embedder import DeviceEmbedder
from edgesiam.core.metrics import (
    Trials,
    det_curve,
    equal_error_rate,
    few_shot_accuracy,
    leave_one_out_top1,
    min_dcf,
    rates_at_threshold,
    trial_scores,
)
from edgesiam.errors import DataError, MissingExtraError, ModelError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from edgesiam.model.bundle import ThresholdSet

Metrics = dict[str, Any]
"""One system's results: metric name → float, int, None (not computable) or, for ``notes``, list."""

System = tuple[ArrayLike, Sequence[str], Sequence[str | None] | None]
"""``(embeddings (N, D), labels, groups or None)`` of one system."""

MIN_DCF_P_TARGET = 0.01


def evaluate(
    embeddings: ArrayLike,
    labels: Sequence[str],
    groups: Sequence[str | None] | None = None,
    *,
    seed: int = 0,
    episodes: int = 1000,
    trials: Trials | None = None,
) -> Metrics:
    """Verification, few-shot and retrieval metrics of one set of recording embeddings.

    Keys: ``eer``, ``eer_threshold``, ``min_dcf`` (p_target 0.01), ``way5_shot1`` and
    ``way5_shot5`` (mean accuracy) with ``…_ci`` (95% half-width), ``loo_top1``, ``hard_eer``
    (genuine vs same-group impostor trials), the counts ``n_recordings``, ``n_labels``,
    ``n_genuine``, ``n_impostor``, ``n_hard_impostor``, and ``notes``. Pass ``trials`` when they
    are already computed (they must come from the same embeddings and labels).
    """
    labels = list(labels)
    t = trials if trials is not None else trial_scores(embeddings, labels, groups)
    notes: list[str] = []
    result: Metrics = {
        "n_recordings": len(labels),
        "n_labels": len(set(labels)),
        "n_genuine": int(t.genuine.size),
        "n_impostor": int(t.impostor.size),
        "n_hard_impostor": int(t.hard_impostor.size),
    }
    if t.genuine.size and t.impostor.size:
        result["eer"], result["eer_threshold"] = equal_error_rate(t.genuine, t.impostor)
        result["min_dcf"] = min_dcf(t.genuine, t.impostor, p_target=MIN_DCF_P_TARGET)
    else:
        result["eer"] = result["eer_threshold"] = result["min_dcf"] = None
        notes.append(
            "eer/min_dcf: need both genuine and impostor trials "
            f"(have {t.genuine.size} genuine, {t.impostor.size} impostor)"
        )
    for k_shot in (1, 5):
        key = f"way5_shot{k_shot}"
        try:
            result[key], result[f"{key}_ci"] = few_shot_accuracy(
                embeddings, labels, n_way=5, k_shot=k_shot, episodes=episodes, seed=seed
            )
        except DataError as e:
            result[key] = result[f"{key}_ci"] = None
            notes.append(f"{key}: {e}")
    try:
        result["loo_top1"] = leave_one_out_top1(embeddings, labels)
    except DataError as e:
        result["loo_top1"] = None
        notes.append(f"loo_top1: {e}")
    result["hard_eer"] = None
    if groups is None:
        notes.append("hard_eer: no groups given")
    elif not t.hard_impostor.size or not t.genuine.size:
        notes.append("hard_eer: no impostor trial within a group (or no genuine trial)")
    else:
        result["hard_eer"] = equal_error_rate(t.genuine, t.hard_impostor)[0]
    result["notes"] = notes
    return result


@dataclass
class Report:
    """Results and trials of several systems scored on the same protocol."""

    results: dict[str, Metrics]
    trials: dict[str, Trials]

    @classmethod
    def from_systems(
        cls, systems: Mapping[str, System], *, seed: int = 0, episodes: int = 1000
    ) -> Report:
        results: dict[str, Metrics] = {}
        trials: dict[str, Trials] = {}
        for name, (embeddings, labels, groups) in systems.items():
            trials[name] = trial_scores(embeddings, labels, groups)
            results[name] = evaluate(
                embeddings, labels, groups, seed=seed, episodes=episodes, trials=trials[name]
            )
        return cls(results, trials)

    def write(
        self, json_path: str | Path | None = None, plots_dir: str | Path | None = None
    ) -> list[Path]:
        return write_report(self.results, self.trials, json_path=json_path, plots_dir=plots_dir)

    def check_thresholds(self, name: str, calibrated: ThresholdSet) -> None:
        """Add ``thresholds`` to ``name``'s results: how a bundle's calibrated recording
        thresholds behave on these trials (they were set on other data, so the realised
        false-match rate may be far from its target)."""
        if calibrated.scores != "cosine":
            self.results[name]["notes"].append(
                f"thresholds: calibrated on {calibrated.scores} scores, not the raw cosine "
                "scored here"
            )
            return
        self.results[name]["thresholds"] = threshold_rates(self.trials[name], calibrated.at_fmr)

    def markdown(self) -> str:
        tables = [markdown_table(self.results)]
        for name, metrics in self.results.items():
            if metrics.get("thresholds"):
                tables.append(threshold_table(name, metrics["thresholds"]))
        return "\n".join(tables)


def threshold_rates(trials: Trials, at_fmr: Mapping[str, float]) -> dict[str, Metrics]:
    """Per target false-match rate (the manifest's key): its threshold, the realised FMR and
    FNMR on ``trials``, and the trial counts behind them."""
    rates: dict[str, Metrics] = {}
    for target, threshold in at_fmr.items():
        fmr, fnmr = rates_at_threshold(trials.genuine, trials.impostor, threshold)
        rates[target] = {
            "threshold": float(threshold),
            "fmr": fmr,
            "fnmr": fnmr,
            "n_impostor": int(trials.impostor.size),
            "n_genuine": int(trials.genuine.size),
        }
    return rates


def _times_target(fmr: float | None, target: str) -> str:
    if fmr is None:
        return "–"
    return f"{fmr / float(target):.1f}×" if float(target) > 0 else "–"


def threshold_table(name: str, rates: Mapping[str, Metrics]) -> str:
    """Markdown: the bundle's calibrated thresholds and what they give on this data."""
    lines = [
        f"{name}: the bundle's calibrated recording thresholds on this data",
        "",
        "| target FMR | threshold | realised FMR % | × target | FNMR % |",
        "|---:|---:|---:|---:|---:|",
    ]
    for target, r in rates.items():
        fmr, fnmr = r["fmr"], r["fnmr"]
        lines.append(
            f"| {target} | {r['threshold']:.3f} | {_pct(fmr, 2)} | {_times_target(fmr, target)} "
            f"| {_pct(fnmr, 1)} |"
        )
    return "\n".join(lines) + "\n"


def _pct(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}"


def compare(
    systems: Mapping[str, System], *, seed: int = 0, episodes: int = 1000
) -> dict[str, Metrics]:
    """:func:`evaluate` each system (same seed, so the same episodes where labels agree)."""
    return Report.from_systems(systems, seed=seed, episodes=episodes).results


def _new_figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingExtraError("matplotlib", "train") from e
    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)  # the Agg canvas, without touching pyplot's global backend
    return figure


def _save(figure: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    return out


_DET_TICKS = (1e-4, 1e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95)


def plot_det(
    trials_by_system: Mapping[str, Trials], path: str | Path, *, title: str = "DET curve"
) -> Path:
    """DET curves (FNMR against FMR on normal-deviate axes), one line per system, EER marked."""
    try:
        from scipy.stats import norm
    except ImportError as e:
        raise MissingExtraError("scipy", "train") from e
    usable = {n: t for n, t in trials_by_system.items() if t.genuine.size and t.impostor.size}
    if not usable:
        raise DataError("no system has both genuine and impostor trials to plot")
    finest = min(min(1 / t.genuine.size, 1 / t.impostor.size) for t in usable.values())
    low = max((tick for tick in _DET_TICKS if tick <= finest), default=_DET_TICKS[0])
    high = 0.95
    ticks = [tick for tick in _DET_TICKS if low <= tick <= high]

    def deviate(rate: np.ndarray) -> np.ndarray:
        # clip rates of 0 and 1 to points outside the axes, so the curves leave the plot at its
        # edges instead of running along them
        return np.asarray(norm.ppf(np.clip(rate, low / 10, 1 - (1 - high) / 10)))

    figure = _new_figure(6.0, 6.0)
    ax = figure.add_subplot()
    for name, t in usable.items():
        _, fmr, fnmr = det_curve(t.genuine, t.impostor)
        x, y = deviate(fmr), deviate(fnmr)
        keep = np.unique(np.round(np.column_stack([x, y]) * 300), axis=0, return_index=True)[1]
        keep.sort()  # thin millions of points to what the eye can see, in curve order
        eer = equal_error_rate(t.genuine, t.impostor)[0]
        (line,) = ax.plot(x[keep], y[keep], lw=1.6, label=f"{name} (EER {100 * eer:.1f}%)")
        point = deviate(np.array([eer]))
        ax.plot(point, point, "o", color=line.get_color(), ms=6, mec="black", mew=0.6)
    edge = norm.ppf([low, high])
    ax.plot(edge, edge, ls="--", lw=0.8, color="grey", label="FMR = FNMR")
    positions = norm.ppf(ticks)
    labels = [f"{100 * tick:g}" for tick in ticks]
    ax.set_xticks(positions, labels)
    ax.set_yticks(positions, labels)
    ax.set_xlim(*edge)
    ax.set_ylim(*edge)
    ax.set_xlabel("false-match rate (%)")
    ax.set_ylabel("false non-match rate (%)")
    ax.set_title(title)
    ax.grid(True, lw=0.4, alpha=0.6)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize="small")
    return _save(figure, path)


def plot_score_histogram(
    trials: Trials,
    path: str | Path,
    threshold: float | None = None,
    title: str = "Trial scores",
) -> Path:
    """Densities of genuine, impostor and (if any) hard impostor scores, with a threshold line."""
    parts = [
        ("genuine", trials.genuine, "tab:green"),
        ("impostor", trials.impostor, "tab:red"),
        ("hard impostor (same group)", trials.hard_impostor, "tab:purple"),
    ]
    present = [p for p in parts if p[1].size]
    if not present:
        raise DataError("no trial scores to plot")
    scores = np.concatenate([p[1] for p in present])
    bins = np.linspace(float(scores.min()), float(scores.max()) + 1e-9, 61).tolist()
    figure = _new_figure(7.0, 4.0)
    ax = figure.add_subplot()
    for label, values, colour in present:
        ax.hist(
            values,
            bins=bins,
            density=True,
            histtype="stepfilled",
            alpha=0.35,
            color=colour,
            edgecolor=colour,
            label=f"{label} (n={values.size:,})",
        )
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1.0, label=f"threshold {threshold:.3f}")
    ax.set_xlabel("cosine score")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return _save(figure, path)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "system"


def write_report(
    results: Mapping[str, Metrics],
    trials_by_system: Mapping[str, Trials],
    json_path: str | Path | None = None,
    plots_dir: str | Path | None = None,
) -> list[Path]:
    """Write the results as JSON and the plots (``det.png``, ``scores_<system>.png``) as PNG.

    Parent directories are created. Returns the paths written.
    """
    written: list[Path] = []
    if json_path is not None:
        out = Path(json_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "units": "fractions in [0, 1] for eer, hard_eer, accuracies and top-1; "
            f"min_dcf is normalised (p_target={MIN_DCF_P_TARGET})",
            "systems": dict(results),
        }
        out.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
        written.append(out)
    if plots_dir is not None:
        folder = Path(plots_dir)
        folder.mkdir(parents=True, exist_ok=True)
        if any(t.genuine.size and t.impostor.size for t in trials_by_system.values()):
            written.append(plot_det(trials_by_system, folder / "det.png"))
        for name, trials in trials_by_system.items():
            if not (trials.genuine.size or trials.impostor.size):
                continue
            threshold = results.get(name, {}).get("eer_threshold")
            written.append(
                plot_score_histogram(
                    trials,
                    folder / f"scores_{_slug(name)}.png",
                    threshold=threshold,
                    title=f"{name}: trial scores"
                    + ("" if threshold is None else " (line: EER threshold)"),
                )
            )
    return written


_COLUMNS = (
    ("EER %", "eer", True),
    ("minDCF", "min_dcf", False),
    ("5-way 1-shot %", "way5_shot1", True),
    ("5-way 5-shot %", "way5_shot5", True),
    ("LOO top-1 %", "loo_top1", True),
    ("hard-trial EER %", "hard_eer", True),
)


def _cell(metrics: Metrics, key: str, percent: bool) -> str:
    value = metrics.get(key)
    if value is None:
        return "–"
    if not percent:
        return f"{value:.3f}"
    text = f"{100 * value:.1f}"
    ci = metrics.get(f"{key}_ci")
    return text if ci is None else f"{text} ± {100 * ci:.1f}"


def markdown_table(results: Mapping[str, Metrics]) -> str:
    """A Markdown table, one row per system; rates in percent, '–' where not computable."""
    header = "| system | " + " | ".join(title for title, _, _ in _COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(_COLUMNS)
    rows = [
        f"| {name} | " + " | ".join(_cell(m, key, pct) for _, key, pct in _COLUMNS) + " |"
        for name, m in results.items()
    ]
    return "\n".join([header, rule, *rows]) + "\n"


def load_embedder(path: Path) -> DeviceEmbedder:
    """A model for embedding: a bundle directory (device path) or a training checkpoint (``*.pt``)."""
    if not path.exists():
        raise ModelError(f"model not found: {path}")
    from edgesiam.model.interpreters import is_bundle, load_model

    if is_bundle(path):
        return load_model(path)
    try:
        import torch  # noqa: F401
    except ImportError:
        raise MissingExtraError("torch", "train") from None
    from edgesiam.train.checkpoint import CheckpointEmbedder

    return CheckpointEmbedder(path)
