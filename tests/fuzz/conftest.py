"""Fixtures of the fuzz tests: a real Mosquitto (from the runtime tests)."""

from tests.runtime.conftest import make_mosquitto, mosquitto  # noqa: F401
