"""Multivariate sets of the UEA/UCR time-series archive, from the ``.ts`` files in the aeon wheel.

The aeon wheel (BSD-3-Clause) ships a few archive problems under ``aeon/datasets/data/``; the
``.ts`` format is parsed here by :func:`parse_ts` (no aeon or sktime import). Each recipe writes two
protocols side by side:

- closed set: ``train`` / ``test`` are the archive's own TRAIN / TEST files, unchanged, so results
  compare with the published 1-NN DTW accuracies (BasicMotions 0.975, JapaneseVowels 0.949);
- open set: ``openset_train`` / ``openset_test`` pool TRAIN and TEST and split them by label, so the
  test labels are never seen in training (few-shot on new classes).

Item stems are ``<archive split>_<row>`` (``train_0007`` is row 7 of the TRAIN file, from 1), so
every recording can be traced back; the archive has no groups (participants are not given).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgesiam.data.recipes.base import Recipe, RecipeSummary, SplitSummary, pypi_package
from edgesiam.errors import DataError, RecipeError

SOURCE = "aeon==1.6.0"
LICENCE = (
    "BSD-3-Clause (aeon wheel, which ships the files); the data are from the UEA/UCR time-series "
    "archive (cite Bagnall et al. 2018 and the problem's authors)"
)

# --- the .ts format -------------------------------------------------------------------------------


@dataclass
class TsDataset:
    """A classification problem read from a ``.ts`` file: one ``(T, C)`` float32 array per case."""

    problem: str
    dimensions: int
    class_labels: list[str]
    series: list[np.ndarray]
    labels: list[str]


def _values(text: str, where: str) -> np.ndarray:
    try:
        return np.array([math.nan if v.strip() == "?" else float(v) for v in text.split(",")])
    except ValueError as exc:
        raise DataError(f"not a comma-separated list of numbers ({exc})", where) from None


def parse_ts(text: str, source: str = "<ts>") -> TsDataset:
    """Parse the text of a ``.ts`` classification file (fixed or variable length, ``?`` = missing).

    Header lines start with ``@`` (``@problemName``, ``@dimensions``, ``@classLabel true A B``…),
    ``#`` lines are comments, and each line after ``@data`` is one case: ``dim1:dim2:…:label`` where
    each dim is a comma-separated series. Every dimension of a case must have the same length; cases
    may differ. Errors name the file and line.
    """
    header: dict[str, str] = {}
    series: list[np.ndarray] = []
    labels: list[str] = []
    in_data = False
    dimensions: int | None = None
    class_labels: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        where = f"{source}, line {number}"
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            if in_data:
                raise DataError("header line after @data", where)
            key, _, value = line[1:].partition(" ")
            key = key.lower()
            header[key] = value.strip()
            if key == "data":
                in_data = True
                if header.get("timestamps", "false").lower() == "true":
                    raise DataError("time-stamped .ts files are not supported", where)
                classes = header.get("classlabel", "").split()
                if not classes or classes[0].lower() != "true":
                    raise DataError("not a classification problem (@classLabel true …)", where)
                class_labels = classes[1:]
                if "dimensions" in header:
                    if not header["dimensions"].isdigit():
                        raise DataError(f"bad @dimensions {header['dimensions']!r}", where)
                    dimensions = int(header["dimensions"])
            continue
        if not in_data:
            raise DataError("data line before @data", where)
        *dims, label = line.split(":")
        if not dims:
            raise DataError("expected dim1:…:label, found no ':'", where)
        if dimensions is not None and len(dims) != dimensions:
            raise DataError(f"{len(dims)} dimensions, the header says {dimensions}", where)
        if class_labels and label not in class_labels:
            raise DataError(f"label {label!r} is not one of @classLabel {class_labels}", where)
        arrays = [_values(d, where) for d in dims]
        lengths = {a.size for a in arrays}
        if len(lengths) != 1:
            raise DataError(f"dimensions of one case differ in length: {sorted(lengths)}", where)
        series.append(np.stack(arrays, axis=1).astype(np.float32))
        labels.append(label)
    if not in_data:
        raise DataError("no @data line", source)
    if not series:
        raise DataError("no cases after @data", source)
    widths = {s.shape[1] for s in series}
    if len(widths) != 1:
        raise DataError(f"cases have different numbers of dimensions: {sorted(widths)}", source)
    return TsDataset(
        problem=header.get("problemname", ""),
        dimensions=widths.pop(),
        class_labels=class_labels or sorted(set(labels)),
        series=series,
        labels=labels,
    )


def read_ts(path: Path) -> TsDataset:
    return parse_ts(path.read_text(encoding="utf-8", errors="replace"), str(path))


# --- the recipes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UeaProblem:
    name: str  # the recipe name
    archive: str  # the problem's name in the archive
    channels: tuple[str, ...]
    sample_rate: int  # Hz; dataset.toml takes integers only
    label_names: dict[str, str]  # archive label -> folder name
    openset_train: tuple[str, ...]  # archive labels; the others go to openset_test
    notes: tuple[str, ...]


BASICMOTIONS = UeaProblem(
    name="basicmotions",
    archive="BasicMotions",
    channels=("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"),
    sample_rate=10,
    label_names={c: c.lower() for c in ("Standing", "Running", "Walking", "Badminton")},
    openset_train=("Standing", "Badminton"),
    notes=(
        "smart-watch accelerometer then gyroscope (the archive header says so; axis names x, y, "
        "z assumed); sampled every 0.1 s for 10 s, so sample_rate = 10 Hz; units not stated (acc "
        "looks gravity-free, |acc| ~0.8 when standing)",
        "closed set: train/test = archive TRAIN/TEST (40/40); 1-NN dependent-DTW reaches 0.975",
        "open set: openset_train = standing + badminton, openset_test = running + walking, each "
        "with the TRAIN and TEST rows of its labels (4 classes only: a very small open-set check)",
    ),
)

JAPANESEVOWELS = UeaProblem(
    name="japanesevowels",
    archive="JapaneseVowels",
    channels=tuple(f"lpc_{i}" for i in range(1, 13)),
    sample_rate=156,
    label_names={str(i): f"speaker_{i}" for i in range(1, 10)},
    openset_train=("1", "2", "3", "4", "5"),
    notes=(
        "12 LPC cepstrum coefficients per frame of the vowels /ae/ by 9 male speakers, 7-29 "
        "frames (variable length); the frame rate is 156.25 frames/s (UCI description: 10 kHz "
        "audio, 6.4 ms frame shift); dataset.toml takes integers, so sample_rate = 156 (nominal)",
        "closed set: train/test = archive TRAIN/TEST (270/370); 1-NN dependent-DTW reaches 0.949",
        "open set: openset_train = speakers 1-5, openset_test = speakers 6-9 (TRAIN and TEST rows)",
    ),
)


def _write_dataset_toml(directory: Path, problem: UeaProblem, comment: str) -> None:
    channels = ", ".join(f'"{c}"' for c in problem.channels)
    directory.joinpath("dataset.toml").write_text(
        f"# {problem.archive} (UEA archive): {comment}\n"
        f'modality = "sensor"\nsample_rate = {problem.sample_rate}\nchannels = [{channels}]\n'
    )


def _write_split(
    directory: Path,
    problem: UeaProblem,
    cases: Iterable[tuple[str, np.ndarray, str]],
    comment: str,
) -> SplitSummary:
    directory.mkdir(parents=True)
    _write_dataset_toml(directory, problem, comment)
    labels: set[str] = set()
    recordings = samples = 0
    for stem, series, label in cases:
        folder = directory / problem.label_names[label]
        folder.mkdir(exist_ok=True)
        np.save(folder / f"{stem}.npy", np.ascontiguousarray(series, dtype=np.float32))
        labels.add(label)
        recordings += 1
        samples += series.shape[0]
    hours = round(samples / problem.sample_rate / 3600, 4)
    return SplitSummary(labels=len(labels), recordings=recordings, hours=hours)


def prepare_problem(problem: UeaProblem, root: Path, out: Path) -> RecipeSummary:
    tree = pypi_package(SOURCE, root)
    folder = tree / "aeon" / "datasets" / "data" / problem.archive
    parts: dict[str, TsDataset] = {}
    for part in ("TRAIN", "TEST"):
        path = folder / f"{problem.archive}_{part}.ts"
        if not path.exists():
            raise RecipeError(f"{SOURCE} does not ship {path.relative_to(tree)}")
        parts[part.lower()] = read_ts(path)
    for part, data in parts.items():
        unknown = set(data.labels) - problem.label_names.keys()
        if unknown or data.dimensions != len(problem.channels):
            raise RecipeError(
                f"{problem.archive} {part}: expected {len(problem.channels)} dimensions and "
                f"labels {sorted(problem.label_names)}, found {data.dimensions} and "
                f"{sorted(set(data.labels))}"
            )
    cases = {
        part: [
            (f"{part}_{i:04d}", s, lab)
            for i, (s, lab) in enumerate(zip(d.series, d.labels, strict=True), 1)
        ]
        for part, d in parts.items()
    }
    pooled = cases["train"] + cases["test"]
    bar = tqdm(total=2 * len(pooled), desc=problem.name, unit="rec")

    def counted(items: list[tuple[str, np.ndarray, str]]) -> Iterable[tuple[str, np.ndarray, str]]:
        for item in items:
            bar.update()
            yield item

    known = set(problem.openset_train)
    splits = {
        "train": _write_split(out / "train", problem, counted(cases["train"]), "archive TRAIN"),
        "test": _write_split(out / "test", problem, counted(cases["test"]), "archive TEST"),
        "openset_train": _write_split(
            out / "openset_train",
            problem,
            counted([c for c in pooled if c[2] in known]),
            f"open set, labels {sorted(problem.label_names[k] for k in known)} (TRAIN+TEST)",
        ),
        "openset_test": _write_split(
            out / "openset_test",
            problem,
            counted([c for c in pooled if c[2] not in known]),
            "open set, the labels not in openset_train (TRAIN+TEST)",
        ),
    }
    bar.close()
    return RecipeSummary(
        name=problem.name,
        version=1,
        modality="sensor",
        splits=splits,
        sources=[f"PyPI wheel {SOURCE} (aeon/datasets/data/{problem.archive}/*.ts)"],
        licence=LICENCE,
        notes=list(problem.notes),
    )


RECIPES: dict[str, Recipe] = {
    p.name: Recipe(
        name=p.name,
        version=1,
        description=f"UEA archive {p.archive}: archive TRAIN/TEST and an open-set split by label",
        prepare=partial(prepare_problem, p),
    )
    for p in (BASICMOTIONS, JAPANESEVOWELS)
}
