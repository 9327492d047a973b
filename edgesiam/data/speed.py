"""New training voices from speed-perturbed copies of a speech dataset folder.

Playing a recording faster or slower moves its pitch and its formants together, as a different
vocal tract would: a copy at 0.88 or 1.12 times the speed is heard as another speaker (the trick
x-vector recipes use to triple their speakers). Each copy gets its own label, ``<label>@<speed>``,
so a folder of 80 voices becomes one of 240 training classes. A teacher embeds the copies like any
other recording, so distillation learns from them too.

The copy is read through the project's resampler at ``rate / speed`` and written at ``rate``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from edgesiam.data.readers import read_audio, scan_dataset
from edgesiam.errors import DataError

STAMP_FILE = "PERTURB.json"
STAMP_VERSION = 1


def speed_label(label: str, speed: float) -> str:
    """The label of ``label``'s copies at ``speed``.

    >>> speed_label("kt-de", 1.12)
    'kt-de@1.12'
    """
    return f"{label}@{speed:g}"


def render_speeds(
    source: Path,
    output: Path,
    speeds: Sequence[float],
    *,
    sample_rate: int = 16000,
    progress: bool = True,
) -> int:
    """Write every recording of ``source`` at each of ``speeds`` into the dataset folder
    ``output`` (labels ``<label>@<speed>``, 16-bit WAV at ``sample_rate``). A folder already
    made with the same settings and files is left as it is. Returns the number of files written.
    """
    from tqdm import tqdm

    bad = [s for s in speeds if not 0.5 <= s <= 2.0 or s == 1.0]
    if bad or not speeds:
        raise DataError(f"speeds must lie in [0.5, 2] and differ from 1, got {list(speeds)}")
    info = scan_dataset(source)
    if info.modality != "audio":
        raise DataError("speed perturbation applies to audio dataset folders only", source)
    stamp = {
        "version": STAMP_VERSION,
        "speeds": [float(s) for s in speeds],
        "sample_rate": sample_rate,
        "source": source.name,
        "recordings": len(info.recordings),
    }
    done = output / STAMP_FILE
    if done.is_file() and json.loads(done.read_text()) == stamp:
        return 0
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    bar = tqdm(info.recordings, desc="speed copies", unit="rec", disable=not progress)
    for rec in bar:
        for speed in speeds:
            audio = read_audio(rec.path, round(sample_rate / speed))
            target = partial / speed_label(rec.label, speed) / (rec.path.stem + ".wav")
            target.parent.mkdir(exist_ok=True)
            sf.write(target, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16")
    (partial / "dataset.toml").write_text(
        f'modality = "audio"\nsample_rate = {sample_rate}\n', encoding="utf-8"
    )
    (partial / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(output, ignore_errors=True)
    partial.rename(output)
    return len(info.recordings) * len(speeds)
