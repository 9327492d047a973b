"""The model-bound JSON files beside the gallery (calibration, thresholds set over MQTT)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgesiam.errors import DataError
from edgesiam.runtime.model_file import ModelFile


def test_written_file_reads_back_with_its_header(tmp_path: Path) -> None:
    file = ModelFile(tmp_path / "g.thresholds.json", "edgesiam-x", 1, "abc", "speaker")
    file.write({"default": 0.5}, "thresholds")
    data = file.read()
    assert data["default"] == 0.5 and data["bundle_name"] == "speaker"
    assert (data["format"], data["version"], data["bundle_sha256"]) == ("edgesiam-x", 1, "abc")
    assert file.is_for_this_model(data)
    other = ModelFile(file.path, "edgesiam-x", 1, "def")
    assert not other.is_for_this_model(other.read())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"format": "edgesiam-y", "version": 1}, "not an edgesiam-x file"),
        ({"format": "edgesiam-x", "version": 2}, "version 2; this edgesiam reads 1"),
        ([1, 2], "not an edgesiam-x file"),
    ],
)
def test_another_format_or_version_is_unreadable(
    tmp_path: Path, content: object, message: str
) -> None:
    path = tmp_path / "f.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message):
        ModelFile(path, "edgesiam-x", 1, "abc").read()


def test_a_file_that_cannot_be_written_names_what_was_not_saved(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    with pytest.raises(DataError, match="cannot save the calibration"):
        ModelFile(blocked / "c.json", "edgesiam-x", 1, "abc").write({}, "calibration")
