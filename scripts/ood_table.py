"""Render the out-of-domain tables from the JSON reports of `edgesiam eval` on rendered channels.

Usage: python scripts/ood_table.py RUNS_OOD_DIR > runs/results-ood.md

Reads RUNS_OOD_DIR/<bundle>-<channel>.json (channel `clean` is the held-out set as recorded) and
prints, per bundle, one table of EER and one of 5-way 1-shot accuracy: a row per system, a column per
channel, and the headline — the mean over the out-of-domain channels (every channel but `clean`).
A report named <bundle>.<set>-<channel>.json is the bundle on the leave-one-corpus-out set <set>
(a corpus no recipe trains on, e.g. speech-tuxpaint): its own pair of tables.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ORDER = ["clean", "gsm", "amr-nb", "ulaw", "cheap-mic", "far-field"]
METRICS = {"eer": ("EER %", "lower is better"), "way5_shot1": ("5-way 1-shot %", "higher")}


def load(folder: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """bundle → channel → system → metrics."""
    found: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for path in sorted(folder.glob("*.json")):
        channel = next((c for c in ORDER if path.stem.endswith(f"-{c}")), None)
        if channel is None:
            continue
        bundle = path.stem[: -len(channel) - 1]
        found[bundle][channel] = json.loads(path.read_text())["systems"]
    return found


def title(bundle: str) -> str:
    """``speaker`` → its own held-out set; ``speaker.speech-tuxpaint`` → a corpus never trained on."""
    name, _, corpus = bundle.partition(".")
    if corpus:
        return f"{name} — leave-one-corpus-out: {corpus} (never trained on) through device channels"
    return f"{name} — held-out set re-recorded through device channels"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def table(channels: dict[str, dict[str, Any]], metric: str) -> str:
    present = [c for c in ORDER if c in channels]
    ood = [c for c in present if c != "clean"]
    systems = list(dict.fromkeys(s for c in present for s in channels[c]))
    title, better = METRICS[metric]
    head = f"| system ({title}, {better}) | " + " | ".join(present) + " | **mean out-of-domain** |"
    lines = [head, "|---" + "|---:" * (len(present) + 1) + "|"]
    for system in systems:
        values = [channels[c].get(system, {}).get(metric) for c in present]
        shifted = [channels[c].get(system, {}).get(metric) for c in ood]
        known = [v for v in shifted if v is not None]
        mean = sum(known) / len(known) if known and len(known) == len(shifted) else None
        cells = " | ".join(_percent(v) for v in values)
        lines.append(f"| {system} | {cells} | **{_percent(mean)}** |")
    return "\n".join(lines)


def main(args: list[str]) -> int:
    folder = Path(args[0]) if args else Path("runs/ood")
    found = load(folder)
    if not found:
        print(f"no <bundle>-<channel>.json reports in {folder}", file=sys.stderr)
        return 1
    for bundle, channels in found.items():
        first = next(iter(next(iter(channels.values())).values()))
        print(
            f"**{title(bundle)}** — {first['n_recordings']} recordings, {first['n_labels']} labels\n"
        )
        for metric in METRICS:
            print(table(channels, metric))
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
