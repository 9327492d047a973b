"""The fault suite's fixtures: a real Mosquitto (from ``tests/support/mqtt.py``), the scale of the
run, and the real ``edgesiam run`` processes of ``tests/support/device.py``, killed at each test's end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.device import Device, Scale


@pytest.fixture(scope="session")
def scale() -> Scale:
    return Scale.from_env()


@pytest.fixture
def devices() -> Iterator[list[Device]]:
    """Devices started in a test are killed at its end, whatever happened."""
    made: list[Device] = []
    yield made
    for device in made:
        device.kill()
