"""The enrolled gallery on disk: one file, bound to one model, written atomically.

File format (a ``.npz`` archive; open it with ``numpy.load(path, allow_pickle=False)``):

- ``embeddings``: ``(N, D)`` float32, one L2-normalised template per enrolled recording (the
  recording embedding of docs/ARCHITECTURE.md, contract 3), sorted by label;
- ``labels``: ``(N,)`` unicode, the label of each row;
- ``header``: a 0-d unicode array holding JSON::

      {"format": "edgesiam-gallery", "version": 1,
       "bundle_sha256": "<sha256 of the bundle's deployed model.tflite>", "bundle_name": "...",
       "embedding_dim": D, "created": "<UTC ISO 8601>", "updated": "...",
       "labels": {"alice": {"recordings": 3, "consistency": 0.93, "enrolled": "...",
                            "updated": "...", "sources": ["a.wav", "b.wav", "c.wav"]}}}

**Bound to the model.** Embeddings of one model mean nothing to another, so the gallery records
the sha256 of the bundle's deployed model file (from its manifest) and refuses to be used or
extended with any other model: re-enroll with the new bundle into a new gallery file.

**Atomic.** Every change writes a temporary file in the same folder, flushes and fsyncs it,
renames it over the gallery (``os.replace``) and fsyncs the folder: after a power cut the
gallery is either the old one or the new one, never a mix. Changes take an advisory lock
(``<gallery>.lock``, POSIX only) so two enrolments cannot lose each other's labels. A new file
gets mode 0644; an existing file keeps its mode.

**Never overwritten silently.** A file that cannot be read as a gallery is a ``DataError``
naming it; enrolling into it fails the same way and leaves it untouched.

Labels become MQTT payload fields and Home Assistant names: 1-64 characters, no ``/`` or ``\\``,
no control characters, no MQTT wildcards ``+`` ``#``, no leading or trailing spaces, not ``.`` or
``..``.

This module runs on the device: numpy, the device-safe bundle and reader modules; no torch,
tensorflow or librosa.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import math
import os
import tempfile
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
import numpy.typing as npt

from edgesiam.core.embedding import l2_normalize, recording_embedding
from edgesiam.core.matching import Aggregate, Gallery
from edgesiam.errors import ConfigError, DataError

try:  # POSIX advisory locks; on other systems changes are not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "GALLERY_FORMAT",
    "GALLERY_VERSION",
    "MAX_LABEL_LENGTH",
    "MAX_RECORDINGS",
    "ClipReport",
    "Enrolment",
    "GalleryInfo",
    "GalleryStore",
    "LabelInfo",
    "consistency",
    "model_sha256",
    "short_sha",
    "validate_label",
]

GALLERY_FORMAT: Final = "edgesiam-gallery"
GALLERY_VERSION: Final = 1
MAX_LABEL_LENGTH: Final = 64
MAX_RECORDINGS: Final = 10
"""Most recordings one label may have (few-shot enrolment: 1 to 10)."""
MOSTLY_SILENT: Final = 0.5
"""A clip with more than this fraction of its windows gated out gets a warning."""

_FORBIDDEN: Final = frozenset("/\\+#")
Float32Array = npt.NDArray[np.float32]


_MIN_NORM: Final = 1e-12
"""An embedding whose L2 norm is below this is zero for matching (``l2_normalize``'s floor)."""


def _norm(e: np.ndarray) -> float:
    return float(np.linalg.norm(e.astype(np.float64)))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def validate_label(label: object) -> str:
    """Return ``label`` when it is a usable label name, else raise ``ConfigError`` saying why."""
    if not isinstance(label, str):
        raise ConfigError(f"a label must be text, got {label!r}")
    if not label:
        raise ConfigError("a label cannot be empty")
    if len(label) > MAX_LABEL_LENGTH:
        raise ConfigError(
            f"label '{label[:20]}…' is {len(label)} characters long; the limit is "
            f"{MAX_LABEL_LENGTH}"
        )
    bad = sorted({c for c in label if c in _FORBIDDEN})
    if bad:
        raise ConfigError(
            f"label {label!r} contains {' '.join(bad)}: labels cannot hold path separators "
            "(/ \\) or MQTT wildcards (+ #)"
        )
    if any(unicodedata.category(c).startswith("C") for c in label):
        raise ConfigError(f"label {label!r} contains control or invisible characters")
    if label != label.strip():
        raise ConfigError(f"label {label!r} starts or ends with a space")
    if label in (".", ".."):
        raise ConfigError(f"label {label!r} is not allowed")
    return label


def model_sha256(manifest: Any) -> str:
    """The sha256 of a bundle's deployed model file, from its manifest (``edgesiam.model.bundle``)."""
    entry = manifest.models.get(manifest.model)
    if entry is None or entry.file not in manifest.files:
        raise DataError(
            f"the bundle manifest has no sha256 for its deployed model {manifest.model!r}; "
            "export the bundle again"
        )
    sha: str = manifest.files[entry.file]
    return sha


def consistency(embeddings: npt.ArrayLike) -> float:
    """Mean pairwise cosine of recording embeddings ``(k, D)``; 1.0 for a single recording."""
    e = l2_normalize(np.asarray(embeddings, dtype=np.float32), axis=1).astype(np.float64)
    k = e.shape[0]
    if k < 2:
        return 1.0
    sims = e @ e.T
    return float(sims[np.triu_indices(k, 1)].mean())


def short_sha(sha: str) -> str:
    return sha[:12] if sha else "(none)"


@dataclass(frozen=True)
class LabelInfo:
    """One enrolled label as the gallery file describes it."""

    label: str
    recordings: int
    consistency: float
    enrolled: str
    updated: str
    sources: list[str] = field(default_factory=list)

    @property
    def consistency_text(self) -> str:
        """The consistency for people: ``n/a`` for a single recording."""
        return "n/a" if self.recordings < 2 else f"{self.consistency:.3f}"


@dataclass(frozen=True)
class GalleryInfo:
    """The header of a gallery file."""

    path: Path
    bundle_sha256: str
    bundle_name: str
    embedding_dim: int
    created: str
    updated: str
    labels: list[LabelInfo]

    @property
    def templates(self) -> int:
        return sum(info.recordings for info in self.labels)


@dataclass(frozen=True)
class ClipReport:
    """What one clip gave its label: its windows, how many the energy gate let through (the
    template is made of those), or why it was refused."""

    name: str
    windows: int
    active: int
    refused: str | None = None

    @property
    def text(self) -> str:
        if self.refused is not None:
            return f"{self.name}: refused: {self.refused}"
        return f"{self.name}: {self.active} of {self.windows} windows active"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "windows": self.windows,
            "active": self.active,
            "refused": self.refused,
        }


@dataclass
class Enrolment:
    """What an enrolment did: the label, its recordings and consistency, and any warnings."""

    label: str
    recordings: int
    consistency: float
    replaced: bool = False
    warnings: list[str] = field(default_factory=list)
    closest: tuple[str, float] | None = None
    """The most similar other enrolled label and its best cosine to this label's recordings."""
    clips: list[ClipReport] = field(default_factory=list)
    """One report per clip given, refused ones included (enroll_recordings)."""

    @property
    def consistency_text(self) -> str:
        return "n/a" if self.recordings < 2 else f"{self.consistency:.3f}"


@dataclass
class _State:
    header: dict[str, Any]
    embeddings: Float32Array
    labels: list[str]


class GalleryStore:
    """The gallery file at ``path``; see the module docstring.

    ``bundle_sha256`` (see :func:`model_sha256`) is the model this store works for: ``load``,
    ``list`` and ``forget`` refuse a file made for another model, and ``enroll`` needs it to
    create a new file. ``bundle_name`` is recorded for people.
    """

    def __init__(
        self,
        path: str | Path,
        bundle_sha256: str | None = None,
        *,
        bundle_name: str | None = None,
        aggregate: Aggregate = "max",
    ) -> None:
        self.path = Path(path)
        self.bundle_sha256 = bundle_sha256
        self.bundle_name = bundle_name
        self.aggregate: Aggregate = aggregate

    def __repr__(self) -> str:
        return f"GalleryStore({str(self.path)!r}, bundle_sha256={short_sha(self.bundle_sha256 or '')!r})"

    def exists(self) -> bool:
        return self.path.is_file()

    def fingerprint(self) -> tuple[int, int, int] | None:
        """``(inode, size, mtime_ns)`` of the file, None when absent: a change means reload."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    # --- reading -------------------------------------------------------------------------------

    def _damaged(self, why: str) -> DataError:
        return DataError(
            f"is not a readable edgesiam gallery ({why}). It was left as it is; move it away "
            "(or restore a backup) and enroll again",
            self.path,
        )

    def _read(self) -> _State:
        if not self.path.exists():
            raise DataError(
                "no gallery here yet; enroll labels first: edgesiam enroll --bundle BUNDLE "
                f"--gallery {self.path} --label NAME FILE...",
                self.path,
            )
        if not self.path.is_file():
            raise DataError("is not a file (a gallery is one .npz file)", self.path)
        try:
            loaded = np.load(self.path, allow_pickle=False)
        except Exception as exc:  # anything a damaged file makes numpy or zipfile raise
            raise self._damaged(f"{type(exc).__name__}: {exc}") from None
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise self._damaged("it is a single array, not an .npz archive")
        try:
            with loaded as data:
                missing = {"header", "embeddings", "labels"} - set(data.files)
                if missing:
                    raise self._damaged(f"missing {', '.join(sorted(missing))}")
                header_text = np.asarray(data["header"])
                embeddings = np.asarray(data["embeddings"])
                labels_array = np.asarray(data["labels"])
        except DataError:
            raise
        except Exception as exc:  # truncated or garbled members
            raise self._damaged(f"{type(exc).__name__}: {exc}") from None
        try:
            header = json.loads(str(header_text.item()))
        except (ValueError, TypeError) as exc:
            raise self._damaged(f"its header is not JSON: {exc}") from None
        if not isinstance(header, dict) or header.get("format") != GALLERY_FORMAT:
            raise self._damaged("its header does not say it is an edgesiam gallery")
        version = header.get("version")
        if not isinstance(version, int) or version > GALLERY_VERSION:
            raise DataError(
                f"gallery version {version!r} is not supported (this edgesiam reads "
                f"{GALLERY_VERSION}); upgrade edgesiam on this device",
                self.path,
            )
        dim = header.get("embedding_dim")
        sha = header.get("bundle_sha256")
        meta = header.get("labels")
        if not isinstance(dim, int) or dim < 1 or not isinstance(sha, str):
            raise self._damaged("its header lacks embedding_dim or bundle_sha256")
        if not isinstance(meta, dict):
            raise self._damaged("its header lacks the label table")
        if (
            embeddings.dtype != np.float32
            or embeddings.ndim != 2
            or embeddings.shape[1] != dim
            or labels_array.ndim != 1
            or labels_array.shape[0] != embeddings.shape[0]
            or (labels_array.size and labels_array.dtype.kind != "U")
        ):
            raise self._damaged(
                f"embeddings {embeddings.dtype}{embeddings.shape} and labels "
                f"{labels_array.dtype}{labels_array.shape} do not fit embedding_dim {dim}"
            )
        if not np.all(np.isfinite(embeddings)):
            raise self._damaged("its embeddings hold NaN or infinite values")
        labels = [str(v) for v in labels_array]
        counts: dict[str, int] = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        table = {k: v.get("recordings") for k, v in meta.items() if isinstance(v, dict)}
        if table != counts:
            raise self._damaged("its label table does not match its embeddings")
        return _State(header, embeddings, labels)

    def _check_binding(self, state: _State, bundle_sha: str | None) -> None:
        if bundle_sha is None:
            return
        theirs = str(state.header["bundle_sha256"])
        if theirs != bundle_sha:
            name = state.header.get("bundle_name") or "another model"
            raise DataError(
                f"this gallery was enrolled with a different model ({name}, model sha256 "
                f"{short_sha(theirs)}…) than the bundle in use (model sha256 {short_sha(bundle_sha)}…): "
                "embeddings of one model cannot be matched with another. Re-enroll every label "
                "with this bundle into a new gallery file (edgesiam enroll --bundle BUNDLE "
                "--gallery NEW.npz --label NAME FILE...)",
                self.path,
            )

    def _sha(self, bundle_sha: str | None) -> str | None:
        return bundle_sha if bundle_sha is not None else self.bundle_sha256

    def info(self, bundle_sha: str | None = None) -> GalleryInfo:
        """The file's header (model, dimension, labels); checks the binding when a sha is known."""
        state = self._read()
        self._check_binding(state, self._sha(bundle_sha))
        return self._info(state)

    def _info(self, state: _State) -> GalleryInfo:
        h = state.header
        labels = []
        for label in sorted(h["labels"]):
            m = h["labels"][label]
            labels.append(
                LabelInfo(
                    label=label,
                    recordings=int(m.get("recordings", 0)),
                    consistency=float(m.get("consistency", math.nan)),
                    enrolled=str(m.get("enrolled", "")),
                    updated=str(m.get("updated", m.get("enrolled", ""))),
                    sources=[str(s) for s in m.get("sources", [])],
                )
            )
        return GalleryInfo(
            path=self.path,
            bundle_sha256=str(h["bundle_sha256"]),
            bundle_name=str(h.get("bundle_name", "")),
            embedding_dim=int(h["embedding_dim"]),
            created=str(h.get("created", "")),
            updated=str(h.get("updated", "")),
            labels=labels,
        )

    def list(self, bundle_sha: str | None = None) -> builtins.list[LabelInfo]:
        """The enrolled labels, sorted (checks the binding when a sha is known)."""
        return self.info(bundle_sha).labels

    def load(self, bundle_sha: str | None = None) -> Gallery:
        """The gallery for matching; refuses a file enrolled with another model."""
        sha = self._sha(bundle_sha)
        if sha is None:
            raise ConfigError(
                "loading a gallery needs the bundle's model sha256, so that another model's "
                "gallery is never used"
            )
        state = self._read()
        self._check_binding(state, sha)
        return Gallery.from_templates(
            state.embeddings,
            state.labels,
            aggregate=self.aggregate,
            dim=int(state.header["embedding_dim"]),
        )

    # --- changing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover - Windows
            yield
            return
        lock = self.path.with_name(self.path.name + ".lock")
        with open(lock, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def enroll(
        self,
        label: str,
        embeddings_per_recording: Sequence[npt.ArrayLike],
        *,
        sources: Sequence[str] | None = None,
        append: bool = False,
    ) -> Enrolment:
        """Enroll ``label`` from 1-10 recordings and save the gallery atomically.

        Each item is one recording: its embedding ``(D,)``, or its window embeddings ``(k, D)``
        (pooled as in docs/ARCHITECTURE.md, contract 3). A label enrolled before is replaced, or with ``append=True``
        extended (at most :data:`MAX_RECORDINGS` in all). ``sources`` names the recordings.
        """
        validate_label(label)
        sha = self.bundle_sha256
        if not sha:
            raise ConfigError(
                "enrolling needs the bundle's model sha256 (GalleryStore(path, bundle_sha256))"
            )
        recordings = [np.asarray(e, dtype=np.float32) for e in embeddings_per_recording]
        if not 1 <= len(recordings) <= MAX_RECORDINGS:
            raise ConfigError(
                f"enroll '{label}' from 1 to {MAX_RECORDINGS} recordings, got {len(recordings)}"
            )
        rows = []
        for i, e in enumerate(recordings):
            if e.ndim == 2:
                e = recording_embedding(e)
            if e.ndim != 1 or not np.all(np.isfinite(e)) or not _norm(e) > _MIN_NORM:
                raise DataError(
                    f"recording {i + 1} of '{label}': expected a finite, non-zero embedding (D,) "
                    f"or window embeddings (k, D), got shape {e.shape}"
                )
            rows.append(l2_normalize(e))
        new = np.stack(rows).astype(np.float32)
        names = [str(s) for s in sources] if sources is not None else []
        if sources is not None and len(names) != len(rows):
            raise ConfigError(f"{len(names)} source names for {len(rows)} recordings")

        with self._locked():
            if self.path.exists():
                state = self._read()
                self._check_binding(state, sha)
            else:
                state = _State(
                    {
                        "format": GALLERY_FORMAT,
                        "version": GALLERY_VERSION,
                        "bundle_sha256": sha,
                        "bundle_name": self.bundle_name or "",
                        "embedding_dim": int(new.shape[1]),
                        "created": _now(),
                        "updated": "",
                        "labels": {},
                    },
                    np.zeros((0, new.shape[1]), dtype=np.float32),
                    [],
                )
            dim = int(state.header["embedding_dim"])
            if new.shape[1] != dim:
                raise DataError(
                    f"embeddings of size {new.shape[1]} cannot join a gallery of size {dim}",
                    self.path,
                )
            table: dict[str, Any] = state.header["labels"]
            old = table.get(label)
            keep = np.array([lab != label for lab in state.labels], dtype=bool)
            mine = state.embeddings[~keep] if (old is not None and append) else new[:0]
            templates = np.concatenate([mine, new])
            if templates.shape[0] > MAX_RECORDINGS:
                raise ConfigError(
                    f"'{label}' already has {mine.shape[0]} recordings; with {new.shape[0]} more "
                    f"it would have {templates.shape[0]}, above the limit of {MAX_RECORDINGS}. "
                    "Enroll it again without --append to replace them"
                )
            others = state.embeddings[keep]
            other_labels = [lab for lab in state.labels if lab != label]
            closest = _closest(templates, others, other_labels)
            score = consistency(templates)
            now = _now()
            prior_sources = list(old.get("sources", [])) if (old and append) else []
            table[label] = {
                "recordings": int(templates.shape[0]),
                "consistency": round(score, 6),
                "enrolled": old["enrolled"] if (old and append) else now,
                "updated": now,
                "sources": prior_sources + names,
            }
            state.header["updated"] = now
            if self.bundle_name and not state.header.get("bundle_name"):
                state.header["bundle_name"] = self.bundle_name
            self._write(
                state.header,
                np.concatenate([others, templates]),
                other_labels + [label] * templates.shape[0],
            )
        return Enrolment(
            label=label,
            recordings=int(templates.shape[0]),
            consistency=score,
            replaced=old is not None and not append,
            closest=closest,
        )

    def forget(self, label: str) -> int:
        """Remove ``label``; returns its number of recordings. Unknown labels are a ``DataError``."""
        with self._locked():
            state = self._read()
            self._check_binding(state, self.bundle_sha256)
            table: dict[str, Any] = state.header["labels"]
            if label not in table:
                known = ", ".join(sorted(table)) or "none"
                raise DataError(f"no label '{label}' in this gallery; enrolled: {known}", self.path)
            keep = np.array([lab != label for lab in state.labels], dtype=bool)
            removed = int(np.count_nonzero(~keep))
            del table[label]
            state.header["updated"] = _now()
            self._write(
                state.header,
                state.embeddings[keep],
                [lab for lab in state.labels if lab != label],
            )
        return removed

    def forget_template(self, label: str, template_id: str) -> int:
        """Remove one template of ``label`` by its id (:func:`~edgesiam.core.codec.embedding_id`);
        returns how many the label keeps. Its last template cannot go (forget the label)."""
        from edgesiam.core.codec import embedding_id

        with self._locked():
            state = self._read()
            self._check_binding(state, self.bundle_sha256)
            table: dict[str, Any] = state.header["labels"]
            rows = [i for i, lab in enumerate(state.labels) if lab == label]
            if not rows:
                raise DataError(f"no label '{label}' in this gallery", self.path)
            ids = [embedding_id(state.embeddings[i]) for i in rows]
            if template_id not in ids:
                raise DataError(
                    f"'{label}' has no template {template_id}; its templates: {', '.join(ids)}",
                    self.path,
                )
            if len(rows) == 1:
                raise DataError(
                    f"{template_id} is the last template of '{label}': forget the label instead",
                    self.path,
                )
            drop = rows[ids.index(template_id)]
            entry = table[label]
            sources = list(entry.get("sources", []))
            if len(sources) == len(rows):
                del sources[ids.index(template_id)]
            mine = state.embeddings[[i for i in rows if i != drop]]
            entry.update(
                recordings=len(rows) - 1,
                consistency=round(consistency(mine), 6),
                sources=sources,
                updated=_now(),
            )
            state.header["updated"] = _now()
            keep = [i for i in range(len(state.labels)) if i != drop]
            self._write(state.header, state.embeddings[keep], [state.labels[i] for i in keep])
        return len(rows) - 1

    def _write(
        self, header: dict[str, Any], embeddings: Float32Array, labels: builtins.list[str]
    ) -> None:
        order = sorted(range(len(labels)), key=lambda i: labels[i])  # stable: keeps recording order
        emb = np.ascontiguousarray(embeddings[order], dtype=np.float32)
        labs = np.array([labels[i] for i in order], dtype=np.str_)
        if labs.size == 0:
            labs = np.zeros(0, dtype="<U1")
        header_text = np.array(json.dumps(header, ensure_ascii=False, sort_keys=True))

        def write(fh: IO[bytes]) -> None:
            np.savez(fh, header=header_text, embeddings=emb, labels=labs)

        atomic_write(self.path, write)


def _closest(
    templates: Float32Array, others: Float32Array, other_labels: Sequence[str]
) -> tuple[str, float] | None:
    if not other_labels:
        return None
    gallery = Gallery.from_templates(others, other_labels)
    per_label = gallery.scores(templates).max(axis=0)
    best = int(np.argmax(per_label))
    return gallery.labels[best], float(per_label[best])


def _fsync_dir(folder: Path) -> None:
    flags = getattr(os, "O_DIRECTORY", 0) | os.O_RDONLY
    try:
        fd = os.open(folder, flags)
    except OSError:  # pragma: no cover - systems that cannot open folders (Windows)
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None], mode: int = 0o644) -> None:
    """Write ``path`` through ``write(fh)`` atomically: temporary file in the same folder, flush,
    fsync, ``os.replace``, fsync the folder. On any failure the old file is left as it was and
    the temporary file is removed. An existing file keeps its permission bits, a new one gets
    ``mode``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        mode = path.stat().st_mode & 0o7777
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
