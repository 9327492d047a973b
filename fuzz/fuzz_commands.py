"""atheris harness: remote commands against a real runtime (the shipped ``export/events`` bundle,
its TFLite model, a gallery file in a scratch folder).

The first byte picks the verb (enroll, forget, list, threshold, reload, or an unknown one); the
rest is the MQTT payload. The handler must answer every payload with a result; an ``internal``
error (an exception that escaped the runtime), a result that is not strict JSON or a gallery that
no longer loads is a crash.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["edgesiam"]):
    import numpy as np
    import soundfile as sf

    from edgesiam.mqtt.contract import VERBS
    from edgesiam.runtime.config import load_runtime_config
    from edgesiam.runtime.pipeline import Runtime
    from edgesiam.runtime.publishers import MemoryPublisher

from common import scratch

ROOT = Path(__file__).resolve().parents[1]


def make_runtime() -> Runtime:
    folder = scratch()
    stream = folder / "stream.wav"
    sf.write(stream, np.zeros(16000, dtype=np.float32), 16000)
    config = load_runtime_config(
        None,
        {
            "bundle": str(ROOT / "export" / "events"),
            "gallery": str(folder / "gallery.npz"),
            "source": {"type": "file", "path": str(stream)},
            "state_dir": str(folder / "state"),
            "device_id": "fuzz",
            "mqtt": {"enabled": False},
        },
    )
    return Runtime(config, publisher=lambda outbox: MemoryPublisher("fuzz", outbox))


RUNTIME: Runtime | None = None


def test_one_input(data: bytes) -> None:
    global RUNTIME
    if RUNTIME is None:
        RUNTIME = make_runtime()
    if not data:
        return
    verb = VERBS[data[0]] if data[0] < len(VERBS) else f"verb{data[0]}"
    result = RUNTIME.command_handler.handle(verb, data[1:])
    json.dumps(result, allow_nan=False)
    if result.get("error_code") == "internal":
        raise RuntimeError(f"internal error for {verb}: {result['error']}")
    if RUNTIME.store.exists():
        RUNTIME.store.load()


if __name__ == "__main__":
    logging.disable(logging.WARNING)  # refused commands are logged; the fuzzer makes thousands
    np.seterr(all="ignore")
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
