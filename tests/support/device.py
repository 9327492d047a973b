"""Real ``edgesiam run`` processes fed over ``stdin:`` (the fault suite), and the scale of the run.

Scale: the default suite runs a short version of every fault test (e.g. 2 broker restarts during
1 000 events, 3 runtime kills); ``EDGESIAM_RELIABILITY=full`` (what ``make reliability`` sets)
runs the full counts (10 broker restarts during 10 000 events, 20 kills).

The device: ``edgesiam run`` in its own process, on the shipped ``export/events`` bundle (0.25 s
hop), with one generated voice enrolled and, in :func:`flood_config`, a rule that turns every
window into an event (explicit threshold -1, 1 of 1 windows, no refractory period, no energy gate):
a stream of N × hop seconds makes N events, so delivery is exercised with thousands of real
events from the real pipeline, outbox and publisher in minutes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.paths import ENV, EVENTS_BUNDLE
from tests.support.signals import VOICE_RATE, to_pcm, voice

RATE = VOICE_RATE  # export/events reads 16 kHz
WINDOW, HOP = 8000, 4000  # export/events: 0.5 s windows every 0.25 s

RUN_CLI = (
    "import argparse, sys\n"
    "from edgesiam.runtime.run_cli import add_run_parser\n"
    "p = argparse.ArgumentParser(prog='edgesiam')\n"
    "add_run_parser(p.add_subparsers(dest='command', required=True))\n"
    "a = p.parse_args(sys.argv[1:])\n"
    "sys.exit(a.func(a))\n"
)
"""``edgesiam run`` without the rest of the CLI (what a device imports)."""


@dataclass(frozen=True)
class Scale:
    """How hard the fault tests push: the short default or the full ``make reliability`` run."""

    full: bool
    broker_restarts: int
    events: int
    runtime_kills: int

    @classmethod
    def from_env(cls) -> Scale:
        if os.environ.get("EDGESIAM_RELIABILITY", "").lower() == "full":
            return cls(full=True, broker_restarts=10, events=10_000, runtime_kills=20)
        return cls(full=False, broker_restarts=2, events=1_000, runtime_kills=3)


def flood_config(
    folder: Path, gallery: Path, broker_url: str, device_id: str, **sections: Any
) -> Path:
    """A runtime config (YAML) for ``export/events`` where every window is an event."""
    config: dict[str, Any] = {
        "bundle": str(EVENTS_BUNDLE),
        "gallery": str(gallery),
        "device_id": device_id,
        "state_dir": str(folder / "state"),
        "source": {"type": "stdin", "live": False},
        "matching": {
            "threshold": -1.0,
            "near_miss_margin": 0.0,
            "decision": {"n_of": 1, "m": 1, "refractory_s": 0.0},
            "gate": {"enabled": False},
        },
        "mqtt": {
            "url": broker_url,
            "reconnect_min_s": 1,
            "reconnect_max_s": 2,
            "homeassistant": False,
        },
        "outbox": {"max_pending": 100_000, "drain_timeout_s": 120.0},
        "metrics": {"interval_s": 5.0},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{device_id}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Device:
    """One ``edgesiam run --config CFG`` process; stdin is ours, stderr is kept."""

    def __init__(self, config: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RUN_CLI, "run", "--config", str(config), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=ENV,
        )
        self.stderr: list[str] = []
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in iter(self.proc.stderr.readline, b""):
            self.stderr.append(line.decode(errors="replace"))

    def write(self, data: bytes) -> bool:
        """Write samples; False when the device has gone away."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            return False
        return True

    def finish(self, timeout: float = 180.0) -> int:
        """Close stdin (the stream ends) and wait for the clean exit."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        code = self.proc.wait(timeout)
        self._drain.join(5)
        return code

    def log(self) -> str:
        return "".join(self.stderr)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._drain.join(5)


class Feeder(threading.Thread):
    """Writes ``windows`` windows' worth of a looped voice to a device, spread over ``seconds``
    (``first``: the stream starts here, so the first window needs a whole window of samples)."""

    def __init__(self, device: Device, windows: int, seconds: float, first: bool = True) -> None:
        super().__init__(daemon=True)
        self.device = device
        self.total = (windows - 1) * HOP + WINDOW if first else windows * HOP
        self.seconds = seconds
        self.clip = to_pcm(voice(10.0, seed=2))
        self.written = 0
        self.ok = True

    def run(self) -> None:
        begin = time.monotonic()
        at = 0
        while self.written < self.total:
            n = min(HOP, self.total - self.written)
            if at + n * 2 > len(self.clip):  # loop the clip
                at = 0
            piece = self.clip[at : at + n * 2]
            at += n * 2
            due = begin + self.seconds * (self.written + n) / self.total
            while (wait := due - time.monotonic()) > 0:
                time.sleep(min(wait, 0.05))
            if not self.device.write(piece):
                self.ok = False
                return
            self.written += n
