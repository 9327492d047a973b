"""``import_extra``: an optional dependency imported on first use, or an error naming its extra."""

from __future__ import annotations

import json
import sys

import pytest

from edgesiam.errors import MissingExtraError
from edgesiam.extras import import_extra


def test_an_installed_module_is_returned() -> None:
    assert import_extra("json", "device") is json


def test_a_missing_module_names_its_distribution_and_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "serial", None)  # as if pyserial were not installed
    with pytest.raises(MissingExtraError, match=r"'pyserial'.*edgesiam\[serial\]") as caught:
        import_extra("serial", "serial", package="pyserial")
    assert (caught.value.module, caught.value.extra) == ("pyserial", "serial")
