"""The export gate: a bundle ships only when the int8 model is as good as the torch model.

Checks (each named in the report):

- ``parity.mean_cosine`` / ``parity.min_cosine``: cosine between int8 and torch window embeddings
  on held-out windows (defaults: mean ≥ 0.999, min ≥ 0.99);
- ``eer.delta``: EER(int8) − EER(torch) on held-out labels, in points (default ≤ 0.5);
- ``graph.int8_io``: the int8 model's input and output are int8;
- ``graph.integer_only``: no DEQUANTIZE op and no float tensor anywhere in the int8 graph;
- ``edgetpu.ops``: every op is in the Edge TPU's supported-operations list (offenders named);
- ``edgetpu.compiler``: when ``edgetpu_compiler`` is on PATH, it compiles the model with no op
  left on the CPU (its log is kept in the bundle).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import numpy as np

from edgesiam.core.embedder import DeviceEmbedder
from edgesiam.core.embedding import l2_normalize, recording_embedding
from edgesiam.core.metrics import equal_error_rate, trial_scores
from edgesiam.core.windowing import frame
from edgesiam.data.readers import iter_recordings, reading_spec, scan_dataset
from edgesiam.errors import DataError
from edgesiam.model.interpreters import ModelInfo

# The Edge TPU compiler's supported operations (Coral's "supported operations" table), as TFLite
# builtin op names.
EDGETPU_OPS: Final = frozenset(
    {
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "EXPAND_DIMS",
        "FULLY_CONNECTED",
        "HARD_SWISH",
        "L2_NORMALIZATION",
        "LOGISTIC",
        "LSTM",
        "UNIDIRECTIONAL_SEQUENCE_LSTM",
        "MAXIMUM",
        "MAX_POOL_2D",
        "MEAN",
        "MINIMUM",
        "MUL",
        "PACK",
        "PAD",
        "PRELU",
        "QUANTIZE",
        "REDUCE_MAX",
        "REDUCE_MIN",
        "RELU",
        "RELU6",
        "RELU_N1_TO_1",
        "RESHAPE",
        "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR",
        "RSQRT",
        "SLICE",
        "SOFTMAX",
        "SPACE_TO_DEPTH",
        "SPLIT",
        "SQUARED_DIFFERENCE",
        "SQUEEZE",
        "STRIDED_SLICE",
        "SUB",
        "SUM",
        "TANH",
        "TRANSPOSE",
        "TRANSPOSE_CONV",
    }
)
INTEGER_DTYPES: Final = frozenset({"int8", "int32"})
COMPILER: Final = "edgetpu_compiler"
PARITY_CHECKS: Final = frozenset({"parity.mean_cosine", "parity.min_cosine", "eer.delta"})


@dataclass(frozen=True)
class GateLimits:
    min_mean_cosine: float = 0.999
    min_cosine: float = 0.99
    max_eer_delta_points: float = 0.5

    def as_dict(self) -> dict[str, float]:
        return {
            "min_mean_cosine": self.min_mean_cosine,
            "min_cosine": self.min_cosine,
            "max_eer_delta_points": self.max_eer_delta_points,
        }


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class GateReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def render(self) -> str:
        width = max((len(c.name) for c in self.checks), default=0)
        lines = [
            f"  {'PASS' if c.passed else 'FAIL'}  {c.name:<{width}}  {c.detail}"
            for c in self.checks
        ]
        verdict = (
            "gate passed"
            if self.passed
            else f"gate FAILED: {', '.join(c.name for c in self.failed)}"
        )
        return "\n".join([*lines, verdict, *self.advice()])

    def advice(self) -> list[str]:
        """What to try when the int8 model strays from torch (``edgesiam tune`` tries each)."""
        if not {c.name for c in self.failed} & PARITY_CHECKS:
            return []
        return [
            "to try: more calibration windows (--calib-windows 1000); the L2 step in numpy "
            "(--l2-in-numpy); for sensors, a tighter feature clip (frontend.clip: 4 in the "
            "recipe, then train again) so that the int8 input step is finer"
        ]


# --- held-out measurement ----------------------------------------------------------------------

Embed = Callable[[np.ndarray], np.ndarray]


@dataclass
class HeldOutResult:
    """Window and recording embeddings of the held-out recordings, for every model measured."""

    root: Path
    labels: list[str]
    groups: list[str | None]
    windows: dict[str, list[np.ndarray]]  # model → per recording (k_i, D), L2-normalised
    recordings: dict[str, np.ndarray]  # model → (R, D)

    def window_matrix(self, model: str) -> np.ndarray:
        return np.concatenate(self.windows[model])

    def window_owner(self) -> np.ndarray:
        first = next(iter(self.windows.values()))
        return np.concatenate([np.full(len(w), i) for i, w in enumerate(first)])

    def parity(self, model: str, reference: str = "torch") -> np.ndarray:
        """Per-window cosine between ``model`` and ``reference``."""
        cosines: np.ndarray = np.sum(
            self.window_matrix(model) * self.window_matrix(reference), axis=1
        )
        return cosines

    def eer(self, model: str) -> float:
        trials = trial_scores(self.recordings[model], self.labels)
        return equal_error_rate(trials.genuine, trials.impostor)[0]


def measure_heldout(
    embedder: DeviceEmbedder,
    models: Mapping[str, Embed],
    data_dir: str | Path,
    on_error: Literal["fail", "skip"] = "fail",
    progress: bool = False,
    batch_windows: int = 1024,
) -> HeldOutResult:
    """Embed every held-out recording's windows with each model (same features for all)."""
    info = scan_dataset(data_dir, on_error=on_error)
    if info.modality != embedder.modality:
        raise DataError(
            f"the model is for {embedder.modality} but the folder holds {info.modality} recordings",
            info.root,
        )
    if len(info.labels) < 2:
        raise DataError("held-out data need at least two labels (impostor trials)", info.root)
    windows: dict[str, list[np.ndarray]] = {name: [] for name in models}
    labels: list[str] = []
    groups: list[str | None] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        # Many recordings' windows in one call: a model call per recording costs more in
        # overhead (torch threads) than in arithmetic for these small encoders.
        if not pending:
            return
        sizes = np.cumsum([len(f) for f in pending])[:-1]
        batch = np.concatenate(pending)
        for name, embed in models.items():
            windows[name].extend(np.split(l2_normalize(embed(batch), axis=1), sizes))
        pending.clear()

    for rec, x in iter_recordings(
        info, embedder.sample_rate, on_error, progress, spec=reading_spec(embedder)
    ):
        if info.modality == "sensor" and x.shape[1] != embedder.channels:
            raise DataError(
                f"has {x.shape[1]} channels, the model takes {embedder.channels}", rec.path
            )
        pending.append(embedder.frontend(frame(x, embedder.window, embedder.hop)))
        labels.append(rec.label)
        groups.append(rec.group)
        if sum(len(f) for f in pending) >= batch_windows:
            flush()
    flush()
    if len(set(labels)) < 2:
        raise DataError("held-out data need at least two readable labels", info.root)
    recordings = {
        name: np.stack([recording_embedding(w) for w in per]) for name, per in windows.items()
    }
    return HeldOutResult(info.root, labels, groups, windows, recordings)


# --- checks ------------------------------------------------------------------------------------


def parity_checks(cosines: np.ndarray, limits: GateLimits) -> list[Check]:
    mean, low = float(np.mean(cosines)), float(np.min(cosines))
    worst = int(np.argmin(cosines))
    return [
        Check(
            "parity.mean_cosine",
            mean >= limits.min_mean_cosine,
            f"mean cosine(int8, torch) {mean:.6f} over {len(cosines)} held-out windows "
            f"(needs ≥ {limits.min_mean_cosine})",
        ),
        Check(
            "parity.min_cosine",
            low >= limits.min_cosine,
            f"min cosine(int8, torch) {low:.6f} at window {worst} (needs ≥ {limits.min_cosine})",
        ),
    ]


def eer_check(eer_reference: float, eer_int8: float, limits: GateLimits) -> Check:
    delta = 100.0 * (eer_int8 - eer_reference)
    return Check(
        "eer.delta",
        delta <= limits.max_eer_delta_points,
        f"EER int8 {100 * eer_int8:.2f}% − torch {100 * eer_reference:.2f}% = {delta:+.2f} points "
        f"(needs ≤ {limits.max_eer_delta_points})",
    )


def graph_checks(info: ModelInfo) -> list[Check]:
    io_ok = info.input.dtype == "int8" and info.output.dtype == "int8"
    floats = [f"{name} ({dtype})" for name, dtype in info.tensors if dtype not in INTEGER_DTYPES]
    dequant = [op for op in info.ops if op == "DEQUANTIZE"]
    problems = []
    if dequant:
        problems.append(f"{len(dequant)} DEQUANTIZE op(s)")
    if floats:
        shown = ", ".join(floats[:5]) + (f" and {len(floats) - 5} more" if len(floats) > 5 else "")
        problems.append(f"non-integer tensors: {shown}")
    return [
        Check(
            "graph.int8_io",
            io_ok,
            f"input {info.input.dtype}, output {info.output.dtype} (needs int8 and int8)",
        ),
        Check(
            "graph.integer_only",
            not problems,
            "; ".join(problems)
            if problems
            else f"{len(info.ops)} ops, every tensor int8/int32, no DEQUANTIZE",
        ),
    ]


def edgetpu_offenders(ops: list[str]) -> list[str]:
    return sorted({op for op in ops if op not in EDGETPU_OPS})


def edgetpu_static_check(info: ModelInfo) -> Check:
    offenders = edgetpu_offenders(info.ops)
    return Check(
        "edgetpu.ops",
        not offenders,
        f"not supported by the Edge TPU: {', '.join(offenders)}"
        if offenders
        else f"all {len(set(info.ops))} op types are Edge TPU operations: "
        + ", ".join(sorted(set(info.ops))),
    )


# --- the Edge TPU compiler ---------------------------------------------------------------------


@dataclass
class CompilerResult:
    ran: bool
    returncode: int | None = None
    version: str | None = None
    model: Path | None = None
    log: Path | None = None
    ops_on_tpu: int | None = None
    ops_on_cpu: int | None = None
    cpu_ops: list[str] = field(default_factory=list)
    error: str | None = None


def find_compiler(compiler: str | None = None) -> str | None:
    """The compiler's path: ``compiler`` (a path or a name on PATH), else ``edgetpu_compiler``."""
    return shutil.which(compiler or COMPILER)


_TABLE_ROW = re.compile(r"^([A-Z][A-Z0-9_]+)\s+(\d+)\s+(.+?)\s*$")


def parse_compiler_output(text: str) -> tuple[str | None, int | None, int | None, list[str]]:
    """``(version, ops on TPU, ops on CPU, CPU op names with reasons)`` from compiler output."""
    version = re.search(r"Edge TPU Compiler version\s+(\S+)", text)
    tpu = re.search(r"Number of operations that will run on Edge TPU:\s*(\d+)", text)
    cpu = re.search(r"Number of operations that will run on CPU:\s*(\d+)", text)
    cpu_ops = []
    for line in text.splitlines():
        row = _TABLE_ROW.match(line.strip())
        if row and "Mapped to Edge TPU" not in row.group(3):
            cpu_ops.append(f"{row.group(1)} ({row.group(3)})")
    return (
        version.group(1) if version else None,
        int(tpu.group(1)) if tpu else None,
        int(cpu.group(1)) if cpu else None,
        cpu_ops,
    )


def run_edgetpu_compiler(
    model: Path, out_dir: Path, compiler: str, timeout: float = 600.0
) -> CompilerResult:
    """Run ``edgetpu_compiler -s -o OUT_DIR MODEL``; keep its output as ``edgetpu_compiler.log``.

    The compiled model is ``OUT_DIR/<stem>_edgetpu.tflite``.
    """
    log = out_dir / "edgetpu_compiler.log"
    command = [compiler, "-s", "-o", str(out_dir), str(model)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.write_text(f"$ {' '.join(command)}\n{exc}\n")
        return CompilerResult(ran=True, log=log, error=str(exc))
    text = done.stdout + ("\n" + done.stderr if done.stderr.strip() else "")
    log.write_text(f"$ {' '.join(command)}\n{text}")
    version, on_tpu, on_cpu, cpu_ops = parse_compiler_output(text)
    compiled = out_dir / f"{model.stem}_edgetpu.tflite"
    own_log = out_dir / f"{model.stem}_edgetpu.log"
    if own_log.exists():  # the compiler's own log says the same: keep one log only
        own_log.unlink()
    return CompilerResult(
        ran=True,
        returncode=done.returncode,
        version=version,
        model=compiled if compiled.is_file() else None,
        log=log,
        ops_on_tpu=on_tpu,
        ops_on_cpu=on_cpu,
        cpu_ops=cpu_ops,
        error=None if done.returncode == 0 else f"exit status {done.returncode}",
    )


def compiler_check(result: CompilerResult) -> Check:
    log = result.log.name if result.log else "no log"
    if result.error is not None:
        return Check(
            "edgetpu.compiler", False, f"edgetpu_compiler failed: {result.error} (see {log})"
        )
    if result.model is None:
        return Check("edgetpu.compiler", False, f"edgetpu_compiler wrote no model (see {log})")
    if result.ops_on_cpu:
        ops = ", ".join(result.cpu_ops) or "see the log"
        return Check(
            "edgetpu.compiler",
            False,
            f"{result.ops_on_cpu} op(s) would run on the CPU: {ops} (see {log})",
        )
    return Check(
        "edgetpu.compiler",
        True,
        f"compiled by edgetpu_compiler {result.version or '(unknown version)'}: "
        f"{result.ops_on_tpu if result.ops_on_tpu is not None else '?'} op(s) on the Edge TPU",
    )


def evaluate_gate(
    heldout: HeldOutResult,
    int8_info: ModelInfo,
    limits: GateLimits,
    compiler: CompilerResult | None = None,
) -> GateReport:
    """Every check on measured results (a pure function: no conversion or I/O here)."""
    checks = parity_checks(heldout.parity("int8"), limits)
    checks.append(eer_check(heldout.eer("torch"), heldout.eer("int8"), limits))
    checks.extend(graph_checks(int8_info))
    checks.append(edgetpu_static_check(int8_info))
    if compiler is not None and compiler.ran:
        checks.append(compiler_check(compiler))
    return GateReport(checks)
