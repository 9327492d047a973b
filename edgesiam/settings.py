"""Settings, strictly: the one pydantic base, YAML loading, the validation-error formatter and the
dotted-override helper that every config of edgesiam shares (training recipes, the device's
config, MQTT settings, bundle manifests, command requests).

Unknown keys are errors (a typo must never be silently ignored) and values are immutable. Errors
name the path of the offending key, e.g. ``objective.margin: Input should be greater than 0``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from edgesiam.errors import ConfigError

__all__ = [
    "UNSET",
    "StrictModel",
    "apply_overrides",
    "format_validation_error",
    "load_yaml",
    "parse_model",
    "parse_override",
    "validation_problems",
]

M = TypeVar("M", bound=BaseModel)

UNSET: Final = object()
"""An override value that removes the key (``run --threshold`` drops the file's ``target_fmr``)."""


class StrictModel(BaseModel):
    """Base of every settings model: unknown keys are rejected, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def validation_problems(exc: ValidationError, top: str = "(top level)") -> list[str]:
    """Each problem as ``dotted.key: what is wrong`` (``top`` names a problem of the whole)."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or top
        msg = str(err["msg"])
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not a setting of this section; check its spelling)"
        problems.append(f"{where}: {msg}")
    return problems


def format_validation_error(exc: ValidationError, source: str, top: str = "(top level)") -> str:
    """Every problem on its own line under ``source: N problem(s)``."""
    lines = [f"{source}: {exc.error_count()} problem(s)"]
    lines += [f"  {problem}" for problem in validation_problems(exc, top)]
    return "\n".join(lines)


def load_yaml(path: Path) -> Any:
    """A YAML file's content; an unreadable file or bad YAML is a :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a text file (not UTF-8 at byte {exc.start}); a config is YAML text"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def parse_model(model: type[M], data: Any, source: str) -> M:
    """Validate ``data`` as ``model``; a failure becomes a ConfigError listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def parse_override(text: str) -> tuple[str, Any]:
    """``--set key.sub=value`` → ``("key.sub", value)``, the value read as YAML (``1`` → 1)."""
    if "=" not in text:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. optim.epochs=5), got '{text}'")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys (``mqtt.port``) in a copy of ``data``; a dict value replaces the section
    when its key is the section itself (``source``); :data:`UNSET` removes the key."""
    out: dict[str, Any] = dict(data)
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for key in parents:
            child = node.get(key)
            child = dict(child) if isinstance(child, dict) else {}
            node[key] = child
            node = child
        if value is UNSET:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return out
