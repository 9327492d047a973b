"""Corrupt or tampered bundles, galleries, configs and outboxes are refused, and left as they were.

Each case damages one file of a working device setup (a copy of the shipped ``export/events``
bundle, a gallery enrolled with it, a runtime config, the outbox of a previous run), then runs the
real ``edgesiam`` commands a device runs on it (``run``, ``enroll``, ``validate``). Each must stop
with exit code 2 (``edgesiam: error: …``, no traceback) and a message that names the file and
says what is wrong, and every byte of the setup must be as it was: nothing repaired, replaced,
truncated or created behind the user's back.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from edgesiam.cli import main
from tests.support.device import RATE
from tests.support.paths import EVENTS_BUNDLE, ROOT
from tests.support.signals import voice

Tamper = Callable[[Path], None]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working setup: bundle/, gallery.npz (enrolled with it), other.npz (enrolled with
    another model), voice.wav, device.yaml and state/outbox.sqlite3 from a finished run."""
    root = tmp_path_factory.mktemp("pristine")
    shutil.copytree(EVENTS_BUNDLE, root / "bundle")
    sf.write(root / "voice.wav", voice(3.0, seed=1), RATE, subtype="PCM_16")
    for gallery, bundle in (
        ("gallery.npz", root / "bundle"),
        ("other.npz", ROOT / "export/speaker"),
    ):
        args = ["enroll", "--bundle", str(bundle), "--gallery", str(root / gallery)]
        assert main([*args, "--label", "voice", str(root / "voice.wav")]) == 0
    config = {
        "bundle": "bundle",
        "gallery": "gallery.npz",
        "state_dir": "state",
        "device_id": "tampered",
        "source": {"type": "file", "path": "voice.wav"},
        "mqtt": {"enabled": False},
    }
    (root / "device.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", "--config", str(root / "device.yaml"), "--log-level", "error"]) == 0
    assert (root / "state" / "outbox.sqlite3").is_file()
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` and its sha256."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path, keep: float = 0.5) -> None:
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


def garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def edit_manifest(edit: Callable[[dict[str, object]], None]) -> Tamper:
    def tamper(root: Path) -> None:
        path = root / "bundle" / "manifest.json"
        manifest = json.loads(path.read_text())
        edit(manifest)
        path.write_text(json.dumps(manifest, indent=1))

    return tamper


def _sha_of_model(manifest: dict[str, object]) -> None:
    files = manifest["files"]
    assert isinstance(files, dict)
    files["model.tflite"] = "0" * 64


def _dim_as_text(manifest: dict[str, object]) -> None:
    manifest["embedding_dim"] = "sixty-four"


def _consistent_garbage_model(root: Path) -> None:
    """A model replaced by garbage *and* its hash updated: integrity holds, the model does not."""
    model = root / "bundle" / "model.tflite"
    garbage(model)
    path = root / "bundle" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"]["model.tflite"] = hashlib.sha256(model.read_bytes()).hexdigest()
    path.write_text(json.dumps(manifest, indent=1))


BUNDLE_CASES: dict[str, tuple[Tamper, list[str]]] = {
    "model byte flipped": (
        lambda r: flip_byte(r / "bundle" / "model.tflite"),
        ["model.tflite does not match its sha256 in manifest.json", "modified or damaged"],
    ),
    "model truncated": (
        lambda r: truncate(r / "bundle" / "model.tflite"),
        ["model.tflite does not match its sha256"],
    ),
    "front-end replaced": (
        lambda r: garbage(r / "bundle" / "frontend.npz"),
        ["frontend.npz does not match its sha256"],
    ),
    "model missing": (
        lambda r: (r / "bundle" / "model.tflite").unlink(),
        ["model.tflite is missing"],
    ),
    "hash in the manifest edited": (
        edit_manifest(_sha_of_model),
        ["model.tflite does not match its sha256"],
    ),
    "manifest field of the wrong type": (
        edit_manifest(_dim_as_text),
        ["manifest.json: invalid manifest", "embedding_dim"],
    ),
    "manifest truncated": (
        lambda r: truncate(r / "bundle" / "manifest.json"),
        ["manifest.json: cannot be read as JSON"],
    ),
    "model garbage with a matching hash": (
        _consistent_garbage_model,
        ["model.tflite", "cannot load this model"],
    ),
}

GALLERY_CASES: dict[str, tuple[Tamper, list[str]]] = {
    "truncated": (
        lambda r: truncate(r / "gallery.npz"),
        ["gallery.npz: is not a readable edgesiam gallery", "It was left as it is"],
    ),
    "garbage": (
        lambda r: garbage(r / "gallery.npz"),
        ["gallery.npz: is not a readable edgesiam gallery", "It was left as it is"],
    ),
    "enrolled with another model": (
        lambda r: shutil.copyfile(r / "other.npz", r / "gallery.npz"),
        ["gallery.npz: this gallery was enrolled with a different model", "Re-enroll"],
    ),
}


def _yaml(text: str) -> Tamper:
    return lambda r: (r / "device.yaml").write_text(text)


_BASE = "bundle: bundle\ngallery: gallery.npz\nstate_dir: state\nsource: {type: file, path: v}\n"

CONFIG_CASES: dict[str, tuple[Tamper, list[str]]] = {
    "YAML garbage": (_yaml("bundle: [unclosed\n"), ["device.yaml: not valid YAML", "line 1"]),
    "not text": (lambda r: garbage(r / "device.yaml"), ["device.yaml"]),
    "not a mapping": (_yaml("- bundle\n- source\n"), ["device.yaml"]),
    "wrong type": (
        _yaml(_BASE + "outbox: {max_pending: lots}\n"),
        ["device.yaml: 1 problem(s)", "outbox.max_pending", "integer"],
    ),
    "out of range": (
        _yaml(_BASE + "mqtt: {keepalive: -3}\n"),
        ["device.yaml: 1 problem(s)", "mqtt.keepalive"],
    ),
    "unknown key": (
        _yaml(_BASE + "matching: {treshold: 0.5}\n"),
        ["matching.treshold: unknown key", "check its spelling"],
    ),
}


def setup_copy(pristine: Path, tmp_path: Path) -> Path:
    root = tmp_path / "device"
    shutil.copytree(pristine, root)
    return root


def refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``edgesiam ARGS``: it must fail cleanly (code 2); returns what it printed."""
    code = main(args)
    out = capsys.readouterr()
    assert code == 2, f"exit {code}\n{out.err}"
    assert out.err.startswith("edgesiam: error: "), out.err
    assert "Traceback" not in out.err
    return out.err


def enroll_args(root: Path) -> list[str]:
    return [
        *("enroll", "--bundle", str(root / "bundle"), "--gallery", str(root / "gallery.npz")),
        *("--label", "another", str(root / "voice.wav")),
    ]


def run_args(root: Path) -> list[str]:
    return ["run", "--config", str(root / "device.yaml"), "--log-level", "error"]


@pytest.mark.parametrize("case", list(BUNDLE_CASES))
def test_a_tampered_bundle_is_refused_and_left_alone(
    case: str, pristine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = setup_copy(pristine, tmp_path)
    tamper, expected = BUNDLE_CASES[case]
    tamper(root)
    before = snapshot(root)
    for args in (run_args(root), enroll_args(root)):
        message = refused(args, capsys)
        for fragment in expected:
            assert fragment in message, message
        assert snapshot(root) == before


@pytest.mark.parametrize("case", list(GALLERY_CASES))
def test_a_damaged_gallery_is_refused_and_left_alone(
    case: str, pristine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = setup_copy(pristine, tmp_path)
    tamper, expected = GALLERY_CASES[case]
    tamper(root)
    before = snapshot(root)
    commands = [run_args(root), enroll_args(root)]
    if case != "enrolled with another model":  # intact: without a bundle, forget may edit it
        commands.append(
            ["gallery", "forget", "--gallery", str(root / "gallery.npz"), "--label", "x"]
        )
    for args in commands:
        message = refused(args, capsys)
        for fragment in expected:
            assert fragment in message, message
        assert snapshot(root) == before


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_a_broken_config_is_refused_with_its_path(
    case: str, pristine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = setup_copy(pristine, tmp_path)
    tamper, expected = CONFIG_CASES[case]
    tamper(root)
    before = snapshot(root)
    message = refused(run_args(root), capsys)
    for fragment in expected:
        assert fragment in message, message
    code = main(["validate", str(root / "device.yaml")])
    out = capsys.readouterr()
    assert code != 0
    assert "Traceback" not in out.err
    assert snapshot(root) == before


def test_a_damaged_outbox_is_refused_and_left_alone(
    pristine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = setup_copy(pristine, tmp_path)
    outbox = root / "state" / "outbox.sqlite3"
    for suffix in ("-wal", "-shm"):
        assert not Path(f"{outbox}{suffix}").exists()  # a clean exit leaves one file
    garbage(outbox)
    before = snapshot(root)
    message = refused(run_args(root), capsys)
    assert f"outbox {outbox}: cannot open" in message, message
    assert snapshot(root) == before
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(outbox).execute("PRAGMA integrity_check").fetchone()
