"""What the speaker recipes (``speech``, ``speech-tuxpaint``, ``speech-extra``) share: the
language group of a voice, the hedgewars sentences the synthetic voices read, a seeded pick of
them, and running a synthesiser."""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgesiam.data.readers import read_audio
from edgesiam.data.recipes.audio_common import TARGET_RATE, Clip, cap_per_label
from edgesiam.errors import RecipeError

__all__ = [
    "MAX_PER_LABEL",
    "SENTENCES_PER_VOICE",
    "cap_speakers",
    "language_group",
    "locale_sentences",
    "pick",
    "synthesise",
]

MAX_PER_LABEL = 150
"""Clips kept per speaker (evenly spaced), so that no voice dominates the trials."""
SENTENCES_PER_VOICE = 20
"""Sentences each synthetic voice reads."""


def language_group(code: str) -> str:
    """The language of a locale code (``pt_BR`` → ``pt``, ``sr@latin`` → ``sr``; ``nb`` and ``nn``
    → ``no``): the group of a speaker's trials, so that same-language trials are reported apart."""
    base = code.split("_")[0].split("@")[0].lower()
    return {"nb": "no", "nn": "no"}.get(base, base)


def locale_sentences(tree: Path, lang: str) -> list[str]:
    """Game messages of one hedgewars translation, cleaned up to speakable sentences."""
    path = tree / "usr/share/games/hedgewars/Data/Locale" / f"{lang}.txt"
    if not path.is_file():
        return []
    sentences: set[str] = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r"^0[2-5]:\d+=(.+)$", line.strip())
        if not m:
            continue
        text = re.sub(r"%\d", "Hogan", m.group(1)).strip()
        if 25 <= len(text) <= 140 and not re.search(r"[%|\\<>{}\[\]]", text):
            sentences.add(text)
    return sorted(sentences)


def pick(items: Sequence[str], k: int, seed: str) -> list[str]:
    """``k`` items chosen by a generator seeded from ``seed`` (stable across runs and platforms)."""
    rng = np.random.default_rng(int(hashlib.sha256(seed.encode()).hexdigest()[:16], 16))
    idx = rng.permutation(len(items))[:k]
    return [items[i] for i in sorted(idx)]


def synthesise(cmd: list[str], wav: Path) -> np.ndarray:
    """Run a speech synthesiser ``cmd`` that writes ``wav``; the audio at the recipes' rate (the
    file is removed: clips are made one at a time, on demand)."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RecipeError(f"{cmd[0]} failed: {exc}") from exc
    if done.returncode != 0 or not wav.is_file():
        raise RecipeError(f"{cmd[0]} failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    try:
        return read_audio(wav, TARGET_RATE)
    finally:
        wav.unlink(missing_ok=True)


def cap_speakers(clips: Sequence[Clip]) -> tuple[list[Clip], list[str]]:
    """At most :data:`MAX_PER_LABEL` clips of each speaker (evenly spaced), and a note naming the
    speakers that were cut (none when no speaker was)."""
    kept, cut = cap_per_label(clips, MAX_PER_LABEL)
    if not cut:
        return kept, []
    counts = ", ".join(f"{k} ({v})" for k, v in sorted(cut.items()))
    return kept, [f"capped at {MAX_PER_LABEL} clips per label: {counts}"]
