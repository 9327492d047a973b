"""``events``: short sound events (drums, game effects, instrument and UI sound families).

Writes ``ROOT/events/{train,val,test}``: 16 kHz mono 16-bit WAV, at most 2 s per file (leading and
trailing silence below -60 dB of the peak trimmed first, a 20 ms fade where a sound is cut), a
``dataset.toml`` in each split, and the Debian ``copyright`` files in ``ROOT/events/licences/``.

Sources and labels
- ``hydrogen-drumkits`` (per kit GPL-2, GPL-2+, CC-BY-3.0, CC-BY-SA-3.0 or CC0; the kit's own
  ``<license>`` is listed in the summary): label = the drum type, normalised across kits from the
  instrument names of each kit's ``drumkit.xml`` (from the file names when a kit has none): kick,
  snare, sidestick, clap, snap, hihat, tom, splash, china, crash, ride, cowbell, tambourine,
  agogo, conga, bongo, djembe, dundun, cajon, maraca, clave, woodblock, waterglass. Group = kit, so
  the trials between different drums of one kit (same recording chain) are reported separately.
  Instruments that name no drum type (``Sample: beats_..``, ``FX``, ``Zap``, numbered pads) are
  left out. Item ``<kit>__<instrument>-<file>``.
- ``hedgewars-data`` effects (GFDL-1.3; Droplet*.ogg CC-BY-SA-3.0): families of one sound source,
  label ``hw-<family>``: numbered variants (``Droplet1..3`` -> ``hw-droplet``, ``countdown1..4``),
  the nine tuned notes ``1C..9D`` (``hw-notes``) and ``<prefix>_*`` families (``hell_*``,
  ``rubberduck_*``). Singletons are not used here (one file gives no positive pair); a few noisy ones
  are background material in the ``noise`` recipe instead. Group ``hedgewars``.
- ``sound-icons`` (GPL-2+): families by the first word of the name (``cembalo-1..12`` ->
  ``si-cembalo``, ``percussion-*``, ``pisk-*``). Group ``sound-icons``.
- UI sound themes, when the package can be fetched: ``sound-theme-freedesktop`` (CC-BY-SA-3.0,
  CC-BY-3.0, GPL-2+; its spoken ``audio-channel-*`` and ``audio-test-signal`` are left out),
  ``yaru-theme-sound`` (CC-BY-SA-4.0) and ``deepin-sound-theme`` (GPL-3): label ``ui-<theme>``;
  ``oxygen-sounds`` (LGPL-3+): label ``ui-oxygen-<family>`` (im, sys, window, k3b). A UI label is a
  designer's palette rather than one sound source; they are extra TRAINING classes only.

A label needs at least 3 recordings (smaller ones are left out and noted). Byte-identical files are
kept once.

Splits (whole labels, fixed lists):
- test: ``clap``, ``cowbell``, ``tambourine``, ``splash``, ``hw-droplet``, ``hw-hell``,
  ``si-cembalo``: drum types and effects never seen in training;
- val: ``sidestick``, ``agogo``, ``china``, ``hw-countdown``, ``si-pisk``;
- train: every other label (kick, snare, hihat, tom, crash, ride, hand percussion, hw-notes,
  hw-rubberduck, si-percussion, ui-*).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from edgesiam.data.readers import AUDIO_EXTENSIONS
from edgesiam.data.recipes.audio_common import (
    SPLITS,
    TARGET_RATE,
    Clip,
    SplitWriter,
    deb_source,
    dedup,
    fit_length,
    slug,
    split_notes,
    split_of,
    trim_silence,
)
from edgesiam.data.recipes.base import Recipe, RecipeSummary
from edgesiam.errors import RecipeError

NAME = "events"
VERSION = 1
MAX_SECONDS = 2.0
MIN_PER_LABEL = 3

TEST_LABELS = frozenset(
    {"clap", "cowbell", "tambourine", "splash", "hw-droplet", "hw-hell", "si-cembalo"}
)
VAL_LABELS = frozenset({"sidestick", "agogo", "china", "hw-countdown", "si-pisk"})

# Drum type from an instrument (or file) name: the first rule that matches wins, so the more
# specific names come first ("Crash/Ride Bell" is a crash, "Sangban Bell" a dundun, "Cowbell" a
# cowbell and not a ride bell).
DRUM_RULES: tuple[tuple[str, str], ...] = (
    ("cowbell", r"cowbell"),
    ("dundun", r"sangban|dununba|kenkeni|dundun"),
    ("djembe", r"djembe"),
    ("sidestick", r"side ?stick|rim ?click|\bstick\b"),
    ("snare", r"snare|\bsd\b"),
    ("kick", r"kick|bass ?drum|bassdrum|\bbd\d*\b"),
    ("clap", r"clap"),
    ("snap", r"snap"),
    ("hihat", r"hi-?hat|hihat|\bhh\b|\bhat\b|\b[cop]hh\b|hhat"),
    ("tom", r"\btom|floor"),
    ("splash", r"splash"),
    ("china", r"china"),
    ("crash", r"crash|\bcra[_ ]"),
    ("ride", r"ride|\bbell\b"),
    ("tambourine", r"tambourine"),
    ("agogo", r"agogo"),
    ("conga", r"conga"),
    ("bongo", r"bongo"),
    ("cajon", r"cajon"),
    ("maraca", r"maraca"),
    ("clave", r"clave"),
    ("woodblock", r"woodblock|wood block"),
    ("waterglass", r"waterglass|water glass"),
)

FREEDESKTOP_SPOKEN = re.compile(r"^audio-(channel-|test-signal)")


def drum_type(name: str) -> str | None:
    """The normalised drum type of an instrument or sample name, None when it names none."""
    text = name.lower().replace("_", " ")
    for label, pattern in DRUM_RULES:
        if re.search(pattern, text):
            return label
    return None


def _strip_namespaces(root: ET.Element) -> None:
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]


def _kit_samples(kit: Path) -> tuple[list[tuple[str, Path]], str | None, int]:
    """``[(instrument name, file)]`` of a hydrogen kit, its licence, and how many it had no file for."""
    xml = kit / "drumkit.xml"
    audio_files = sorted(
        p for p in kit.iterdir() if p.is_file() and p.suffix.lower() in (*AUDIO_EXTENSIONS, ".aiff")
    )
    if not xml.is_file():
        return [(p.stem, p) for p in audio_files], None, 0
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as exc:
        raise RecipeError(f"{xml}: cannot parse ({exc})") from exc
    _strip_namespaces(root)
    licence = (root.findtext("license") or "").strip() or None
    samples: list[tuple[str, Path]] = []
    missing = 0
    for inst in root.iter("instrument"):
        name = (inst.findtext("name") or "").strip()
        for fn in inst.iter("filename"):
            if not fn.text:
                continue
            path = kit / fn.text.strip()
            if path.is_file():
                samples.append((name, path))
            else:
                missing += 1
    return samples, licence, missing


def _drum_clips(tree: Path, notes: list[str]) -> list[Clip]:
    base = tree / "usr/share/hydrogen/data/drumkits"
    clips: list[Clip] = []
    unmapped: Counter[str] = Counter()
    licences: list[str] = []
    for kit in sorted(p for p in base.iterdir() if p.is_dir()):
        samples, licence, missing = _kit_samples(kit)
        kit_slug = slug(kit.name).lower()
        licences.append(f"{kit.name}: {licence or 'see licences/hydrogen-drumkits.copyright'}")
        if missing:
            notes.append(f"hydrogen kit {kit.name}: {missing} sample files named but missing")
        for instrument, path in samples:
            label = drum_type(instrument) or (drum_type(path.stem) if not instrument else None)
            if label is None:
                unmapped[kit.name] += 1
                continue
            stem = f"{kit_slug}__{slug(instrument).lower()}-{slug(path.stem).lower()}"
            clips.append(Clip(split_of(TEST_LABELS, VAL_LABELS, label), label, stem, source=path))
    notes.append("hydrogen kit licences: " + "; ".join(licences))
    if unmapped:
        notes.append(
            "hydrogen samples naming no drum type, left out: "
            + ", ".join(f"{k} {v}" for k, v in sorted(unmapped.items()))
        )
    return clips


def _hedgewars_family(stem: str) -> str | None:
    if re.fullmatch(r"\d[A-G]", stem):
        return "notes"
    m = re.fullmatch(r"([A-Za-z]+)_[A-Za-z_]+", stem)
    if m:
        return m.group(1).lower()
    m = re.fullmatch(r"(.*?[A-Za-z])(\d+)", stem)
    if m:
        return m.group(1).lower()
    return None


def _family_clips(
    files: list[Path], family_of: Mapping[Path, str | None], prefix: str, group: str
) -> list[Clip]:
    clips = []
    for f in files:
        family = family_of[f]
        if family is None:
            continue
        label = f"{prefix}-{slug(family).lower()}"
        clips.append(
            Clip(
                split_of(TEST_LABELS, VAL_LABELS, label),
                label,
                f"{group}__{slug(f.stem).lower()}",
                source=f,
            )
        )
    return clips


def _hedgewars_clips(tree: Path) -> list[Clip]:
    base = tree / "usr/share/games/hedgewars/Data/Sounds"
    files = sorted(p for p in base.iterdir() if p.is_file() and p.suffix.lower() == ".ogg")
    return _family_clips(files, {f: _hedgewars_family(f.stem) for f in files}, "hw", "hedgewars")


def _sound_icons_clips(tree: Path) -> list[Clip]:
    base = tree / "usr/share/sounds/sound-icons"
    files = sorted(p for p in base.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
    families = {f: f.stem.split("-")[0].lower() for f in files}
    return _family_clips(files, families, "si", "sound-icons")


def _theme_files(tree: Path) -> list[Path]:
    return sorted(
        p
        for p in (tree / "usr/share/sounds").rglob("*")
        if p.is_file() and p.suffix.lower() in (*AUDIO_EXTENSIONS, ".oga")
    )


def _theme_clips(name: str, tree: Path) -> list[Clip]:
    clips = []
    for f in _theme_files(tree):
        if name == "sound-theme-freedesktop" and FREEDESKTOP_SPOKEN.match(f.stem):
            continue
        if name == "oxygen-sounds":
            parts = f.stem.split("-")
            family = parts[1].lower() if len(parts) > 2 else "misc"
            label, group = f"ui-oxygen-{slug(family)}", "oxygen"
        else:
            theme = {"sound-theme-freedesktop": "freedesktop", "yaru-theme-sound": "yaru"}.get(
                name, name.replace("-sound-theme", "")
            )
            label, group = f"ui-{theme}", theme
        clips.append(Clip("train", label, f"{group}__{slug(f.stem).lower()}", source=f))
    return clips


def _drop_small(clips: list[Clip]) -> tuple[list[Clip], list[str]]:
    counts = Counter(c.label for c in clips)
    small = sorted(label for label, n in counts.items() if n < MIN_PER_LABEL)
    return [c for c in clips if counts[c.label] >= MIN_PER_LABEL], small


def _process(audio: np.ndarray) -> np.ndarray:
    trimmed = trim_silence(audio, TARGET_RATE, threshold_db=-60.0, keep_s=0.01)
    return fit_length(trimmed, TARGET_RATE, MAX_SECONDS)


def prepare(root: Path, out: Path) -> RecipeSummary:
    notes: list[str] = []
    sources: list[str] = []
    licences: list[str] = []

    hydrogen, src = deb_source("hydrogen-drumkits", root, out)
    sources.append(src)
    licences.append("hydrogen-drumkits: per kit GPL-2/GPL-2+/CC-BY-3.0/CC-BY-SA-3.0/CC0")
    hedgewars, src = deb_source("hedgewars-data", root, out)
    sources.append(src + " effects")
    licences.append("hedgewars effects: GFDL-1.3 (Droplet*: CC-BY-SA-3.0)")
    clips = _drum_clips(hydrogen, notes) + _hedgewars_clips(hedgewars)

    optional = (
        ("sound-icons", "GPL-2+"),
        ("sound-theme-freedesktop", "CC-BY-SA-3.0/CC-BY-3.0/GPL-2+"),
        ("oxygen-sounds", "LGPL-3+"),
        ("yaru-theme-sound", "CC-BY-SA-4.0"),
        ("deepin-sound-theme", "GPL-3"),
    )
    for package, licence in optional:
        try:
            tree, src = deb_source(package, root, out)
        except RecipeError as exc:
            notes.append(f"{package} could not be fetched and is left out ({exc})"[:300])
            continue
        sources.append(src)
        licences.append(f"{package}: {licence}")
        if package == "sound-icons":
            clips += _sound_icons_clips(tree)
        else:
            clips += _theme_clips(package, tree)

    clips, duplicates = dedup(clips)
    writer = SplitWriter(out)
    # Too-small labels are judged before conversion (a silent file can still shrink one below 3).
    clips, small = _drop_small(clips)
    writer.convert(clips, _process, desc="events", min_seconds=0.02)
    _remove_small_written(out, notes)
    splits = writer.finish()

    labels = {s: sorted(p.name for p in (out / s).iterdir() if p.is_dir()) for s in SPLITS}
    missing = (TEST_LABELS | VAL_LABELS) - set(labels["test"]) - set(labels["val"])
    if missing:
        notes.append(f"held-out labels with no recordings: {', '.join(sorted(missing))}")
    if small:
        notes.append(f"labels with fewer than {MIN_PER_LABEL} files left out: {', '.join(small)}")
    notes.append(f"byte-identical files dropped: {duplicates}")
    notes.append(f"at most {MAX_SECONDS:g} s per file (silence trimmed first)")
    notes.append("ui-* labels (sound themes) are in train only")
    notes.extend(split_notes(writer, labels, "files"))
    return RecipeSummary.audio(NAME, VERSION, splits, sources, "; ".join(licences), notes)


def _remove_small_written(out: Path, notes: list[str]) -> None:
    """Remove label folders that ended up with fewer than MIN_PER_LABEL files after conversion."""
    removed = remove_small_labels(out, SPLITS, MIN_PER_LABEL)
    if removed:
        notes.append(
            f"labels left with fewer than {MIN_PER_LABEL} usable files, removed: "
            + ", ".join(removed)
        )


def remove_small_labels(out: Path, splits: Sequence[str], minimum: int) -> list[str]:
    """Delete the label folders of ``splits`` holding fewer than ``minimum`` WAV files; name them."""
    removed = []
    for split in splits:
        folder = out / split
        if not folder.is_dir():
            continue
        for label_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            files = list(label_dir.glob("*.wav"))
            if len(files) < minimum:
                for f in files:
                    f.unlink()
                label_dir.rmdir()
                removed.append(label_dir.name)
    return removed


RECIPE = Recipe(
    name=NAME,
    version=VERSION,
    description="sound events: hydrogen drum types, hedgewars effect families, sound-icons and "
    "UI sound themes (16 kHz, <= 2 s)",
    prepare=prepare,
)
