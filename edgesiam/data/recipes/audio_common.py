"""Helpers the audio recipes share: unpacking a Debian source with its version, silence trimming,
16-bit WAV writing, de-duplication, per-label caps and split bookkeeping."""

from __future__ import annotations

import concurrent.futures
import gzip
import hashlib
import os
import re
import shutil
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from edgesiam.data.readers import AUDIO_EXTENSIONS, DATASET_TOML, read_audio
from edgesiam.data.recipes.base import SplitSummary, debian_package
from edgesiam.errors import DataError, RecipeError

TARGET_RATE = 16_000
SPLITS = ("train", "val", "test")


def deb_source(name: str, root: Path, out: Path) -> tuple[Path, str]:
    """Unpack a Debian package (cached), copy its copyright file to ``out/licences``.

    Returns the unpacked tree and a source string such as ``"debian:ktuberling-data 4:22.12.3-1"``.
    """
    tree = debian_package(name, root)
    doc = tree / "usr" / "share" / "doc" / name
    version = "?"
    changelog = doc / "changelog.Debian.gz"
    if changelog.is_file():
        with gzip.open(changelog, "rt", errors="replace") as f:
            m = re.match(r"\S+ \(([^)]+)\)", f.readline())
        if m:
            version = m.group(1)
    copyright_file = doc / "copyright"
    if copyright_file.is_file():
        licences = out / "licences"
        licences.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(copyright_file, licences / f"{name}.copyright")
    return tree, f"debian:{name} {version}"


def slug(text: str, fallback: str = "x") -> str:
    """An ASCII file-name-safe form of ``text`` (letters, digits, ``.``, ``-``, ``_``)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_text).strip("-._")
    cleaned = re.sub(r"_{2,}", "_", cleaned)  # "__" separates the group in an item stem
    return cleaned or fallback


def trim_silence(
    audio: np.ndarray,
    sample_rate: int,
    threshold_db: float = -45.0,
    keep_s: float = 0.1,
    trim_end: bool = True,
) -> np.ndarray:
    """Cut leading (and trailing) stretches quieter than ``threshold_db`` below the clip's peak."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak <= 0.0:
        return audio[:0]
    hop = max(1, sample_rate // 100)  # 10 ms frames
    n_frames = int(np.ceil(audio.size / hop))
    padded = np.zeros(n_frames * hop, dtype=np.float32)
    padded[: audio.size] = np.abs(audio)
    frame_peak = padded.reshape(n_frames, hop).max(axis=1)
    loud = np.flatnonzero(frame_peak >= peak * 10.0 ** (threshold_db / 20.0))
    keep = round(keep_s * sample_rate)
    start = max(0, int(loud[0]) * hop - keep)
    end = min(audio.size, (int(loud[-1]) + 1) * hop + keep) if trim_end else audio.size
    return audio[start:end]


def fit_length(
    audio: np.ndarray, sample_rate: int, max_seconds: float, fade_s: float = 0.02
) -> np.ndarray:
    """Cut to at most ``max_seconds``, fading out the last ``fade_s`` when something was cut."""
    limit = round(max_seconds * sample_rate)
    if audio.size <= limit:
        return audio
    out = audio[:limit].copy()
    fade = min(limit, round(fade_s * sample_rate))
    if fade:
        out[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return out


def write_wav(path: Path, audio: np.ndarray, sample_rate: int = TARGET_RATE) -> float:
    """Write float audio as 16-bit PCM WAV (clipped to [-1, 1]); return its duration in seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return audio.size / sample_rate


def write_dataset_toml(folder: Path, sample_rate: int = TARGET_RATE) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DATASET_TOML).write_text(f'modality = "audio"\nsample_rate = {sample_rate}\n')


def summarise_folder(folder: Path) -> SplitSummary:
    """Count labels, recordings and hours of a written dataset folder (WAV headers only)."""
    labels = 0
    recordings = 0
    seconds = 0.0
    if folder.is_dir():
        for label_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            files = [p for p in label_dir.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS]
            if files:
                labels += 1
            recordings += len(files)
            seconds += sum(sf.info(str(p)).duration for p in files)
    return SplitSummary(labels=labels, recordings=recordings, hours=round(seconds / 3600.0, 4))


def file_digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def select_evenly(items: Sequence[object], k: int) -> list[int]:
    """Indices of ``k`` items spread evenly over ``items`` (all of them when there are fewer)."""
    n = len(items)
    if n <= k:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, k).round()})


@dataclass
class Clip:
    """One recording to write: where from (a file or a function making the audio) and where to."""

    split: str
    label: str
    stem: str
    source: Path | None = None
    make: Callable[[], np.ndarray] | None = None


@dataclass
class SplitWriter:
    """Writes clips into ``out/<split>/<label>/<stem>.wav`` with unique stems, and counts them."""

    out: Path
    splits: Sequence[str] = SPLITS
    sample_rate: int = TARGET_RATE
    _names: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    dropped: Counter[str] = field(default_factory=Counter)

    def write(self, split: str, label: str, stem: str, audio: np.ndarray) -> Path:
        used = self._names.setdefault((split, label), set())
        name = stem
        n = 2
        while name.lower() in used:  # unique even on case-insensitive file systems
            name = f"{stem}-{n}"
            n += 1
        used.add(name.lower())
        path = self.out / split / label / f"{name}.wav"
        write_wav(path, audio, self.sample_rate)
        return path

    def convert(
        self,
        clips: Sequence[Clip],
        process: Callable[[np.ndarray], np.ndarray],
        desc: str,
        min_seconds: float = 0.05,
        workers: int | None = None,
    ) -> None:
        """Read (or make) every clip at the writer's rate, ``process`` it, and write it.

        Unreadable, silent and too-short clips are counted in :attr:`dropped` rather than
        failing the recipe. Decoding runs in a few threads (libsndfile, soxr and subprocesses
        release the GIL); the files are written in the order of ``clips``, so the output does not
        depend on timing.
        """
        rate = self.sample_rate

        def load(clip: Clip) -> np.ndarray | str:
            try:
                if clip.make is not None:
                    audio = clip.make()
                elif clip.source is not None:
                    audio = read_audio(clip.source, rate)
                else:
                    return "nothing to read"
            except (DataError, RecipeError) as exc:
                return f"unreadable: {exc}"
            if audio.size == 0 or float(np.max(np.abs(audio))) < 1e-4:
                return "silent"
            audio = process(audio)
            if audio.size < min_seconds * rate:
                return "too short"
            return audio

        n_workers = workers or min(4, os.cpu_count() or 1)
        chunk = 64  # bounded look-ahead: decoded audio waits in memory only for one chunk
        with (
            concurrent.futures.ThreadPoolExecutor(max_workers=n_workers) as pool,
            tqdm(total=len(clips), desc=desc, unit="clip") as bar,
        ):
            for start in range(0, len(clips), chunk):
                batch = clips[start : start + chunk]
                for clip, result in zip(batch, pool.map(load, batch), strict=True):
                    bar.update(1)
                    if isinstance(result, str):
                        self.dropped[result.split(":")[0]] += 1
                        continue
                    self.write(clip.split, clip.label, clip.stem, result)

    def finish(self) -> dict[str, SplitSummary]:
        summaries = {}
        for split in self.splits:
            folder = self.out / split
            write_dataset_toml(folder, self.sample_rate)
            summaries[split] = summarise_folder(folder)
        return summaries


def dedup(clips: Iterable[Clip]) -> tuple[list[Clip], int]:
    """Drop clips whose source file is byte-identical to an earlier one; return (kept, dropped)."""
    seen: set[str] = set()
    kept: list[Clip] = []
    dropped = 0
    for clip in clips:
        if clip.source is not None:
            digest = file_digest(clip.source)
            if digest in seen:
                dropped += 1
                continue
            seen.add(digest)
        kept.append(clip)
    return kept, dropped


def cap_per_label(clips: Sequence[Clip], limit: int) -> tuple[list[Clip], dict[str, int]]:
    """Keep at most ``limit`` clips per label (evenly spaced); return kept and the original sizes
    of the labels that were cut."""
    by_label: dict[str, list[Clip]] = {}
    for clip in clips:
        by_label.setdefault(clip.label, []).append(clip)
    kept: list[Clip] = []
    cut: dict[str, int] = {}
    for label, items in by_label.items():
        idx = select_evenly(items, limit)
        if len(idx) < len(items):
            cut[label] = len(items)
        kept.extend(items[i] for i in idx)
    return kept, cut


def split_of(test: Collection[str], val: Collection[str], label: str) -> str:
    """The split a label belongs to: fixed test and validation lists, the rest trains."""
    if label in test:
        return "test"
    return "val" if label in val else "train"


def dropped_notes(writer: SplitWriter, what: str = "") -> list[str]:
    """One note naming what the writer left out (unreadable, silent, too short), or none."""
    if not writer.dropped:
        return []
    lead = f"{what} left out: " if what else "left out: "
    return [lead + ", ".join(f"{v} {k}" for k, v in sorted(writer.dropped.items()))]


def split_notes(writer: SplitWriter, labels: dict[str, list[str]], what: str) -> list[str]:
    """The notes every audio recipe ends with: what the writer left out, and the held-out labels."""
    return [
        *dropped_notes(writer, what),
        "test: " + ", ".join(labels["test"]),
        "val: " + ", ".join(labels["val"]),
    ]
