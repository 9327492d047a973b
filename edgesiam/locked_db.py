"""A database connection shared by threads behind one lock, closed under that lock: the dashboard's
history and the device's outbox."""

from __future__ import annotations

import threading
from typing import Any, Self

__all__ = ["LockedDatabase"]


class LockedDatabase:
    """``close()`` and ``with``, for a class whose ``_db`` connection is used under ``_lock``."""

    _lock: threading.RLock
    _db: Any

    def close(self) -> None:
        """Close the connection; waits for a statement another thread is running."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
