"""New training voices from speed-perturbed copies of a speech dataset folder.

Playing a recording faster or slower moves its pitch and its formants together, as a different
vocal tract would: a copy at 0.88 or 1.12 times the speed is heard as another speaker (the trick
x-vector recipes use to triple their speakers). Each copy gets its own label, ``<label>@<speed>``,
so a folder of 80 voices becomes one of 240 training classes. A teacher embeds the copies like any
other recording, so distillation learns from them too.

The copy is read through the project's resampler at ``rate / speed`` and written at ``rate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgesiam.data.derived import is_current, publish_audio, start_partial
from edgesiam.data.readers import read_audio, scan_dataset
from edgesiam.data.recipes.audio_common import write_wav
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
    if is_current(output, STAMP_FILE, stamp):
        return 0
    partial = start_partial(output)
    bar = tqdm(info.recordings, desc="speed copies", unit="rec", disable=not progress)
    for rec in bar:
        for speed in speeds:
            audio = read_audio(rec.path, round(sample_rate / speed))
            target = partial / speed_label(rec.label, speed) / (rec.path.stem + ".wav")
            write_wav(target, audio, sample_rate)
    publish_audio(partial, output, STAMP_FILE, stamp, sample_rate)
    return len(info.recordings) * len(speeds)
