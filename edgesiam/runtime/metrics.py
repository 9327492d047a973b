"""What the runtime reports about itself: throughput, latency percentiles, drops, memory and CPU.

Everything is read from the standard library (``/proc/self/status`` for the resident set, with
``resource`` as the fallback and for the peak; ``os.times`` for CPU), so the device install needs
no psutil.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

__all__ = ["LatencyWindow", "ProcessStats", "RuntimeMetrics", "peak_rss_mb", "rss_mb"]

_STATUS: Final = Path("/proc/self/status")


def _status_mb(*keys: str) -> dict[str, float]:
    """Fields of ``/proc/self/status`` (kB) in MiB; empty where there is no ``/proc``."""
    out: dict[str, float] = {}
    try:
        for line in _STATUS.read_text().splitlines():
            key, _, value = line.partition(":")
            if key in keys:
                out[key] = int(value.split()[0]) / 1024.0
    except (OSError, ValueError, IndexError):
        return {}
    return out


def rss_mb() -> float:
    """Resident set size now, in MiB (the peak where ``/proc`` is not available)."""
    now = _status_mb("VmRSS").get("VmRSS")
    return now if now is not None else peak_rss_mb()


def peak_rss_mb() -> float:
    """Largest resident set size of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ru = peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0
    return max([ru, *_status_mb("VmHWM", "VmRSS").values()])


class LatencyWindow:
    """The last ``size`` durations, with percentiles over them (bounded memory)."""

    def __init__(self, size: int = 1000) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._values)

    def add(self, ms: float) -> None:
        with self._lock:
            self._values.append(float(ms))

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0–100) of the recent durations; None before the first."""
        with self._lock:
            if not self._values:
                return None
            return float(np.percentile(np.fromiter(self._values, dtype=np.float64), q))


@dataclass
class ProcessStats:
    """CPU use between two readings, as a percentage of one core (200 % = two cores busy)."""

    _wall: float = field(default_factory=time.monotonic)
    _cpu: float = field(default_factory=lambda: _cpu_seconds())

    def cpu_percent(self) -> float:
        wall, cpu = time.monotonic(), _cpu_seconds()
        elapsed = wall - self._wall
        percent = 100.0 * (cpu - self._cpu) / elapsed if elapsed > 0 else 0.0
        self._wall, self._cpu = wall, cpu
        return percent


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class RuntimeMetrics:
    """Counters of one run, and the snapshot published every ``interval_s`` seconds.

    The processing loop counts windows, gated windows, events and near misses and adds
    latencies; the source thread counts dropped samples. Rates are over the time since the
    previous snapshot.
    """

    def __init__(
        self, latency_window: int = 1000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self.started = clock()
        self.windows = 0
        self.gated = 0
        self.events = 0
        self.near_misses = 0
        self.samples = 0
        self.dropped_samples = 0
        self.dropped_chunks = 0
        self.inference = LatencyWindow(latency_window)
        self.window_total = LatencyWindow(latency_window)
        self._last_time = self.started
        self._last_windows = 0
        self._process = ProcessStats()

    def uptime_s(self) -> float:
        return self._clock() - self.started

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        """The metrics message: counters, rates since the last snapshot, latency, memory, CPU.

        ``extra`` adds fields the metrics do not own (outbox depth, rejected input).
        """
        now = self._clock()
        elapsed = now - self._last_time
        rate = (self.windows - self._last_windows) / elapsed if elapsed > 0 else 0.0
        self._last_time, self._last_windows = now, self.windows
        p50, p95 = self.inference.percentile(50), self.inference.percentile(95)
        w95 = self.window_total.percentile(95)
        return {
            "uptime_s": round(now - self.started, 3),
            "windows": self.windows,
            "windows_per_s": round(rate, 3),
            "gated_windows": self.gated,
            "events": self.events,
            "near_misses": self.near_misses,
            "samples": self.samples,
            "dropped_frames": self.dropped_samples,
            "dropped_chunks": self.dropped_chunks,
            "inference_ms_p50": None if p50 is None else round(p50, 4),
            "inference_ms_p95": None if p95 is None else round(p95, 4),
            "window_ms_p95": None if w95 is None else round(w95, 4),
            "rss_mb": round(rss_mb(), 2),
            "peak_rss_mb": round(peak_rss_mb(), 2),
            "cpu_percent": round(self._process.cpu_percent(), 1),
            **extra,
        }
