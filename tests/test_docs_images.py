"""Every image the README and docs/ embed is a file of the repository, present in a clone (not a
git-ignored test artifact)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_embedded_images_are_tracked_files(page: Path) -> None:
    for target in IMAGE.findall(page.read_text(encoding="utf-8")):
        if "://" in target:
            continue
        path = (page.parent / target).resolve()
        assert path.is_file(), f"{page.name}: {target} does not exist"
        tracked = subprocess.run(
            ["git", "ls-files", "--error-unmatch", str(path)], cwd=ROOT, capture_output=True
        )
        assert tracked.returncode == 0, f"{page.name}: {target} is not in the repository"
