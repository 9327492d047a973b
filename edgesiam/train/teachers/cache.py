"""A teacher's embeddings of a dataset folder's recordings, computed once and kept on disk.

A large teacher costs seconds per minute of audio; evaluation tables and distillation ask for the
same recordings again and again. One ``.npz`` per (teacher, weights, dataset folder) holds every
recording's embedding, keyed by its path relative to the folder, with the file's size, modification
time and content digest:

    FOLDER/<teacher>/<first 16 hex of the weights' SHA-256>-r<revision>/<folder>-<path digest>.npz

An entry is reused while the file's size and modification time are unchanged, or, when only the
time changed (a copy, a touch), while its content digest is; otherwise it is computed again. Other
weights, or another revision of the teacher's code (its features, its pooling), go to another
folder, so they never mix. The file is replaced atomically (written beside,
then renamed), every ``save_every`` new embeddings and when the run ends or is interrupted, so a
crash keeps the work done and never leaves a torn file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgesiam.errors import DataError

log = logging.getLogger(__name__)

FORMAT = "edgesiam-teacher-cache"
FORMAT_VERSION = 1


@dataclass
class _Entry:
    embedding: np.ndarray
    size: int
    mtime_ns: int
    digest: str


def content_digest(path: Path) -> str:
    """BLAKE2b (128-bit) of a file's bytes."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class TeacherCache:
    """Embeddings of one teacher (``name``, ``weights_sha256`` and the ``revision`` of the code
    that turns audio into its embedding), per dataset folder, on disk."""

    def __init__(self, folder: Path, name: str, weights_sha256: str, revision: int = 1) -> None:
        if not name or not weights_sha256:
            raise ValueError("a teacher cache needs the teacher's name and its weights' SHA-256")
        self.folder = Path(folder) / name / f"{weights_sha256[:16]}-r{revision}"
        self.name = name
        self.weights_sha256 = weights_sha256
        self.revision = revision

    def path_for(self, root: Path) -> Path:
        """The cache file of dataset folder ``root``."""
        where = os.path.realpath(root)  # a folder reached through a link is the same folder
        tag = hashlib.blake2b(where.encode(), digest_size=6).hexdigest()
        return self.folder / f"{Path(where).name or 'root'}-{tag}.npz"

    def embeddings(
        self,
        root: Path,
        files: Sequence[Path],
        compute: Callable[[Path], np.ndarray],
        *,
        progress: bool = True,
        save_every: int = 100,
    ) -> np.ndarray:
        """``(len(files), D)`` embeddings of ``files`` (inside ``root``), in order.

        ``compute(path)`` gives the embedding of one file; it is called only for files the cache
        does not hold as they are now.
        """
        root = Path(os.path.abspath(root))
        cache_file = self.path_for(root)
        store = self._load(cache_file)
        fresh = 0
        rows: list[np.ndarray] = []
        bar = tqdm(files, desc=f"{self.name} {root.name}", unit="rec", disable=not progress)
        try:
            for file in bar:
                key = _relative(Path(file), root)
                entry, computed = self._entry(store.get(key), Path(file), compute)
                store[key] = entry
                rows.append(entry.embedding)
                if computed:
                    fresh += 1
                    bar.set_postfix(computed=fresh)
                    if fresh % save_every == 0:
                        self._save(cache_file, root, store)
        finally:
            if fresh:
                self._save(cache_file, root, store)
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack(rows).astype(np.float32)

    def stale(self, root: Path, files: Sequence[Path]) -> list[Path]:
        """The ``files`` (inside ``root``) the cache does not hold as they are now: what
        :meth:`embeddings` would compute. For teachers that embed many files in one go (another
        process), so that they run once, on these only."""
        root = Path(os.path.abspath(root))
        store = self._load(self.path_for(root))
        return [
            Path(f)
            for f in files
            if _reuse(store.get(_relative(Path(f), root)), Path(f))[0] is None
        ]

    @staticmethod
    def _entry(
        old: _Entry | None, file: Path, compute: Callable[[Path], np.ndarray]
    ) -> tuple[_Entry, bool]:
        """The entry of ``file`` and whether it had to be computed."""
        entry, (size, mtime_ns, digest) = _reuse(old, file)
        if entry is not None:
            return entry, False
        embedding = np.asarray(compute(file), dtype=np.float32).reshape(-1)
        return _Entry(embedding, size, mtime_ns, digest), True

    def _load(self, path: Path) -> dict[str, _Entry]:
        if not path.exists():
            return {}
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                own = (FORMAT, FORMAT_VERSION, self.name, self.weights_sha256, self.revision)
                keys = ("format", "version", "teacher", "weights_sha256", "revision")
                if tuple(meta.get(k) for k in keys) != own:
                    log.warning("%s: not this teacher's cache; computing again", path)
                    return {}
                return {
                    str(p): _Entry(e, int(s), int(t), str(d))
                    for p, e, s, t, d in zip(
                        data["paths"],
                        data["embeddings"],
                        data["sizes"],
                        data["mtimes_ns"],
                        data["digests"],
                        strict=True,
                    )
                }
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            log.warning("%s: unreadable teacher cache (%s); computing again", path, exc)
            return {}

    def _save(self, path: Path, root: Path, store: dict[str, _Entry]) -> None:
        dims = {e.embedding.shape for e in store.values()}
        if len(dims) > 1:
            raise ValueError(f"teacher {self.name} gave embeddings of several shapes: {dims}")
        keys = sorted(store)
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "teacher": self.name,
            "weights_sha256": self.weights_sha256,
            "revision": self.revision,
            "root": str(root),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    meta=np.array(json.dumps(meta)),
                    paths=np.array(keys, dtype=str),
                    embeddings=np.stack([store[k].embedding for k in keys]).astype(np.float32),
                    sizes=np.array([store[k].size for k in keys], dtype=np.int64),
                    mtimes_ns=np.array([store[k].mtime_ns for k in keys], dtype=np.int64),
                    digests=np.array([store[k].digest for k in keys], dtype=str),
                )
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def _reuse(old: _Entry | None, file: Path) -> tuple[_Entry | None, tuple[int, int, str]]:
    """``old`` brought up to date when it still describes ``file`` (None otherwise), and the
    file's size, modification time and content digest."""
    try:
        stat = file.stat()
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", file) from None
    if old is not None and (old.size, old.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
        return old, (old.size, old.mtime_ns, old.digest)
    digest = content_digest(file)
    now = (stat.st_size, stat.st_mtime_ns, digest)
    if old is not None and old.digest == digest:
        return _Entry(old.embedding, *now), now
    return None, now


def _relative(file: Path, root: Path) -> str:
    try:
        return Path(os.path.abspath(file)).relative_to(root).as_posix()
    except ValueError:
        raise DataError(f"is not inside the dataset folder {root}", file) from None
