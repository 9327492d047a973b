"""Reading recordings and dataset folders from disk (docs/ARCHITECTURE.md, contract 1).

A dataset folder is ``DIR/<label>/<item>.<ext>`` with an optional ``DIR/dataset.toml``::

    modality = "sensor"          # "audio" or "sensor"; inferred from the files when absent
    sample_rate = 50             # Hz of the sensor recordings; resampled to the model's rate
    channels = ["ax", "ay", "az"]  # sensor channel names: the columns of a file without a header
    units = ["g", "g", "g"]      # one per channel (or a table by name); see edgesiam.core.units

An item whose stem is ``GROUP__NAME`` belongs to the group GROUP (a language, a spoken line, a
subject).

Audio (``.wav .flac .ogg .opus``) is read with soundfile (libsndfile; Ogg/Opus needs libsndfile
>= 1.1), mixed down to mono by averaging the channels and resampled with soxr. Phone recordings
(``.mp3 .m4a .aac``) are read by libsndfile where it can (MP3 from libsndfile 1.1), else decoded by
``ffmpeg`` when it is on PATH; without either, the error says what to install. Sensor recordings are
``.csv`` (rows = samples, columns = channels; an optional header row; comma, semicolon, tab or
whitespace separated; an empty cell is an error naming the line, write ``nan`` for a missing value;
in a semicolon-separated file a comma is a decimal comma) or ``.npy`` (1-D = one channel, or 2-D
``(n, C)``). Sensor NaN/Inf values are kept: the front-end decides what to do with them
(``count_non_finite`` says how many there are); audio must be finite.

Read for a model (a :class:`SensorSpec`), a sensor recording is brought to the model's layout:
when a CSV header names the model's channels, columns are matched by name in any order (columns it
does not take, a timestamp, are ignored); a header naming some but not all of them is an error
naming the missing ones; a file without such a header takes its column names from
``dataset.toml``'s ``channels``, or else is taken in the model's order, with a one-line notice.
Values are then converted from the declared ``units`` to the model's and resampled from the
dataset's ``sample_rate`` to the model's.

Scanning ignores ``dataset.toml`` and ``SUMMARY.json`` everywhere, hidden folders, and README /
LICENSE / COPYING files at the top level. Other files that are not recordings (``notes.txt``,
``cover.jpg``, hidden files such as ``.DS_Store``) are skipped with one logged line per scan; all
but the hidden ones are listed in ``DatasetInfo.skipped``.
Anything else that does not fit the layout (a recording directly in the folder, a nested folder, an
empty label folder, a label name that is unsafe as a path component) is an error, or with
``on_error="skip"`` is left out, logged and listed in ``DatasetInfo.skipped``. Mixing audio and
sensor files, and a bad ``dataset.toml``, are always errors.

Nothing here imports torch or librosa: the device install reads files with this module too.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm

from edgesiam.core.units import canonical_unit, conversion_factors, declared_units, gravity_warning
from edgesiam.errors import ConfigError, DataError

__all__ = [
    "AUDIO_EXTENSIONS",
    "DATASET_TOML",
    "GROUP_SEPARATOR",
    "MPEG_AUDIO_EXTENSIONS",
    "RECORDING_EXTENSIONS",
    "SENSOR_EXTENSIONS",
    "DatasetInfo",
    "OnError",
    "Recording",
    "SensorSpec",
    "column_order",
    "count_non_finite",
    "dataset_toml_for",
    "dataset_units",
    "is_safe_label",
    "iter_recordings",
    "list_recordings",
    "load_recording",
    "modality_of",
    "parse_group",
    "read_audio",
    "read_dataset_toml",
    "read_recording_for",
    "read_sensor",
    "read_sensor_for",
    "reading_spec",
    "scan_dataset",
]

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus")
MPEG_AUDIO_EXTENSIONS = (".mp3", ".m4a", ".aac")
"""Phone recordings: MP3 (libsndfile >= 1.1, or ffmpeg) and AAC in MP4/ADTS (ffmpeg). Kept apart
from ``AUDIO_EXTENSIONS``, which the data recipes use to pick files from packages."""
SENSOR_EXTENSIONS = (".csv", ".npy")
RECORDING_EXTENSIONS = AUDIO_EXTENSIONS + MPEG_AUDIO_EXTENSIONS + SENSOR_EXTENSIONS
DATASET_TOML = "dataset.toml"
GROUP_SEPARATOR = "__"
MODALITIES = ("audio", "sensor")
TOML_KEYS = ("modality", "sample_rate", "channels", "units")

# Names that may sit anywhere in a dataset folder and are not recordings.
_IGNORED_NAMES = frozenset({DATASET_TOML, "SUMMARY.json", "RENDER.json"})
# Documentation that may sit at the top of a dataset folder.
_DOC_PREFIXES = ("readme", "license", "licence", "copying")
# A label becomes a folder name, a metric key and an MQTT payload field: keep it to word characters
# and a few punctuation marks, starting with a word character.
_SAFE_LABEL = re.compile(r"^\w[\w.+@=-]*$")

OnError = Literal["fail", "skip"]


# --------------------------------------------------------------------------------------------------
# single files


def read_audio(
    path: str | Path,
    sample_rate: int,
    *,
    offset_s: float = 0.0,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Read an audio file as float32 mono ``(n,)`` at ``sample_rate`` Hz.

    Channels are averaged; the signal is resampled with soxr when its rate differs. ``offset_s`` and
    ``max_seconds`` read only a part of the file (measured in seconds of the original). Raises
    ``DataError`` for a file that cannot be decoded, holds no samples or holds NaN/Inf.
    """
    path = Path(path)
    if int(sample_rate) <= 0:
        raise DataError(f"sample rate must be positive, got {sample_rate}", path)
    if not _libsndfile_reads(path):
        return _read_decoded(path, int(sample_rate), offset_s, max_seconds)
    try:
        with sf.SoundFile(str(path)) as f:
            native = int(f.samplerate)
            start = max(0, round(offset_s * native))
            if start:
                if not f.seekable():
                    raise DataError("cannot seek in this file to read from an offset", path)
                f.seek(min(start, f.frames))
            frames = -1 if max_seconds is None else max(0, round(max_seconds * native))
            data = f.read(frames=frames, dtype="float32", always_2d=True)
    except DataError:
        raise
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as exc:
        raise DataError(f"cannot read audio ({exc})", path) from exc
    if data.shape[0] == 0:
        raise DataError("holds no audio samples", path)
    # float64 sums: channels near float32's limit must not overflow while being averaged
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float64)
    mono = mono.astype(np.float32)
    if not np.all(np.isfinite(mono)):
        raise DataError(f"holds {count_non_finite(mono)} NaN/Inf audio samples", path)
    if native != sample_rate:
        mono = soxr.resample(mono, native, int(sample_rate), quality="HQ")
        if mono.shape[0] == 0:
            raise DataError(
                f"is too short: {data.shape[0]} sample(s) at {native} Hz make no sample at "
                f"{sample_rate} Hz",
                path,
            )
        if not np.all(np.isfinite(mono)):  # float samples near float32's limit overflow
            peak = float(np.max(np.abs(data)))
            raise DataError(
                f"holds samples far outside [-1, 1] (peak {peak:.3g}) that cannot be resampled "
                f"from {native} Hz to {sample_rate} Hz",
                path,
            )
    return np.ascontiguousarray(mono, dtype=np.float32)


def _libsndfile_reads(path: Path) -> bool:
    """False for the MPEG formats the installed libsndfile cannot decode (AAC never; MP3 before 1.1)."""
    suffix = path.suffix.lower()
    if suffix in (".m4a", ".aac"):
        return False
    return suffix != ".mp3" or "MP3" in sf.available_formats()


def _read_decoded(
    path: Path, sample_rate: int, offset_s: float, max_seconds: float | None
) -> np.ndarray:
    """``read_audio`` of a file that ffmpeg decodes to a temporary WAV; errors name ``path``."""
    with tempfile.TemporaryDirectory(prefix="edgesiam-decode-") as folder:
        decoded = _decode_with_ffmpeg(path, Path(folder) / "decoded.wav")
        try:
            return read_audio(decoded, sample_rate, offset_s=offset_s, max_seconds=max_seconds)
        except DataError as exc:
            raise DataError(str(exc).removeprefix(f"{decoded}: "), path) from None


def _decode_with_ffmpeg(path: Path, out: Path) -> Path:
    """Decode ``path`` with ffmpeg into the float WAV ``out`` (rate and channels kept as they are)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        also = (
            " or a libsndfile >= 1.1 (pip install -U soundfile)"
            if path.suffix.lower() == ".mp3"
            else ""
        )
        raise DataError(
            f"reading {path.suffix.lower()} files needs ffmpeg on PATH{also}: install it with "
            "'sudo apt-get install ffmpeg' (Debian, Raspberry Pi OS), or convert the file to WAV",
            path,
        )
    command = [ffmpeg, "-nostdin", "-v", "error", "-y", "-i", f"file:{path}", "-vn"]
    command += ["-c:a", "pcm_f32le", str(out)]
    try:
        done = subprocess.run(command, capture_output=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(f"cannot decode audio with ffmpeg ({exc})", path) from exc
    if done.returncode != 0 or not out.is_file():
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        why = lines[-1] if lines else f"exit status {done.returncode}"
        raise DataError(f"cannot decode audio with ffmpeg ({why})", path)
    return out


def count_non_finite(array: np.ndarray) -> int:
    """How many values of ``array`` are NaN or +/-Inf."""
    a = np.asarray(array)
    if not np.issubdtype(a.dtype, np.floating):
        return 0
    return int(a.size - np.count_nonzero(np.isfinite(a)))


def _clean(text: str) -> str:
    """A field without its surrounding spaces and quotes."""
    return text.strip().strip('"').strip("'").strip()


def _parse_float(text: str) -> float:
    return float(_clean(text))


def _split_line(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        return line.split()
    if '"' in line or "'" in line:
        return next(csv.reader([line], delimiter=delimiter, skipinitialspace=True))
    return line.split(delimiter)


def _detect_delimiter(line: str) -> str | None:
    for delimiter in (";", ",", "\t"):
        if delimiter in line:
            return delimiter
    return None  # whitespace


def _read_csv(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """The rows of a CSV file, and its header's names (None without a header)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read CSV ({exc})", path) from exc
    rows: list[list[float]] = []
    delimiter: str | None = None
    header: list[str] | None = None
    width = 0
    first = True
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if first:
            delimiter = _detect_delimiter(line)
        fields = _split_line(line, delimiter)
        if delimiter == ";":
            # Semicolon-separated files come from locales that write a decimal comma ("1,5;2,25").
            fields = [f.replace(",", ".") for f in fields]
        if first:
            first = False
            if any(_clean(f) and not _is_number(f) for f in fields):
                width = len(fields)  # a header row
                header = [_clean(f) for f in fields]
                continue
        try:
            values = [_parse_float(f) for f in fields]
        except ValueError:
            column, bad = next((i, f) for i, f in enumerate(fields, 1) if not _is_number(f))
            if not bad.strip().strip('"').strip("'").strip():
                raise DataError(
                    f"line {number}: column {column} is empty; write nan for a missing value",
                    path,
                ) from None
            raise DataError(f"line {number}: '{bad.strip()}' is not a number", path) from None
        if not width:
            width = len(values)
        if len(values) != width:
            raise DataError(
                f"line {number}: {len(values)} values where {width} were expected", path
            )
        rows.append(values)
    if not rows:
        raise DataError("holds no data rows", path)
    return np.asarray(rows, dtype=np.float32), header


def _is_number(text: str) -> bool:
    try:
        _parse_float(text)
    except ValueError:
        return False
    return True


def _check_npy_header(path: Path) -> None:
    """Refuse a ``.npy`` whose header promises more data than the file holds, before numpy
    allocates room for it (a damaged or hostile header can declare terabytes)."""
    fmt = np.lib.format
    try:
        with path.open("rb") as fh:
            version = fmt.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(fh)
            else:
                shape, _, dtype = fmt.read_array_header_2_0(fh)
            data_start = fh.tell()
    except Exception as exc:  # numpy raises ValueError, SyntaxError, TokenError, TypeError …
        raise DataError(f"cannot read .npy ({type(exc).__name__}: {exc})", path) from None
    if dtype.hasobject:
        raise DataError("holds Python objects, not numbers", path)
    declared = math.prod(shape) * dtype.itemsize
    available = path.stat().st_size - data_start
    if declared > available:
        raise DataError(
            f"is truncated or damaged: its header declares shape {shape} of {dtype} "
            f"({declared} bytes) but only {max(available, 0)} bytes follow",
            path,
        )


def _read_npy(path: Path) -> np.ndarray:
    _check_npy_header(path)
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # whatever a damaged file makes numpy raise
        raise DataError(f"cannot read .npy ({type(exc).__name__}: {exc})", path) from None
    if not isinstance(array, np.ndarray):
        raise DataError("is not a single numpy array", path)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DataError(f"holds {array.dtype} values, not numbers", path)
    if np.iscomplexobj(array):
        raise DataError(f"holds complex {array.dtype} values; a sensor channel is real", path)
    if array.ndim == 1:
        array = array[:, None]
    elif array.ndim != 2:
        raise DataError(f"has shape {array.shape}; expected (n,) or (n, channels)", path)
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"holds no samples (shape {array.shape})", path)
    with np.errstate(over="ignore"):  # beyond float32's range is ±Inf, kept like any NaN/Inf
        return np.ascontiguousarray(array, dtype=np.float32)


def read_sensor(path: str | Path, channels: int | None = None) -> np.ndarray:
    """Read a sensor recording as float32 ``(n, C)``: rows are samples, columns are channels.

    ``.csv`` files may start with a header row (recognised as a first row that does not parse as
    numbers) and may be comma, semicolon, tab or whitespace separated; ``.npy`` files are 1-D (one
    channel) or 2-D. ``channels``, when given, is the channel count every recording must have.
    NaN/Inf are kept. Raises ``DataError`` naming the file (and the line) for anything malformed.
    """
    array, _ = _read_sensor_columns(Path(path))
    if channels is not None and array.shape[1] != channels:
        raise DataError(f"has {array.shape[1]} channels (columns); expected {channels}", path)
    return array


def _read_sensor_columns(path: Path) -> tuple[np.ndarray, list[str] | None]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".npy":
        return _read_npy(path), None
    raise DataError(
        f"unknown sensor file type '{suffix}'; expected one of {', '.join(SENSOR_EXTENSIONS)}",
        path,
    )


@dataclass(frozen=True)
class SensorSpec:
    """What a model takes of a sensor recording: its rate, and its channels by name and unit."""

    sample_rate: int | None = None
    channels: int | None = None
    names: tuple[str, ...] | None = None
    units: tuple[str | None, ...] | None = None

    @classmethod
    def of(cls, model: Any) -> SensorSpec:
        """The spec of a loaded model (a bundle or checkpoint embedder)."""
        names = getattr(model, "channel_names", None)
        units = getattr(model, "channel_units", None)
        return cls(
            int(model.sample_rate),
            int(model.channels),
            tuple(names) if names else None,
            tuple(units) if units else None,
        )


def reading_spec(model: Any) -> SensorSpec | None:
    """The :class:`SensorSpec` recordings are read with for ``model``; None for audio models."""
    return SensorSpec.of(model) if model.modality == "sensor" else None


@dataclass
class SensorNotes:
    """What reading one recording for a model found worth saying (one line each)."""

    order: str | None = None
    gravity: str | None = None


def _key(name: str) -> str:
    return name.strip().casefold()


def column_order(columns: Sequence[str], wanted: Sequence[str], where: object) -> list[int] | None:
    """The indices of ``wanted``'s channels among named ``columns`` (matched without case), or
    None when the names include none of them; ``DataError`` (naming ``where``) when they name
    some but not all."""
    index = {_key(c): i for i, c in enumerate(columns)}
    if len(index) != len(columns):
        raise DataError(f"its column names repeat a name: {', '.join(columns)}", where)
    if not any(_key(w) in index for w in wanted):
        return None
    missing = [w for w in wanted if _key(w) not in index]
    if missing:
        raise DataError(
            f"its columns ({', '.join(columns)}) lack the channel(s) {', '.join(missing)}; the "
            f"model takes {', '.join(wanted)}",
            where,
        )
    return [index[_key(w)] for w in wanted]


def _match_columns(
    x: np.ndarray, columns: Sequence[str] | None, wanted: Sequence[str], path: Path
) -> np.ndarray | None:
    """``x``'s columns in the order of ``wanted`` when ``columns`` names any of them, else None."""
    order = None if columns is None else column_order(columns, wanted, path)
    return None if order is None else x[:, order]


def _source_units(
    spec: object, declared: Sequence[str] | None, wanted: Sequence[str] | None, count: int
) -> list[str | None]:
    """The declared unit of each channel, in the model's order (``wanted``)."""
    names = list(declared or wanted or [])
    units = declared_units(spec, names or None, len(names) or count)
    if not names or wanted is None:
        return units
    by_name = {_key(n): u for n, u in zip(names, units, strict=True)}
    return [by_name.get(_key(w)) for w in wanted]


def dataset_units(info: DatasetInfo, names: Sequence[str] | None) -> list[str | None] | None:
    """The units ``info`` declares, one per channel in the order of ``names`` (default: the
    dataset's channels); None when it declares none."""
    wanted = list(names) if names else info.channels
    if info.units is None or not wanted:
        return None
    try:
        return _source_units(info.units, info.channels, wanted, len(wanted))
    except ConfigError as exc:
        raise DataError(f"units: {exc}", info.root / DATASET_TOML) from None


def dataset_toml_for(path: Path) -> Path | None:
    """The ``dataset.toml`` that describes a recording outside a scanned dataset: beside it, or in
    the dataset folder above its label folder (``DIR/dataset.toml`` for ``DIR/<label>/file``)."""
    for folder in (path.parent, path.parent.parent):
        candidate = folder / DATASET_TOML
        if candidate.is_file():
            return candidate
    return None


def read_recording_for(
    path: str | Path, spec: SensorSpec, *, units: object = None, setting: str | None = None
) -> np.ndarray:
    """Read one sensor recording for a model, as its dataset's ``dataset.toml`` (found by
    :func:`dataset_toml_for`) describes it: its rate, column names and units (``units``, when
    given, instead; ``setting`` says where they are set). Notices are logged naming the file."""
    path = Path(path)
    toml = dataset_toml_for(path)
    meta = read_dataset_toml(toml) if toml is not None else {}
    rate, channels = meta.get("sample_rate"), meta.get("channels")
    if setting is None:
        setting = f"units in {toml}" if toml else f"units in a {DATASET_TOML} beside the file"
    x, notes = read_sensor_for(
        path,
        spec,
        sample_rate=rate if isinstance(rate, int) else None,
        channels=[str(c) for c in channels] if isinstance(channels, list) else None,
        units=meta.get("units") if units is None else units,
        setting=setting,
    )
    for line in (notes.order, notes.gravity):
        if line:
            log.warning("%s: %s", path, line)
    return x


def read_sensor_for(
    path: str | Path,
    spec: SensorSpec,
    *,
    sample_rate: int | None = None,
    channels: Sequence[str] | None = None,
    units: object = None,
    setting: str = "units in dataset.toml",
) -> tuple[np.ndarray, SensorNotes]:
    """Read a sensor recording and bring it to a model's ``spec`` (see the module docstring).

    ``sample_rate``, ``channels`` and ``units`` are what the recording's dataset declares (its
    rate, the names of its columns when the file has no header, its units); ``setting`` names
    where units are declared, for the gravity warning.
    """
    path = Path(path)
    x, header = _read_sensor_columns(path)
    notes = SensorNotes()
    wanted = list(spec.names) if spec.names else list(channels) if channels else None
    if wanted is not None:
        matched = _match_columns(x, header, wanted, path)
        if matched is None and channels:
            if x.shape[1] != len(channels):
                raise DataError(
                    f"has {x.shape[1]} channels (columns); expected {len(channels)} "
                    f"({DATASET_TOML} names {', '.join(channels)})",
                    path,
                )
            matched = _match_columns(x, channels, wanted, path)
        if matched is None:
            what = "has a header naming none of them"
            if header is None:
                what = "has no header" if path.suffix.lower() == ".csv" else "names no columns"
            notes.order = f"{what}: columns taken in the model's order ({', '.join(wanted)})"
        else:
            x = matched
    count = spec.channels or (len(wanted) if wanted else None)
    if count is not None and x.shape[1] != count:
        raise DataError(f"has {x.shape[1]} channels (columns); expected {count}", path)
    try:
        have = _source_units(units, channels, wanted, x.shape[1])
        target = list(spec.units) if spec.units else None
        effective = [h if h is not None else t for h, t in zip(have, target or have, strict=True)]
        notes.gravity = gravity_warning(x, effective, wanted, setting)
        factors = conversion_factors(have, target)
    except ConfigError as exc:
        raise DataError(str(exc), path) from None
    if factors is not None:
        x = x * factors
    if sample_rate is not None and spec.sample_rate is not None and sample_rate != spec.sample_rate:
        x = _resample_sensor(x, sample_rate, spec.sample_rate, path)
    return np.ascontiguousarray(x, dtype=np.float32), notes


def _resample_sensor(x: np.ndarray, rate: int, target: int, path: Path) -> np.ndarray:
    out = soxr.resample(np.ascontiguousarray(x, dtype=np.float32), rate, target, quality="HQ")
    if out.shape[0] == 0:
        raise DataError(
            f"is too short: {x.shape[0]} sample(s) at {rate} Hz make no sample at {target} Hz", path
        )
    return np.asarray(out, dtype=np.float32).reshape(-1, x.shape[1])


# --------------------------------------------------------------------------------------------------
# dataset folders


def parse_group(stem: str) -> str | None:
    """The group of an item stem ``GROUP__NAME`` (None when the stem has no group)."""
    group, sep, name = stem.partition(GROUP_SEPARATOR)
    return group if sep and group and name else None


def is_safe_label(label: str) -> bool:
    """Whether ``label`` can be used as a folder name, metric key and payload field as it is."""
    return bool(_SAFE_LABEL.match(label))


def modality_of(path: Path) -> str | None:
    """``"audio"`` or ``"sensor"`` from a file's extension, None for anything else."""
    suffix = path.suffix.lower()
    if suffix in AUDIO_EXTENSIONS or suffix in MPEG_AUDIO_EXTENSIONS:
        return "audio"
    if suffix in SENSOR_EXTENSIONS:
        return "sensor"
    return None


def _log_not_recordings(files: list[Path], where: Path) -> None:
    """One line for every file of a scan that is not a recording (``notes.txt``, ``cover.jpg``)."""
    if not files:
        return
    names = [str(f.relative_to(where)) if f.is_relative_to(where) else str(f) for f in files]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    log.warning(
        "%s: skipped %d file(s) that are not recordings (%s): %s",
        where,
        len(files),
        " ".join(RECORDING_EXTENSIONS),
        shown,
    )


def list_recordings(folder: str | Path, modality: str | None = None) -> list[Path]:
    """The recordings directly in ``folder``, sorted: the clips of one label given as a folder.

    Files that are not recordings of ``modality`` (any modality when None), hidden files and
    nested folders are skipped with one logged line; hidden folders are ignored. A folder without a recording is a
    ``DataError``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("is not a folder", folder)
    found: list[Path] = []
    others: list[Path] = []
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.startswith(".") and not item.is_file():
            continue
        kind = modality_of(item) if item.is_file() and not _is_hidden_file(item) else None
        if kind is not None and (modality is None or kind == modality):
            found.append(item)
        else:
            others.append(item)
    _log_not_recordings(others, folder)
    if not found:
        wanted = {"audio": AUDIO_EXTENSIONS + MPEG_AUDIO_EXTENSIONS, "sensor": SENSOR_EXTENSIONS}
        extensions = wanted.get(modality or "", RECORDING_EXTENSIONS)
        raise DataError(f"holds no recordings ({' '.join(extensions)})", folder)
    return found


@dataclass(frozen=True)
class Recording:
    """One file of a dataset folder: one recording of one label.

    ``source`` is the folder it comes from when that folder lays out its channels differently
    from the dataset it was pooled into (see ``pool_datasets`` in training); it is read as its own
    folder declares and brought to the pooled dataset's channel order, units and rate.
    """

    path: Path
    label: str
    group: str | None = None
    source: DatasetInfo | None = field(default=None, compare=False, repr=False)


@dataclass
class DatasetInfo:
    """What ``scan_dataset`` found in a dataset folder."""

    root: Path
    modality: str
    sample_rate: int | None
    channels: list[str] | None
    recordings: list[Recording]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    units: list[str] | dict[str, str] | None = None

    @property
    def labels(self) -> list[str]:
        """The labels that have at least one recording, sorted."""
        return sorted({r.label for r in self.recordings})

    @property
    def groups(self) -> list[str]:
        """The groups that occur, sorted."""
        return sorted({r.group for r in self.recordings if r.group is not None})

    def label_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.recordings:
            counts[r.label] = counts.get(r.label, 0) + 1
        return dict(sorted(counts.items()))

    def __len__(self) -> int:
        return len(self.recordings)


def _check_toml_units(units: object, channels: object, path: Path) -> None:
    """Check the unit names (and, when the channels are named, the layout) of ``units``."""
    if units is None:
        return
    names = channels if isinstance(channels, list) else None
    try:
        if names is not None:
            declared_units(units, names, len(names))
        elif isinstance(units, dict):  # channel names are checked against the model's later
            for unit in units.values():
                canonical_unit(unit)
        else:
            declared_units(units, None, len(units) if isinstance(units, list) else 0)
    except ConfigError as exc:
        raise DataError(f"units: {exc}", path) from None


def read_dataset_toml(path: Path) -> dict[str, object]:
    """Read and check a ``dataset.toml``; unknown keys and wrong types are ``DataError``."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"is not valid TOML ({exc})", path) from exc
    except OSError as exc:
        raise DataError(f"cannot be read ({exc})", path) from exc
    unknown = sorted(set(data) - set(TOML_KEYS))
    if unknown:
        raise DataError(
            f"unknown key(s) {', '.join(unknown)}; allowed keys: {', '.join(TOML_KEYS)}", path
        )
    modality = data.get("modality")
    if modality is not None and modality not in MODALITIES:
        raise DataError(f"modality must be 'audio' or 'sensor', got {modality!r}", path)
    rate = data.get("sample_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0):
        raise DataError(f"sample_rate must be a positive integer (Hz), got {rate!r}", path)
    channels = data.get("channels")
    if channels is not None:
        if (
            not isinstance(channels, list)
            or not channels
            or not all(isinstance(c, str) and c.strip() for c in channels)
        ):
            raise DataError(f"channels must be a non-empty list of names, got {channels!r}", path)
        if len(set(channels)) != len(channels):
            raise DataError(f"channels has repeated names: {channels!r}", path)
        if modality == "audio":
            raise DataError(
                "channels applies to sensor datasets only (audio is mixed to mono)", path
            )
    _check_toml_units(data.get("units"), channels, path)
    return data


def _is_hidden_file(path: Path) -> bool:
    return path.name.startswith(".") and path.is_file()


def _is_ignored(path: Path, top_level: bool) -> bool:
    name = path.name
    if name.startswith(".") or name in _IGNORED_NAMES:
        return True
    return top_level and path.is_file() and name.lower().startswith(_DOC_PREFIXES)


def scan_dataset(root: str | Path, on_error: OnError = "fail") -> DatasetInfo:
    """Find every recording of the dataset folder ``root`` (sorted by label, then file name).

    See the module docstring for the layout and for what ``on_error`` covers.
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    root = Path(root)
    if not root.is_dir():
        raise DataError("is not a folder (a dataset folder holds DIR/<label>/<item> files)", root)
    toml_path = root / DATASET_TOML
    meta = read_dataset_toml(toml_path) if toml_path.is_file() else {}

    skipped: list[tuple[Path, str]] = []

    def problem(path: Path, reason: str) -> None:
        if on_error == "fail":
            raise DataError(reason, path)
        log.warning("skipping %s: %s", path, reason)
        skipped.append((path, reason))

    recordings: list[Recording] = []
    not_recordings: list[Path] = []
    found: dict[str, Path] = {}  # modality -> first file of that modality
    hidden: list[Path] = []  # .DS_Store and the like: named in the line, not listed as skipped
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if _is_hidden_file(entry):
            hidden.append(entry)
            continue
        if _is_ignored(entry, top_level=True):
            continue
        if not entry.is_dir() and modality_of(entry) is None:
            not_recordings.append(entry)
            continue
        if not entry.is_dir():
            problem(
                entry, "is a file directly in the dataset folder; put recordings in DIR/<label>/"
            )
            continue
        label = entry.name
        if not is_safe_label(label):
            problem(
                entry,
                f"label '{label}' is not a safe name: use letters, digits and . _ - + @ = "
                "(starting with a letter or digit)",
            )
            continue
        items: list[Recording] = []
        folder_modalities: dict[str, Path] = {}
        for item in sorted(entry.iterdir(), key=lambda p: p.name):
            if _is_hidden_file(item):
                hidden.append(item)
                continue
            if _is_ignored(item, top_level=False):
                continue
            if item.is_dir():
                problem(
                    item, "is a nested folder; recordings must be files directly in DIR/<label>/"
                )
                continue
            kind = modality_of(item)
            if kind is None:
                not_recordings.append(item)
                continue
            folder_modalities.setdefault(kind, item)
            items.append(Recording(path=item, label=label, group=parse_group(item.stem)))
        if len(folder_modalities) > 1:
            raise DataError(
                "mixes audio and sensor files "
                f"({folder_modalities['audio'].name}, {folder_modalities['sensor'].name}); "
                "a dataset folder holds one modality",
                entry,
            )
        if not items:
            problem(entry, "label folder holds no recordings")
            continue
        for kind, first in folder_modalities.items():
            found.setdefault(kind, first)
        recordings.extend(items)

    _log_not_recordings(sorted(not_recordings + hidden), root)
    skipped.extend((path, "is not a recording") for path in not_recordings)
    if len(found) > 1:
        raise DataError(
            f"mixes audio files ({found['audio']}) and sensor files ({found['sensor']}); "
            "a dataset folder holds one modality",
            root,
        )
    if not recordings:
        raise DataError(
            "holds no recordings; expected DIR/<label>/<item> with item extensions "
            f"{', '.join(RECORDING_EXTENSIONS)}",
            root,
        )
    modality = next(iter(found))
    declared = meta.get("modality")
    if declared is not None and declared != modality:
        raise DataError(
            f"{DATASET_TOML} says modality = '{declared}' but the files are {modality} files", root
        )
    channels = meta.get("channels")
    if modality == "audio" and channels is not None:
        raise DataError(f"{DATASET_TOML} gives channels, but this is an audio dataset", root)
    units = meta.get("units")
    if modality == "audio" and units is not None:
        raise DataError(f"{DATASET_TOML} gives units, but this is an audio dataset", root)
    rate = meta.get("sample_rate")
    return DatasetInfo(
        root=root,
        modality=modality,
        sample_rate=int(rate) if isinstance(rate, int) else None,
        channels=[str(c) for c in channels] if isinstance(channels, list) else None,
        recordings=recordings,
        skipped=skipped,
        units=units if isinstance(units, list | dict) else None,
    )


def load_recording(
    rec: Recording,
    info: DatasetInfo,
    sample_rate: int | None = None,
    spec: SensorSpec | None = None,
) -> np.ndarray:
    """Load one recording of ``info``: audio ``(n,)`` at ``sample_rate`` or sensor ``(n, C)``.

    ``sample_rate`` is required for audio. A sensor recording is brought to ``spec`` (a model's
    channels and units; by default the dataset's own channels) and resampled from the dataset's
    declared rate to ``sample_rate`` (or the spec's rate).
    """
    array, notes = _load(rec, info, sample_rate, spec)
    for line in (notes.order, notes.gravity):
        if line:
            log.warning("%s: %s", rec.path, line)
    return array


def _load(
    rec: Recording, info: DatasetInfo, sample_rate: int | None, spec: SensorSpec | None
) -> tuple[np.ndarray, SensorNotes]:
    if info.modality == "audio":
        if sample_rate is None:
            raise ValueError("load_recording needs a sample_rate for audio recordings")
        return read_audio(rec.path, sample_rate), SensorNotes()
    source = rec.source or info
    if spec is None:
        spec = SensorSpec(channels=len(info.channels) if info.channels else None)
        if rec.source is not None:  # pooled from a folder laid out otherwise: to info's layout
            units = dataset_units(info, info.channels)
            spec = SensorSpec(
                info.sample_rate,
                spec.channels,
                tuple(info.channels or ()),
                tuple(units) if units else None,
            )
    if sample_rate is not None:
        spec = dataclasses.replace(spec, sample_rate=int(sample_rate))
    return read_sensor_for(
        rec.path,
        spec,
        sample_rate=source.sample_rate,
        channels=source.channels,
        units=source.units,
        setting=f"units in {source.root / DATASET_TOML}",
    )


class _Notices:
    """Says each kind of sensor notice once per run (with its first recording), then a count."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, path: Path, notes: SensorNotes) -> None:
        for kind, line in (("order", notes.order), ("gravity", notes.gravity)):
            if line:
                self.counts[kind] = self.counts.get(kind, 0) + 1
                if self.counts[kind] == 1:
                    log.warning("%s: %s", path, line)

    def summary(self, total: int) -> None:
        for kind, count in self.counts.items():
            if count > 1:
                what = "column order" if kind == "order" else "gravity check"
                log.warning("the same %s notice applies to %d of %d recordings", what, count, total)


def iter_recordings(
    info: DatasetInfo,
    sample_rate: int | None = None,
    on_error: OnError = "fail",
    progress: bool = True,
    spec: SensorSpec | None = None,
) -> Iterator[tuple[Recording, np.ndarray]]:
    """Yield ``(recording, array)`` for every recording of ``info``, with a progress bar.

    A recording that cannot be read raises ``DataError`` (``on_error="fail"``) or is left out,
    logged and appended to ``info.skipped`` (``"skip"``). Sensor recordings are read for ``spec``
    (see :func:`load_recording`; its notices are said once per run) and must all have the same
    number of channels (the first one read sets it when neither names the channels).
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    width: int | None = len(info.channels) if info.channels else None
    if spec is not None and spec.channels:
        width = spec.channels
    notices = _Notices()
    bar = tqdm(
        info.recordings,
        desc=f"reading {info.root.name}",
        unit="rec",
        disable=not progress,
        leave=False,
    )
    for rec in bar:
        try:
            array, notes = _load(rec, info, sample_rate, spec)
            if array.ndim == 2:
                if width is None:
                    width = int(array.shape[1])
                elif array.shape[1] != width:
                    raise DataError(
                        f"has {array.shape[1]} channels; the other recordings have {width}",
                        rec.path,
                    )
                bad = count_non_finite(array)
                if bad:
                    log.info("%s: %d NaN/Inf values kept", rec.path, bad)
        except DataError as exc:
            if on_error == "fail":
                raise
            log.warning("skipping %s", exc)
            info.skipped.append((rec.path, str(exc)))
            continue
        notices.add(rec.path, notes)
        yield rec, array
    notices.summary(len(info.recordings))
