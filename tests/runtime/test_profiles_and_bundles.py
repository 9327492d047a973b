"""The shipped device profiles against what ships with them: the extra each profile's install line
names holds what its source imports (item: `source: mic` without sounddevice), and each profile
runs each shipped bundle of its modality, or, on a Coral, refuses with the compile step."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgesiam.errors import BundleError
from edgesiam.export.edgetpu import compile_bundle
from edgesiam.runtime.config import RuntimeConfig, load_runtime_config
from edgesiam.runtime.pipeline import Runtime
from edgesiam.runtime.run_cli import validate_runtime_file
from tests.support.edgetpu import fake_compiler
from tests.support.signals import make_motion, voice

ROOT = Path(__file__).resolve().parents[2]
PROFILES = sorted((ROOT / "firmware_configs").glob("*.yaml"))
EXTRAS: dict[str, list[str]] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
    "optional-dependencies"
]
INSTALL_LINE = re.compile(
    r"^# Install: pip install 'edgesiam-VERSION-py3-none-any\.whl\[([a-z,]+)\]'", re.M
)
SOURCE_NEEDS = {"mic": "sounddevice", "serial": "pyserial", "mqtt": "paho-mqtt"}
DEVICE = {"paho-mqtt", "ai-edge-litert"}


def shipped() -> dict[str, list[str]]:
    """Every bundle in ``export/`` by its manifest's modality: a new shipped bundle is run too."""
    found: dict[str, list[str]] = {"audio": [], "sensor": []}
    for manifest in sorted((ROOT / "export").glob("*/manifest.json")):
        found[json.loads(manifest.read_text())["modality"]].append(manifest.parent.name)
    return found


SHIPPED = shipped()


def packages(extras: list[str]) -> set[str]:
    """The distributions the extras install, following ``edgesiam[other]`` references."""
    found: set[str] = set()
    for extra in extras:
        for requirement in EXTRAS[extra]:
            name = re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()
            if name == "edgesiam":
                found |= packages(re.findall(r"\[([^\]]+)\]", requirement)[0].split(","))
            else:
                found.add(name)
    return found


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_each_profile_names_the_extras_its_source_needs(path: Path) -> None:
    line = INSTALL_LINE.search(path.read_text())
    assert line, f"{path.name}: no '# Install: pip install …whl[EXTRAS]' line"
    installed = packages(line.group(1).split(","))
    source = validate_runtime_file(path).source.type
    assert installed >= DEVICE
    needed = SOURCE_NEEDS.get(source)
    assert needed is None or needed in installed, f"{path.name}: source {source} needs {needed}"


def test_the_audio_extra_is_the_device_extra_and_sounddevice() -> None:
    assert "sounddevice" not in packages(["device"])
    assert packages(["audio"]) == packages(["device"]) | {"sounddevice"}


def test_the_readme_installs_what_the_profiles_name() -> None:
    readme = (ROOT / "README.md").read_text()
    for needed in ("make dist", "whl[audio]'", "whl[device,serial]'", "edgesiam compile-edgetpu"):
        assert needed in readme, needed
    assert "pip install 'edgesiam[device]'" not in readme  # not on PyPI


# --- each profile with each shipped bundle ---------------------------------------------------


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("streams")
    sf.write(folder / "voice.wav", voice(3.0, seed=3), 16000, subtype="PCM_16")
    np.save(folder / "motion.npy", make_motion(2, 400, 50, np.random.default_rng(0)))
    return {"audio": folder / "voice.wav", "sensor": folder / "motion.npy"}


def profile_with(profile: Path, bundle: Path, stream: Path, tmp_path: Path) -> RuntimeConfig:
    """The profile as a device would load it, with this bundle, a recorded stream, no broker."""
    return load_runtime_config(
        profile,
        {
            "bundle": str(bundle),
            "state_dir": str(tmp_path / "state"),
            "source": {"type": "file", "path": str(stream)},
            "mqtt.enabled": False,
        },
    )


PAIRS = [
    (profile, bundle)
    for profile in PROFILES
    for bundle in SHIPPED["sensor" if "-imu" in profile.stem else "audio"]
]


@pytest.mark.parametrize(("profile", "bundle"), PAIRS, ids=lambda v: getattr(v, "stem", v))
def test_each_profile_runs_each_shipped_bundle_or_names_the_compile_step(
    profile: Path, bundle: str, streams: dict[str, Path], tmp_path: Path
) -> None:
    modality = "sensor" if bundle in SHIPPED["sensor"] else "audio"
    config = profile_with(profile, ROOT / "export" / bundle, streams[modality], tmp_path)
    if config.interpreter.delegate == "edgetpu":
        with pytest.raises(BundleError) as info:
            Runtime(config)
        message = str(info.value)
        assert "no 'edgetpu' model" in message and "x86-64 Linux" in message
        assert "edgesiam compile-edgetpu BUNDLE" in message
        return
    summary = Runtime(config).run()
    assert summary.reason == "end" and summary.windows > 0


@pytest.mark.parametrize(
    "profile", [p for p in PROFILES if "coral" in p.stem], ids=lambda p: p.stem
)
def test_a_coral_profile_takes_a_compiled_bundle(
    profile: Path, streams: dict[str, Path], tmp_path: Path
) -> None:
    """After compile-edgetpu the profile and the bundle agree: only the TPU is missing here."""
    name = "motion" if "-imu" in profile.stem else "speaker"
    bundle = Path(shutil.copytree(ROOT / "export" / name, tmp_path / name))
    compile_bundle(bundle, str(fake_compiler(tmp_path / "bin")))
    modality = "sensor" if name == "motion" else "audio"
    config = profile_with(profile, bundle, streams[modality], tmp_path)
    with pytest.raises(BundleError, match=r"Edge TPU delegate library 'libedgetpu\.so\.1'"):
        Runtime(config)
