"""Op count and multiply-accumulates (MACs) per window of a TFLite model, and an ESTIMATE of its time
on the Cortex-A cores of Raspberry Pi boards.

    python scripts/model_cost.py export/speaker export/events export/motion [--json OUT] [--markdown]

The graph is read through the TFLite interpreter itself (its op list and tensor shapes, with the
default delegate off so every op is seen), so the count is of the model as it runs. MACs are
counted for the ops that multiply: CONV_2D (output elements x kernel height x width x input
channels per group), DEPTHWISE_CONV_2D (output elements x kernel area), FULLY_CONNECTED and
BATCH_MATMUL (output elements x the reduced dimension), TRANSPOSE_CONV (input elements x kernel
area x output channels); every other op (pad, reshape, mean, L2 norm, quantize) is counted as an op
with no MACs.

The time per window is NOT a measurement: it is MACs / (assumed int8 MACs per cycle x assumed
utilisation x clock), with the figures in ``CORES`` (one core, one thread). Emulated (qemu) timings
say nothing about a Pi's speed and are never used here. A workstation-side tool: it does not ship
with the device runtime.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Assumed single-core int8 throughput. Peak NEON int8 MACs per cycle: Cortex-A53 8 (one 64-bit wide
# NEON pipe issuing 128-bit multiply-accumulates every other cycle), Cortex-A72 16 (two 64-bit NEON
# pipes), Cortex-A76 32 (two 128-bit pipes and the SDOT instruction). Small 1-D convolutions keep
# only part of that busy: UTILISATION is an assumption, not a measurement.
UTILISATION = 0.3
CORES: dict[str, dict[str, Any]] = {
    "Cortex-A53": {"board": "Pi Zero 2 W / Pi 3", "ghz": 1.0, "int8_macs_per_cycle": 8},
    "Cortex-A72": {"board": "Pi 4", "ghz": 1.5, "int8_macs_per_cycle": 16},
    "Cortex-A76": {"board": "Pi 5", "ghz": 2.4, "int8_macs_per_cycle": 32},
}


@dataclass
class OpCost:
    """One op of the graph, as the interpreter runs it."""

    name: str
    output_shape: list[int]
    macs: int


def _prod(shape: list[int]) -> int:
    return math.prod(shape) if shape else 1


def op_macs(name: str, inputs: list[list[int]], output: list[int]) -> int:
    """MACs of one op from its input shapes and output shape (0 for ops that do not multiply)."""
    out = _prod(output)
    if name == "CONV_2D":  # filter [Cout, kh, kw, Cin/groups]
        _, kh, kw, cin = inputs[1]
        return out * kh * kw * cin
    if name == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, Cout]
        _, kh, kw, _ = inputs[1]
        return out * kh * kw
    if name == "FULLY_CONNECTED":  # filter [units, in]
        return out * inputs[1][-1]
    if name == "BATCH_MATMUL":
        return out * inputs[0][-1]
    if name == "TRANSPOSE_CONV":  # inputs: output shape, filter [Cout, kh, kw, Cin], input
        cout, kh, kw, _ = inputs[1]
        return _prod(inputs[2]) * kh * kw * cout
    return 0


def model_ops(model: Path) -> list[OpCost]:
    """The ops of a .tflite file, read through the interpreter (no default delegate)."""
    from edgesiam.model.interpreters import find_backend

    backend = find_backend()
    interpreter = backend.interpreter(
        model_path=str(model),
        experimental_op_resolver_type=backend.op_resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    shapes = {t["index"]: [int(v) for v in t["shape"]] for t in interpreter.get_tensor_details()}
    ops = []
    for op in interpreter._get_ops_details():
        inputs = [shapes.get(int(i), []) for i in op["inputs"] if int(i) >= 0]
        output = shapes.get(int(op["outputs"][0]), []) if len(op["outputs"]) else []
        ops.append(OpCost(str(op["op_name"]), output, op_macs(str(op["op_name"]), inputs, output)))
    return ops


def estimate_ms(macs: int) -> dict[str, dict[str, Any]]:
    """ESTIMATED milliseconds per window on each core of ``CORES`` (assumptions included)."""
    out = {}
    for core, spec in CORES.items():
        per_s = spec["ghz"] * 1e9 * spec["int8_macs_per_cycle"] * UTILISATION
        out[core] = {**spec, "utilisation": UTILISATION, "ms_per_window": 1000.0 * macs / per_s}
    return out


def frontend_flops(manifest: dict[str, Any]) -> int | None:
    """Approximate float32 FLOPs of a log-mel front-end per window (numpy, outside the model):
    a real FFT per frame (about 2.5 N log2 N) plus the mel projection (2 FLOPs per weight)."""
    frontend = manifest.get("frontend") or {}
    if frontend.get("kind") != "logmel":
        return None
    params, frames = frontend["params"], int(manifest["features"][1])
    n_fft, n_mels = int(params["n_fft"]), int(params["n_mels"])
    fft = 2.5 * n_fft * math.log2(n_fft)
    return int(frames * (fft + 2 * (n_fft // 2 + 1) * n_mels))


def bundle_cost(path: Path) -> dict[str, Any]:
    """Cost of a bundle folder (its int8 model) or of a bare .tflite file."""
    manifest: dict[str, Any] = {}
    model = path
    if path.is_dir():
        manifest = json.loads((path / "manifest.json").read_text())
        model = path / manifest["models"]["int8"]["file"]
    ops = model_ops(model)
    macs = sum(op.macs for op in ops)
    hop_s = manifest.get("hop_s")
    return {
        "name": manifest.get("name", model.stem),
        "model": model.name,
        "input": manifest.get("features"),
        "ops": len(ops),
        "op_types": dict(Counter(op.name for op in ops)),
        "macs_per_window": macs,
        "windows_per_s": (1.0 / hop_s) if hop_s else None,
        "frontend_flops_per_window": frontend_flops(manifest),
        "estimate": estimate_ms(macs),
        "estimate_note": "ESTIMATE (not measured): MACs / (int8 MACs per cycle x utilisation x clock), one core",
        "per_op": [asdict(op) for op in ops],
    }


def markdown(costs: list[dict[str, Any]]) -> str:
    cores = list(CORES)
    head = "| bundle | ops | MACs per window | " + " | ".join(
        f"{c} @ {CORES[c]['ghz']} GHz, est. ms/window" for c in cores
    )
    lines = [head + " |", "|" + "---|" * (3 + len(cores))]
    for c in costs:
        est = " | ".join(f"{c['estimate'][k]['ms_per_window']:.2f}" for k in cores)
        lines.append(f"| {c['name']} | {c['ops']} | {c['macs_per_window']:,} | {est} |")
    assumed = ", ".join(f"{k} {v['int8_macs_per_cycle']} MACs/cycle" for k, v in CORES.items())
    lines.append("")
    fe = [
        f"{c['name']} {c['frontend_flops_per_window'] / 1e6:.1f} M"
        for c in costs
        if c["frontend_flops_per_window"]
    ]
    if fe:
        lines.append(
            f"The log-mel front-end (numpy, float32) adds about {', '.join(fe)} FLOPs per window."
        )
    lines.append(
        f"Estimates, not measurements: int8 throughput assumed {assumed}, at {UTILISATION:.0%} "
        "utilisation, one thread."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="bundle folders or .tflite files")
    parser.add_argument("--json", type=Path, help="write the full report (per op) here")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    costs = [bundle_cost(p) for p in args.models]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"bundles": costs}, indent=2) + "\n")
    if args.markdown:
        print(markdown(costs))
    else:
        for c in costs:
            print(f"{c['name']}: {c['ops']} ops, {c['macs_per_window']:,} MACs per window")
    return 0


if __name__ == "__main__":
    sys.exit(main())
