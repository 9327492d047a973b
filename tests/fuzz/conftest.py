"""Fixtures of the fuzz tests: a real Mosquitto (from the runtime tests)."""
