"""The ``integration`` marker, set on every test that starts a real service: a Mosquitto broker,
a browser, the dashboard's server, the device in its own virtual environment or another process.

``make check`` leaves them out (``-m "not slow and not integration"``) for a fast loop; ``make test``
(what CI runs) keeps them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

INTEGRATION_FIXTURES = frozenset(
    {
        "mosquitto",
        "make_mosquitto",
        "subscriber",
        "certificates",
        "secure_broker",
        "browser",
        "page",
        "dashboard",
        "make_dashboard",
        "devices",
    }
)
INTEGRATION_FOLDERS = frozenset({"reliability", "security", "arm64"})
INTEGRATION_MODULES = frozenset(
    {"test_device_venvs.py", "test_crash_restart.py", "test_peers.py", "test_broker.py"}
)


def is_integration(fixtures: Iterable[str], path: Path) -> bool:
    """Whether a test with these fixtures, in this file, starts a real service."""
    return (
        bool(INTEGRATION_FIXTURES.intersection(fixtures))
        or path.name in INTEGRATION_MODULES
        or bool(INTEGRATION_FOLDERS.intersection(path.parts))
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if is_integration(getattr(item, "fixturenames", ()), item.path):
            item.add_marker(pytest.mark.integration)
