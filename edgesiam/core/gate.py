"""An energy / activity gate: skip silent (or motionless) windows before the model runs.

Audio windows ``(N,)`` in [-1, 1]: the level is the RMS in dBFS, ``20 * log10(rms)`` (a full-scale
square wave is 0 dBFS, a full-scale sine -3 dBFS, digital silence -200 dBFS). A window is
*active* when its level is at least ``threshold_db`` (default -45 dBFS: quiet speech close to a
Pi's microphone sits around -35 to -25 dBFS, a quiet room's noise floor below -50 dBFS).

Sensor windows ``(N, C)``: the level is the total standard deviation, over the window, of the
first triad (channels 0-2, usually the accelerometer; fewer channels: those),
``sqrt(var(x) + var(y) + var(z))``, in the sensor's own units. Gravity is constant, so a device
lying still scores near 0 whatever its orientation, and the measure does not depend on the
orientation either (it is the trace of the covariance). The magnitude's standard deviation
would not do: a tilt, or a motion across gravity, barely changes the magnitude
(``|g + a| ≈ |g|`` to first order). A window is active when the level is at least
``sensor_threshold`` (default 0.02, for accelerometers in g; use about 0.2 for m/s²). The gate is
**off by default for sensors** (:meth:`EnergyGate.for_modality`): many sensor patterns of
interest are slow or static, and a sensor stream costs little to embed.

``hangover`` keeps the gate open for that many windows after the last active one, so the quiet
tail of a word still reaches the model. NaN samples are ignored by the sensor level; audio with
NaN is never active. ``enabled=False`` passes every window.

numpy only, no I/O.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

from edgesiam.core.arrays import BoolArray, Float64Array
from edgesiam.errors import ConfigError, DataError

__all__ = [
    "DEFAULT_SENSOR_THRESHOLD",
    "DEFAULT_THRESHOLD_DB",
    "SILENCE_DB",
    "EnergyGate",
    "rms_dbfs",
    "sensor_activity",
]

DEFAULT_THRESHOLD_DB: Final = -45.0
DEFAULT_SENSOR_THRESHOLD: Final = 0.02
SILENCE_DB: Final = -200.0
"""The level of digital silence (an RMS of 1e-10 or less)."""


def rms_dbfs(x: npt.ArrayLike) -> float:
    """RMS level of audio samples in dBFS (floored at :data:`SILENCE_DB`); empty → silence."""
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        return SILENCE_DB
    rms = math.sqrt(float(np.mean(np.square(a))))
    if math.isnan(rms):
        return math.nan
    return max(SILENCE_DB, 20.0 * math.log10(max(rms, 1e-10)))


def sensor_activity(x: npt.ArrayLike) -> float:
    """Total std over time of the first triad of sensor samples ``(N, C)``.

    ``sqrt(var(c0) + var(c1) + var(c2))`` over the rows whose first three values are finite;
    0.0 when fewer than two such rows remain.
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise DataError(f"sensor samples must have shape (N, C), got {a.shape}")
    triad = a[:, :3]
    triad = triad[np.all(np.isfinite(triad), axis=1)]
    if triad.shape[0] < 2:
        return 0.0
    return float(np.sqrt(np.sum(np.var(triad, axis=0))))


class EnergyGate:
    """Decides per window whether it is worth embedding; see the module docstring.

    ``is_active(window)`` for one window (``(N,)`` audio or ``(N, C)`` sensor), stateful because
    of the hangover; ``active_mask(windows)`` for a batch ``(k, N)`` / ``(k, N, C)`` in stream
    order; ``level(window)`` the measured level (dBFS or sensor std).
    """

    def __init__(
        self,
        threshold_db: float = DEFAULT_THRESHOLD_DB,
        hangover: int = 2,
        *,
        enabled: bool = True,
        sensor_threshold: float = DEFAULT_SENSOR_THRESHOLD,
    ) -> None:
        if isinstance(threshold_db, bool) or not isinstance(
            threshold_db, int | float | np.integer | np.floating
        ):
            raise ConfigError(f"threshold_db must be a number (dBFS), got {threshold_db!r}")
        if (
            not math.isfinite(float(threshold_db))
            or threshold_db > 0.0
            or threshold_db < SILENCE_DB
        ):
            raise ConfigError(
                f"threshold_db must be between {SILENCE_DB:g} and 0 dBFS (e.g. -45), "
                f"got {threshold_db!r}"
            )
        if isinstance(hangover, bool) or not isinstance(hangover, int | np.integer) or hangover < 0:
            raise ConfigError(f"hangover must be a whole number of windows >= 0, got {hangover!r}")
        if (
            isinstance(sensor_threshold, bool)
            or not isinstance(sensor_threshold, int | float | np.integer | np.floating)
            or not math.isfinite(float(sensor_threshold))
            or sensor_threshold < 0.0
        ):
            raise ConfigError(
                "sensor_threshold must be a finite number >= 0 (in the sensor's units), "
                f"got {sensor_threshold!r}"
            )
        self.threshold_db = float(threshold_db)
        self.hangover = int(hangover)
        self.enabled = bool(enabled)
        self.sensor_threshold = float(sensor_threshold)
        self._left = 0
        self.skipped = 0
        """Windows gated out since the last :meth:`reset`."""

    @classmethod
    def for_modality(
        cls,
        modality: str,
        threshold_db: float = DEFAULT_THRESHOLD_DB,
        hangover: int = 2,
        *,
        enabled: bool | None = None,
        sensor_threshold: float = DEFAULT_SENSOR_THRESHOLD,
    ) -> EnergyGate:
        """The default gate of a modality: on for ``"audio"``, off for ``"sensor"`` unless asked."""
        if modality not in ("audio", "sensor"):
            raise ConfigError(f"modality must be 'audio' or 'sensor', got {modality!r}")
        on = (modality == "audio") if enabled is None else enabled
        return cls(threshold_db, hangover, enabled=on, sensor_threshold=sensor_threshold)

    def __repr__(self) -> str:
        return (
            f"EnergyGate(threshold_db={self.threshold_db}, hangover={self.hangover}, "
            f"enabled={self.enabled}, sensor_threshold={self.sensor_threshold})"
        )

    def reset(self) -> None:
        """Close the hangover and zero the skipped counter (a new source starts)."""
        self._left = 0
        self.skipped = 0

    def level(self, window: npt.ArrayLike) -> float:
        """dBFS of an audio window ``(N,)``; the sensor activity of a sensor window ``(N, C)``."""
        w = np.asarray(window)
        if w.ndim == 1:
            return rms_dbfs(w)
        if w.ndim == 2:
            return sensor_activity(w)
        raise DataError(f"a window must have shape (N,) or (N, C), got {w.shape}")

    def loud(self, window: npt.ArrayLike) -> bool:
        """Whether one window is above the threshold, ignoring the hangover and ``enabled``."""
        w = np.asarray(window)
        level = self.level(w)
        limit = self.threshold_db if w.ndim == 1 else self.sensor_threshold
        return level >= limit  # False for NaN

    def is_active(self, window: npt.ArrayLike) -> bool:
        """Whether to embed this window (the next in the stream); updates the hangover."""
        if not self.enabled:
            return True
        if self.loud(window):
            self._left = self.hangover
            return True
        if self._left > 0:
            self._left -= 1
            return True
        self.skipped += 1
        return False

    def levels(self, windows: npt.ArrayLike) -> Float64Array:
        """Levels ``(k,)`` of a batch ``(k, N)`` (audio, dBFS) or ``(k, N, C)`` (sensor)."""
        w = np.asarray(windows, dtype=np.float64)
        if w.ndim == 2:
            ms = np.mean(np.square(w), axis=1) if w.shape[1] else np.zeros(w.shape[0])
            with np.errstate(divide="ignore", invalid="ignore"):
                db = 10.0 * np.log10(np.maximum(ms, 1e-20))
            db = np.where(np.isnan(ms), np.nan, np.maximum(db, SILENCE_DB))
            out: Float64Array = db.astype(np.float64)
            return out
        if w.ndim == 3:
            return np.array([sensor_activity(x) for x in w], dtype=np.float64)
        raise DataError(f"a batch of windows must have shape (k, N) or (k, N, C), got {w.shape}")

    def active_mask(self, windows: npt.ArrayLike) -> BoolArray:
        """``is_active`` for each window of a batch, in order (one level computation per batch)."""
        w = np.asarray(windows)
        if w.ndim not in (2, 3):
            raise DataError(
                f"a batch of windows must have shape (k, N) or (k, N, C), got {w.shape}"
            )
        if not self.enabled:
            return np.ones(w.shape[0], dtype=np.bool_)
        limit = self.threshold_db if w.ndim == 2 else self.sensor_threshold
        loud = self.levels(w) >= limit
        mask = np.empty(w.shape[0], dtype=np.bool_)
        for i, is_loud in enumerate(loud):
            if is_loud:
                self._left = self.hangover
                mask[i] = True
            elif self._left > 0:
                self._left -= 1
                mask[i] = True
            else:
                self.skipped += 1
                mask[i] = False
        return mask
