"""The teacher-embedding cache: computed once, recomputed only for changed files, never torn."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from edgesiam.errors import DataError
from edgesiam.train.teachers.cache import TeacherCache

SHA = "ab" * 32


class Teacher:
    """Embeds a file as (its size, its first byte, 1), normalised; counts what it computes."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.computed: list[str] = []
        self.fail_on = fail_on

    def __call__(self, path: Path) -> np.ndarray:
        if path.name == self.fail_on:
            raise KeyboardInterrupt
        self.computed.append(path.name)
        data = path.read_bytes()
        v = np.array([len(data), data[0], 1.0], dtype=np.float32)
        return v / np.linalg.norm(v)


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, list[Path]]:
    root = tmp_path / "set"
    files = []
    for i in range(5):
        path = root / f"spk{i % 2}" / f"r{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes([i + 1]) * (10 + i))
        files.append(path)
    return root, files


def test_a_second_run_computes_nothing_and_returns_the_same(
    tmp_path: Path, folder: tuple[Path, list[Path]]
) -> None:
    root, files = folder
    cache, teacher = TeacherCache(tmp_path / "c", "t", SHA), Teacher()
    first = cache.embeddings(root, files, teacher, progress=False)
    assert first.shape == (5, 3) and len(teacher.computed) == 5
    again = TeacherCache(tmp_path / "c", "t", SHA).embeddings(
        root, files[::-1], teacher, progress=False
    )
    assert len(teacher.computed) == 5
    np.testing.assert_array_equal(again, first[::-1])  # in the order asked for
    assert cache.path_for(root).parent == tmp_path / "c" / "t" / f"{SHA[:16]}-r1"


def test_a_folder_reached_through_a_link_shares_the_cache(
    tmp_path: Path, folder: tuple[Path, list[Path]]
) -> None:
    """A checkout whose data folder is a symbolic link to another one's reuses its entries."""
    root, files = folder
    cache, teacher = TeacherCache(tmp_path / "c", "t", SHA), Teacher()
    first = cache.embeddings(root, files, teacher, progress=False)
    link = tmp_path / "elsewhere"
    link.symlink_to(root)
    linked = [link / f.relative_to(root) for f in files]
    again = cache.embeddings(link, linked, teacher, progress=False)
    assert len(teacher.computed) == 5
    np.testing.assert_array_equal(again, first)


def test_a_changed_file_is_computed_again_and_a_touched_one_is_not(
    tmp_path: Path, folder: tuple[Path, list[Path]]
) -> None:
    root, files = folder
    cache, teacher = TeacherCache(tmp_path / "c", "t", SHA), Teacher()
    cache.embeddings(root, files, teacher, progress=False)
    files[1].write_bytes(b"\x09" * 40)  # new content
    stat = files[3].stat()
    os.utime(files[3], ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # same content
    teacher.computed.clear()
    out = cache.embeddings(root, files, teacher, progress=False)
    assert teacher.computed == ["r1.wav"]
    np.testing.assert_allclose(out[1], Teacher()(files[1]))


def test_stale_lists_exactly_what_a_run_would_compute(
    tmp_path: Path, folder: tuple[Path, list[Path]]
) -> None:
    root, files = folder
    cache, teacher = TeacherCache(tmp_path / "c", "t", SHA), Teacher()
    assert cache.stale(root, files) == files  # nothing cached yet
    cache.embeddings(root, files[:3], teacher, progress=False)
    assert cache.stale(root, files) == files[3:]
    files[0].write_bytes(b"\x07" * 30)  # new content
    stat = files[1].stat()
    os.utime(files[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # same content
    assert cache.stale(root, files) == [files[0], *files[3:]]
    teacher.computed.clear()
    cache.embeddings(root, files, teacher, progress=False)
    assert teacher.computed == ["r0.wav", "r3.wav", "r4.wav"]
    assert cache.stale(root, files) == []


def test_other_weights_revisions_or_folders_never_share_entries(
    tmp_path: Path, folder: tuple[Path, list[Path]]
) -> None:
    root, files = folder
    teacher = Teacher()
    TeacherCache(tmp_path / "c", "t", SHA).embeddings(root, files, teacher, progress=False)
    TeacherCache(tmp_path / "c", "t", "cd" * 32).embeddings(root, files, teacher, progress=False)
    assert len(teacher.computed) == 10
    TeacherCache(tmp_path / "c", "t", SHA, revision=2).embeddings(
        root, files, teacher, progress=False
    )
    assert len(teacher.computed) == 15
    copy = root.parent / "copy"
    copy.mkdir()
    (copy / "a.wav").write_bytes(files[0].read_bytes())
    TeacherCache(tmp_path / "c", "t", SHA).embeddings(
        copy, [copy / "a.wav"], teacher, progress=False
    )
    assert len(teacher.computed) == 16


def test_an_interrupted_run_keeps_what_it_computed(
    tmp_path: Path, folder: tuple[Path, list[Path]]
) -> None:
    root, files = folder
    cache = TeacherCache(tmp_path / "c", "t", SHA)
    with pytest.raises(KeyboardInterrupt):
        cache.embeddings(root, files, Teacher(fail_on="r3.wav"), progress=False, save_every=100)
    teacher = Teacher()
    cache.embeddings(root, files, teacher, progress=False)
    assert teacher.computed == ["r3.wav", "r4.wav"]
    assert [p.name for p in cache.path_for(root).parent.iterdir()] == [cache.path_for(root).name]


def test_a_failed_write_leaves_the_previous_file_whole(
    tmp_path: Path, folder: tuple[Path, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, files = folder
    cache = TeacherCache(tmp_path / "c", "t", SHA)
    before = cache.embeddings(root, files[:3], Teacher(), progress=False)
    saved = cache.path_for(root).read_bytes()

    def torn_savez(file: object, **arrays: object) -> None:
        file.write(b"PK\x03\x04 half a zip")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", torn_savez)  # the cache's writer, for this test only
    with pytest.raises(OSError, match="No space"):
        cache.embeddings(root, files, Teacher(), progress=False)
    monkeypatch.undo()
    assert cache.path_for(root).read_bytes() == saved
    assert len(list(cache.path_for(root).parent.iterdir())) == 1  # no temporary file left
    teacher = Teacher()
    np.testing.assert_array_equal(
        cache.embeddings(root, files[:3], teacher, progress=False), before
    )
    assert teacher.computed == []


def test_an_unreadable_cache_file_is_recomputed_with_a_warning(
    tmp_path: Path, folder: tuple[Path, list[Path]], caplog: pytest.LogCaptureFixture
) -> None:
    root, files = folder
    cache = TeacherCache(tmp_path / "c", "t", SHA)
    cache.path_for(root).parent.mkdir(parents=True)
    cache.path_for(root).write_bytes(b"garbage")
    teacher = Teacher()
    with caplog.at_level(logging.WARNING):
        cache.embeddings(root, files, teacher, progress=False)
    assert len(teacher.computed) == 5 and "unreadable teacher cache" in caplog.text
    teacher.computed.clear()
    cache.embeddings(root, files, teacher, progress=False)
    assert teacher.computed == []


def test_a_file_outside_the_folder_is_named_in_the_error(
    tmp_path: Path, folder: tuple[Path, list[Path]]
) -> None:
    root, _ = folder
    stray = tmp_path / "stray.wav"
    stray.write_bytes(b"x")
    with pytest.raises(DataError, match=r"stray\.wav: is not inside the dataset folder"):
        TeacherCache(tmp_path / "c", "t", SHA).embeddings(root, [stray], Teacher(), progress=False)
