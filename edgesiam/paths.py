"""``~`` and ``~user`` in the paths a person writes (config values, command-line options).

``Path.expanduser`` raises a bare ``RuntimeError("Could not determine home directory.")`` for a user
that does not exist (``~nosuchuser/bundle``, ``~0``) or when ``$HOME`` is unset. Every path a user
gives goes through :func:`expand_user` (or the :data:`UserPath` field type of the config models), so
that this becomes a ``ConfigError`` naming the key or option.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath
from typing import Annotated

from pydantic import BeforeValidator

from edgesiam.errors import ConfigError

__all__ = ["UserPath", "expand_user"]


def _expanded(text: str) -> Path:
    """``text`` with a leading ``~`` or ``~user`` expanded; ``ValueError`` saying why it cannot be."""
    if not text.startswith("~"):
        return Path(text)
    try:
        return Path(text).expanduser()
    except RuntimeError:
        user = text[1:].replace(os.sep, "/").split("/", 1)[0]
    why = (
        f"there is no user named {user!r} on this machine"
        if user
        else "this user has no home directory here ($HOME is not set)"
    )
    raise ValueError(f"cannot expand {text!r}: {why}; write the path out in full")


def expand_user(path: str | os.PathLike[str], key: str) -> Path:
    """``path`` with ``~``/``~user`` expanded, or a ``ConfigError`` naming ``key`` (``--bundle``)."""
    try:
        return _expanded(os.fspath(path))
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _user_path_field(value: object) -> object:
    """Pydantic's view of :func:`expand_user`: the key is added by the validation error."""
    if isinstance(value, str | PurePath):
        return _expanded(os.fspath(value))
    return value  # not a path at all: the Path validator reports the type


UserPath = Annotated[Path, BeforeValidator(_user_path_field)]
"""A config field holding a path a user wrote: ``~`` expanded, an unknown ``~user`` an error."""
