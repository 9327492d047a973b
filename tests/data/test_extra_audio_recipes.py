"""Fast tests of the speech-tuxpaint, speech-extra and events-extra recipes on small fabricated
package trees laid out like the real Debian packages (``apt-get download`` replaced by the tree)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgesiam.data.readers import scan_dataset
from edgesiam.data.recipes import audio_common, prepare, speech_extra
from edgesiam.data.recipes.events_extra import family

RATE = 22_050


def _sound(path: Path, seed: int, seconds: float = 0.6) -> None:
    """A distinct tone burst (every file differs, so de-duplication keeps it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * RATE)) / RATE
    x = 0.5 * np.sin(2 * np.pi * (180 + 37 * seed) * t) * np.hanning(t.size)
    fmt = "OGG" if path.suffix == ".ogg" else "WAV"
    sf.write(str(path), x.astype(np.float32), RATE, format=fmt)


def _package(
    root: Path, name: str, files: dict[str, int], extra: dict[str, str] | None = None
) -> None:
    """A fake unpacked package ``root/name``: its sounds, copyright and changelog."""
    tree = root / name
    for rel, seed in files.items():
        _sound(tree / rel, seed)
    for rel, text in (extra or {}).items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    doc = tree / "usr/share/doc" / name
    doc.mkdir(parents=True, exist_ok=True)
    (doc / "copyright").write_text(f"License: for {name}\n")
    with gzip.open(doc / "changelog.Debian.gz", "wt") as f:
        f.write(f"{name} (1.0-1) unstable; urgency=medium\n")


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    trees = tmp_path / "trees"
    monkeypatch.setattr(audio_common, "debian_package", lambda name, root: trees / name)
    return trees


STAMPS = "usr/share/tuxpaint/stamps"


def _tuxpaint(trees: Path) -> None:
    _package(
        trees,
        "tuxpaint-stamps-default",
        {
            f"{STAMPS}/animals/cat_desc_fr.ogg": 1,
            f"{STAMPS}/animals/dog_desc_fr.ogg": 2,
            f"{STAMPS}/food/pear_desc_fr.ogg": 3,
            f"{STAMPS}/animals/cat_desc.ogg": 4,  # English
            f"{STAMPS}/animals/dog_desc.ogg": 5,
            f"{STAMPS}/food/corn_desc_pt_BR.wav": 6,
            f"{STAMPS}/food/yam_desc_pt_BR.wav": 7,
            f"{STAMPS}/symbols/math/1_de.ogg": 8,  # German has no narration voice: tp-de
            f"{STAMPS}/symbols/math/2_de.ogg": 9,
            f"{STAMPS}/symbols/math/1_fr.ogg": 10,  # French has one: left out
            f"{STAMPS}/symbols/math/1.ogg": 11,  # unlabelled language: left out
            f"{STAMPS}/symbols/alphabets/english/A_filled_en_GB.ogg": 12,
            f"{STAMPS}/household/tools/saw.ogg": 13,  # a sound effect (events-extra)
            f"{STAMPS}/household/tools/hammer.ogg": 14,
        },
    )
    animals = trees / "tuxpaint-stamps-default" / STAMPS / "animals"
    shutil.copyfile(animals / "dog_desc_fr.ogg", animals / "dogs_desc_fr.ogg")  # kept once


def test_tuxpaint_speakers_are_one_label_per_language_voice(packages: Path, tmp_path: Path) -> None:
    _tuxpaint(packages)
    root = tmp_path / "data"
    [(name, summary)] = prepare(["speech-tuxpaint"], root)
    assert name == "speech-tuxpaint" and summary is not None
    out = root / "speech-tuxpaint"
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["licences", "test"]

    info = scan_dataset(out / "test")
    assert info.sample_rate == 16000 and info.skipped == []
    by_label: dict[str, list[str]] = {}
    for rec in info.recordings:
        by_label.setdefault(rec.label, []).append(rec.path.stem)
        assert sf.info(str(rec.path)).samplerate == 16000
    assert {k: sorted(v) for k, v in by_label.items()} == {
        "tp-fr": ["fr__cat", "fr__dog", "fr__pear"],
        "tp-en": ["en__cat", "en__dog"],
        "tp-pt-br": ["pt__corn", "pt__yam"],
        "tp-de": ["de__digit-1", "de__digit-2"],
    }
    groups = {rec.label: rec.group for rec in info.recordings}
    assert groups == {"tp-fr": "fr", "tp-en": "en", "tp-pt-br": "pt", "tp-de": "de"}

    written = json.loads((out / "SUMMARY.json").read_text())
    assert written["splits"] == {
        "test": {"labels": 4, "recordings": 9, "hours": pytest.approx(0.0015, abs=5e-4)}
    }
    assert written["sources"] == ["debian:tuxpaint-stamps-default 1.0-1 (GPL-2)"]
    notes = " ".join(written["notes"])
    assert "digits left out where the language has a narration voice" in notes and ": fr" in notes
    assert "byte-identical files dropped: 1" in notes
    assert (out / "licences" / "tuxpaint-stamps-default.copyright").is_file()


WIDELANDS = "usr/share/games/widelands/data"
MINETEST = "usr/share/games/minetest/games/minetest_game/mods"


def test_events_extra_holds_out_whole_corpora(packages: Path, tmp_path: Path) -> None:
    _tuxpaint(packages)
    _package(
        packages,
        "widelands-data",
        {
            f"{WIDELANDS}/sound/atlanteans/saw/sawing_00.ogg": 20,
            f"{WIDELANDS}/sound/atlanteans/saw/sawing_01.ogg": 21,
            f"{WIDELANDS}/sound/hammering/hammering_00.ogg": 22,
            f"{WIDELANDS}/sound/hammering/hammering_01.ogg": 23,
            f"{WIDELANDS}/sound/hammering/geologist_hammer.ogg": 24,  # single: used nowhere
            f"{WIDELANDS}/music/intro.ogg": 25,  # music: not a sound event
            f"{WIDELANDS}/sound/smiths/smith_00.ogg": 26,
        },
    )
    silent = packages / "widelands-data" / WIDELANDS / "sound/smiths/smith_01.ogg"
    sf.write(str(silent), np.zeros(RATE // 2, dtype=np.float32), RATE, format="OGG")
    _package(
        packages,
        "lincity-ng-data",
        {f"usr/share/games/lincity-ng/sounds/Blacksmith{i}.wav": 30 + i for i in (1, 2, 3)}
        | {"usr/share/games/lincity-ng/sounds/Click.wav": 34},
    )
    _package(
        packages,
        "minetest-data",
        {
            f"{MINETEST}/default/sounds/default_wood_footstep.1.ogg": 40,
            f"{MINETEST}/default/sounds/default_wood_footstep.2.ogg": 41,
            f"{MINETEST}/fire/sounds/fire_fire.1.ogg": 42,
        },
    )
    _package(
        packages,
        "libreoffice-common",
        {"usr/lib/libreoffice/share/gallery/sounds/gong.wav": 50},
    )
    root = tmp_path / "data"
    [(_, summary)] = prepare(["events-extra"], root)
    assert summary is not None
    out = root / "events-extra"

    def labels(split: str) -> dict[str, int]:
        return {p.name: len(list(p.glob("*.wav"))) for p in (out / split).iterdir() if p.is_dir()}

    assert labels("test") == {"wl-sawing": 2, "wl-hammering": 2, "lc-blacksmith": 3}
    assert labels("train") == {
        "mt-wood-footstep": 2,
        "mt-fire": 1,
        "tp-saw": 1,
        "tp-hammer": 1,
        "lo-gong": 1,
    }
    test = scan_dataset(out / "test")
    assert {r.group for r in test.recordings} == {"widelands", "lincity"}
    for path in (out / "test").glob("*/*.wav"):
        assert sf.info(str(path)).duration <= 2.0 + 1e-3

    written = json.loads((out / "SUMMARY.json").read_text())
    assert (
        written["splits"]["test"]["labels"] == 3 and written["splits"]["train"]["recordings"] == 6
    )
    assert "minetest-data: CC-BY-SA-3.0" in written["licence"]
    notes = " ".join(written["notes"])
    assert "(2 single clips of those corpora not used anywhere)" in notes
    assert "too few usable files, removed: wl-smith" in notes and "1 silent" in notes
    copied = sorted(p.name for p in (out / "licences").iterdir())
    assert copied == [
        f"{n}.copyright"
        for n in sorted(
            [
                "widelands-data",
                "lincity-ng-data",
                "minetest-data",
                "tuxpaint-stamps-default",
                "libreoffice-common",
            ]
        )
    ]


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("sawing_01", "sawing"),
        ("fast_woodcutting_03", "fast-woodcutting"),
        ("bird2_04", "bird2"),
        ("Blacksmith3", "blacksmith"),
        ("CoalMine1", "coal-mine"),
        ("wood_footstep.2", "wood-footstep"),
        ("space", "space"),
        ("42", "42"),
    ],
)
def test_numbered_variants_are_one_family(stem: str, expected: str) -> None:
    assert family(stem) == expected


needs_festival = pytest.mark.skipif(
    shutil.which("text2wave") is None or shutil.which("festival") is None,
    reason="festival is not installed (run: make apt)",
)


@needs_festival
def test_speech_extra_synthesises_festival_voices_reading_the_espeak_sentences(
    packages: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        "02:00=%1 has left the building for good!",
        "02:01=%1 went to see the lighthouse by the sea!",
        "02:02=%1 forgot to bring an umbrella today!",
        "02:03=short",  # too short to be a sentence
    ]
    locale = "usr/share/games/hedgewars/Data/Locale/en.txt"
    _package(packages, "hedgewars-data", {}, {locale: "\n".join(lines) + "\n"})
    voice = speech_extra.FestivalVoice("ked_diphone", "ked", "en", "ascii", "festvox-kdlpc16k")
    absent = speech_extra.FestivalVoice("no_such_voice", "none", "en", "ascii", "festvox-none")
    monkeypatch.setattr(speech_extra, "FESTIVAL_VOICES", (voice, absent))
    monkeypatch.setattr(speech_extra, "SENTENCES_PER_VOICE", 2)
    if "ked_diphone" not in speech_extra.festival_voices("festival"):
        pytest.skip("festvox-kdlpc16k is not installed (run: make apt)")

    root = tmp_path / "data"
    [(_, summary)] = prepare(["speech-extra"], root)
    assert summary is not None
    info = scan_dataset(root / "speech-extra" / "train")
    assert info.labels == ["fv-ked"]
    assert sorted(r.path.stem for r in info.recordings) == ["en__s00", "en__s01"]
    for rec in info.recordings:
        meta = sf.info(str(rec.path))
        assert meta.samplerate == 16000 and meta.duration > 1.0  # a spoken sentence, not a beep
        audio, _ = sf.read(str(rec.path))
        assert float(np.max(np.abs(audio))) > 0.05
    notes = " ".join(summary.notes)
    assert "festvox voices not installed, left out: festvox-none" in notes


def test_speech_extra_without_festival_says_what_to_install(
    packages: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _package(packages, "hedgewars-data", {}, {"usr/share/games/hedgewars/Data/Locale/en.txt": ""})
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    from edgesiam.errors import RecipeError

    with pytest.raises(RecipeError, match="install festival"):
        prepare(["speech-extra"], tmp_path / "data")
    assert not (tmp_path / "data" / "speech-extra").exists()


@pytest.mark.slow
def test_real_extra_audio_recipes(tmp_path: Path) -> None:
    """The real packages (about 620 MB of downloads) and festival's installed voices."""
    results = dict(prepare(["speech-tuxpaint", "events-extra", "speech-extra"], tmp_path))
    assert all(s is not None for s in results.values())

    tux = scan_dataset(tmp_path / "speech-tuxpaint" / "test")
    assert len(tux.labels) >= 20 and len(tux) >= 1500 and tux.skipped == []
    assert {"tp-fr", "tp-ru", "tp-en", "tp-de"} <= set(tux.labels)
    assert all(r.group for r in tux.recordings)  # the language

    events = {s: scan_dataset(tmp_path / "events-extra" / s) for s in ("train", "test")}
    assert {"wl-sawing", "wl-hammering", "wl-smith", "lc-blacksmith", "lc-fire"} <= set(
        events["test"].labels
    )
    assert all(label.startswith(("wl-", "lc-")) for label in events["test"].labels)
    assert not any(label.startswith(("wl-", "lc-")) for label in events["train"].labels)
    assert {"mt-wood-footstep", "mt-break-glass"} <= set(events["train"].labels)
    counts: dict[str, int] = {}
    for rec in events["test"].recordings:
        counts[rec.label] = counts.get(rec.label, 0) + 1
    assert min(counts.values()) >= 2

    extra = scan_dataset(tmp_path / "speech-extra" / "train")
    assert len(extra.labels) >= 10 and all(x.startswith("fv-") for x in extra.labels)
    for name in ("speech-tuxpaint", "events-extra", "speech-extra"):
        assert any((tmp_path / name / "licences").iterdir())
