"""The bounded queue between a source's thread and the processing loop: a live source that
outruns the loop has its new chunks dropped (and counted), a recording waits.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np

log = logging.getLogger("edgesiam.runtime")

_POLL_S: Final = 0.2

__all__ = ["ChunkQueue", "EndOfStream"]


@dataclass(frozen=True)
class EndOfStream:
    error: BaseException | None = None


class ChunkQueue:
    """Chunks ``(start_sample, samples)`` from the source thread to the loop, bounded in samples.

    ``block=True`` (a file read as fast as possible): ``put`` waits for room. ``block=False`` (a
    live source): a chunk that does not fit is dropped and counted. ``block`` may be a callable,
    asked while the queue is full (a source that learns whether it is live: standard input). A
    chunk larger than the whole bound is taken when the queue is empty, so nothing is starved.
    After :meth:`close` (the run is stopping) chunks are refused without being counted as drops.
    """

    def __init__(self, max_samples: int, block: bool | Callable[[], bool]) -> None:
        self.max_samples = max(1, int(max_samples))
        self.block = block
        self._items: deque[tuple[int, np.ndarray] | EndOfStream] = deque()
        self._held = 0
        self._closed = False
        self._cond = threading.Condition()
        self.dropped_samples = 0
        self.dropped_chunks = 0

    @property
    def held(self) -> int:
        """Samples waiting."""
        return self._held

    def put(self, start: int, chunk: np.ndarray) -> bool:
        """Queue a chunk; False when it was dropped (no room, or the queue is closed)."""
        n = int(chunk.shape[0])
        with self._cond:
            while not self._closed and not self._fits(n) and self._blocks():
                self._cond.wait(_POLL_S)
            if self._closed:
                return False  # the run is stopping: not a drop
            if not self._fits(n):
                self.dropped_samples += n
                self.dropped_chunks += 1
                return False
            self._items.append((start, chunk))
            self._held += n
            self._cond.notify_all()
            return True

    def _blocks(self) -> bool:
        return self.block() if callable(self.block) else self.block

    def _fits(self, n: int) -> bool:
        return self._held == 0 or self._held + n <= self.max_samples

    def end(self, error: BaseException | None = None) -> None:
        """The source is done (``error``: it failed); the loop sees this after the last chunk."""
        with self._cond:
            self._items.append(EndOfStream(error))
            self._cond.notify_all()

    def close(self) -> None:
        """Stop accepting chunks (wakes a blocked ``put``)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self, timeout: float) -> tuple[int, np.ndarray] | EndOfStream | None:
        """The next item, or None when nothing came within ``timeout`` seconds."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            if not isinstance(item, EndOfStream):
                self._held -= int(item[1].shape[0])
            self._cond.notify_all()
            return item
