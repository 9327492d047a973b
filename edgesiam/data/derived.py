"""An audio dataset folder derived from another (channel renders, speed copies).

It is written beside its target as ``NAME.partial`` and renamed when whole, with a stamp that says
what it was made from: an interrupted run never leaves a folder that looks done, and a folder
whose stamp still matches is not made again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

__all__ = ["is_current", "publish_audio", "start_partial"]


def is_current(output: Path, stamp_file: str, stamp: dict[str, Any]) -> bool:
    """Whether ``output`` was made from the same inputs and settings (its stamp is ``stamp``)."""
    done = output / stamp_file
    return done.is_file() and json.loads(done.read_text(encoding="utf-8")) == stamp


def start_partial(output: Path) -> Path:
    """An empty ``NAME.partial`` folder beside ``output`` (a leftover one is removed first)."""
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial


def publish_audio(
    partial: Path, output: Path, stamp_file: str, stamp: dict[str, Any], sample_rate: int
) -> None:
    """Describe ``partial`` as an audio dataset, stamp it and put it in ``output``'s place."""
    (partial / "dataset.toml").write_text(
        f'modality = "audio"\nsample_rate = {sample_rate}\n', encoding="utf-8"
    )
    (partial / stamp_file).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(output, ignore_errors=True)
    partial.rename(output)
