"""Render the README's results table from the JSON reports of `edgesiam eval`.

Usage: python scripts/results_table.py runs/speaker/eval-test.json[:title] ... > runs/results.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgesiam.evaluation import markdown_table


def main(args: list[str]) -> int:
    for arg in args:
        path, _, title = arg.partition(":")
        report = json.loads(Path(path).read_text())
        systems = report["systems"]
        first = next(iter(systems.values()))
        heading = title or path
        print(f"**{heading}** — {first['n_recordings']} recordings, {first['n_labels']} labels\n")
        print(markdown_table(systems))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
