"""Which tests ``make check`` leaves out: those that start a real service."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.markers import is_integration


@pytest.mark.parametrize(
    ("fixtures", "path", "expected"),
    [
        (["tmp_path", "mosquitto"], "tests/runtime/test_mqtt.py", True),
        (["page"], "tests/dashboard/test_browser.py", True),
        (["tmp_path"], "tests/security/test_broker_access.py", True),
        (["tmp_path"], "tests/export/test_device_venvs.py", True),
        (["tmp_path", "audio_bundle"], "tests/runtime/test_pipeline.py", False),
        ([], "tests/core/test_frontend.py", False),
    ],
)
def test_a_test_is_integration_when_it_starts_a_service(
    fixtures: list[str], path: str, expected: bool
) -> None:
    assert is_integration(fixtures, Path(path)) is expected


def test_the_helpers_are_loaded_as_plugins(request: pytest.FixtureRequest) -> None:
    plugins = request.config.pluginmanager
    assert plugins.has_plugin("tests.support.markers") and plugins.has_plugin("tests.support.mqtt")
