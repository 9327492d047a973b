"""How hard the fuzz tests push: a short run in the default suite, many more examples under
``EDGESIAM_RELIABILITY=full`` (what ``make reliability`` sets).

Every property test takes its settings from :func:`fuzz_settings`; nothing here changes
Hypothesis' global profile, so other tests keep theirs. Failing examples are kept in Hypothesis'
example database (``.hypothesis/``) and tried first on the next run. Under ``CI`` (and not in the
full run) the examples are derandomised and the database is off: the default suite draws the same
examples every time, and only ``make reliability`` and local runs go looking for new ones.
"""

from __future__ import annotations

import os
from typing import Final

from hypothesis import HealthCheck, settings

FULL: Final = os.environ.get("EDGESIAM_RELIABILITY", "").lower() == "full"
"""True under ``make reliability``: the full-scale run."""

DETERMINISTIC: Final = os.environ.get("CI", "").lower() not in ("", "0", "false") and not FULL
"""True in CI's default suite: the same examples every run (tests/conftest.py loads that profile)."""

FULL_FACTOR: Final = 25
"""How many times more examples each property gets in the full run."""

TIMEOUT_S: Final = 1800 if FULL else 120
"""pytest-timeout per test: a hang fails the test instead of stalling the suite."""

settings.register_profile(
    "edgesiam-fuzz",
    deadline=None,  # the machine is shared and busy: time is measured, never asserted
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
    print_blob=True,
    derandomize=DETERMINISTIC,
    **({"database": None} if DETERMINISTIC else {}),
)
_PROFILE: Final = settings.get_profile("edgesiam-fuzz")


def fuzz_settings(examples: int) -> settings:
    """Settings for one property: ``examples`` in the default suite, ``FULL_FACTOR`` × in full."""
    return settings(_PROFILE, max_examples=examples * (FULL_FACTOR if FULL else 1))
