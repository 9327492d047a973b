"""The dashboard installs with paho-mqtt alone: none of its modules may import a workstation
library (checked in a fresh interpreter), and its page files ship inside the package."""

from __future__ import annotations

from importlib import resources

import pytest

from tests.support.imports import HEAVY, imported_after


@pytest.mark.parametrize(
    "module",
    [
        "edgesiam.dashboard.history",
        "edgesiam.dashboard.ingest",
        "edgesiam.dashboard.server",
        "edgesiam.dashboard.auth",
        "edgesiam.tools.fleet",
        "edgesiam.dashboard.cli",
    ],
)
def test_dashboard_modules_import_no_workstation_library(module: str) -> None:
    loaded = imported_after(f"import {module}")
    assert not loaded & set(HEAVY), f"{module} pulled in {sorted(loaded & set(HEAVY))}"


def test_the_page_files_are_package_data() -> None:
    static = resources.files("edgesiam.dashboard") / "static"
    for name in ("index.html", "login.html", "app.js", "app.css"):
        assert (static / name).is_file(), name
