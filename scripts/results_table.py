"""Render the README's results tables from the JSON reports of `edgesiam eval`.

Usage: python scripts/results_table.py REPORT[+REPORT...][:TITLE] ... > runs/results.md

Reports joined with '+' are one table (e.g. the float checkpoint, the int8 bundle and the baseline
scored on the same trials).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from edgesiam.evaluation import markdown_table


def main(args: list[str]) -> int:
    for arg in args:
        paths, _, title = arg.partition(":")
        systems: dict[str, Any] = {}
        for path in paths.split("+"):
            systems.update(json.loads(Path(path).read_text())["systems"])
        systems = dict(sorted(systems.items(), key=lambda kv: not kv[0].startswith("edgesiam")))
        first = next(iter(systems.values()))
        print(
            f"**{title or paths}** — {first['n_recordings']} recordings, {first['n_labels']} labels\n"
        )
        print(markdown_table(systems))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
