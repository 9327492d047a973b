"""IMU dataset folders re-rendered as other devices would record them: turned, and in other units.

A motion model trained on one phone held one way can learn that phone's axes and units instead of
the movement. :func:`render_imu` re-writes held-out sensor folders with every recording's
accelerometer and gyroscope turned by one random mounting rotation (by a fixed angle about a random
axis, or uniform over all orientations) and converted to other units (m/s², deg/s), its
``dataset.toml`` saying so, so that ``edgesiam eval`` on the copy shows what a device worn
differently costs and exercises the readers' unit conversion. Several source folders are merged
into one (e.g. an archive's train and test splits, for more trials).

Each file's rotation comes from the seed and the file's path within its folder (as the audio
channels' randomness does), so a rendering is the same whatever order it is made in. Workstation
only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edgesiam.argparsing import add_quiet
from edgesiam.core.rotations import rotation_matrices, uniform_rotations
from edgesiam.core.units import ACCELERATION, ANGULAR_RATE, UNITS, canonical_unit
from edgesiam.data.channels import file_seed
from edgesiam.data.readers import DatasetInfo, dataset_units, iter_recordings, scan_dataset
from edgesiam.errors import DataError

RENDER_FILE = "RENDER.json"
RENDER_VERSION = 1


@dataclass(frozen=True)
class ImuRendering:
    """What to do to each recording: ``rotation_deg`` (None: keep the axes; 180 or more: uniform
    over all orientations), and the accelerometer's and gyroscope's new units (None: keep)."""

    rotation_deg: float | None = None
    acc_unit: str | None = None
    gyro_unit: str | None = None
    seed: int = 0


def _triads(info: DatasetInfo, units: Sequence[str | None]) -> dict[str, list[int]]:
    """Channel indices of the accelerometer and gyroscope: by declared unit, else by name
    (``acc*`` and ``gyro*``)."""
    names = [c.casefold() for c in info.channels or []]
    found: dict[str, list[int]] = {ACCELERATION: [], ANGULAR_RATE: []}
    for i, unit in enumerate(units):
        if unit is not None:
            found[UNITS[unit][0]].append(i)
        elif i < len(names) and names[i].startswith(("acc", "gyro")):
            found[ACCELERATION if names[i].startswith("acc") else ANGULAR_RATE].append(i)
    for quantity, columns in found.items():
        if len(columns) != 3:
            raise DataError(
                f"needs 3 {quantity} channels to turn, found {len(columns)}: declare channels "
                'and units in dataset.toml (e.g. units = ["g", "g", "g", "rad/s", ...])',
                info.root,
            )
    return found


def _declared(info: DatasetInfo) -> list[str | None]:
    if not info.channels:
        raise DataError("names no channels in dataset.toml", info.root)
    return dataset_units(info, info.channels) or [None] * len(info.channels)


def _rotation(rendering: ImuRendering, relative: str) -> np.ndarray:
    if rendering.rotation_deg is None:
        return np.eye(3)
    rng = np.random.default_rng(file_seed(rendering.seed, relative))
    if rendering.rotation_deg >= 180.0:
        return np.asarray(uniform_rotations(1, rng)[0])
    axis = rng.standard_normal(3)
    turn = axis / np.linalg.norm(axis) * np.deg2rad(rendering.rotation_deg)
    return np.asarray(rotation_matrices(turn)[0])


def _target_units(units: list[str | None], rendering: ImuRendering) -> list[str | None]:
    out = list(units)
    for quantity, unit in ((ACCELERATION, rendering.acc_unit), (ANGULAR_RATE, rendering.gyro_unit)):
        if unit is None:
            continue
        unit = canonical_unit(unit)
        if UNITS[unit][0] != quantity:
            raise DataError(f"{unit} is not a unit of {quantity}")
        columns = [i for i, u in enumerate(units) if u is not None and UNITS[u][0] == quantity]
        if not columns:
            raise DataError(f"no channel declares a unit of {quantity} to convert to {unit}")
        for i in columns:
            out[i] = unit
    return out


def render_recording(
    x: np.ndarray,
    triads: dict[str, list[int]],
    rotation: np.ndarray,
    have: Sequence[str | None],
    want: Sequence[str | None],
) -> np.ndarray:
    """One recording ``(n, C)``: each triad turned by ``rotation`` (sensor axes → new axes: the
    new reading is ``rotation @ old``), then each channel from ``have`` to ``want`` units."""
    out = np.array(x, dtype=np.float64)
    for columns in triads.values():
        out[:, columns] = out[:, columns] @ rotation.T
    for i, (a, b) in enumerate(zip(have, want, strict=True)):
        if a is not None and b is not None and a != b:
            out[:, i] *= UNITS[a][1] / UNITS[b][1]
    return out.astype(np.float32)


def _toml(info: DatasetInfo, units: list[str | None], note: str) -> str:
    lines = [f"# {note}", 'modality = "sensor"', f"sample_rate = {info.sample_rate}"]
    lines.append("channels = [" + ", ".join(f'"{c}"' for c in info.channels or []) + "]")
    declared = [f'"{c}" = "{u}"' for c, u in zip(info.channels or [], units, strict=True) if u]
    if declared:
        lines.append("units = { " + ", ".join(declared) + " }")
    return "\n".join(lines) + "\n"


def render_imu(
    sources: Sequence[Path], output: Path, rendering: ImuRendering, progress: bool = True
) -> int:
    """Render every recording of the sensor folders ``sources`` into the dataset folder ``output``.

    Sources must agree on rate, channels and units (the first one's are kept, converted as
    asked). A folder already rendered from the same sources with the same settings is left as it
    is; returns the number of files written (0 then).
    """
    infos = [scan_dataset(s) for s in sources]
    first = infos[0]
    if first.modality != "sensor":
        raise DataError("render-imu takes sensor dataset folders", first.root)
    units = _declared(first)
    for other in infos[1:]:
        if (other.sample_rate, other.channels, _declared(other)) != (
            first.sample_rate,
            first.channels,
            units,
        ):
            raise DataError(f"differs in rate, channels or units from {first.root}", other.root)
    triads = _triads(first, units) if rendering.rotation_deg is not None else {}
    want = _target_units(units, rendering)
    stamp = {
        "version": RENDER_VERSION,
        **asdict(rendering),
        "sources": [s.name for s in sources],
        "recordings": sum(len(i.recordings) for i in infos),
    }
    done = output / RENDER_FILE
    if done.is_file() and json.loads(done.read_text()) == stamp:
        return 0
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    count = 0
    bar = tqdm(total=stamp["recordings"], desc=output.name, unit="rec", disable=not progress)
    for info in infos:
        for rec, x in iter_recordings(info, progress=False):
            relative = f"{info.root.name}/{rec.path.relative_to(info.root).as_posix()}"
            y = render_recording(x, triads, _rotation(rendering, relative), units, want)
            target = partial / rec.label / (rec.path.stem + ".npy")
            if target.exists():
                raise DataError(f"two sources hold {rec.label}/{target.name}", rec.path)
            target.parent.mkdir(exist_ok=True)
            np.save(target, y)
            count += 1
            bar.update()
    bar.close()
    note = f"{', '.join(str(s.name) for s in sources)} re-rendered: {describe(rendering)}"
    (partial / "dataset.toml").write_text(_toml(first, want, note), encoding="utf-8")
    (partial / RENDER_FILE).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(output, ignore_errors=True)
    partial.rename(output)
    return count


def describe(rendering: ImuRendering) -> str:
    """A short phrase for a rendering, e.g. ``turned 90° about a random axis, acc in m/s^2``."""
    parts = []
    if rendering.rotation_deg is not None:
        parts.append(
            "turned uniformly at random"
            if rendering.rotation_deg >= 180.0
            else f"turned {rendering.rotation_deg:g}° about a random axis"
        )
    if rendering.acc_unit:
        parts.append(f"acc in {rendering.acc_unit}")
    if rendering.gyro_unit:
        parts.append(f"gyro in {rendering.gyro_unit}")
    return ", ".join(parts) or "unchanged"


def _rotation_arg(text: str) -> float:
    if text == "uniform":
        return 180.0
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected degrees or 'uniform', got {text!r}") from None
    if not 0.0 <= value <= 180.0:
        raise argparse.ArgumentTypeError(f"a rotation is 0 to 180 degrees, got {value:g}")
    return value


def cmd_render_imu(args: argparse.Namespace) -> int:
    rendering = ImuRendering(args.rotation, args.acc_unit, args.gyro_unit, args.seed)
    sources = [Path(s) for s in args.data]
    written = render_imu(sources, Path(args.output), rendering, progress=not args.quiet)
    state = f"{written} recordings rendered" if written else "already rendered"
    print(f"{describe(rendering)}: {state} in {args.output}")
    return 0


def add_render_imu_parser(data_sub: Any) -> None:
    """``edgesiam data render-imu``."""
    p = data_sub.add_parser(
        "render-imu",
        help="re-record sensor dataset folders as another device would: turned, other units",
        description=textwrap.dedent(
            """
            Write every recording of the sensor folder(s) DATA_DIR into one dataset folder OUT
            (same labels and file stems), with the accelerometer and gyroscope turned by one random
            mounting rotation per recording (--rotation: degrees about a random axis, or
            'uniform' over all orientations) and converted to other units (--acc-unit,
            --gyro-unit; OUT/dataset.toml declares them, so readers convert back). With neither,
            the folders are merged as they are (e.g. an archive's train and test splits).
            `edgesiam eval MODEL OUT` then shows what a device worn otherwise costs.

            Examples:
              edgesiam data render-imu data/hapt/test --rotation 90 -o data/ood/motion/hapt-rot90
              edgesiam data render-imu data/hapt/test --acc-unit m/s^2 --gyro-unit deg/s \\
                  -o data/ood/motion/hapt-si
              edgesiam data render-imu data/basicmotions/train data/basicmotions/test \\
                  -o data/ood/motion/basicmotions-all
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", nargs="+", metavar="DATA_DIR", help="sensor dataset folder(s)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="dataset folder to write")
    p.add_argument(
        "--rotation", type=_rotation_arg, metavar="DEG|uniform", help="mounting rotation"
    )
    p.add_argument("--acc-unit", choices=["g", "m/s^2"], help="accelerometer unit of OUT")
    p.add_argument("--gyro-unit", choices=["rad/s", "deg/s"], help="gyroscope unit of OUT")
    p.add_argument("--seed", type=int, default=0, help="seed of the rotations (default 0)")
    add_quiet(p, help="no progress bar")
    p.set_defaults(func=cmd_render_imu)
