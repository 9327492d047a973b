"""The demo's stream: enrolled and never-enrolled speakers' held-out clips in turns, with low-level
room noise between them, written as one WAV with its true turns.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from edgesiam.data.recipes.speech import person_of
from edgesiam.errors import DataError
from edgesiam.tools.demo.scoring import Segment

log = logging.getLogger(__name__)

__all__ = ["Plan", "build_stream", "make_plan", "speakers_of", "write_talk"]


AUDIO_SUFFIXES: Final = (".wav", ".flac", ".ogg", ".opus")
NOISE_DBFS: Final = -55.0
"""Level of the room noise between clips and turns (below the runtime's -45 dBFS gate)."""
LEAD_S: Final = 0.5
CLIP_GAP_S: Final = 0.15
TURN_GAP_S: Final = 0.6
TURN_S: Final = 3.0
"""A turn holds clips of one speaker until it lasts at least this long (or the clips run out)."""


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)


def speakers_of(test_dir: Path) -> dict[str, list[Path]]:
    speakers = {}
    for folder in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        files = _audio_files(folder)
        if files:
            speakers[folder.name] = files
    return speakers


@dataclass
class Plan:
    enrolled: list[str]
    never_enrolled: list[str]
    enroll: dict[str, list[Path]]
    pool: dict[str, list[Path]]


def make_plan(
    test_dir: Path,
    labels: int,
    enroll_clips: int,
    others: int,
    seed: int,
    window_s: float,
) -> Plan:
    """Pick the speakers (seeded), each enrolled speaker's enrolment clips, and the stream pools.

    Enrolled speakers are different people (:func:`~edgesiam.data.recipes.speech.person_of`), and the
    never-enrolled ones are none of them.
    """
    import soundfile as sf

    speakers = speakers_of(test_dir)
    rng = np.random.default_rng(seed)
    order = [str(x) for x in rng.permutation(sorted(speakers))]
    need = enroll_clips + 2  # enrolment clips, and at least two for the stream
    eligible = [s for s in order if len(speakers[s]) >= need]
    if len(eligible) < labels:
        raise DataError(
            f"{len(eligible)} speaker(s) have at least {need} clips, {labels} are needed "
            f"(--labels {labels}, --enroll-clips {enroll_clips})",
            test_dir,
        )
    # one label per person among the enrolled, and no never-enrolled speaker who may be one of them:
    # a household enrolls different people, and a "never enrolled" voice must really be new
    enrolled: list[str] = []
    taken: set[str] = set()
    for speaker in eligible:
        if len(enrolled) < labels and person_of(speaker) not in taken:
            enrolled.append(speaker)
            taken.add(person_of(speaker))
    if len(enrolled) < labels:
        raise DataError(
            f"{len(enrolled)} different people have at least {need} clips, {labels} are needed "
            f"(--labels {labels}, --enroll-clips {enroll_clips})",
            test_dir,
        )
    never = [s for s in order if person_of(s) not in taken][:others]
    enroll: dict[str, list[Path]] = {}
    pool: dict[str, list[Path]] = {}
    for speaker in enrolled + never:
        files = [speakers[speaker][i] for i in rng.permutation(len(speakers[speaker]))]
        if speaker in enrolled:
            # prefer clips of at least one window: a shorter one is padded with silence
            long_enough = sorted(files, key=lambda f: sf.info(str(f)).duration < window_s)
            enroll[speaker] = long_enough[:enroll_clips]
            files = [f for f in files if f not in enroll[speaker]]
        pool[speaker] = files
    return Plan(enrolled, never, enroll, pool)


def _turn_order(speakers: list[str], turns: int, rng: np.random.Generator) -> list[str]:
    """Each speaker ``turns`` times, shuffled so that no speaker follows itself (when possible)."""
    items = [s for s in speakers for _ in range(turns)]
    best = items
    for _ in range(200):
        order = [items[i] for i in rng.permutation(len(items))]
        if all(a != b for a, b in itertools.pairwise(order)):
            return order
        best = order
    return best


def build_stream(
    plan: Plan,
    rate: int,
    path: Path,
    *,
    turns: int = 2,
    seed: int = 0,
) -> tuple[list[Segment], float]:
    """Write the stream WAV (PCM 16 at ``rate``); return its true turns and its length in s."""
    import soundfile as sf

    from edgesiam.data.readers import read_audio

    rng = np.random.default_rng(seed + 1)
    noise_rms = 10 ** (NOISE_DBFS / 20)

    def noise(seconds: float) -> np.ndarray:
        return (noise_rms * rng.standard_normal(round(seconds * rate))).astype(np.float32)

    pools = {s: list(files) for s, files in plan.pool.items()}
    parts = [noise(LEAD_S)]
    at = parts[0].size
    segments: list[Segment] = []
    for speaker in _turn_order(plan.enrolled + plan.never_enrolled, turns, rng):
        if not pools[speaker]:
            continue
        start = at
        clips: list[str] = []
        while pools[speaker] and (at - start) / rate < TURN_S:
            if clips:
                gap = noise(CLIP_GAP_S)
                parts.append(gap)
                at += gap.size
            clip = pools[speaker].pop()
            x = read_audio(clip, rate)
            parts.append(x)
            at += x.size
            clips.append(clip.name)
        segments.append(
            Segment(speaker, start / rate, at / rate, speaker in plan.enrolled, tuple(clips))
        )
        gap = noise(TURN_GAP_S)
        parts.append(gap)
        at += gap.size
    samples = np.clip(np.concatenate(parts), -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, rate, subtype="PCM_16")
    return segments, samples.size / rate


def write_talk(clips: list[Path], rate: int, path: Path, seed: int = 0) -> float:
    """One person talking: ``clips`` back to back with the stream's room noise between them, as
    a device would hear them (a clip shorter than a window still shares windows with its
    neighbours). Written as a WAV (PCM 16 at ``rate``); returns its length in s."""
    import soundfile as sf

    from edgesiam.data.readers import read_audio

    rng = np.random.default_rng(seed)
    noise_rms = 10 ** (NOISE_DBFS / 20)
    parts = [(noise_rms * rng.standard_normal(round(LEAD_S * rate))).astype(np.float32)]
    for clip in clips:
        parts.append(read_audio(clip, rate))
        gap = noise_rms * rng.standard_normal(round(CLIP_GAP_S * rate))
        parts.append(gap.astype(np.float32))
    samples = np.clip(np.concatenate(parts), -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, rate, subtype="PCM_16")
    return samples.size / rate
