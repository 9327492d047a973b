"""Simulated body-worn IMU recordings: thousands of motion classes for training (no download).

Real IMU sets have a handful of activities; an encoder trained on them learns those activities, not
what makes movements differ. This recipe renders ``--classes`` procedural motions
(:mod:`edgesiam.data.imusim`), each performed by ``--performers`` people, into ``ROOT/imusim/train``
with HAPT's channels, units and rate, so the two folders can be listed together in a training recipe.

A performer is a person who wears one sensor their own way (mounting rotation up to 20°, lever arm up
to 5 cm, their sensor's scale, bias, noise and range) and plays every class with their own tempo,
amplitude, posture and small shape changes. Item stems are ``pNN__<label>``: the group is the
performer, as HAPT's is the subject, so ``classes: label_and_group`` works too (one recording per
class and performer). The same ``--seed`` gives the same files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgesiam.data import imusim
from edgesiam.data.recipes.base import Recipe, RecipeSummary, SplitSummary
from edgesiam.errors import RecipeError

VERSION = 1
SAMPLE_RATE = 50
DURATION_S = 6.0
CLASSES = 2000
PERFORMERS = 6


def _dataset_toml(classes: int, performers: int, seed: int) -> str:
    channels = ", ".join(f'"{c}"' for c in imusim.CHANNELS)
    units = ", ".join(f'"{u}"' for u in imusim.UNITS)
    return (
        f"# simulated body-worn IMU: {classes} motion classes x {performers} performers, seed {seed}\n"
        f'modality = "sensor"\nsample_rate = {SAMPLE_RATE}\nchannels = [{channels}]\n'
        f"units = [{units}]\n"
    )


def render(out: Path, classes: int, performers: int, seed: int, progress: bool = True) -> int:
    """Write ``out/<label>/pNN__<label>.npy`` for every class and performer; returns the count."""
    rng = np.random.default_rng(seed)
    people = [(imusim.random_sensor(rng), float(rng.uniform(0.9, 1.1))) for _ in range(performers)]
    out.mkdir(parents=True, exist_ok=True)
    (out / "dataset.toml").write_text(_dataset_toml(classes, performers, seed), encoding="utf-8")
    width = len(str(classes - 1))
    for number in tqdm(range(classes), desc="imusim", unit="class", disable=not progress):
        label = f"m{number:0{width}d}"
        motion = imusim.random_motion(rng)
        (out / label).mkdir()
        for person, (sensor, pace) in enumerate(people):
            played = imusim.perform(motion, rng)
            played = dataclasses.replace(played, frequency_hz=played.frequency_hz * pace)
            x = imusim.take(played, sensor, DURATION_S, rng, SAMPLE_RATE)
            np.save(out / label / f"p{person:02d}__{label}.npy", x)
    return classes * performers


def _prepare(classes: int, performers: int, seed: int, root: Path, out: Path) -> RecipeSummary:
    count = render(out / "train", classes, performers, seed)
    return RecipeSummary(
        name="imusim",
        version=VERSION,
        modality="sensor",
        splits={
            "train": SplitSummary(
                labels=classes,
                recordings=count,
                hours=round(count * DURATION_S / 3600, 3),
            )
        },
        sources=["edgesiam.data.imusim (procedural simulation; nothing downloaded)"],
        licence="generated data; free of third-party terms",
        notes=[
            f"{classes} motion classes x {performers} performers, {DURATION_S:g} s each at "
            f"{SAMPLE_RATE} Hz; channels and units as HAPT's (acc in g with gravity, gyro in rad/s)",
            "item stems pNN__<label>: group = performer (one sensor, worn one way, per performer)",
        ],
        settings={"classes": classes, "performers": performers, "seed": seed},
    )


def make(classes: int = CLASSES, performers: int = PERFORMERS, seed: int = 0) -> Recipe:
    """The recipe for ``classes`` motions × ``performers`` people from ``seed``."""
    if classes < 2 or performers < 1:
        raise RecipeError(
            f"imusim needs --classes >= 2 and --performers >= 1, got {classes}, {performers}"
        )

    def prepare(root: Path, out: Path) -> RecipeSummary:
        return _prepare(classes, performers, seed, root, out)

    return Recipe(
        name="imusim",
        version=VERSION,
        description="simulated body-worn IMU: thousands of motion classes (no download)",
        prepare=prepare,
        settings={"classes": classes, "performers": performers, "seed": seed},
        configure=make,
    )


RECIPE = make()
