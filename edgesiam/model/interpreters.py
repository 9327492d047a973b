"""TFLite interpreters on the device, and bundles behind the ``DeviceEmbedder`` interface.

One import finds an interpreter: ai-edge-litert (numpy 2, XNNPACK for int8), then tflite-runtime
(the older package, numpy < 2), then tensorflow's ``tf.lite`` as a last resort. ``EDGESIAM_INTERPRETER``
(or the ``backend`` argument) picks one by name. The Edge TPU delegate is loaded when asked for,
with a clear error when its library is missing.

This module runs on the device: it imports numpy, pydantic and edgesiam's numpy-only core; torch,
tensorflow and librosa are never imported here (tensorflow only as the last-resort interpreter,
when nothing else is installed).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.metadata
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from edgesiam.core.embedding import l2_normalize
from edgesiam.core.frontend import FrontEnd, frontend_from_state
from edgesiam.errors import (
    BundleError,
    DataError,
    ModelError,
    NoInterpreterError,
)
from edgesiam.model.bundle import (
    MANIFEST_NAME,
    BundleModel,
    Manifest,
    TensorSpec,
    fmr_key,
    is_bundle,
    load_manifest,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "BundleEmbedder",
    "ModelInfo",
    "NoInterpreterError",
    "TFLiteModel",
    "edgetpu_library",
    "find_backend",
    "inspect_model",
    "is_bundle",
    "load_edgetpu_delegate",
    "load_model",
    "make_interpreter",
    "measure_latency",
]

BACKENDS: Final = ("ai-edge-litert", "tflite-runtime", "tensorflow")
EDGETPU_COMPILE_STEP: Final = (
    "the Edge TPU runs only a model compiled by Coral's edgetpu_compiler, which runs on x86-64 "
    "Linux alone: compile the bundle there with `edgesiam compile-edgetpu BUNDLE` (or export it "
    "with edgetpu_compiler on PATH) and copy it to the device again, or run without "
    "interpreter.delegate (the int8 model on the CPU)"
)
BACKEND_ENV: Final = "EDGESIAM_INTERPRETER"

Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Backend:
    """An interpreter package: its ``Interpreter`` class, ``load_delegate`` and op resolvers."""

    name: str
    version: str
    interpreter: Any
    load_delegate: Callable[..., Any]
    op_resolver: Any


def _import_backend(name: str) -> Backend:
    if name == "ai-edge-litert":
        mod = importlib.import_module("ai_edge_litert.interpreter")
        version = importlib.metadata.version("ai-edge-litert")
        return Backend(name, version, mod.Interpreter, mod.load_delegate, mod.OpResolverType)
    if name == "tflite-runtime":
        mod = importlib.import_module("tflite_runtime.interpreter")
        version = str(getattr(importlib.import_module("tflite_runtime"), "__version__", "?"))
        return Backend(name, version, mod.Interpreter, mod.load_delegate, mod.OpResolverType)
    if name == "tensorflow":
        tf = importlib.import_module("tensorflow")
        return Backend(
            name,
            str(tf.__version__),
            tf.lite.Interpreter,
            tf.lite.experimental.load_delegate,
            tf.lite.experimental.OpResolverType,
        )
    raise BundleError(f"unknown interpreter backend {name!r}; choose one of {', '.join(BACKENDS)}")


_CACHE: dict[str, Backend] = {}


def find_backend(prefer: str | None = None) -> Backend:
    """The first interpreter package that imports, in the order of :data:`BACKENDS`.

    ``prefer`` (or the environment variable ``EDGESIAM_INTERPRETER``) names the one to use; then
    only that one is tried.
    """
    choice = prefer or os.environ.get(BACKEND_ENV) or None
    names: Sequence[str] = (choice,) if choice else BACKENDS
    reasons: dict[str, str] = {}
    for name in names:
        if name in _CACHE:
            return _CACHE[name]
        if name not in BACKENDS:
            raise BundleError(
                f"unknown interpreter backend {name!r}; choose one of {', '.join(BACKENDS)}"
            )
        try:
            backend = _import_backend(name)
        except Exception as exc:  # a broken wheel raises anything (numpy ABI, missing libs)
            reasons[name] = (
                "not installed"
                if isinstance(exc, ModuleNotFoundError)
                else f"{type(exc).__name__}: {exc}"
            )
            continue
        _CACHE[name] = backend
        return backend
    raise NoInterpreterError(reasons)


NATIVE_INFO: Final = frozenset({"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."})
"""Lines TFLite's C++ logger prints on every interpreter start; nothing a user can act on."""


@contextlib.contextmanager
def _quiet_native_info() -> Iterator[None]:
    """Drop the :data:`NATIVE_INFO` lines that TFLite writes straight to file descriptor 2.

    Everything else written there meanwhile (a native warning or error, another thread's log) is
    written back to stderr afterwards, in order.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if line.strip() not in NATIVE_INFO)
            if kept:
                os.write(2, kept.encode())


def make_interpreter(
    model_path: str | Path | None = None,
    model_content: bytes | None = None,
    *,
    backend: Backend | str | None = None,
    delegates: Sequence[Any] | None = None,
    num_threads: int | None = None,
    default_delegates: bool = True,
) -> tuple[Any, Backend]:
    """An allocated interpreter for a model file or bytes, and the backend that made it.

    ``default_delegates=False`` turns XNNPACK off, so the op list is the model's own.
    """
    be = backend if isinstance(backend, Backend) else find_backend(backend)
    kwargs: dict[str, Any] = {}
    if model_path is not None:
        kwargs["model_path"] = str(model_path)
    elif model_content is not None:
        kwargs["model_content"] = model_content
    else:
        raise ValueError("make_interpreter needs model_path or model_content")
    if delegates:
        kwargs["experimental_delegates"] = list(delegates)
    if num_threads is not None:
        kwargs["num_threads"] = int(num_threads)
    if not default_delegates:
        kwargs["experimental_op_resolver_type"] = be.op_resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        with warnings.catch_warnings(), _quiet_native_info():
            # tensorflow's interpreter announces its own deprecation: it is the last resort here
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            interpreter = be.interpreter(**kwargs)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        where = model_path if model_path is not None else "the model"
        raise BundleError(f"{where}: {be.name} cannot load this model ({exc})") from exc
    return interpreter, be


# --- the Edge TPU ------------------------------------------------------------------------------


def edgetpu_library() -> str:
    """The Edge TPU runtime library's name on this system."""
    system = platform.system()
    if system == "Darwin":
        return "libedgetpu.1.dylib"
    if system == "Windows":
        return "edgetpu.dll"
    return "libedgetpu.so.1"


def load_edgetpu_delegate(
    backend: Backend | str | None = None, library: str | None = None, device: str | None = None
) -> Any:
    """Load the Edge TPU delegate, or raise a ``BundleError`` that says how to get it."""
    be = backend if isinstance(backend, Backend) else find_backend(backend)
    lib = library or edgetpu_library()
    hint = (
        "install the Edge TPU runtime (the Debian package libedgetpu1-std from Coral's package "
        "repository), plug in the accelerator, or run without the Edge TPU delegate"
    )
    try:
        ctypes.CDLL(lib)  # a clean error for a missing library, before the backend tries
    except OSError as exc:
        raise BundleError(
            f"the Edge TPU delegate library '{lib}' could not be loaded ({exc}); {hint}"
        ) from None
    options = {"device": device} if device else {}
    try:
        return be.load_delegate(lib, options)
    except (ValueError, OSError, RuntimeError) as exc:
        raise BundleError(
            f"the Edge TPU delegate '{lib}' failed to start ({exc}); is the accelerator "
            f"connected? Otherwise {hint}"
        ) from None


# --- models ------------------------------------------------------------------------------------


def _tensor_spec(detail: dict[str, Any], layout: str) -> TensorSpec:
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail.get("quantization", (0.0, 0))
    quantised = dtype.kind in "iu" and float(scale) != 0.0
    return TensorSpec(
        name=str(detail["name"]),
        shape=[int(v) for v in detail["shape"]],
        dtype=dtype.name,
        scale=float(scale) if quantised else None,
        zero_point=int(zero_point) if quantised else None,
        layout=layout,
    )


@dataclass(frozen=True)
class ModelInfo:
    """What a TFLite model is made of: op names in order, every tensor's dtype, its input/output."""

    ops: list[str]
    tensors: list[tuple[str, str]]
    input: TensorSpec
    output: TensorSpec


def inspect_model(
    model_path: str | Path | None = None,
    model_content: bytes | None = None,
    backend: Backend | str | None = None,
) -> ModelInfo:
    """Ops, tensor dtypes and the input/output specs of a model (XNNPACK off, so nothing is fused)."""
    interp, _ = make_interpreter(
        model_path, model_content, backend=backend, default_delegates=False
    )
    ops = [str(op["op_name"]) for op in interp._get_ops_details()]
    tensors = [(str(t["name"]), np.dtype(t["dtype"]).name) for t in interp.get_tensor_details()]
    inp = interp.get_input_details()
    out = interp.get_output_details()
    if len(inp) != 1 or len(out) != 1:
        raise BundleError(
            f"expected a model with one input and one output, got {len(inp)}/{len(out)}"
        )
    return ModelInfo(ops, tensors, _tensor_spec(inp[0], "NTC"), _tensor_spec(out[0], "ND"))


class TFLiteModel:
    """One TFLite encoder: features ``(B, C_in, T)`` → dequantised outputs ``(B, D)`` float32.

    Inputs are quantised with the model's own scale and zero-point (int8/uint8 models) and fed
    one window at a time in the model's ``(1, T, C_in)`` layout.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        model_content: bytes | None = None,
        *,
        backend: Backend | str | None = None,
        delegates: Sequence[Any] | None = None,
        num_threads: int | None = None,
    ) -> None:
        self.interpreter, self.backend = make_interpreter(
            model_path,
            model_content,
            backend=backend,
            delegates=delegates,
            num_threads=num_threads,
        )
        self.num_threads = num_threads
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise BundleError(
                f"expected a model with one input and one output, got {len(inputs)}/{len(outputs)}"
            )
        self._in = inputs[0]
        self._out = outputs[0]
        self.input = _tensor_spec(self._in, "NTC")
        self.output = _tensor_spec(self._out, "ND")
        shape = self.input.shape
        if len(shape) != 3 or shape[0] != 1:
            raise BundleError(f"expected a model input of shape (1, T, C_in), got {shape}")
        self.time_steps, self.in_channels = int(shape[1]), int(shape[2])
        self._in_dtype = np.dtype(self._in["dtype"])
        self.embedding_dim = int(self.output.shape[-1])

    def quantise(self, features_tc: npt.ArrayLike) -> np.ndarray:
        """Float features in the model's layout → the model's input dtype."""
        x = np.asarray(features_tc, dtype=np.float32)
        if self.input.scale is None:
            return x.astype(self._in_dtype, copy=False)
        info = np.iinfo(self._in_dtype)
        q = x / np.float32(self.input.scale)  # a new array: the steps below work in place
        np.round(q, out=q)
        q += np.float32(self.input.zero_point or 0)
        np.clip(q, info.min, info.max, out=q)
        out: np.ndarray = q.astype(self._in_dtype)
        return out

    def dequantise(self, raw: np.ndarray) -> Float32Array:
        if self.output.scale is None:
            return np.asarray(raw, dtype=np.float32)
        zp = int(self.output.zero_point or 0)
        return ((raw.astype(np.float32) - zp) * np.float32(self.output.scale)).astype(np.float32)

    def run(self, features: npt.ArrayLike) -> Float32Array:
        """``(B, C_in, T)`` → ``(B, D)`` dequantised, not normalised."""
        x = np.asarray(features, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != (self.in_channels, self.time_steps):
            raise DataError(
                f"the model takes features of shape (batch, {self.in_channels}, "
                f"{self.time_steps}), got {tuple(x.shape)}"
            )
        q = self.quantise(np.swapaxes(x, 1, 2))
        out = np.empty((x.shape[0], self.embedding_dim), dtype=np.float32)
        interp = self.interpreter
        in_index, out_index = self._in["index"], self._out["index"]
        for b in range(q.shape[0]):
            interp.set_tensor(in_index, q[b : b + 1])
            interp.invoke()
            out[b] = self.dequantise(interp.get_tensor(out_index)).reshape(-1)
        return out


def measure_latency(model: TFLiteModel, runs: int = 200, warmup: int = 20) -> dict[str, float]:
    """Median and 95th-percentile time of one ``invoke()`` on one window, in milliseconds."""
    x = np.zeros((1, model.in_channels, model.time_steps), dtype=np.float32)
    q = model.quantise(np.swapaxes(x, 1, 2))
    interp = model.interpreter
    interp.set_tensor(model._in["index"], q)
    for _ in range(warmup):
        interp.invoke()
    times = np.empty(runs, dtype=np.float64)
    for i in range(runs):
        start = time.perf_counter()
        interp.invoke()
        times[i] = time.perf_counter() - start
    return {
        "median_ms": float(np.median(times) * 1e3),
        "p95_ms": float(np.percentile(times, 95) * 1e3),
        "runs": float(runs),
    }


# --- bundles -----------------------------------------------------------------------------------


def _load_frontend(path: Path) -> FrontEnd:
    try:
        with np.load(path, allow_pickle=False) as data:
            state = {key: np.asarray(data[key]) for key in data.files}
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: cannot read the front-end state ({exc})") from exc
    try:
        return frontend_from_state(state)
    except ModelError as exc:
        raise BundleError(f"{path}: {exc}") from exc


class BundleEmbedder:
    """An exported bundle behind the ``DeviceEmbedder`` interface (``embed_dataset`` works on it).

    ``delegate="edgetpu"`` runs the bundle's Edge TPU model with the Edge TPU delegate;
    ``model`` picks another of the bundle's models by key (``"float32"``, ...). Hashes are
    checked on load: a modified bundle is refused.
    """

    def __init__(
        self,
        bundle_dir: str | Path,
        delegate: str | None = None,
        *,
        model: str | None = None,
        backend: str | None = None,
        num_threads: int | None = None,
        delegate_library: str | None = None,
        verify: bool = True,
    ) -> None:
        self.path = Path(bundle_dir)
        self.manifest: Manifest = load_manifest(self.path, verify=verify)
        m = self.manifest
        self.name = m.name
        self.modality: str = m.modality
        self.sample_rate: int = m.sample_rate
        self.window: int = m.window
        self.hop: int = m.hop
        self.channels: int = m.channels
        self.channel_names = m.channel_names
        self.channel_units = m.channel_units
        self.embedding_dim: int = m.embedding_dim
        self.frontend: FrontEnd = _load_frontend(self.path / m.frontend.file)
        if self.frontend.modality != m.modality:
            raise BundleError(
                f"{self.path}: the front-end is for {self.frontend.modality}, "
                f"the manifest says {m.modality}"
            )
        if delegate not in (None, "edgetpu"):
            raise BundleError(f"unknown delegate {delegate!r}; the only one is 'edgetpu'")
        key = model or ("edgetpu" if delegate == "edgetpu" else m.model)
        if key not in m.models:
            raise BundleError(
                f"{self.path}: the bundle has no {key!r} model (it has: "
                f"{', '.join(sorted(m.models))})"
                + (f"; {EDGETPU_COMPILE_STEP}" if key == "edgetpu" else "")
            )
        self.model_key = key
        self.model_entry: BundleModel = m.models[key]
        delegates = []
        be = find_backend(backend)
        if delegate == "edgetpu":
            delegates.append(load_edgetpu_delegate(be, delegate_library))
        self.delegate = delegate
        self.model = TFLiteModel(
            self.path / self.model_entry.file,
            backend=be,
            delegates=delegates,
            num_threads=num_threads,
        )
        self.backend = self.model.backend.name
        expected = tuple(m.features)
        if (self.model.in_channels, self.model.time_steps) != expected:
            raise BundleError(
                f"{self.path}: {self.model_entry.file} takes features "
                f"{(self.model.in_channels, self.model.time_steps)}, the manifest says {expected}"
            )

    def __repr__(self) -> str:
        return (
            f"BundleEmbedder({str(self.path)!r}, model={self.model_key!r}, "
            f"backend={self.backend!r})"
        )

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        """``(B, C_in, T)`` float32 features → ``(B, D)`` L2-normalised float32 embeddings."""
        return l2_normalize(self.model.run(features), axis=1)

    def threshold(self, fmr: float | None = None, trials: str = "window") -> float:
        """The calibrated threshold at a target false-match rate (None: at the EER).

        ``trials`` is ``"window"`` (one window against an enrolled recording, what a live stream
        scores) or ``"recording"`` (recording against recording).
        """
        t = self.manifest.thresholds
        table = t.window if trials == "window" else t.recording
        if fmr is None:
            return table.eer_threshold
        key = fmr_key(fmr)
        if key not in table.at_fmr:
            raise BundleError(
                f"no threshold for FMR {fmr} in this bundle; it has {', '.join(table.at_fmr)}"
            )
        return table.at_fmr[key]


def load_model(path: str | Path, delegate: str | None = None, **kwargs: Any) -> BundleEmbedder:
    """A bundle directory (or its ``manifest.json``) → a :class:`BundleEmbedder`.

    Raises ``BundleError`` for anything that is not a bundle; use :func:`is_bundle` to decide
    between a bundle and a training checkpoint first.
    """
    p = Path(path)
    if p.is_file() and p.name == MANIFEST_NAME:
        p = p.parent
    if not is_bundle(p):
        raise BundleError(
            f"{p}: not a bundle directory (a bundle holds {MANIFEST_NAME}; "
            "make one with edgesiam export)"
        )
    return BundleEmbedder(p, delegate, **kwargs)
