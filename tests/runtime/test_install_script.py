"""firmware_configs/install.sh on this machine, into a staging root (``--root``): the service user
in the audio group, the venv with the wheel, the bundles, profile and unit in place, and a second run
that changes nothing. pip runs with PIP_NO_DEPS (the dependencies are the arm64 test's business:
``make test-arm64`` runs the same script inside an aarch64 root, full install included).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.wheel import build_wheel

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "firmware_configs" / "install.sh"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="install.sh adds a user and needs root (CI runs as root)"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("dist"))


def staging_root(folder: Path) -> Path:
    """A root with only the account files a Debian system starts with."""
    etc = folder / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    groups = {"root": 0, "dialout": 20, "audio": 29, "plugdev": 46}
    (etc / "group").write_text("".join(f"{g}:x:{gid}:\n" for g, gid in groups.items()))
    (etc / "gshadow").write_text("".join(f"{g}:*::\n" for g in groups))
    return folder


def install(dest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_NO_DEPS": "1", "PIP_NO_INDEX": "1"}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        ["bash", str(SCRIPT), "--root", str(dest), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        h.update(f"{p.relative_to(folder)} {st.st_mode} {st.st_uid} {st.st_mtime_ns}".encode())
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
    return h.hexdigest()


def test_install_places_everything_keeps_an_edited_config_and_a_second_run_changes_nothing(
    wheel: Path, tmp_path: Path
) -> None:
    dest = staging_root(tmp_path / "root")
    done = install(dest, "--profile", "pi5-audio", str(wheel.parent))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "user edgesiam: created" in out and "group audio: edgesiam added" in out
    assert "Next steps:" in out and "systemctl enable --now edgesiam" in out

    passwd = (dest / "etc" / "passwd").read_text()
    assert "edgesiam:x:" in passwd and ":/var/lib/edgesiam:/usr/sbin/nologin" in passwd
    group = {
        line.split(":")[0]: line.split(":")[3]
        for line in (dest / "etc/group").read_text().splitlines()
    }
    assert group["audio"] == "edgesiam" and group["dialout"] == "edgesiam"
    assert "edgesiam" in group  # its own group, named by the unit's Group=

    unit = (ROOT / "firmware_configs" / "edgesiam.service").read_text()
    assert (dest / "etc/systemd/system/edgesiam.service").read_text() == unit
    profile = (ROOT / "firmware_configs" / "pi5-audio.yaml").read_bytes()
    assert (dest / "etc/edgesiam/runtime.yaml").read_bytes() == profile
    for bundle in ("speaker", "events", "motion"):
        shipped = ROOT / "export" / bundle / "model.tflite"
        assert (
            dest / f"opt/edgesiam/bundles/{bundle}/model.tflite"
        ).read_bytes() == shipped.read_bytes()
    # the venv named by the unit's ExecStart holds this wheel
    venv = dest / "opt/edgesiam/venv"
    assert "ExecStart=/opt/edgesiam/venv/bin/edgesiam run" in unit
    assert (venv / "bin" / "edgesiam").exists()
    assert list(venv.glob("lib/python*/site-packages/edgesiam-*.dist-info"))
    assert (dest / "var/lib/edgesiam").is_dir()
    # a microphone profile brings the wheel's microphone extra
    assert (venv / ".edgesiam-wheel").read_text().strip().endswith("[device,audio]")

    before = tree_digest(dest)
    again = install(dest, "--profile", "pi5-audio", str(wheel.parent))
    assert again.returncode == 0, again.stderr
    head = again.stdout.split("Next steps:")[0]
    assert "created" not in head and " added" not in head and " installed" not in head, head
    assert tree_digest(dest) == before

    # an edited config is kept (another --profile does not overwrite it); a changed unit is replaced
    config = dest / "etc/edgesiam/runtime.yaml"
    config.write_text("bundle: /opt/edgesiam/bundles/events\n")
    (dest / "etc/systemd/system/edgesiam.service").write_text("[Service]\nExecStart=/bin/false\n")
    third = install(dest, "--profile", "pi4-imu", str(wheel))
    assert third.returncode == 0, third.stderr
    assert config.read_text() == "bundle: /opt/edgesiam/bundles/events\n"
    assert "kept (exists)" in third.stdout and "edgesiam.service installed" in third.stdout
    assert (dest / "etc/systemd/system/edgesiam.service").read_text() == unit


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile", "no-such-board"], "no profile"),
        (["/nonexistent/edgesiam-0.1.0-py3-none-any.whl"], "no wheel at"),
        (["--frobnicate"], "unknown option --frobnicate"),
    ],
)
def test_bad_arguments_are_named(args: list[str], message: str, tmp_path: Path) -> None:
    done = install(staging_root(tmp_path / "root"), *args)
    assert done.returncode != 0
    assert message in done.stderr


def test_an_empty_folder_asks_for_a_built_wheel(tmp_path: Path) -> None:
    (tmp_path / "dist").mkdir()
    done = install(staging_root(tmp_path / "root"), str(tmp_path / "dist"))
    assert done.returncode != 0 and "make dist" in done.stderr
