"""``edgesiam compile-edgetpu``: a shipped bundle gets its Edge TPU model on a workstation.

Coral's compiler cannot be installed here; a stand-in on the same command line (the one the export
tests use) copies the model and prints the compiler's report.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgesiam.cli import main
from edgesiam.errors import BundleError
from edgesiam.export.edgetpu import compile_bundle
from edgesiam.model.bundle import load_manifest
from edgesiam.model.interpreters import BundleEmbedder
from tests.support.edgetpu import FAKE_COMPILER, fake_compiler

SHIPPED = Path(__file__).resolve().parents[2] / "export"


def shipped_copy(tmp_path: Path, name: str = "speaker") -> Path:
    return Path(shutil.copytree(SHIPPED / name, tmp_path / name))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_shipped_bundle_is_compiled_and_still_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = shipped_copy(tmp_path)
    with pytest.raises(BundleError, match="compile-edgetpu"):
        BundleEmbedder(bundle, delegate="edgetpu")
    script = fake_compiler(tmp_path / "bin")
    assert main(["compile-edgetpu", str(bundle), "--edgetpu-compiler", str(script)]) == 0
    assert "added model_edgetpu.tflite" in capsys.readouterr().out

    m = load_manifest(bundle)  # the hashes of the new files are in the rewritten manifest
    assert m.models["edgetpu"].file == "model_edgetpu.tflite" and m.edgetpu.ops_on_cpu == 0
    assert m.models["edgetpu"].input == m.models["int8"].input
    assert {"model_edgetpu.tflite", "edgetpu_compiler.log"} <= set(m.files)
    assert any(c.name == "edgetpu.compiler" and c.passed for c in m.gate.checks)
    assert "Compiled with edgetpu_compiler 16.0.384591198" in (bundle / "MODEL_CARD.md").read_text()
    # the bundle now holds what a Coral profile asks for; only the TPU's library is missing here
    with pytest.raises(BundleError, match=r"libedgetpu\.so\.1.*could not be loaded"):
        BundleEmbedder(bundle, delegate="edgetpu")


def test_no_compiler_says_where_to_get_one_and_changes_nothing(tmp_path: Path) -> None:
    bundle = shipped_copy(tmp_path, "motion")
    before = snapshot(bundle)
    with pytest.raises(BundleError, match=r"not found; install Coral's Edge TPU compiler \(x86-64"):
        compile_bundle(bundle, str(tmp_path / "no-such-compiler"))
    assert snapshot(bundle) == before


def test_a_compile_with_cpu_ops_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    bundle = shipped_copy(tmp_path, "events")
    before = snapshot(bundle)
    partial = FAKE_COMPILER.replace(
        "run on CPU: 0",
        "run on CPU: 1\nL2_NORMALIZATION               1          More than one subgraph",
    )
    with pytest.raises(BundleError, match=r"1 op\(s\) would run on the CPU.*nothing was changed"):
        compile_bundle(bundle, str(fake_compiler(tmp_path / "bin", partial)))
    assert snapshot(bundle) == before
