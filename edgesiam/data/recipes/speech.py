"""``speech``: real speakers from KDE and Hedgewars packages, plus synthetic training speakers.

Writes ``ROOT/speech/{train,val,test}``: 16 kHz mono 16-bit WAV, one folder per speaker label, and a
``dataset.toml`` (``modality = "audio"``, ``sample_rate = 16000``) in each split. The Debian
``copyright`` file of every package used is copied to ``ROOT/speech/licences/``.

Sources and labels
- ``ktuberling-data`` (GPL-2+): one speaker per language folder, label ``kt-<lang>``, item
  ``<lang>__<word>``. The ``sr@*`` folders are byte-identical copies of ``sr`` and are dropped;
  ``nn`` is Ogg/Opus and is used when libsndfile can decode it.
- ``klettres-data`` (GPL-2+): letters and syllables, label ``kl-<lang>``, item
  ``<lang>__<alpha|syllab>-<name>``. A ``kt-`` and a ``kl-`` label of one language may well be the
  same person (KDE translators recorded both): the two always go to the same split, and the group
  (the language, ``nb``/``nn`` counted as ``no``) marks their trials as same-language ones.
- ``hedgewars-data`` voice packs (GFDL-1.3 per Debian's copyright file): label ``hw-<pack>``, item
  ``<line>__<pack><take>``, so the group is the spoken line and same-line impostor trials (the hard
  ones) can be reported separately. Identical files shared by packs (Classic/Default/Default_uk,
  Default_pl/Russian_pl, Default/HillBilly) are kept once, in the first pack in sorted order; those
  packs are all in train.
- Synthetic speakers, TRAIN ONLY: 40 espeak-ng voices (20 languages x 2 variants, e.g. ``de+m3``,
  label ``espeak-<lang>+<variant>``), reading 20 sentences of their language taken from the
  game-message translations of ``hedgewars-data`` (``Data/Locale/<lang>.txt``), at a fixed speaking
  rate per voice; and the flite voices ``awb``, ``kal16``, ``rms``, ``slt`` (``kal`` is the 8 kHz
  copy of ``kal16``, ``awb_time`` only says the time) reading 20 English sentences, label
  ``flite-<voice>``. Voices of one language read the SAME sentences, so training sees different
  speakers saying the same words and learns who speaks rather than what is said (the hard
  same-line trials of the test split). A missing espeak-ng or flite program only drops those
  speakers (noted).

Clips are trimmed of leading/trailing silence (-45 dB of the clip's peak, 0.1 s kept), silent or
unreadable files are left out, and at most 150 clips are kept per label (evenly spaced in sorted
order; only ``kl-ml`` with 521 clips and a few 160-210-clip ktuberling languages are cut).

Splits (whole labels, fixed lists, no randomness):
- test: ``kt-{ca,el,ga,gl,sl,wa}``, ``kl-{cs,he,hu}``,
  ``hw-{british,mobster,pirate,russian,surfer}``. None of these languages occurs in the other KDE
  package, so no test label can be the same person as another KDE label;
- val: ``kt-nn``, ``kl-nb`` (Norwegian, together), ``kl-ar``, ``kt-ro``, ``hw-singer``;
- train: every other real label and every synthetic one.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgesiam.data.readers import AUDIO_EXTENSIONS, read_audio
from edgesiam.data.recipes import voices
from edgesiam.data.recipes.audio_common import (
    SPLITS,
    TARGET_RATE,
    Clip,
    SplitWriter,
    deb_source,
    dedup,
    slug,
    split_notes,
    split_of,
    trim_silence,
)
from edgesiam.data.recipes.base import Recipe, RecipeSummary
from edgesiam.data.recipes.voices import SENTENCES_PER_VOICE
from edgesiam.errors import DataError

# --------------------------------------------------------------------------------------------------
# the speech recipe

NAME = "speech"
VERSION = 2

KT_TEST = ("ca", "el", "ga", "gl", "sl", "wa")
KL_TEST = ("cs", "he", "hu")
HW_TEST = ("british", "mobster", "pirate", "russian", "surfer")
VAL_LABELS = frozenset({"kt-nn", "kl-nb", "kl-ar", "kt-ro", "hw-singer"})
TEST_LABELS = frozenset(
    [f"kt-{x}" for x in KT_TEST] + [f"kl-{x}" for x in KL_TEST] + [f"hw-{x}" for x in HW_TEST]
)


def person_of(label: str) -> str:
    """Who may stand behind a label of this recipe: labels with one key may be one person.

    Hedgewars voice packs are accents, and several may be one actor, so every ``hw-`` label has the
    key ``hedgewars``; a ``kt-`` and a ``kl-`` label of one language may be one KDE translator, so
    they share ``kde-<language group>``; any other label (a synthetic voice, or a folder of the
    user's own) is its own person.
    """
    if label.startswith("hw-"):
        return "hedgewars"
    if label.startswith(("kt-", "kl-")):
        return f"kde-{voices.language_group(label[3:])}"
    return label


# espeak-ng voice -> hedgewars locale file with sentences in that language
ESPEAK_LANGUAGES = (
    ("en-us", "en"),
    ("en-gb", "en"),
    ("de", "de"),
    ("fr-fr", "fr"),
    ("es", "es"),
    ("it", "it"),
    ("pl", "pl"),
    ("ru", "ru"),
    ("uk", "uk"),
    ("cs", "cs"),
    ("da", "da"),
    ("el", "el"),
    ("fi", "fi"),
    ("hu", "hu"),
    ("lt", "lt"),
    ("nl", "nl"),
    ("ro", "ro"),
    ("sk", "sk"),
    ("sv", "sv"),
    ("tr", "tr"),
)
# Voice variants that sound like a person (no whisper, robot or creature variants).
ESPEAK_VARIANTS = (
    "m1", "f1", "m2", "f2", "m3", "f3", "m4", "f4", "m5", "f5", "m6", "m7",
    "Andy", "Annie", "anika", "benjamin", "edward", "john", "linda", "max",
    "michel", "paul", "rob", "steph", "travis", "victor", "Alicia", "Mario",
)  # fmt: skip
FLITE_VOICES = ("awb", "kal16", "rms", "slt")


def _ktuberling_clips(tree: Path, notes: list[str]) -> list[Clip]:
    base = tree / "usr/share/ktuberling/sounds"
    clips: list[Clip] = []
    for lang_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        lang = lang_dir.name
        if "@" in lang:
            continue  # sr@latin, sr@ijekavian, sr@ijekavianlatin: copies of sr
        files = sorted(p for p in lang_dir.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
        if lang == "nn" and files:
            try:
                read_audio(files[0], TARGET_RATE)
            except DataError:
                notes.append("kt-nn left out: this libsndfile cannot decode Ogg/Opus")
                continue
        label = f"kt-{slug(lang).lower()}"
        for f in files:
            stem = f"{voices.language_group(lang)}__{slug(f.stem)}"
            clips.append(Clip(split_of(TEST_LABELS, VAL_LABELS, label), label, stem, source=f))
    return clips


def _klettres_clips(tree: Path) -> list[Clip]:
    base = tree / "usr/share/klettres"
    clips: list[Clip] = []
    for lang_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        lang = lang_dir.name
        files = sorted(
            p for p in lang_dir.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
        )
        if not files:
            continue  # icons, pics, and languages without recordings (id, nn)
        label = f"kl-{slug(lang).lower().replace('_', '-')}"
        for f in files:
            kind = f.parent.name if f.parent != lang_dir else "clip"
            stem = f"{voices.language_group(lang)}__{slug(kind)}-{slug(f.stem)}"
            clips.append(Clip(split_of(TEST_LABELS, VAL_LABELS, label), label, stem, source=f))
    return clips


def _line_name(stem: str) -> tuple[str, str]:
    m = re.match(r"^(.*?)(\d*)$", stem)
    line, take = (m.group(1), m.group(2)) if m else (stem, "")
    return slug(line.lower(), fallback="line"), take


def _hedgewars_voice_clips(tree: Path) -> list[Clip]:
    base = tree / "usr/share/games/hedgewars/Data/Sounds/voices"
    clips: list[Clip] = []
    for pack_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        pack = slug(pack_dir.name).lower().replace("_", "-")
        label = f"hw-{pack}"
        for f in sorted(p for p in pack_dir.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS):
            line, take = _line_name(f.stem)
            clips.append(
                Clip(
                    split_of(TEST_LABELS, VAL_LABELS, label),
                    label,
                    f"{line}__{pack}{take}",
                    source=f,
                )
            )
    return clips


def _synthetic_clips(tree: Path, tmp: Path, notes: list[str], sources: list[str]) -> list[Clip]:
    clips: list[Clip] = []
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        notes.append("espeak-ng is not installed: no espeak speakers (apt-get install espeak-ng)")
    else:
        out_text = subprocess.run([espeak, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"\d+\.\d+[\w.-]*", out_text)
        version = m.group(0) if m else "?"
        sources.append(f"espeak-ng {version} voices (synthetic, train only)")
        n = 0
        for i, (voice, locale) in enumerate(ESPEAK_LANGUAGES):
            pool = voices.locale_sentences(tree, locale)
            for j in range(2):
                variant = ESPEAK_VARIANTS[(2 * i + j) % len(ESPEAK_VARIANTS)]
                label = f"espeak-{voice}+{slug(variant).lower()}"
                rate = 140 + (7 * (2 * i + j)) % 50  # words per minute, 140-189, fixed per voice
                for k, text in enumerate(voices.pick(pool, SENTENCES_PER_VOICE, locale)):
                    wav = tmp / f"espeak-{n}.wav"
                    n += 1
                    cmd = [
                        espeak,
                        "-v",
                        f"{voice}+{variant}",
                        "-s",
                        str(rate),
                        "-w",
                        str(wav),
                        text,
                    ]
                    clips.append(
                        Clip(
                            "train",
                            label,
                            f"{voices.language_group(locale)}__s{k:02d}",
                            make=functools.partial(voices.synthesise, cmd, wav),
                        )
                    )
    flite = shutil.which("flite")
    if flite is None:
        notes.append("flite is not installed: no flite speakers (apt-get install flite)")
    else:
        listed = subprocess.run([flite, "-lv"], capture_output=True, text=True).stdout.split()
        installed = [v for v in FLITE_VOICES if v in listed]
        sources.append(f"flite voices {', '.join(installed)} (synthetic, train only)")
        pool = voices.locale_sentences(tree, "en")
        for voice in installed:
            label = f"flite-{voice}"
            for k, text in enumerate(voices.pick(pool, SENTENCES_PER_VOICE, "en")):
                wav = tmp / f"{label}-{k}.wav"
                cmd = [flite, "-voice", voice, "-t", text, "-o", str(wav)]
                make = functools.partial(voices.synthesise, cmd, wav)
                clips.append(Clip("train", label, f"en__s{k:02d}", make=make))
    return clips


def prepare(root: Path, out: Path) -> RecipeSummary:
    notes: list[str] = []
    sources: list[str] = []
    kt, kt_src = deb_source("ktuberling-data", root, out)
    kl, kl_src = deb_source("klettres-data", root, out)
    hw, hw_src = deb_source("hedgewars-data", root, out)
    sources += [kt_src + " (GPL-2+)", kl_src + " (GPL-2+)", hw_src + " voices (GFDL-1.3)"]

    real = _ktuberling_clips(kt, notes) + _klettres_clips(kl) + _hedgewars_voice_clips(hw)
    real, duplicates = dedup(real)
    real, capped = voices.cap_speakers(real)
    writer = SplitWriter(out)
    with tempfile.TemporaryDirectory(prefix="edgesiam-speech-") as tmp:
        synthetic = _synthetic_clips(hw, Path(tmp), notes, sources)
        process = lambda a: trim_silence(a, TARGET_RATE)  # noqa: E731
        writer.convert(real + synthetic, process, desc="speech", min_seconds=0.1)
    splits = writer.finish()

    labels = {s: sorted(p.name for p in (out / s).iterdir() if p.is_dir()) for s in SPLITS}
    missing = (TEST_LABELS | VAL_LABELS) - set(labels["test"]) - set(labels["val"])
    if missing:
        notes.append(f"held-out labels with no recordings: {', '.join(sorted(missing))}")
    notes.append(
        "a kt-<lang> and a kl-<lang> label may be the same person (KDE translators recorded both); "
        "they are always in one split, and the group (language) marks their trials"
    )
    notes.append("hedgewars packs may share actors; Robot is processed; groups are spoken lines")
    notes.append(f"byte-identical files dropped: {duplicates}; sr@* copies of kt-sr dropped")
    notes.extend(capped)
    notes.append("synthetic speakers (espeak-*, flite-*) are in train only")
    notes.extend(split_notes(writer, labels, "clips"))
    return RecipeSummary.audio(
        NAME,
        VERSION,
        splits,
        sources,
        (
            "GPL-2+ (ktuberling-data, klettres-data); GFDL-1.3 (hedgewars voices); "
            "espeak-ng/flite output (synthetic; sentences from hedgewars Locale, GPL-2)"
        ),
        notes,
    )


RECIPE = Recipe(
    name=NAME,
    version=VERSION,
    description="speaker matching: KDE ktuberling/klettres and Hedgewars voices, "
    "plus espeak-ng/flite training speakers (16 kHz)",
    prepare=prepare,
)
