"""A JSON file of device state bound to one model: what the calibration and the thresholds set
over MQTT keep beside the gallery.

Its header names the format, the version and the model (``bundle_sha256``): a file of another
format or version is unreadable, one made for another model is ignored (its values would be wrong
for this one), and it is replaced atomically (temporary file, fsync, rename) so a power cut leaves
the old or the new file, never half of one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from edgesiam.errors import DataError
from edgesiam.runtime.gallery_store import atomic_write

__all__ = ["ModelFile"]


@dataclass(frozen=True)
class ModelFile:
    """``path`` holds ``format`` at ``version`` for the model ``bundle_sha256``."""

    path: Path
    format: str
    version: int
    bundle_sha256: str
    bundle_name: str | None = None

    def read(self) -> dict[str, Any]:
        """The file's content; ``ValueError`` (or ``OSError``) when it is not this format."""
        data = json.loads(self.path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != self.format:
            raise ValueError(f"not an {self.format} file")
        if data.get("version") != self.version:
            raise ValueError(f"version {data.get('version')!r}; this edgesiam reads {self.version}")
        return data

    def is_for_this_model(self, data: dict[str, Any]) -> bool:
        return data.get("bundle_sha256") == self.bundle_sha256

    def write(self, body: dict[str, Any], what: str) -> None:
        """Replace the file with the header and ``body``; a failure names ``what`` was not saved."""
        header = {
            "format": self.format,
            "version": self.version,
            "bundle_sha256": self.bundle_sha256,
            "bundle_name": self.bundle_name,
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        text = json.dumps({**header, **body}, indent=2) + "\n"

        def write(fh: IO[bytes]) -> None:
            fh.write(text.encode("utf-8"))

        try:
            atomic_write(self.path, write)
        except OSError as exc:
            raise DataError(f"cannot save the {what} ({exc}); nothing changed", self.path) from exc
