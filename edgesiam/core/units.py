"""Physical units of sensor channels: naming them, converting between them, and a sanity check.

A bundle states the unit of each of its channels (``channel_units`` in the manifest); a dataset
(``dataset.toml``) or a runtime source may declare the units its samples are in. Samples are
converted to the bundle's units before the front-end, so a stream in m/s² matches a gallery
enrolled in g. A declaration is a list (one unit per channel, in order) or a table from channel
name to unit; a channel without a declared unit is taken to be in the bundle's unit already.

Known units (aliases in brackets): acceleration ``g``, ``m/s^2`` (``m/s2``, ``m/s²``); angular
rate ``rad/s``, ``deg/s`` (``dps``, ``°/s``). Other channels carry no unit (``None``) and are never
converted.

Gravity makes a check possible: an accelerometer at rest reads about 1 g. :func:`gravity_warning`
says so when a recording's resting magnitude does not fit its declared units (9.8 "g" is a stream
in m/s²). numpy only: the readers and the device runtime both use this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from edgesiam.errors import ConfigError

__all__ = [
    "STANDARD_GRAVITY",
    "UNITS",
    "GravityCheck",
    "canonical_unit",
    "conversion_factors",
    "declared_units",
    "gravity_warning",
    "resting_magnitude",
]

STANDARD_GRAVITY: Final = 9.80665
"""m/s² in one g."""

ACCELERATION: Final = "acceleration"
ANGULAR_RATE: Final = "angular rate"

UNITS: Final[dict[str, tuple[str, float]]] = {
    "g": (ACCELERATION, STANDARD_GRAVITY),
    "m/s^2": (ACCELERATION, 1.0),
    "rad/s": (ANGULAR_RATE, 1.0),
    "deg/s": (ANGULAR_RATE, math.pi / 180.0),
}
"""Canonical unit → (quantity, size in the quantity's SI unit)."""

_ALIASES: Final = {"m/s2": "m/s^2", "m/s²": "m/s^2", "dps": "deg/s", "°/s": "deg/s"}

_PLAUSIBLE_G: Final = (0.5, 2.0)
"""Resting accelerometer magnitude, in g, that passes the gravity check."""
_REST_BLOCK: Final = 16
"""Samples per block when looking for the quietest stretches of a recording."""

Units = list[str | None]


def canonical_unit(name: object) -> str:
    """The canonical spelling of a unit name; ``ConfigError`` lists the known ones."""
    text = str(name).strip() if isinstance(name, str) else ""
    unit = _ALIASES.get(text, text)
    if unit not in UNITS:
        raise ConfigError(f"unknown unit {name!r}; known units: {', '.join(UNITS)}")
    return unit


def declared_units(spec: object, names: Sequence[str] | None, count: int) -> Units:
    """A units declaration (a list, one per channel, or a table by channel name) → one canonical
    unit (or None) per channel; ``names`` are the channels' names, ``count`` their number."""
    if spec is None:
        return [None] * count
    if isinstance(spec, Mapping):
        known = list(names or [])
        unknown = [str(k) for k in spec if k not in known]
        if unknown:
            raise ConfigError(
                f"units names unknown channel(s) {', '.join(unknown)}; the channels are "
                f"{', '.join(known) if known else 'not named'}"
            )
        return [canonical_unit(spec[n]) if n in spec else None for n in known]
    if isinstance(spec, list | tuple):
        if len(spec) != count:
            raise ConfigError(f"units lists {len(spec)} unit(s) for {count} channel(s)")
        return [None if u is None else canonical_unit(u) for u in spec]
    raise ConfigError(
        f"units must be a list (one per channel) or a table by channel name: {spec!r}"
    )


def conversion_factors(
    source: Sequence[str | None], target: Sequence[str | None] | None
) -> npt.NDArray[np.float32] | None:
    """Per-channel factors taking ``source`` units to ``target`` units; None when nothing changes.

    A channel whose unit is unknown on either side is left as it is. Units of different quantities
    (g for a gyroscope channel) are a ``ConfigError``.
    """
    if target is None:
        return None
    if len(source) != len(target):
        raise ConfigError(f"{len(source)} declared unit(s) for {len(target)} channel(s)")
    factors = np.ones(len(source), dtype=np.float64)
    for i, (have, want) in enumerate(zip(source, target, strict=True)):
        if have is None or want is None:
            continue
        (kind_have, size_have), (kind_want, size_want) = UNITS[have], UNITS[want]
        if kind_have != kind_want:
            raise ConfigError(
                f"channel {i + 1} is declared in {have} ({kind_have}) but the bundle takes "
                f"{want} ({kind_want})"
            )
        factors[i] = size_have / size_want
    if np.all(factors == 1.0):
        return None
    return factors.astype(np.float32)


def _accelerometer(units: Sequence[str | None]) -> list[int]:
    return [i for i, u in enumerate(units) if u is not None and UNITS[u][0] == ACCELERATION]


def resting_magnitude(acc: npt.ArrayLike) -> float | None:
    """The accelerometer's magnitude where it moves least: the median magnitude of the quietest
    quarter of blocks of :data:`_REST_BLOCK` samples (all samples for a short recording).

    ``acc`` is ``(n, 3)``; rows with NaN/Inf are left out. None when nothing is left.
    """
    a = np.asarray(acc, dtype=np.float64)
    magnitude = np.linalg.norm(a[np.all(np.isfinite(a), axis=1)], axis=1)
    if magnitude.size == 0:
        return None
    blocks = magnitude.size // _REST_BLOCK
    if blocks < 4:
        return float(np.median(magnitude))
    grid = magnitude[: blocks * _REST_BLOCK].reshape(blocks, _REST_BLOCK)
    spread = grid.std(axis=1)
    quiet = grid[spread <= np.quantile(spread, 0.25)]
    return float(np.median(quiet))


def gravity_warning(
    x: npt.ArrayLike, units: Sequence[str | None], names: Sequence[str] | None, setting: str
) -> str | None:
    """A one-line warning when the accelerometer of ``x`` ``(n, C)`` at rest does not read about
    1 g in its declared ``units``, else None. ``setting`` says where units are declared."""
    axes = _accelerometer(units)
    if len(axes) < 3:
        return None
    axes = axes[:3]
    unit = units[axes[0]]
    assert unit is not None
    if any(units[i] != unit for i in axes):
        return None
    rest = resting_magnitude(np.asarray(x)[:, axes])
    if rest is None:
        return None
    in_g = rest * UNITS[unit][1] / STANDARD_GRAVITY
    if _PLAUSIBLE_G[0] <= in_g <= _PLAUSIBLE_G[1]:
        return None
    which = ", ".join(names[i] for i in axes) if names else f"channels {axes[0] + 1}-{axes[2] + 1}"
    fits = [u for u, (kind, size) in UNITS.items() if kind == ACCELERATION and u != unit]
    lo, hi = _PLAUSIBLE_G
    fits = [u for u in fits if lo <= rest * UNITS[u][1] / STANDARD_GRAVITY <= hi]
    if fits:
        advice = f"the samples look like {fits[0]}: set {setting} to {fits[0]} for {which}"
    elif in_g < 0.2:
        advice = (
            "gravity seems to be missing (linear acceleration?): the bundle takes the total "
            f"acceleration; check the sensor's output and {setting}"
        )
    else:
        advice = f"check {setting} and the sensor's scale (raw counts need dividing by LSB/g)"
    gravity = STANDARD_GRAVITY / UNITS[unit][1]
    return (
        f"the accelerometer ({which}) reads {rest:.3g} {unit} at rest, where gravity reads "
        f"{gravity:.3g} {unit}; {advice}"
    )


class GravityCheck:
    """The gravity check of a stream, run once on its first ``samples`` samples."""

    def __init__(
        self, units: Sequence[str | None], names: Sequence[str] | None, setting: str, samples: int
    ) -> None:
        self.units = list(units)
        self.names = list(names) if names else None
        self.setting = setting
        self.samples = max(1, int(samples))
        self._held: list[npt.NDArray[np.float32]] = []
        self._count = 0
        self.done = len(_accelerometer(self.units)) < 3

    def push(self, chunk: npt.NDArray[np.float32]) -> str | None:
        """Take a chunk ``(n, C)`` (in the declared units); the warning, once, when one is due."""
        if self.done:
            return None
        self._held.append(np.array(chunk, dtype=np.float32, copy=True))
        self._count += int(chunk.shape[0])
        if self._count < self.samples:
            return None
        self.done = True
        held, self._held = np.concatenate(self._held), []
        return gravity_warning(held, self.units, self.names, self.setting)
