"""scripts/model_cost.py: op count and MACs per window read from a TFLite model, and the labelled
Cortex-A estimate."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "model_cost.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("model_cost", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["model_cost"] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Conv1D(4 filters, kernel 3) on 10x2 -> mean -> Dense(5): 8*4*3*2 + 4*5 = 212 MACs."""
    tf = pytest.importorskip("tensorflow")
    inputs = tf.keras.Input((10, 2), batch_size=1)
    x = tf.keras.layers.Conv1D(4, 3)(inputs)
    x = tf.keras.layers.GlobalAveragePooling1D()(x)
    outputs = tf.keras.layers.Dense(5)(x)
    model = tf.keras.Model(inputs, outputs)
    path = tmp_path_factory.mktemp("tiny") / "tiny.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def test_macs_of_a_tiny_model_are_counted_from_the_graph(tiny_model: Path) -> None:
    cost = load().bundle_cost(tiny_model)
    assert cost["macs_per_window"] == 8 * 4 * 3 * 2 + 4 * 5
    assert cost["op_types"]["CONV_2D"] == 1 and cost["op_types"]["FULLY_CONNECTED"] == 1
    assert cost["ops"] == sum(cost["op_types"].values()) and "DELEGATE" not in cost["op_types"]


def test_op_macs_of_other_multiplying_ops() -> None:
    op_macs = load().op_macs
    # depthwise 3x3 over a 1x8x8x16 output: 8*8*16*9
    assert op_macs("DEPTHWISE_CONV_2D", [[1, 10, 10, 16], [1, 3, 3, 16]], [1, 8, 8, 16]) == 9216
    assert op_macs("BATCH_MATMUL", [[1, 4, 6], [1, 6, 3]], [1, 4, 3]) == 4 * 3 * 6
    assert op_macs("MEAN", [[1, 8, 4], [1]], [1, 4]) == 0


def test_the_estimate_follows_the_stated_assumptions() -> None:
    mc = load()
    est = mc.estimate_ms(10**9)
    a53, a76 = est["Cortex-A53"], est["Cortex-A76"]
    expected = 1000.0 / (a53["ghz"] * a53["int8_macs_per_cycle"] * a53["utilisation"])
    assert a53["ms_per_window"] == pytest.approx(expected)
    assert a76["ms_per_window"] < a53["ms_per_window"]


def test_the_shipped_bundles_are_reported(tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *(str(ROOT / "export" / b) for b in ("speaker", "motion")),
            "--json",
            str(out),
            "--markdown",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Estimates, not measurements" in done.stdout
    bundles = {b["name"]: b for b in json.loads(out.read_text())["bundles"]}
    speaker = bundles["speaker"]
    assert speaker["macs_per_window"] == sum(op["macs"] for op in speaker["per_op"]) > 10**6
    assert (
        speaker["frontend_flops_per_window"] > 0
        and bundles["motion"]["frontend_flops_per_window"] is None
    )
    assert "ESTIMATE" in speaker["estimate_note"]
