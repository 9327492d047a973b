"""The device-only install running the same commands as the workstation.

(The device process SIGKILLed and restarted mid-stream is in
``tests/reliability/test_runtime_crash.py``.)

The device install: ``.venv-litert`` and ``.venv-tflite`` (``make device-venvs``) hold edgesiam
without torch, tensorflow or librosa; their ``edgesiam embed``, ``enroll`` and ``run`` must produce
what the workstation's produce.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.mqtt import MosquittoBroker, Subscriber, wait_until
from tests.support.signals import HELDOUT_ENROLLED

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "tensorflow", "librosa")


# ------------------------------------------------------------------------------------------------
# the device install


DEVICE_VENVS = (".venv-litert", ".venv-tflite")


def edgesiam(venv: Path | None, *args: str, timeout: float = 120) -> str:
    """``edgesiam ARGS`` with a venv's entry point (None: this interpreter's edgesiam)."""
    if venv is None:
        cmd = [sys.executable, "-m", "edgesiam", *args]
    else:
        cmd = [str(venv / "bin" / "edgesiam"), *args]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def heldout_subset(audio_heldout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three takes of each held-out voice (enough to compare embeddings, quick to embed)."""
    root = tmp_path_factory.mktemp("subset") / "data"
    for folder in sorted(p for p in audio_heldout.iterdir() if p.is_dir()):
        (root / folder.name).mkdir(parents=True)
        for take in sorted(folder.glob("*.wav"))[:3]:
            (root / folder.name / take.name).write_bytes(take.read_bytes())
    return root


def device_outputs(
    venv: Path | None,
    bundle: Path,
    data: Path,
    heldout: Path,
    heldout_stream: Path,
    out: Path,
    broker: MosquittoBroker | None = None,
) -> dict[str, Any]:
    """embed, enroll and run (no MQTT, and to ``broker``) with one install; what each produced."""
    out.mkdir(parents=True, exist_ok=True)
    edgesiam(venv, "embed", str(bundle), str(data), "-o", str(out / "emb.npz"), "-q")
    gallery = out / "gallery.npz"
    for label in HELDOUT_ENROLLED:
        takes = [str(p) for p in sorted((heldout / label).glob("*.wav"))[:2]]
        edgesiam(venv, "enroll", "--bundle", str(bundle), "--gallery", str(gallery),
                 "--label", label, *takes)  # fmt: skip
    run = [
        *("run", "--bundle", str(bundle), "--gallery", str(gallery)),
        *("--source", f"file:{heldout_stream}", "--log-level", "warning"),
    ]
    stdout = edgesiam(venv, *run, "--no-mqtt", "--state-dir", str(out / "state"))
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = {
        "embeddings": np.load(out / "emb.npz"),
        "gallery": dict(np.load(gallery, allow_pickle=False)),
        "events": events,
    }
    if broker is not None:
        device = "dev-" + out.name.strip(".").replace(".", "-")
        sub = Subscriber(broker.host, broker.port, [f"edgesiam/{device}/#"]).start()
        try:
            edgesiam(venv, *run, "--broker", broker.url, "--device-id", device,
                     "--state-dir", str(out / "mqtt-state"))  # fmt: skip
            topic = f"edgesiam/{device}/event"
            wait_until(lambda: len(sub.on(topic)) >= len(events), 10)
            result["mqtt_events"] = [m.json() for m in sub.on(topic)]
            result["statuses"] = [m.payload for m in sub.on(f"edgesiam/{device}/status")]
        finally:
            sub.stop()
    return result


@pytest.fixture(scope="module")
def workstation(
    audio_bundle: Path,
    heldout_subset: Path,
    audio_heldout: Path,
    heldout_stream: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("workstation")
    return device_outputs(None, audio_bundle, heldout_subset, audio_heldout, heldout_stream, out)


def key(events: list[dict[str, Any]]) -> list[tuple[str, float]]:
    return [(e["label"], e["offset_s"]) for e in events]


@pytest.mark.parametrize("name", DEVICE_VENVS)
def test_the_device_install_embeds_enrolls_and_runs_like_the_workstation(
    name: str,
    audio_bundle: Path,
    heldout_subset: Path,
    audio_heldout: Path,
    heldout_stream: Path,
    workstation: dict[str, Any],
    mosquitto: MosquittoBroker,
    tmp_path: Path,
) -> None:
    venv = ROOT / name
    if not (venv / "bin" / "edgesiam").exists():
        pytest.skip(f"{name} does not exist (make device-venvs creates it)")
    # nothing heavy can be imported there, and the device commands do not try to
    probe = (
        "import importlib.util, json, sys\n"
        "import edgesiam.cli as cli\n"
        "cli.build_parser()\n"
        "import edgesiam.runtime.pipeline, edgesiam.mqtt.publisher, edgesiam.runtime.gallery_cli\n"
        "import edgesiam.model.embedders, edgesiam.model.interpreters, paho.mqtt.client\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps({'importable': [m for m in heavy if importlib.util.find_spec(m)],\n"
        "                  'imported': [m for m in heavy if m in sys.modules]}))\n"
    )
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == {"importable": [], "imported": []}

    got = device_outputs(
        venv,
        audio_bundle,
        heldout_subset,
        audio_heldout,
        heldout_stream,
        tmp_path / name,
        mosquitto,
    )
    ours, theirs = got["embeddings"], workstation["embeddings"]
    assert list(ours["labels"]) == list(theirs["labels"])
    cosines = np.sum(ours["embeddings"] * theirs["embeddings"], axis=1)
    assert cosines.min() > 0.999, cosines.min()
    g, ref = got["gallery"], workstation["gallery"]
    assert list(g["labels"]) == list(ref["labels"]) and set(g["labels"]) == set(HELDOUT_ENROLLED)
    assert np.sum(g["embeddings"] * ref["embeddings"], axis=1).min() > 0.999

    events, reference = got["events"], workstation["events"]
    assert reference and key(events) == key(reference)
    for a, b in zip(events, reference, strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=0.01)
    assert {e["label"] for e in events} == set(HELDOUT_ENROLLED)
    # the same events over MQTT, through paho in the device install
    assert key(got["mqtt_events"]) == key(reference)
    assert got["statuses"][0] == b"online" and got["statuses"][-1] == b"offline"
