"""The device install on a Raspberry Pi's CPU: aarch64 under qemu-user (``make test-arm64``).

For each Debian arm64 root made by ``scripts/arm64_root.sh`` (bookworm: Python 3.11, as Pi OS
Bookworm; trixie: Python 3.13, as Pi OS on Trixie) and each interpreter (ai-edge-litert,
tflite-runtime), this checkout's wheel is installed there from aarch64 wheels only: with
ai-edge-litert by ``firmware_configs/install.sh``, the way a Pi is set up. Then, under emulation,
with each shipped bundle and real held-out recordings (``edgesiam data prepare``):

- every window of the recordings is embedded: the cosine to the x86 run of the same interpreter
  (mean and min) is the parity figure;
- ``edgesiam enroll`` and ``edgesiam run`` on a recording made of held-out takes, publishing to a
  Mosquitto on the host: the events equal the x86 run's (labels, seq and offsets; scores within
  int8 tolerance).

The installer itself is checked in each root: the service user in ``audio``, the profile, the
unit passing ``systemd-analyze verify``, and a second run changing nothing. Where a combination
has no aarch64 wheel the test checks that pip says exactly that, as the README's "Runs on" table
states (``KNOWN_MISSING``); a wheel appearing fails the test so that the table is brought up to
date. Figures go to runs/arm64.json. Emulated timings are not a Pi's and are not reported.
Marked slow and arm64: never part of ``make test``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from edgesiam.data.readers import read_audio, read_sensor
from tests.support.mqtt import MosquittoBroker, Subscriber, wait_until
from tests.support.wheel import build_wheel

pytestmark = [pytest.mark.slow, pytest.mark.arm64, pytest.mark.timeout(5400)]

ROOT = Path(__file__).resolve().parents[2]
ROOT_SCRIPT = ROOT / "scripts" / "arm64_root.sh"
DATA = Path(os.environ.get("EDGESIAM_DATA", str(ROOT / "data")))
REPORT = Path(os.environ.get("ARM64_REPORT", str(ROOT / "runs" / "arm64.json")))
ALL_SUITES = {"bookworm": "3.11", "trixie": "3.13"}
# ARM64_SUITES=bookworm limits the run to some roots (default: all)
SUITES = {
    s: v for s, v in ALL_SUITES.items() if s in os.environ.get("ARM64_SUITES", ",".join(ALL_SUITES))
}
INTERPRETERS = ("ai-edge-litert", "tflite-runtime")
# bundle -> (held-out split under DATA, takes per label for the parity set, stream labels: the
# first three enrolled, the last two never enrolled). The labels are distinct ones: aarch64's int8
# kernels round a little differently from x86's (cosine ~0.998), so a stream of near-identical
# voices would flip near-tie decisions and test the data instead of the install.
BUNDLES = {
    "speaker": ("speech/test", 3, ("kt-ca", "kt-el", "kl-cs", "kt-ga", "kl-he")),
    "events": ("events/test", 4, ("clap", "cowbell", "hw-droplet", "hw-hell", "si-cembalo")),
    "motion": ("hapt/test", 3, ("laying", "walking", "walking_upstairs", "sitting", "standing")),
}
# combinations with no aarch64 wheel on PyPI, as the README's "Runs on" table says
KNOWN_MISSING = {
    ("trixie", "tflite-runtime"): "tflite-runtime",
}
SCORE_TOLERANCE = 0.01  # one int8 step of a cosine is about 1/127; the scores are rounded to 1e-5
MIN_COSINE = 0.99
GUEST_WORK = "/srv/edgesiam-arm64"
TFLITE_VENV = "/opt/edgesiam-tflite"

WINDOWS_SCRIPT = """
import json, platform, sys
import numpy as np
from edgesiam.core.windowing import frame
from edgesiam.data.readers import iter_recordings, scan_dataset
from edgesiam.model.embedders import embed_windows
from edgesiam.model.interpreters import load_model

model = load_model(sys.argv[1])
info = scan_dataset(sys.argv[2])
rate = model.sample_rate if info.modality == "audio" else None
out, names = [], []
for rec, x in iter_recordings(info, sample_rate=rate, progress=False):
    windows = frame(x, model.window, model.hop)
    if len(windows):
        out.append(embed_windows(model, windows))
        names += [f"{rec.label}/{rec.path.name}#{i}" for i in range(len(windows))]
np.savez(sys.argv[3], embeddings=np.concatenate(out), names=np.array(names))
print(json.dumps({"backend": model.backend, "numpy": np.__version__,
                  "python": platform.python_version(), "machine": platform.machine()}))
"""


# --- the arm64 roots ------------------------------------------------------------------------------


def root_dir(suite: str) -> Path:
    out = subprocess.run(["bash", str(ROOT_SCRIPT), "path", suite], capture_output=True, text=True)
    return Path(out.stdout.strip())


def in_root(suite: str, *cmd: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """CMD run as an arm64 program inside the suite's root (not checked)."""
    return subprocess.run(
        ["bash", str(ROOT_SCRIPT), "exec", suite, *cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def checked(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (
        f"{' '.join(map(str, done.args))}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )
    return done.stdout


def wheel_id(wheel: Path) -> str:
    """What firmware_configs/install.sh stamps: the sha256 of the wheel's RECORD (timestamp-free)."""
    with zipfile.ZipFile(wheel) as z:
        record = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
        return hashlib.sha256(z.read(record)).hexdigest()[:16]


@dataclass
class Report:
    """What runs/arm64.json holds: per suite and interpreter, what installed and how close it is."""

    data: dict[str, Any] = field(default_factory=dict)

    def put(self, *keys: str, value: Any) -> None:
        node = self.data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value


@pytest.fixture(scope="session")
def report() -> Iterator[Report]:
    rep = Report(
        {
            "host": platform.machine(),
            "note": "parity of aarch64 (qemu-user) against x86_64; emulated timings are not Pi timings and are not reported",
        }
    )
    started = time.monotonic()
    yield rep
    rep.put("test_seconds", value=round(time.monotonic() - started, 1))
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(rep.data, indent=2) + "\n")


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout as a wheel, the artefact a Pi installs."""
    return build_wheel(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Per bundle: a parity set, an enrolment set and a stream, from real held-out recordings."""
    checked(
        subprocess.run(
            [
                sys.executable,
                "-m",
                "edgesiam",
                "data",
                "prepare",
                "speech",
                "events",
                "hapt",
                "--root",
                str(DATA),
            ],
            capture_output=True,
            text=True,
            timeout=3600,
        )
    )
    work = tmp_path_factory.mktemp("arm64-work")
    for bundle, (split, per_label, stream) in BUNDLES.items():
        make_sets(DATA / split, work / bundle, ROOT / "export" / bundle, per_label, stream)
    shutil.copytree(ROOT / "export", work / "bundles")  # the same bundle files on both sides
    (work / "windows.py").write_text(WINDOWS_SCRIPT)
    return work


def make_sets(
    split: Path, out: Path, bundle: Path, per_label: int, stream: tuple[str, ...]
) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    labels = sorted(p.name for p in split.iterdir() if p.is_dir())
    takes = {
        label: sorted(p for p in (split / label).iterdir() if p.suffix in (".wav", ".npy"))
        for label in labels
    }
    for name, chosen in (("parity", labels), ("enroll", list(stream[:3]))):
        for label in chosen:
            (out / name / label).mkdir(parents=True)
            picked = takes[label][:per_label] if name == "parity" else takes[label][:2]
            for take in picked:
                shutil.copy(take, out / name / label / take.name)
        shutil.copy(split / "dataset.toml", out / name / "dataset.toml")
    # enrolled and never-enrolled labels in turn, four takes each (for an enrolled label: its two
    # enrolment takes and two it was not enrolled with)
    order = [stream[0], stream[3], stream[1], stream[4], stream[2]]
    if manifest["modality"] == "audio":
        rate = int(manifest["sample_rate"])
        pause = np.zeros(rate // 2, dtype=np.float32)
        parts = [
            np.concatenate([read_audio(t, rate), pause])
            for label in order
            for t in takes[label][:4]
        ]
        sf.write(out / "stream.wav", np.concatenate(parts), rate, subtype="PCM_16")
    else:
        parts = [read_sensor(t) for label in order for t in takes[label][:4]]
        np.save(out / "stream.npy", np.concatenate(parts).astype(np.float32))


def stream_of(bundle_work: Path) -> str:
    return next(p.name for p in bundle_work.iterdir() if p.name.startswith("stream."))


# --- an install: x86 on this machine, or aarch64 inside a root --------------------------------------


@dataclass
class Install:
    """One installed edgesiam: runs its console script and python on the same files."""

    name: str
    interpreter: str
    suite: str | None  # None: x86 on this machine
    prefix: str  # the venv (guest path inside a root)
    work: str  # the workspace as this install sees it

    def argv(self, program: str, *args: str) -> list[str]:
        exe = f"{self.prefix}/bin/{program}"
        env = [f"EDGESIAM_INTERPRETER={self.interpreter}"]
        if self.suite is None:
            env.append(f"PYTHONPATH={ROOT}")
            return ["env", "-u", "VIRTUAL_ENV", *env, exe, *args]
        return ["bash", str(ROOT_SCRIPT), "exec", self.suite, "env", *env, exe, *args]

    def run(self, program: str, *args: str, timeout: float = 1800) -> str:
        done = subprocess.run(
            self.argv(program, *args), capture_output=True, text=True, timeout=timeout
        )
        return checked(done)


def x86_install(interpreter: str, work: Path) -> Install:
    """The x86 reference: the device venv of that interpreter (make device-venvs), this checkout's
    code on PYTHONPATH; ai-edge-litert falls back to the workstation venv."""
    venv = ROOT / (".venv-litert" if interpreter == "ai-edge-litert" else ".venv-tflite")
    if not (venv / "bin" / "python").exists():
        if interpreter != "ai-edge-litert":
            pytest.fail(f"{venv.name} is missing: make device-venvs (make test-arm64 does it)")
        venv = Path(sys.executable).parent.parent
    return Install(f"x86_64-{interpreter}", interpreter, None, str(venv), str(work))


@dataclass
class Outcome:
    """What one install produced with one bundle."""

    windows: np.ndarray
    names: list[str]
    info: dict[str, Any]
    events: list[dict[str, Any]]
    mqtt_events: list[dict[str, Any]]
    statuses: list[bytes]
    gallery_labels: list[str]


def outcome(inst: Install, bundle: str, broker: MosquittoBroker, host_work: Path) -> Outcome:
    """Window embeddings, enroll and run (to the broker) for one bundle with one install."""
    tag = f"{inst.name}-{bundle}"
    out_host = host_work / "out" / tag
    shutil.rmtree(out_host, ignore_errors=True)
    out_host.mkdir(parents=True)
    w = f"{inst.work}/{bundle}"
    out = f"{inst.work}/out/{tag}"
    bundle_dir = f"{inst.work}/bundles/{bundle}"
    info = json.loads(
        inst.run(
            "python", f"{inst.work}/windows.py", bundle_dir, f"{w}/parity", f"{out}/windows.npz"
        ).splitlines()[-1]
    )
    gallery = f"{out}/gallery.npz"
    inst.run(
        "edgesiam",
        "enroll",
        "--bundle",
        bundle_dir,
        "--gallery",
        gallery,
        "--from-dataset",
        f"{w}/enroll",
    )
    device = tag.replace(".", "-")
    sub = Subscriber(broker.host, broker.port, [f"edgesiam/{device}/#"]).start()
    try:
        stdout = inst.run(
            "edgesiam", "run", "--bundle", bundle_dir, "--gallery", gallery,
            "--source", f"file:{w}/{stream_of(host_work / bundle)}", "--broker", broker.url,
            "--device-id", device, "--state-dir", f"{out}/state", "--print-events",
            "--log-level", "warning",
        )  # fmt: skip
        events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        topic = f"edgesiam/{device}/event"
        wait_until(lambda: len(sub.on(topic)) >= len(events), 20)
        mqtt_events = [m.json() for m in sub.on(topic)]
        statuses = [m.payload for m in sub.on(f"edgesiam/{device}/status")]
    finally:
        sub.stop()
    saved = np.load(out_host / "windows.npz")
    labels = [str(v) for v in np.load(out_host / "gallery.npz", allow_pickle=False)["labels"]]
    return Outcome(
        saved["embeddings"],
        [str(n) for n in saved["names"]],
        info,
        events,
        mqtt_events,
        statuses,
        labels,
    )


def key(events: list[dict[str, Any]]) -> list[tuple[str, int, float]]:
    return [(e["label"], int(e["seq"]), float(e["offset_s"])) for e in events]


# --- fixtures: the broker, the roots with the workspace, the installs ------------------------------


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    b = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"))
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def roots(report: Report) -> dict[str, Path]:
    """Each suite's root, built once (cached under .cache/arm64)."""
    out = {}
    for suite in SUITES:
        started = time.monotonic()
        checked(
            subprocess.run(
                ["bash", str(ROOT_SCRIPT), "build", suite],
                capture_output=True,
                text=True,
                timeout=3600,
            )
        )
        report.put(suite, "root_seconds", value=round(time.monotonic() - started, 1))
        out[suite] = root_dir(suite)
    return out


def stage(root: Path, workspace: Path, wheel: Path) -> Path:
    """The workspace, bundles, wheel and firmware_configs copied into a root (fresh each session)."""
    guest = root / GUEST_WORK.lstrip("/")
    shutil.rmtree(guest, ignore_errors=True)
    shutil.copytree(workspace, guest)
    shutil.copytree(ROOT / "firmware_configs", guest / "firmware_configs")
    (guest / "dist").mkdir()
    shutil.copy(wheel, guest / "dist" / wheel.name)
    return guest


INSTALLER_STATE = ("/opt/edgesiam/bundles", "/etc/edgesiam", "/etc/systemd/system/edgesiam.service")


@pytest.fixture(scope="session")
def installs(
    roots: dict[str, Path], workspace: Path, wheel: Path, report: Report
) -> dict[str, dict[str, Any]]:
    """Per suite: firmware_configs/install.sh run on a root without the service user, profile,
    bundles or unit (the venv is kept between sessions: the installer skips an installed wheel)."""
    results = {}
    for suite, root in roots.items():
        stage(root, workspace, wheel)
        reset = (
            "userdel edgesiam 2>/dev/null; groupdel edgesiam 2>/dev/null; rm -rf "
            + " ".join(INSTALLER_STATE)
            + " /var/lib/edgesiam; true"
        )
        checked(in_root(suite, "bash", "-c", reset))
        started = time.monotonic()
        done = in_root(
            suite,
            "bash",
            f"{GUEST_WORK}/firmware_configs/install.sh",
            "--profile",
            "pi4-audio",
            "--bundles",
            f"{GUEST_WORK}/bundles",
            f"{GUEST_WORK}/dist",
        )
        results[suite] = {"first": done, "seconds": round(time.monotonic() - started, 1)}
        report.put(
            suite,
            "install_sh",
            value={
                "rc": done.returncode,
                "seconds": results[suite]["seconds"],
                "tail": done.stderr[-600:] if done.returncode else "",
            },
        )
    return results


def missing_wheel(stderr: str, suite: str, interpreter: str) -> str | None:
    """The package pip found no aarch64 wheel for, when that is why an install failed."""
    marker = "No matching distribution found for "
    for line in stderr.splitlines():
        if marker in line:
            return line.split(marker, 1)[1].split()[0].split("=")[0].split(">")[0].split("<")[0]
    return None


def expect_wheels(
    suite: str, interpreter: str, failed: subprocess.CompletedProcess[str] | None, report: Report
) -> bool:
    """True when the combination installed; a failure must be the known missing wheel, and a
    known missing wheel must still be missing."""
    known = KNOWN_MISSING.get((suite, interpreter))
    if failed is None:
        assert known is None, (
            f"{known} now has an aarch64 wheel for Python {SUITES[suite]}: update KNOWN_MISSING and the README's Runs on table"
        )
        return True
    package = missing_wheel(failed.stderr, suite, interpreter)
    report.put(suite, interpreter, "installed", value=False)
    report.put(suite, interpreter, "no_aarch64_wheel_for", value=package)
    assert package is not None and package == known, (
        f"installing for {interpreter} on Python {SUITES[suite]} failed for another reason than a known missing wheel:\n{failed.stderr[-3000:]}"
    )
    return False


def arm_install(
    suite: str, interpreter: str, installs: dict[str, dict[str, Any]], wheel: Path, report: Report
) -> Install | None:
    """The aarch64 install of that interpreter in that root, or None where it has no wheel."""
    if interpreter == "ai-edge-litert":
        first = installs[suite]["first"]
        if not expect_wheels(suite, interpreter, first if first.returncode else None, report):
            return None
        return Install(
            f"{suite}-{interpreter}", interpreter, suite, "/opt/edgesiam/venv", GUEST_WORK
        )
    stamp = f"{TFLITE_VENV}/.edgesiam-wheel"
    want = wheel_id(wheel)
    root = root_dir(suite)
    if not (
        (root / stamp.lstrip("/")).exists()
        and (root / stamp.lstrip("/")).read_text().strip() == want
    ):
        script = (
            f"set -e; rm -rf {TFLITE_VENV}; python3 -m venv {TFLITE_VENV}; "
            f"{TFLITE_VENV}/bin/pip install -q --only-binary=:all: {GUEST_WORK}/dist/{wheel.name} tflite-runtime 'numpy<2' paho-mqtt; "
            f"echo {want} > {stamp}"
        )
        done = in_root(suite, "bash", "-c", script)
        if not expect_wheels(suite, interpreter, done if done.returncode else None, report):
            return None
    else:
        expect_wheels(suite, interpreter, None, report)
    return Install(f"{suite}-{interpreter}", interpreter, suite, TFLITE_VENV, GUEST_WORK)


# --- the tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", list(SUITES))
def test_install_script_on_the_arm64_root(
    suite: str, installs: dict[str, dict[str, Any]], report: Report
) -> None:
    first = installs[suite]["first"]
    if first.returncode != 0:
        # the only acceptable failure: pip naming a package with no aarch64 wheel for this Python
        assert expect_wheels(suite, "ai-edge-litert", first, report) is False
        assert "could not install the dependencies" in first.stderr
        return
    out = first.stdout
    for line in (
        "user edgesiam: created",
        "group audio: edgesiam added",
        "profile: pi4-audio placed",
        "unit: /etc/systemd/system/edgesiam.service installed",
        "Next steps:",
    ):
        assert line in out, out
    groups = checked(in_root(suite, "id", "-nG", "edgesiam")).split()
    assert "audio" in groups and "edgesiam" in groups
    passwd = checked(in_root(suite, "getent", "passwd", "edgesiam"))
    assert passwd.strip().endswith(":/var/lib/edgesiam:/usr/sbin/nologin")
    root = root_dir(suite)
    staged = root / GUEST_WORK.lstrip("/") / "firmware_configs"
    for placed, shipped in (
        ("etc/systemd/system/edgesiam.service", "edgesiam.service"),
        ("etc/edgesiam/runtime.yaml", "pi4-audio.yaml"),
    ):
        assert (root / placed).read_bytes() == (staged / shipped).read_bytes()
    version = checked(in_root(suite, "/opt/edgesiam/venv/bin/edgesiam", "--version"))
    assert "edgesiam" in version
    verify = in_root(suite, "systemd-analyze", "verify", "/etc/systemd/system/edgesiam.service")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report.put(
        suite, "systemd_analyze_verify", value=(verify.stdout + verify.stderr).strip() or "clean"
    )
    # a second run changes nothing and succeeds
    snapshot = "find /opt/edgesiam /etc/edgesiam /var/lib/edgesiam /etc/systemd/system/edgesiam.service /etc/passwd /etc/group /etc/shadow -exec stat -c '%n %s %Y %U %G %a' {} + | sort | sha1sum"
    before = checked(in_root(suite, "bash", "-c", snapshot))
    again = in_root(
        suite,
        "bash",
        f"{GUEST_WORK}/firmware_configs/install.sh",
        "--profile",
        "pi4-audio",
        "--bundles",
        f"{GUEST_WORK}/bundles",
        f"{GUEST_WORK}/dist",
    )
    assert again.returncode == 0, again.stderr
    assert (
        "created" not in again.stdout and " installed" not in again.stdout.split("Next steps:")[0]
    ), again.stdout
    assert checked(in_root(suite, "bash", "-c", snapshot)) == before
    report.put(suite, "install_sh_idempotent", value=True)


@pytest.mark.parametrize("interpreter", INTERPRETERS)
@pytest.mark.parametrize("suite", list(SUITES))
def test_aarch64_enrolls_runs_and_embeds_like_x86(
    suite: str,
    interpreter: str,
    installs: dict[str, dict[str, Any]],
    wheel: Path,
    workspace: Path,
    broker: MosquittoBroker,
    report: Report,
    x86_outcomes: dict[tuple[str, str], Outcome],
) -> None:
    arm = arm_install(suite, interpreter, installs, wheel, report)
    if arm is None:
        return  # the README's table says this combination has no wheel; expect_wheels checked it
    host_work = root_dir(suite) / GUEST_WORK.lstrip("/")
    probe = arm.run(
        "python",
        "-c",
        "import importlib.util, json, platform, sys, numpy; import edgesiam.model.interpreters as it; b = it.find_backend(); print(json.dumps({'machine': platform.machine(), 'python': platform.python_version(), 'backend': b.name, 'version': b.version, 'numpy': numpy.__version__, 'heavy': [m for m in ('torch', 'tensorflow', 'librosa', 'scipy') if importlib.util.find_spec(m)]}))",
    )
    env = json.loads(probe.splitlines()[-1])
    assert env["machine"] == "aarch64" and env["python"].startswith(SUITES[suite])
    assert env["backend"] == interpreter and env["heavy"] == []
    report.put(suite, interpreter, "installed", value=True)
    report.put(suite, interpreter, "environment", value=env)
    for bundle in BUNDLES:
        ref = x86_outcomes[(interpreter, bundle)]
        got = outcome(arm, bundle, broker, host_work)
        assert got.names == ref.names
        cos = np.sum(got.windows * ref.windows, axis=1)
        parity = {
            "windows": len(cos),
            "mean_cosine": float(cos.mean()),
            "min_cosine": float(cos.min()),
        }
        events = {
            "x86_events": len(ref.events),
            "aarch64_events": len(got.events),
            "max_score_diff": max(
                (
                    abs(a["score"] - b["score"])
                    for a, b in zip(got.events, ref.events, strict=False)
                ),
                default=0.0,
            ),
        }
        report.put(suite, interpreter, "bundles", bundle, value={**parity, **events})
        assert parity["min_cosine"] >= MIN_COSINE, parity
        assert got.gallery_labels == ref.gallery_labels
        assert key(got.events) == key(ref.events)
        for a, b in zip(got.events, ref.events, strict=True):
            assert a["score"] == pytest.approx(b["score"], abs=SCORE_TOLERANCE)
        assert key(got.mqtt_events) == key(ref.events)
        assert b"online" in got.statuses and got.statuses[-1] == b"offline"


@pytest.fixture(scope="session")
def x86_outcomes(
    workspace: Path, broker: MosquittoBroker, report: Report
) -> dict[tuple[str, str], Outcome]:
    """The x86 runs the aarch64 ones are compared with (each bundle must give events there)."""
    out = {}
    for interpreter in INTERPRETERS:
        inst = x86_install(interpreter, workspace)
        for bundle in BUNDLES:
            result = outcome(inst, bundle, broker, workspace)
            assert result.events, (
                f"the x86 {interpreter} run of {bundle} gave no event: nothing to compare"
            )
            assert result.info["backend"] == interpreter
            out[(interpreter, bundle)] = result
            report.put(
                "x86_64",
                interpreter,
                bundle,
                value={"events": len(result.events), "windows": len(result.names)},
            )
    return out
