"""Model cards name their data without this machine's absolute paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgesiam.export.model_card import shown_path

ROOT = Path(__file__).resolve().parents[2]


def test_a_path_under_the_working_folder_is_shown_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "data" / "speech" / "SUMMARY.json"
    summary.parent.mkdir(parents=True)
    summary.write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert shown_path(summary) == "data/speech/SUMMARY.json"


def test_a_path_elsewhere_is_shown_by_its_last_two_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "a" / "hapt" / "SUMMARY.json"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert shown_path(elsewhere) == "hapt/SUMMARY.json"
    assert str(tmp_path) not in shown_path(elsewhere)


@pytest.mark.parametrize("bundle", ["speaker", "events", "motion"])
def test_shipped_model_cards_hold_no_absolute_path(bundle: str) -> None:
    card = (ROOT / "export" / bundle / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "`/" not in card and str(ROOT) not in card
