"""Sensor recipes: the old-pandas unpickler (HAPT), the .ts parser (UEA), real recipes (slow)."""

from __future__ import annotations

import copyreg
import gzip
import json
import os
import pickle
import sys
import tomllib
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgesiam.data.recipes import hapt
from edgesiam.data.recipes.hapt import PandasStandIn, frame_columns, load_pickle, read_sessions
from edgesiam.data.recipes.uea import parse_ts
from edgesiam.errors import DataError, RecipeError

# --- a DataFrame pickle as an old pandas wrote it -------------------------------------------------


def _fake_pandas(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Install fake ``pandas.*`` modules whose classes pickle the way pandas 0.25/1.0 did."""

    def new_index(cls: type, d: dict[str, Any]) -> Any:
        raise AssertionError("only used for pickling")

    def reconstructor(self: Any) -> tuple[Any, ...]:
        return (copyreg._reconstructor, (type(self), object, None), self.state)  # type: ignore[attr-defined]

    def index_reduce(self: Any) -> tuple[Any, ...]:
        return (new_index, (type(self), self.state), None)

    classes: dict[str, Any] = {}
    layout = {
        "pandas.core.frame": {"DataFrame": reconstructor},
        "pandas.core.internals.managers": {"BlockManager": reconstructor},
        "pandas.core.indexes.base": {"Index": index_reduce},
        "pandas.core.indexes.range": {"RangeIndex": index_reduce},
    }
    for name in ("pandas", "pandas.core", "pandas.core.internals", "pandas.core.indexes"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    for module_name, members in layout.items():
        module = types.ModuleType(module_name)
        for cls_name, reduce in members.items():
            cls = type(cls_name, (), {"__reduce__": reduce, "__module__": module_name})
            setattr(module, cls_name, cls)
            classes[cls_name] = cls
        monkeypatch.setitem(sys.modules, module_name, module)
    new_index.__module__ = "pandas.core.indexes.base"
    new_index.__qualname__ = new_index.__name__ = "_new_Index"
    sys.modules["pandas.core.indexes.base"]._new_Index = new_index  # type: ignore[attr-defined]
    return classes


def _frame(classes: dict[str, Any], signals: np.ndarray, labels: np.ndarray) -> Any:
    """A fake DataFrame with HAPT's columns: a float block (6 columns) and an int block (2)."""

    def make(name: str, state: Any) -> Any:
        obj = classes[name]()
        obj.state = state
        return obj

    n = len(labels)
    names = [*hapt.SOURCE_COLUMNS, "sequence", "label"]
    axes = [
        make("Index", {"data": np.array(names, dtype=object), "name": None}),
        make("RangeIndex", {"name": None, "start": 0, "stop": n, "step": 1}),
    ]
    floats = signals.T.astype(np.float64)
    ints = np.stack([np.arange(n), labels]).astype(np.int64)
    blocks = [
        {"values": floats, "mgr_locs": slice(0, 6, 1)},
        {"values": ints, "mgr_locs": slice(6, 8, 1)},
    ]
    items = [
        make("Index", {"data": np.array(names[:6], dtype=object), "name": None}),
        make("Index", {"data": np.array(names[6:], dtype=object), "name": None}),
    ]
    manager = make(
        "BlockManager", (axes, [floats, ints], items, {"0.14.1": {"axes": axes, "blocks": blocks}})
    )
    return make("DataFrame", {"_data": manager, "_typ": "dataframe", "_metadata": [], "attrs": {}})


@pytest.fixture
def hapt_pickle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Path, dict[int, Any]]:
    """A tiny HAPT.pkl.gz: {subject: [session frames]} pickled at protocol 2 like the real one."""
    rng = np.random.default_rng(0)
    classes = _fake_pandas(monkeypatch)
    labels = {
        1: [np.r_[np.full(30, -1), np.full(1200, 1), np.full(100, 7), np.full(40, 4)]],
        21: [np.r_[np.full(500, 5), np.full(150, 8)], np.r_[np.full(10, -1), np.full(60, 6)]],
    }
    raw = {
        subject: [(rng.normal(size=(len(lab), 6)).astype(np.float32), lab) for lab in sessions]
        for subject, sessions in labels.items()
    }
    data = {s: [_frame(classes, x, y) for x, y in sessions] for s, sessions in raw.items()}
    path = tmp_path / "HAPT.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(data, f, protocol=2)
    monkeypatch.undo()  # the pandas stand-ins alone must read it
    return path, raw


def test_pickle_names_old_pandas_classes(hapt_pickle: tuple[Path, dict[int, Any]]) -> None:
    body = gzip.decompress(hapt_pickle[0].read_bytes())
    assert b"pandas.core.frame\nDataFrame" in body and b"copy_reg\n_reconstructor" in body
    assert b"pandas.core.indexes.base\n_new_Index" in body


def test_unpickler_reads_frames_without_pandas(hapt_pickle: tuple[Path, dict[int, Any]]) -> None:
    path, raw = hapt_pickle
    data = load_pickle(path)
    assert sorted(data) == [1, 21]
    frame = data[21][0]
    assert isinstance(frame, PandasStandIn) and frame.pandas_name == "DataFrame"
    columns = frame_columns(frame)
    assert list(columns) == [*hapt.SOURCE_COLUMNS, "sequence", "label"]
    x, y = raw[21][0]
    np.testing.assert_array_equal(columns["label"], y)
    np.testing.assert_allclose(columns["gyro-z"], x[:, 5])


def test_read_sessions_stacks_channels(hapt_pickle: tuple[Path, dict[int, Any]]) -> None:
    path, raw = hapt_pickle
    sessions = read_sessions(path)
    assert [(s.subject, s.number) for s in sessions] == [(1, 1), (21, 1), (21, 2)]
    assert sessions[0].signals.dtype == np.float32 and sessions[0].signals.shape == (1370, 6)
    np.testing.assert_array_equal(sessions[1].signals, raw[21][0][0])


def test_unpickler_refuses_other_globals(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, ("true",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(RecipeError, match="refusing to unpickle"):
        load_pickle(path)


def test_hapt_prepare_on_fake_pickle(
    hapt_pickle: tuple[Path, dict[int, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hapt, "pypi_package", lambda spec, root, sdist=False: hapt_pickle[0].parent)
    out = tmp_path / "out"
    summary = hapt.prepare(tmp_path, out)
    # subject 1: 1200 walking samples (24 s) -> 3 pieces of 8 s; its transition is not used
    walking = sorted((out / "train" / "walking").glob("*.npy"))
    assert [p.stem for p in walking] == [
        "s01__sess1_000030",
        "s01__sess1_000430",
        "s01__sess1_000830",
    ]
    assert np.load(walking[0]).shape == (400, 6) and np.load(walking[0]).dtype == np.float32
    assert not (out / "train" / "stand_to_sit").exists()
    assert sorted(p.name for p in (out / "test").iterdir()) == [
        "dataset.toml",
        "laying",
        "standing",
    ]
    assert [p.name for p in (out / "transitions").iterdir() if p.is_dir()] == ["sit_to_stand"]
    info = tomllib.loads((out / "test" / "dataset.toml").read_text())
    assert info == {
        "modality": "sensor",
        "sample_rate": 50,
        "channels": list(hapt.CHANNELS),
        "units": ["g", "g", "g", "rad/s", "rad/s", "rad/s"],
    }
    assert summary.splits["train"].recordings == 4 and summary.splits["val"].recordings == 0
    assert summary.splits["transitions"].labels == 1


def test_pieces_are_equal_and_bounded() -> None:
    assert hapt.pieces(0, 1000, 500) == [(0, 500), (500, 1000)]
    assert hapt.pieces(10, 1011, 500) == [(10, 344), (344, 677), (677, 1011)]
    assert hapt.pieces(0, 140, 500) == [(0, 140)]


# --- the .ts parser -------------------------------------------------------------------------------

FIXED = """# a comment
@problemName Tiny
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength true
@seriesLength 3
@classLabel true up down
@data
1,2,3:4,5,6:up

0.5,?,1e-3:-1,-2,-3:down
"""

VARIABLE = """@problemName Var
@dimensions 2
@equalLength false
@classLabel true 1 2
@data
1,2:3,4:1
1,2,3,4:5,6,7,8:2
"""


def test_parse_fixed_length_with_missing_values() -> None:
    data = parse_ts(FIXED)
    assert data.problem == "Tiny" and data.dimensions == 2 and data.class_labels == ["up", "down"]
    assert data.labels == ["up", "down"]
    assert data.series[0].dtype == np.float32
    np.testing.assert_array_equal(data.series[0], [[1, 4], [2, 5], [3, 6]])
    assert np.isnan(data.series[1][1, 0]) and data.series[1][2, 1] == -3


def test_parse_variable_length() -> None:
    data = parse_ts(VARIABLE)
    assert [s.shape for s in data.series] == [(2, 2), (4, 2)]
    assert data.labels == ["1", "2"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1,2:3,x:up", "line 11: not a comma-separated list of numbers"),
        ("1,2,3:4,5:up", "line 11: dimensions of one case differ in length"),
        ("1,2,3:up", "line 11: 1 dimensions, the header says 2"),
        ("1,2:3,4:sideways", "line 11: label 'sideways' is not one of"),
        ("1,2,3", "line 11: expected dim1:…:label"),
    ],
)
def test_parse_malformed_line_names_it(line: str, message: str) -> None:
    text = FIXED.replace("1,2,3:4,5,6:up", line)
    with pytest.raises(DataError, match=message) as info:
        parse_ts(text, "tiny.ts")
    assert str(info.value).startswith("tiny.ts, line 11: ")


def test_parse_needs_data_section() -> None:
    with pytest.raises(DataError, match="no @data"):
        parse_ts("@problemName X\n@classLabel true a\n")
    with pytest.raises(DataError, match="line 1: data line before @data"):
        parse_ts("1,2:a\n@data\n")


# --- the real recipes -----------------------------------------------------------------------------


def _split_items(folder: Path) -> dict[str, list[Path]]:
    return {d.name: sorted(d.glob("*.npy")) for d in sorted(folder.iterdir()) if d.is_dir()}


@pytest.mark.slow
def test_real_sensor_recipes(tmp_path: Path) -> None:
    from edgesiam.data.readers import scan_dataset
    from edgesiam.data.recipes import prepare

    results = dict(prepare(["hapt", "basicmotions", "japanesevowels"], tmp_path))
    assert all(s is not None for s in results.values())

    root = tmp_path / "hapt"
    assert all(scan_dataset(root / s).sample_rate == 50 for s in ("train", "transitions"))
    splits = {s: _split_items(root / s) for s in ("train", "val", "test", "transitions")}
    subjects = {
        s: {p.stem.split("__")[0] for items in labels.values() for p in items}
        for s, labels in splits.items()
    }
    assert subjects["train"] == {f"s{i:02d}" for i in range(1, 18)}
    assert subjects["val"] == {"s18", "s19", "s20"}
    assert subjects["test"] == subjects["transitions"] == {f"s{i:02d}" for i in range(21, 31)}
    assert (
        set(splits["train"])
        == set(splits["val"])
        == set(splits["test"])
        == set(hapt.ACTIVITIES.values())
    )
    assert set(splits["transitions"]) == set(hapt.TRANSITIONS.values())
    for items in splits["test"].values():
        x = np.load(items[0])
        assert x.dtype == np.float32 and x.ndim == 2 and x.shape[1] == 6 and x.shape[0] <= 500

    for name, channels, n_labels in (("basicmotions", 6, 4), ("japanesevowels", 12, 9)):
        root = tmp_path / name
        closed = {s: _split_items(root / s) for s in ("train", "test")}
        opened = {s: _split_items(root / s) for s in ("openset_train", "openset_test")}
        assert len(closed["train"]) == len(closed["test"]) == n_labels
        assert not set(opened["openset_train"]) & set(opened["openset_test"])
        assert len(opened["openset_train"]) + len(opened["openset_test"]) == n_labels
        count = lambda splits: sum(len(v) for s in splits.values() for v in s.values())  # noqa: E731
        assert count(closed) == count(opened) == {"basicmotions": 80, "japanesevowels": 640}[name]
        for split in (*closed, *opened):
            info = scan_dataset(root / split)  # the project's reader accepts every split
            assert info.modality == "sensor" and info.channels and len(info.channels) == channels
        x = np.load(next(iter(closed["test"].values()))[0])
        assert x.dtype == np.float32 and x.shape[1] == channels
        assert json.loads((root / "SUMMARY.json").read_text())["name"] == name
    motions = (tmp_path / "basicmotions" / "train").glob("*/*.npy")
    assert {np.load(p).shape for p in motions} == {(100, 6)}

    again = prepare(["hapt", "basicmotions", "japanesevowels"], tmp_path)
    assert [s for _, s in again] == [None, None, None]
