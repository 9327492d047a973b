"""``events-extra``: sound-event classes from game and office packages the ``events`` recipe does not use.

Writes ``ROOT/events-extra/{train,test}``: 16 kHz mono 16-bit WAV, at most 2 s per file (silence
trimmed first, as in ``events``), a ``dataset.toml`` in each split, and the Debian ``copyright`` file
of every package in ``ROOT/events-extra/licences/``.

Classes are file-name families of one package: numbered variants are one class (``sawing_00``,
``sawing_01`` -> ``wl-sawing``; ``Blacksmith1..3`` -> ``lc-blacksmith``; Minetest's
``default_wood_footstep.1`` -> ``mt-wood-footstep``, the mod's name dropped). Byte-identical files
are kept once.

Splits (whole corpora, so the test set is leave-one-corpus-out):
- test: ``widelands-data`` (GPL-2+; ``data/sound``, music left out), label ``wl-<family>``, and
  ``lincity-ng-data`` (GPL-2+), label ``lc-<family>``: workshop, farm, industry and animal sounds
  (saw, hammer, smith, mill, fire, ...). Only classes with at least 2 clips (leave-one-out needs a
  second one); the single clips of these two corpora are not used anywhere, so no recipe trains on
  them. Group = corpus (``widelands``, ``lincity``);
- train: ``minetest-data`` (CC-BY-SA-3.0, doors CC-BY-3.0), label ``mt-<family>``; the stamp sounds
  of ``tuxpaint-stamps-default`` (GPL-2; the spoken digits and letters left out), label
  ``tp-<family>``; the gallery sounds of ``libreoffice-common`` (MPL-2.0), label ``lo-<family>``.
  Every class, single clips included (a training class may have one clip: augmentation makes the
  pairs).

Drums across kits are in ``events`` already: its held-out drum types (clap, cowbell, tambourine,
splash) come from several kits with group = kit, so cross-kit trials are reported there.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from edgesiam.data.readers import AUDIO_EXTENSIONS
from edgesiam.data.recipes.audio_common import (
    Clip,
    SplitWriter,
    deb_source,
    dedup,
    dropped_notes,
    slug,
)
from edgesiam.data.recipes.base import Recipe, RecipeSummary
from edgesiam.data.recipes.events import MAX_SECONDS, _process, remove_small_labels
from edgesiam.data.recipes.speech_extra import DIGIT, NARRATION, STAMPS

NAME = "events-extra"
VERSION = 1
MIN_TEST_CLIPS = 2
SPLITS = ("train", "test")

WIDELANDS = "usr/share/games/widelands/data/sound"
LINCITY = "usr/share/games/lincity-ng/sounds"
MINETEST = "usr/share/games/minetest/games/minetest_game/mods"
LIBREOFFICE = "usr/lib/libreoffice/share/gallery/sounds"
SPOKEN_STAMPS = ("symbols/math", "symbols/alphabets")

# package, split, label prefix, group, licence
SOURCES = (
    ("widelands-data", "test", "wl", "widelands", "GPL-2+"),
    ("lincity-ng-data", "test", "lc", "lincity", "GPL-2+ (sounds dual CC-BY-SA-2.0)"),
    ("minetest-data", "train", "mt", "minetest", "CC-BY-SA-3.0 (doors: CC-BY-3.0)"),
    ("tuxpaint-stamps-default", "train", "tp", "tuxpaint", "GPL-2"),
    ("libreoffice-common", "train", "lo", "libreoffice", "MPL-2.0"),
)


def family(stem: str) -> str:
    """The class of a file name: numbered variants (``_01``, ``.2``, ``3``) are one family."""
    base = re.sub(r"[._-]\d+$", "", stem)
    if base == stem:  # no separated number: trailing digits (Blacksmith3), not a kind (bird2_04)
        base = re.sub(r"\d+$", "", stem)
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", "-", base or stem)  # CoalMine -> Coal-Mine
    return slug(spaced.replace("_", "-"), fallback="sound").lower()


def _audio(base: Path) -> list[Path]:
    if not base.is_dir():
        return []
    return sorted(
        p for p in base.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )


def widelands_files(tree: Path) -> list[tuple[str, Path]]:
    return [(family(f.stem), f) for f in _audio(tree / WIDELANDS)]


def lincity_files(tree: Path) -> list[tuple[str, Path]]:
    return [(family(f.stem), f) for f in _audio(tree / LINCITY)]


def minetest_files(tree: Path) -> list[tuple[str, Path]]:
    """Sounds of the Minetest game's mods, the ``<mod>_`` prefix dropped from the family."""
    found = []
    for f in _audio(tree / MINETEST):
        mod = f.parent.parent.name
        stem = f.stem[len(mod) + 1 :] if f.stem.startswith(mod + "_") else f.stem
        found.append((family(stem), f))
    return found


def tuxpaint_files(tree: Path) -> list[tuple[str, Path]]:
    """Stamp sound effects: not the narrations, spoken digits, letters or localised names."""
    base = tree / STAMPS
    found = []
    for f in _audio(base):
        rel = f.relative_to(base).as_posix()
        if rel.startswith(SPOKEN_STAMPS) or NARRATION.match(f.stem) or DIGIT.match(f.stem):
            continue
        found.append((family(f.stem), f))
    return found


def libreoffice_files(tree: Path) -> list[tuple[str, Path]]:
    return [(family(f.stem), f) for f in _audio(tree / LIBREOFFICE)]


FILES: dict[str, Callable[[Path], list[tuple[str, Path]]]] = {
    "widelands-data": widelands_files,
    "lincity-ng-data": lincity_files,
    "minetest-data": minetest_files,
    "tuxpaint-stamps-default": tuxpaint_files,
    "libreoffice-common": libreoffice_files,
}


def corpus_clips(
    files: Iterable[tuple[str, Path]], split: str, prefix: str, group: str
) -> list[Clip]:
    return [
        Clip(split, f"{prefix}-{fam}", f"{group}__{slug(f.stem).lower()}", source=f)
        for fam, f in files
    ]


def keep_test_classes(clips: list[Clip]) -> tuple[list[Clip], int]:
    """Drop test classes with fewer than MIN_TEST_CLIPS clips; return kept and how many dropped."""
    counts = Counter(c.label for c in clips if c.split == "test")
    kept = [c for c in clips if c.split != "test" or counts[c.label] >= MIN_TEST_CLIPS]
    return kept, len(clips) - len(kept)


def prepare(root: Path, out: Path) -> RecipeSummary:
    notes: list[str] = []
    sources: list[str] = []
    licences: list[str] = []
    clips: list[Clip] = []
    for package, split, prefix, group, licence in SOURCES:
        tree, src = deb_source(package, root, out)
        sources.append(f"{src} ({split})")
        licences.append(f"{package}: {licence}")
        clips += corpus_clips(FILES[package](tree), split, prefix, group)
    clips, duplicates = dedup(clips)
    clips, singles = keep_test_classes(clips)
    writer = SplitWriter(out, splits=SPLITS)
    writer.convert(clips, _process, desc=NAME, min_seconds=0.02)
    removed = remove_small_labels(out, ("test",), MIN_TEST_CLIPS)
    splits = writer.finish()
    labels = {s: sorted(p.name for p in (out / s).iterdir() if p.is_dir()) for s in SPLITS}
    notes.append(
        f"test = widelands + lincity classes with >= {MIN_TEST_CLIPS} clips "
        f"({singles} single clips of those corpora not used anywhere); train = every other class"
    )
    if removed:
        notes.append("test classes left with too few usable files, removed: " + ", ".join(removed))
    notes.append(f"byte-identical files dropped: {duplicates}")
    notes.append(f"at most {MAX_SECONDS:g} s per file (silence trimmed first)")
    notes.extend(dropped_notes(writer))
    notes.append("test: " + ", ".join(labels["test"]))
    return RecipeSummary.audio(NAME, VERSION, splits, sources, "; ".join(licences), notes)


RECIPE = Recipe(
    name=NAME,
    version=VERSION,
    description="sound events from corpora never trained on (test: Widelands, LinCity-NG) and "
    "extra training classes (Minetest, Tux Paint stamps, LibreOffice gallery; 16 kHz, <= 2 s)",
    prepare=prepare,
)
