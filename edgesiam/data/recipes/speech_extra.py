"""``speech-tuxpaint`` and ``speech-extra``: speakers from sources the ``speech`` recipe does not use.

``speech-tuxpaint`` writes ``ROOT/speech-tuxpaint/test`` only: a leave-one-corpus-out speaker test
set. No recipe puts Tux Paint voices in a training split, so a model trained on ``speech`` and
``speech-extra`` meets every one of these voices for the first time.

- ``tuxpaint-stamps-default`` (GPL-2): the stamp descriptions read aloud,
  ``<stamp>_desc_<lang>.ogg`` (``<stamp>_desc.ogg`` is English, ``_pt_BR`` ones are WAV). One
  consistent voice per language, label ``tp-<lang>`` (``tp-pt-br``), item ``<lang>__<stamp>``.
- The spoken digits ``symbols/math/<d>_<lang>.ogg`` add the languages that have no narration voice
  (German, Swedish, Japanese, ...), label ``tp-<lang>``, item ``<lang>__digit-<d>``. Digits of a
  language that has a narration voice are left out: they may be another person, and one person under
  two labels would make false impostor trials.

The group of every item is its language (``nb``/``nn`` counted as ``no``, ``pt_BR`` as ``pt``), so
``edgesiam eval`` reports same-language trials separately: a set labelled by language can otherwise
be "solved" by recognising the language. At most 150 clips per label (evenly spaced), like ``speech``.

``speech-extra`` writes ``ROOT/speech-extra/train`` only: more TRAINING speakers.

- festvox voices of festival (Debian main, ``apt-get install festival festvox-...``), label
  ``fv-<voice>``: English ``ked``; Czech ``dita``, ``krb`` (a child), ``machac``, ``ph``; Italian
  ``lp``, ``pc``; Russian ``nsh``; Finnish ``lj``, ``mv``; Catalan ``ona`` (reading Spanish: no
  Catalan sentences in the packages used). Each reads the 20 sentences of its language that the
  espeak-ng voices of ``speech`` read (hedgewars ``Data/Locale``), so training hears different
  speakers saying the same words. Left out: ``kal`` and ``slt`` (the same donors as ``flite-kal16``
  and ``flite-slt`` in ``speech``) and the Hindi/Marathi/Telugu NSK voices (no sentences in their
  scripts). A voice that is not installed is left out and noted.

Every KTuberling and KLettres voice with recordings is already in ``speech``; none is repeated here.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesiam.data.readers import AUDIO_EXTENSIONS
from edgesiam.data.recipes import voices
from edgesiam.data.recipes.audio_common import (
    TARGET_RATE,
    Clip,
    SplitWriter,
    deb_source,
    dedup,
    dropped_notes,
    slug,
    trim_silence,
)
from edgesiam.data.recipes.base import Recipe, RecipeSummary
from edgesiam.data.recipes.voices import SENTENCES_PER_VOICE
from edgesiam.errors import RecipeError

TUXPAINT = "speech-tuxpaint"
TUXPAINT_VERSION = 1
EXTRA = "speech-extra"
EXTRA_VERSION = 1

STAMPS = "usr/share/tuxpaint/stamps"
NARRATION = re.compile(r"^(?P<stamp>.+)_desc(?:_(?P<lang>[a-z]{2,3}(?:_[A-Za-z]{2})?))?$")
DIGIT = re.compile(r"^(?P<digit>\d)_(?P<lang>[a-z]{2,3}(?:_[A-Za-z]{2})?)$")


@dataclass(frozen=True)
class FestivalVoice:
    """A festival voice: its name in festival, the label suffix, the sentences' locale, the text
    encoding the voice's lexicon expects, and the Debian package that installs it."""

    voice: str
    name: str
    locale: str
    encoding: str
    package: str


FESTIVAL_VOICES = (
    FestivalVoice("ked_diphone", "ked", "en", "ascii", "festvox-kdlpc16k"),
    FestivalVoice("czech_dita", "dita", "cs", "iso-8859-2", "festvox-czech-dita"),
    FestivalVoice("czech_krb", "krb", "cs", "iso-8859-2", "festvox-czech-krb"),
    FestivalVoice("czech_machac", "machac", "cs", "iso-8859-2", "festvox-czech-machac"),
    FestivalVoice("czech_ph", "ph", "cs", "iso-8859-2", "festvox-czech-ph"),
    FestivalVoice("lp_diphone", "lp", "it", "iso-8859-1", "festvox-italp16k"),
    FestivalVoice("pc_diphone", "pc", "it", "iso-8859-1", "festvox-itapc16k"),
    FestivalVoice("msu_ru_nsh_clunits", "nsh", "ru", "utf-8", "festvox-ru"),
    FestivalVoice("suo_fi_lj_diphone", "lj", "fi", "iso-8859-1", "festvox-suopuhe-lj"),
    FestivalVoice("hy_fi_mv_diphone", "mv", "fi", "iso-8859-1", "festvox-suopuhe-mv"),
    FestivalVoice("upc_ca_ona_hts", "ona", "es", "iso-8859-1", "festvox-ca-ona-hts"),
)


def _lang_label(lang: str) -> str:
    return "tp-" + slug(lang).lower().replace("_", "-")


def _audio_files(base: Path) -> list[Path]:
    return sorted(
        p for p in base.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )


def tuxpaint_clips(tree: Path, notes: list[str]) -> list[Clip]:
    """Narrations (one voice per language) and, for languages without one, the spoken digits."""
    files = _audio_files(tree / STAMPS)
    clips: list[Clip] = []
    narrated: set[str] = set()
    for f in files:
        m = NARRATION.match(f.stem)
        if m:
            lang = m.group("lang") or "en"
            narrated.add(voices.language_group(lang))
            stem = f"{voices.language_group(lang)}__{slug(m.group('stamp')).lower()}"
            clips.append(Clip("test", _lang_label(lang), stem, source=f))
    skipped: set[str] = set()
    for f in files:
        m = DIGIT.match(f.stem)
        if not m or f.parent.name != "math":
            continue
        lang = m.group("lang")
        if voices.language_group(lang) in narrated:
            skipped.add(lang)
            continue
        stem = f"{voices.language_group(lang)}__digit-{m.group('digit')}"
        clips.append(Clip("test", _lang_label(lang), stem, source=f))
    if skipped:
        notes.append(
            "spoken digits left out where the language has a narration voice (maybe another "
            "person): " + ", ".join(sorted(skipped))
        )
    return clips


def prepare_tuxpaint(root: Path, out: Path) -> RecipeSummary:
    notes: list[str] = []
    tree, src = deb_source("tuxpaint-stamps-default", root, out)
    clips, duplicates = dedup(tuxpaint_clips(tree, notes))
    clips, capped = voices.cap_speakers(clips)
    writer = SplitWriter(out, splits=("test",))
    process = functools.partial(trim_silence, sample_rate=TARGET_RATE)
    writer.convert(clips, process, desc=TUXPAINT, min_seconds=0.1)
    splits = writer.finish()
    labels = sorted(p.name for p in (out / "test").iterdir() if p.is_dir())
    notes.append(f"byte-identical files dropped: {duplicates}")
    notes.extend(capped)
    notes.extend(dropped_notes(writer))
    notes.append("group = language; no recipe trains on Tux Paint voices")
    notes.append("test: " + ", ".join(labels))
    return RecipeSummary.audio(
        TUXPAINT,
        TUXPAINT_VERSION,
        splits,
        [src + " (GPL-2)"],
        "GPL-2 (tuxpaint-stamps-default)",
        notes,
    )


def festival_voices(festival: str) -> set[str]:
    """The voices an installed festival knows (``voice.list``)."""
    try:
        done = subprocess.run(
            [festival, "--pipe"],
            input="(print (voice.list))\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RecipeError(f"festival failed: {exc}") from exc
    return set(re.findall(r"[\w-]+", done.stdout))


def _festival_say(text2wave: str, voice: FestivalVoice, text: str, wav: Path) -> np.ndarray:
    """Write ``text`` in the voice's encoding beside ``wav`` and synthesise it there."""
    source = wav.with_suffix(".txt")
    source.write_bytes(text.encode(voice.encoding, errors="ignore"))
    cmd = [text2wave, "-eval", f"(voice_{voice.voice})", "-o", str(wav), str(source)]
    try:
        return voices.synthesise(cmd, wav)
    finally:
        source.unlink(missing_ok=True)


def _copy_installed_copyright(package: str, out: Path, docs: Path = Path("/usr/share/doc")) -> None:
    """Keep the copyright file of an installed Debian package in ``out/licences``."""
    source = docs / package / "copyright"
    if source.is_file():
        (out / "licences").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, out / "licences" / f"{package}.copyright")


def festival_clips(
    sentences: dict[str, list[str]], tmp: Path, out: Path, notes: list[str], sources: list[str]
) -> list[Clip]:
    """Clips ``fv-<voice>`` of every installed voice in FESTIVAL_VOICES reading its sentences."""
    festival, text2wave = shutil.which("festival"), shutil.which("text2wave")
    if festival is None or text2wave is None:
        notes.append("festival is not installed: no festvox speakers (apt-get install festival)")
        return []
    known = festival_voices(festival)
    missing = [v.package for v in FESTIVAL_VOICES if v.voice not in known]
    if missing:
        notes.append("festvox voices not installed, left out: " + ", ".join(missing))
    usable = [v for v in FESTIVAL_VOICES if v.voice in known and sentences.get(v.locale)]
    if usable:
        sources.append("festival voices " + ", ".join(v.package for v in usable) + " (synthetic)")
    clips: list[Clip] = []
    for voice in usable:
        _copy_installed_copyright(voice.package, out)
        pool = sentences[voice.locale]
        for k, text in enumerate(voices.pick(pool, SENTENCES_PER_VOICE, voice.locale)):
            wav = tmp / f"fv-{voice.name}-{k}.wav"
            make = functools.partial(_festival_say, text2wave, voice, text, wav)
            stem = f"{voices.language_group(voice.locale)}__s{k:02d}"
            clips.append(Clip("train", f"fv-{voice.name}", stem, make=make))
    return clips


def prepare_extra(root: Path, out: Path) -> RecipeSummary:
    notes: list[str] = []
    hw, hw_src = deb_source("hedgewars-data", root, out)
    sources = [hw_src + " Locale sentences (GPL-2)"]
    locales = sorted({v.locale for v in FESTIVAL_VOICES})
    sentences = {loc: voices.locale_sentences(hw, loc) for loc in locales}
    writer = SplitWriter(out, splits=("train",))
    with tempfile.TemporaryDirectory(prefix="edgesiam-speech-extra-") as tmp:
        clips = festival_clips(sentences, Path(tmp), out, notes, sources)
        if not clips:
            raise RecipeError(
                "no speaker could be synthesised: install festival and its voices "
                "(apt-get install festival " + " ".join(v.package for v in FESTIVAL_VOICES) + ")"
            )
        process = functools.partial(trim_silence, sample_rate=TARGET_RATE)
        writer.convert(clips, process, desc=EXTRA, min_seconds=0.1)
    splits = writer.finish()
    notes.extend(dropped_notes(writer))
    notes.append(
        "festvox kal and slt left out (same donors as flite-kal16 and flite-slt in speech); "
        "Hindi/Marathi/Telugu NSK voices left out (no sentences in their scripts)"
    )
    notes.append("fv-ona (Catalan) reads Spanish sentences; every speaker is synthetic, train only")
    return RecipeSummary.audio(
        EXTRA,
        EXTRA_VERSION,
        splits,
        sources,
        "output of festival festvox voices (Debian main; ked: CMU free licence, czech: "
        "GPL-3+, italian: GPL-2+, ru: BSD-like/GPL-3, suopuhe: LGPL-2+, ona: BSD-3/LGPL-2.1+); "
        "sentences from hedgewars Locale (GPL-2)",
        notes,
    )


RECIPES = {
    TUXPAINT: Recipe(
        name=TUXPAINT,
        version=TUXPAINT_VERSION,
        description="speaker test set from a corpus never trained on: Tux Paint stamp narrations "
        "and spoken digits, one voice per language (16 kHz)",
        prepare=prepare_tuxpaint,
    ),
    EXTRA: Recipe(
        name=EXTRA,
        version=EXTRA_VERSION,
        description="extra training speakers: festival festvox voices reading the espeak sentences "
        "(16 kHz)",
        prepare=prepare_extra,
    ),
}
