"""Render the out-of-domain tables from the JSON reports of `edgesiam eval` on rendered channels.

Usage: python scripts/ood_table.py RUNS_OOD_DIR [MORE_DIRS ...] > runs/results-ood.md
       python scripts/ood_table.py --merge NEW_DIR RUNS_OOD_DIR   (then renders RUNS_OOD_DIR)

Reads RUNS_OOD_DIR/<bundle>-<channel>.json (channel `clean` is the held-out set as recorded) and
prints, per bundle, tables of EER, 5-way 1-shot accuracy and leave-one-out top-1: a row per system
(the model first, then the classic descriptor and the pretrained peers, as `edgesiam eval` lists
them), a column per channel, and the headline — the mean over the out-of-domain channels (every
channel but `clean`). Under the EER table, the model's EER divided by each teacher's ("(teacher)"
in its name, e.g. CAM++): how far the model is from it, per channel and on the headline.
The `motion` bundle's columns are sensor sets instead (MOTION_SETS: HAPT's test subjects turned, in
other units, its held-out transitions, BasicMotions' wrist), its tables 5-way 5-shot and 1-shot
accuracy, EER and leave-one-out top-1. Systems of the same bundle and set in MORE_DIRS are added as
rows (e.g. a candidate model evaluated with another `--name`), for before/after tables.
A report named <bundle>.<set>-<channel>.json is the bundle on the leave-one-corpus-out set <set>
(a corpus no recipe trains on, e.g. speech-tuxpaint): its own tables.

--merge adds the systems of NEW_DIR's reports (e.g. a peer evaluated later) to the reports of the
same name in RUNS_OOD_DIR, replacing systems of the same name, so earlier rows need no rerun.

Where the model is a bundle, a last table per bundle, "thresholds out of domain": its manifest's
calibrated recording thresholds (one row per target false-match rate) and the FMR and FNMR they
realise on each set, from the `thresholds` of `edgesiam eval`'s report. Sets from sources never
trained on (THRESHOLD_ONLY_SETS: `<bundle>-tuxpaint.json`, `<bundle>-extra.json`) are columns of
this table only.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ORDER = ["clean", "gsm", "amr-nb", "ulaw", "cheap-mic", "far-field"]
METRICS = {
    "eer": ("EER %", "lower is better"),
    "way5_shot1": ("5-way 1-shot %", "higher"),
    "loo_top1": ("leave-one-out top-1 %", "higher"),
}
TEACHER_MARK = "(teacher)"
MOTION_SETS = {
    "clean": "HAPT test subjects as recorded",
    "rot30": "HAPT test, each recording's sensor turned 30° about a random axis",
    "rot90": "HAPT test, turned 90°",
    "rotuniform": "HAPT test, turned uniformly at random",
    "units": "HAPT test in m/s² and deg/s (declared)",
    "transitions": "HAPT postural transitions (classes never trained on)",
    "basicmotions": "BasicMotions wrist IMU, archive test split (another device and placement)",
    "basicmotions-all": "BasicMotions, train and test splits together",
}
MOTION_METRICS = {
    "way5_shot5": ("5-way 5-shot %", "higher is better"),
    "way5_shot1": ("5-way 1-shot %", "higher"),
    "eer": ("EER %", "lower is better"),
    "loo_top1": ("leave-one-out top-1 %", "higher"),
}


THRESHOLD_ONLY_SETS = {"speaker": ["tuxpaint"], "events": ["extra"]}
"""Held-out sets from sources never trained on (speech-tuxpaint/test, events-extra/test): columns
of the thresholds table only, so the other tables and their means keep the rendered channels."""


def columns_of(bundle: str) -> list[str]:
    return list(MOTION_SETS) if bundle.partition(".")[0] == "motion" else ORDER


def threshold_columns_of(bundle: str) -> list[str]:
    return columns_of(bundle) + THRESHOLD_ONLY_SETS.get(bundle, [])


def metrics_of(bundle: str) -> dict[str, tuple[str, str]]:
    return MOTION_METRICS if bundle == "motion" else METRICS


def load(*folders: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """bundle → channel → system → metrics (systems of later folders added beside)."""
    found: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            bundle, channel = split_stem(path.stem)
            if channel not in threshold_columns_of(bundle):
                continue
            systems = json.loads(path.read_text())["systems"]
            found[bundle].setdefault(channel, {}).update(systems)
    return found


def split_stem(stem: str) -> tuple[str, str]:
    """``speaker-amr-nb`` → (speaker, amr-nb); ``speaker.speech-tuxpaint-gsm`` →
    (speaker.speech-tuxpaint, gsm): the column is the longest known one the name ends with."""
    extra = {c for cols in THRESHOLD_ONLY_SETS.values() for c in cols}
    known = sorted({*ORDER, *MOTION_SETS, *extra}, key=len, reverse=True)
    column = next((c for c in known if stem.endswith(f"-{c}")), "")
    return (stem[: -len(column) - 1], column) if column else (stem, "")


def heading_of(bundle: str) -> str:
    """``speaker`` → its own held-out set; ``speaker.speech-tuxpaint`` → a corpus never trained on."""
    name, _, corpus = bundle.partition(".")
    if corpus:
        return f"{name} — leave-one-corpus-out: {corpus} (never trained on) through device channels"
    return f"{name} — held-out set re-recorded through device channels"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _row(
    channels: dict[str, dict[str, Any]], system: str, metric: str, bundle: str = ""
) -> list[float | None]:
    """``system``'s ``metric`` per channel present, then its mean over the shifted channels (None
    where an audio channel lacks it; a motion set that cannot have it is skipped)."""
    present = [c for c in columns_of(bundle) if c in channels]
    values = [channels[c].get(system, {}).get(metric) for c in present]
    shifted = [v for c, v in zip(present, values, strict=True) if c != "clean"]
    known = [v for v in shifted if v is not None]
    if bundle != "motion" and len(known) != len(shifted):
        known = []  # a channel missing: no mean
    mean = sum(known) / len(known) if known else None
    return [*values, mean]


def table(channels: dict[str, dict[str, Any]], metric: str, bundle: str = "") -> str:
    present = [c for c in columns_of(bundle) if c in channels]
    systems = list(dict.fromkeys(s for c in present for s in channels[c]))
    title, better = metrics_of(bundle)[metric]
    head = f"| system ({title}, {better}) | " + " | ".join(present) + " | **mean out-of-domain** |"
    lines = [head, "|---" + "|---:" * (len(present) + 1) + "|"]
    for system in systems:
        *values, mean = _row(channels, system, metric, bundle)
        cells = " | ".join(_percent(v) for v in values)
        lines.append(f"| {system} | {cells} | **{_percent(mean)}** |")
    if metric == "eer" and systems:
        for teacher in (s for s in systems[1:] if TEACHER_MARK in s):
            ours = _row(channels, systems[0], metric, bundle)
            theirs = _row(channels, teacher, metric, bundle)
            ratios = [
                a / b if a is not None and b else None for a, b in zip(ours, theirs, strict=True)
            ]
            cells = " | ".join(_ratio(r) for r in ratios[:-1])
            name = f"{systems[0]} ÷ {teacher}"
            lines.append(f"| *{name}* | {cells} | **{_ratio(ratios[-1])}** |")
    return "\n".join(lines)


def _threshold_cell(rates: dict[str, Any] | None, target: str) -> str:
    """``realised FMR % (N× where above the target) / FNMR %``, or — without the rates."""
    if not rates or rates.get("fmr") is None:
        return "—"
    fmr, goal = rates["fmr"], float(target)
    ratio = fmr / goal if goal > 0 else 0.0
    over = f" ({ratio:.{0 if ratio >= 10 else 1}f}×)" if ratio > 1 else ""
    return f"{100 * fmr:.2f}{over} / {_percent(rates.get('fnmr'))}"


def threshold_table(channels: dict[str, dict[str, Any]], bundle: str = "") -> str | None:
    """The bundle's calibrated recording thresholds on each set: a row per target FMR, a column
    per set; None when no report carries thresholds (a model that is not a bundle)."""
    present = [c for c in threshold_columns_of(bundle) if c in channels]
    found = [
        (c, name, m["thresholds"])
        for c in present
        for name, m in channels[c].items()
        if m.get("thresholds")
    ]
    if not found:
        return None
    model = found[0][1]
    by_set = {c: t for c, name, t in found if name == model}
    targets = list(dict.fromkeys(k for t in by_set.values() for k in t))
    sets = [c for c in present if c in by_set]
    lines = [
        f"thresholds out of domain — {model}: the manifest's recording threshold per target "
        "false-match rate, its realised FMR % on each set (× the target where above it) / FNMR %",
        "",
        "| target FMR | threshold | " + " | ".join(sets) + " |",
        "|---:|---:" + "|---:" * len(sets) + "|",
    ]
    for target in targets:
        threshold = next(t[target]["threshold"] for t in by_set.values() if target in t)
        cells = " | ".join(_threshold_cell(by_set[c].get(target), target) for c in sets)
        lines.append(f"| {100 * float(target):g}% | {threshold:.3f} | {cells} |")
    counts = [f"{c} {next(iter(by_set[c].values())).get('n_impostor', 0):,}" for c in sets]
    lines.append(
        f"\nImpostor trials per set: {', '.join(counts)} (a realised FMR of 0 says only that it "
        "is below about 3 ÷ that count)."
    )
    return "\n".join(lines)


def merge(new: Path, into: Path) -> list[str]:
    """Add the systems of ``new``'s reports to ``into``'s reports of the same name (new ones win;
    a report ``into`` lacks is copied). Returns one line per report touched."""
    done = []
    for path in sorted(new.glob("*.json")):
        bundle, channel = split_stem(path.stem)
        if channel not in threshold_columns_of(bundle):
            continue
        incoming = json.loads(path.read_text())
        target = into / path.name
        document = json.loads(target.read_text()) if target.exists() else dict(incoming)
        document["systems"] = {**document.get("systems", {}), **incoming["systems"]}
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(document, indent=2) + "\n")
        done.append(f"{target.name}: {', '.join(incoming['systems'])}")
    return done


def main(args: list[str]) -> int:
    if args[:1] == ["--merge"]:
        if len(args) != 3:
            print("usage: ood_table.py --merge NEW_DIR RUNS_OOD_DIR", file=sys.stderr)
            return 2
        for line in merge(Path(args[1]), Path(args[2])):
            print(f"merged {line}", file=sys.stderr)
        args = args[2:]
    folders = [Path(a) for a in args] or [Path("runs/ood")]
    found = load(*folders)
    if not found:
        print(f"no <bundle>-<channel>.json reports in {folders[0]}", file=sys.stderr)
        return 1
    for bundle, channels in found.items():
        if bundle == "motion":
            print(motion_heading(channels))
        else:
            first = next(iter(next(iter(channels.values())).values()))
            print(
                f"**{heading_of(bundle)}** — {first['n_recordings']} recordings, "
                f"{first['n_labels']} labels\n"
            )
        for metric in metrics_of(bundle):
            print(table(channels, metric, bundle))
            print()
        thresholds = threshold_table(channels, bundle)
        if thresholds:
            print(thresholds + "\n")
    return 0


def motion_heading(sets: dict[str, dict[str, Any]]) -> str:
    """What each motion column is; the mean skips a set where a metric cannot be had (5-way
    needs five labels: BasicMotions has four)."""
    lines = ["**motion — sensor sets from other devices, placements and units**\n"]
    for name, text in MOTION_SETS.items():
        if name in sets:
            first = next(iter(sets[name].values()))
            lines.append(
                f"- `{name}`: {text} — {first['n_recordings']} recordings, "
                f"{first['n_labels']} labels"
            )
    lines.append("\n— : not measurable on that set; the mean is over the sets that have it.\n")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
