"""The public surface, pinned: what ``import edgesiam`` exports and the command verbs a user types.

A change to either is a change for users: it shows here first and in the README's command overview.
"""

from __future__ import annotations

import argparse

import edgesiam
from edgesiam.cli import build_parser

EXPORTED = {
    "ConfigError",
    "DataError",
    "EdgesiamError",
    "MissingExtraError",
    "ModelError",
    "RecipeError",
    "__version__",
}

VERBS = {
    "data": {"prepare", "render", "render-imu", "perturb", "list"},
    "train": set(),
    "eval": set(),
    "embed": set(),
    "tune": set(),
    "export": set(),
    "compile-edgetpu": set(),
    "enroll": set(),
    "gallery": {"list", "forget"},
    "run": set(),
    "calibrate": set(),
    "broker": set(),
    "demo": set(),
    "bench": set(),
    "dashboard": set(),
    "fleet-bench": set(),
    "teachers": {"embed"},
    "validate": set(),
}


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-parsers of a parser by name (empty when it takes no verb)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def test_package_exports_exactly_the_pinned_names() -> None:
    assert set(edgesiam.__all__) == EXPORTED
    assert all(hasattr(edgesiam, name) for name in edgesiam.__all__)


def test_exported_errors_share_the_one_base() -> None:
    errors = [getattr(edgesiam, n) for n in EXPORTED if n.endswith("Error")]
    assert all(issubclass(e, edgesiam.EdgesiamError) for e in errors)


def test_cli_offers_exactly_the_pinned_verbs() -> None:
    verbs = subcommands(build_parser())
    assert {name: set(subcommands(p)) for name, p in verbs.items()} == VERBS


def test_every_verb_has_a_one_line_help_in_the_overview() -> None:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in action._choices_actions}
    assert set(helps) == set(VERBS)
    assert [name for name, text in helps.items() if not text] == []
