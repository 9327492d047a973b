"""Export end to end: checkpoint → TFLite models → gate → thresholds, cohort, model card, manifest.

:func:`export_bundle` writes the bundle in a staging folder beside the output and moves it into
place only when the gate passes (or ``force`` is set), so a failed export never leaves a bundle
that looks deployable.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np

from edgesiam import __version__
from edgesiam.core.embedding import l2_normalize, recording_embedding
from edgesiam.core.windowing import frame
from edgesiam.errors import ConfigError, GateError, MissingExtraError, ModelError
from edgesiam.export.cohort import COHORT_FILE, evaluate_cohort
from edgesiam.export.gate import (
    CompilerResult,
    GateLimits,
    GateReport,
    HeldOutResult,
    edgetpu_offenders,
    evaluate_gate,
    find_compiler,
    measure_heldout,
    run_edgetpu_compiler,
)
from edgesiam.export.model_card import (
    MODEL_CARD,
    encoder_text,
    find_summaries,
    model_card,
    shown_path,
    size_text,
    teacher_text,
)
from edgesiam.export.thresholds import (
    heldout_thresholds,
    strictest,
    strictest_thresholds,
    threshold_set,
    window_trials,
)
from edgesiam.model.bundle import (
    BundleModel,
    Calibration,
    CohortInfo,
    EdgeTPUInfo,
    FrontEndInfo,
    Gate,
    GateCheck,
    Latency,
    Manifest,
    Parity,
    Source,
    Thresholds,
    sha256_file,
    write_manifest,
)
from edgesiam.model.interpreters import (
    Backend,
    ModelInfo,
    TFLiteModel,
    find_backend,
    inspect_model,
    measure_latency,
)

if TYPE_CHECKING:
    from edgesiam.train.checkpoint import CheckpointEmbedder

FRONTEND_FILE: Final = "frontend.npz"


# --- export ------------------------------------------------------------------------------------


@dataclass
class ExportOptions:
    name: str | None = None
    calib_windows: int = 300
    min_calib_windows: int = 200
    cohort_size: int = 200
    cohort_top_k: int = 50
    cohort: bool = True
    variants: Sequence[str] = ()
    limits: GateLimits = field(default_factory=GateLimits)
    force: bool = False
    overwrite: bool = False
    l2_in_model: bool = True
    edgetpu_compiler: str | None = None
    latency_runs: int = 200
    seed: int = 0
    threshold_data: Sequence[str | Path] = ()  # more held-out folders (other channels)
    on_error: Literal["fail", "skip"] = "fail"
    progress: bool = False
    log: Callable[[str], None] = print


@dataclass
class ExportResult:
    bundle: Path
    manifest: Manifest
    report: GateReport


def _versions(backend: str, backend_version: str) -> dict[str, str]:
    out = {"edgesiam": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for module in ("tensorflow", "keras", "torch"):
        mod = sys.modules.get(module)
        if mod is not None:
            out[module] = str(getattr(mod, "__version__", "?"))
    out[backend] = backend_version
    return out


def _machine() -> str:
    name = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()} {name}".strip()


def _channel_units(embedder: CheckpointEmbedder, calib_dir: Path) -> list[str | None] | None:
    """The units of the model's channels: the checkpoint's, else those its calibration data
    declare (which it was read in); None when neither states any."""
    if embedder.modality != "sensor":
        return None
    units: list[str | None] | None = getattr(embedder, "channel_units", None)
    if units is None:
        from edgesiam.data.readers import dataset_units, scan_dataset

        units = dataset_units(scan_dataset(calib_dir), embedder.channel_names)
    return units if units is not None and any(u is not None for u in units) else None


def _frontend_info(state: dict[str, np.ndarray]) -> FrontEndInfo:
    params: dict[str, float | int | str] = {}
    for key, value in state.items():
        arr = np.asarray(value)
        if arr.ndim != 0 or key == "kind":
            continue
        item = arr.item()
        params[key] = item if isinstance(item, int | float | str) else str(item)
    return FrontEndInfo(
        kind=str(np.asarray(state["kind"]).item()),
        file=FRONTEND_FILE,
        params=params,
        normalised="mean" in state,
    )


def _prepare_output(output: Path, overwrite: bool) -> None:
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        raise ConfigError(
            f"{output} already exists and is not empty; pass --overwrite to replace it"
        )


def _install(staging: Path, output: Path) -> None:
    """Move the finished bundle into place, replacing an old one as late as possible."""
    old = output.with_name(f".{output.name}.old-{os.getpid()}")
    if output.exists():
        output.rename(old)
    staging.rename(output)
    if old.exists():
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def export_bundle(
    model_path: str | Path,
    output: str | Path,
    calib_dir: str | Path,
    heldout_dir: str | Path | None = None,
    options: ExportOptions | None = None,
) -> ExportResult:
    """Export a training checkpoint to a gated int8 bundle in ``output``.

    Raises ``GateError`` (nothing written) when the gate fails and ``options.force`` is off.
    """
    opts = options or ExportOptions()
    say = opts.log
    model_path, output = Path(model_path), Path(output)
    _prepare_output(output, opts.overwrite)
    try:
        from edgesiam.train.checkpoint import CheckpointEmbedder
    except ImportError as exc:
        raise MissingExtraError(exc.name or "torch", "train") from None
    from edgesiam.export.convert import VARIANT_FILES
    from edgesiam.export.keras_mirror import import_tensorflow

    import_tensorflow()  # fail early, before any data is read
    compiler = find_compiler(opts.edgetpu_compiler)
    if opts.edgetpu_compiler and compiler is None:
        raise ConfigError(f"edgetpu compiler not found: {opts.edgetpu_compiler}")

    embedder = CheckpointEmbedder(model_path)
    heldout_dir = _heldout_dir(embedder, heldout_dir, say)
    name = opts.name or output.name
    calib, converted, in_channels, time_steps = _convert(embedder, calib_dir, opts)

    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(f".{output.name}.partial-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        return _finish(
            ExportJob(
                staging=staging,
                output=output,
                name=name,
                opts=opts,
                embedder=embedder,
                calib=calib,
                converted=converted,
                variant_files=VARIANT_FILES,
                heldout_dir=heldout_dir,
                compiler=compiler,
                in_channels=in_channels,
                time_steps=time_steps,
                model_path=model_path,
            )
        )
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _heldout_dir(
    embedder: CheckpointEmbedder, heldout_dir: str | Path | None, say: Callable[[str], None]
) -> str | Path:
    """The held-out data to gate on: the one given, else the recipe's validation folder."""
    if heldout_dir is not None:
        return heldout_dir
    val = embedder.config.data.val
    if val is None or not Path(val).is_dir():
        raise ConfigError(
            "the gate and the thresholds need held-out labels: pass --heldout DATA_DIR "
            "(the recipe's data.val folder is not available)"
        )
    say(f"held-out data: the recipe's validation folder {Path(val)}")
    return Path(val)


def _convert(
    embedder: CheckpointEmbedder, calib_dir: str | Path, opts: ExportOptions
) -> tuple[Any, dict[str, bytes], int, int]:
    """Calibration windows, then the encoder through its Keras mirror (checked against torch) to
    TFLite: ``(calibration set, variant → model bytes, in_channels, time_steps)``."""
    from edgesiam.export.convert import convert_all, keras_parity, read_calibration
    from edgesiam.export.keras_mirror import build_keras_mirror, mirror_spec

    opts.log(f"reading calibration windows from {calib_dir}")
    calib = read_calibration(
        embedder,
        calib_dir,
        windows=opts.calib_windows,
        min_windows=opts.min_calib_windows,
        recordings=opts.cohort_size,
        seed=opts.seed,
        on_error=opts.on_error,
        progress=opts.progress,
    )
    in_channels, time_steps = embedder.frontend.feature_shape(embedder.window)
    spec = mirror_spec(embedder.model)
    keras_model = build_keras_mirror(spec, time_steps, l2_in_model=opts.l2_in_model)
    mirror_cos = keras_parity(keras_model, embedder.embed_features, calib.features[:16])
    if not mirror_cos > 0.9999:
        raise ModelError(
            f"the Keras mirror does not reproduce the torch encoder (min cosine {mirror_cos:.6f}); "
            "this is a bug in edgesiam's exporter"
        )
    opts.log(f"converting with {len(calib.features)} calibration windows")
    return calib, convert_all(keras_model, calib.features, opts.variants), in_channels, time_steps


@dataclass
class ExportJob:
    """What an export has made by the time the bundle is written: where (``staging`` becomes
    ``output``), from what (the checkpoint and its embedder, the calibration windows), the converted
    models and the held-out data to measure them on."""

    staging: Path
    output: Path
    name: str
    opts: ExportOptions
    embedder: CheckpointEmbedder
    calib: Any
    converted: dict[str, bytes]
    variant_files: dict[str, str]
    heldout_dir: str | Path
    compiler: str | None
    in_channels: int
    time_steps: int
    model_path: Path


def _finish(job: ExportJob) -> ExportResult:
    """Measure the converted models, write the model card and manifest into ``job.staging`` and
    move it into place as the bundle."""
    say = job.opts.log
    backend = find_backend()
    tflite = _write_models(job, backend)
    say(f"measuring parity on held-out data {job.heldout_dir}")
    runners: dict[str, Callable[[np.ndarray], np.ndarray]] = {"torch": job.embedder.embed_features}
    runners.update({k: v.run for k, v in tflite.items()})
    heldout = measure_heldout(
        job.embedder,
        runners,
        job.heldout_dir,
        on_error=job.opts.on_error,
        progress=job.opts.progress,
    )
    infos = {
        k: inspect_model(job.staging / job.variant_files[k], backend=backend) for k in job.converted
    }
    compiled = _compile(job)
    report = evaluate_gate(heldout, infos["int8"], job.opts.limits, compiled)
    say(report.render())
    if not report.passed and not job.opts.force:
        raise GateError(report)
    measured = _measure(job, backend, tflite["int8"], heldout, infos, compiled)
    manifest = _manifest(job, measured, report, backend)
    context = _card_context(job, heldout)
    from edgesiam.train.weights import write_training_files

    write_training_files(job.staging, job.embedder.config, job.embedder.model.state_dict())
    (job.staging / MODEL_CARD).write_text(model_card(manifest, context), encoding="utf-8")
    manifest = write_manifest(job.staging, manifest)
    _install(job.staging, job.output)
    parity = measured.parity
    say(
        f"bundle {job.output}: int8 {size_text(measured.models['int8'].bytes)}, parity mean "
        f"{parity.int8_mean_cosine:.5f} / min {parity.int8_min_cosine:.5f}, EER int8 "
        f"{100 * parity.eer_int8:.2f}% (torch {100 * parity.eer_torch:.2f}%)"
        + ("" if report.passed else " — GATE FAILED, written because of --force")
    )
    return ExportResult(job.output, manifest, report)


def _write_models(job: ExportJob, backend: Backend) -> dict[str, TFLiteModel]:
    """Each converted model into the staging folder (in the order of ``job.variant_files``),
    loaded."""
    tflite: dict[str, TFLiteModel] = {}
    job.converted = {
        k: job.converted[k] for k in sorted(job.converted, key=list(job.variant_files).index)
    }
    for variant, data in job.converted.items():
        path = job.staging / job.variant_files[variant]
        path.write_bytes(data)
        tflite[variant] = TFLiteModel(path, backend=backend)
    return tflite


def _compile(job: ExportJob) -> CompilerResult | None:
    """The int8 model through the Edge TPU compiler, when there is one."""
    if job.compiler is None:
        return None
    job.opts.log(f"compiling for the Edge TPU with {job.compiler}")
    return run_edgetpu_compiler(job.staging / job.variant_files["int8"], job.staging, job.compiler)


@dataclass
class _Measured:
    """The manifest's measured parts, made by :func:`_measure` once the gate has passed."""

    thresholds: Thresholds
    cohort: CohortInfo | None
    latency: Latency
    models: dict[str, BundleModel]
    edgetpu: EdgeTPUInfo
    parity: Parity


def _measure(
    job: ExportJob,
    backend: Backend,
    int8: TFLiteModel,
    heldout: HeldOutResult,
    infos: dict[str, ModelInfo],
    compiled: CompilerResult | None,
) -> _Measured:
    """Thresholds and cohort with the deployed model, its latency, and each model's entry."""
    extra = _threshold_heldouts(job, int8)
    thresholds = strictest_thresholds(
        [
            heldout_thresholds(h, job.opts.seed, shown_path(Path(str(h.root))))
            for h in (heldout, *extra)
        ]
    )
    if extra:
        job.opts.log(_threshold_report(thresholds))
    cohort = (
        _cohort(job, (heldout, *extra), int8)
        if job.opts.cohort and len(job.calib.recordings) >= 2
        else None
    )
    latency_stats = measure_latency(int8, runs=job.opts.latency_runs)
    latency = Latency(
        backend=backend.name,
        backend_version=backend.version,
        threads=int8.num_threads,
        runs=job.opts.latency_runs,
        median_ms=latency_stats["median_ms"],
        p95_ms=latency_stats["p95_ms"],
        machine=_machine(),
    )
    models = _bundle_models(job, heldout, infos, compiled)
    edgetpu = _edgetpu_info(infos["int8"], compiled)
    return _Measured(thresholds, cohort, latency, models, edgetpu, _parity(heldout))


def _cohort_embeddings(job: ExportJob, int8: TFLiteModel) -> np.ndarray:
    """The int8 model's recording embedding of each calibration recording, up to the cohort size."""
    window, hop = job.embedder.window, job.embedder.hop
    return np.stack(
        [
            recording_embedding(
                l2_normalize(int8.run(job.embedder.frontend(frame(x, window, hop))), axis=1)
            )
            for x in job.calib.recordings[: job.opts.cohort_size]
        ]
    )


def _threshold_heldouts(job: ExportJob, int8: TFLiteModel) -> list[HeldOutResult]:
    """The int8 model's windows of each ``--threshold-data`` folder."""
    found = []
    for folder in job.opts.threshold_data:
        job.opts.log(f"thresholds also on {folder}")
        found.append(
            measure_heldout(
                job.embedder,
                {"int8": int8.run},
                folder,
                on_error=job.opts.on_error,
                progress=job.opts.progress,
            )
        )
    return found


def _threshold_report(thresholds: Thresholds) -> str:
    """The combined window thresholds, for the export's log."""
    rates = ", ".join(f"FMR {k}: {v:.4f}" for k, v in thresholds.window.at_fmr.items())
    return f"window thresholds, the strictest over {thresholds.data}: {rates}"


def _cohort(job: ExportJob, heldouts: Sequence[HeldOutResult], int8: TFLiteModel) -> CohortInfo:
    """The score-normalisation cohort, shipped (with its window thresholds, the strictest over
    the held-out folders) only when it helps on the reference held-out folder."""
    heldout = heldouts[0]
    cohort_result = evaluate_cohort(
        heldout.recordings["int8"],
        heldout.labels,
        _cohort_embeddings(job, int8),
        job.opts.cohort_top_k,
        shown_path(Path(str(job.calib.root))),
    )
    cohort_info = cohort_result.info
    if cohort_info.used:
        np.save(job.staging / COHORT_FILE, cohort_result.embeddings)
        sets = []
        for h in heldouts:
            gen, imp = window_trials(
                h, "int8", job.opts.seed, cohort_result.embeddings, cohort_info.top_k
            )
            sets.append(threshold_set(gen, imp, "window-vs-recording", "adaptive-s-norm"))
        cohort_info = cohort_info.model_copy(update={"window_thresholds": strictest(sets)})
    job.opts.log(
        f"adaptive s-norm: held-out EER {100 * cohort_info.eer_raw:.2f}% raw, "
        f"{100 * cohort_info.eer_normalised:.2f}% normalised"
        + (" (cohort shipped)" if cohort_info.used else " (no gain: no cohort)")
    )
    return cohort_info


def _bundle_models(
    job: ExportJob,
    heldout: HeldOutResult,
    infos: dict[str, ModelInfo],
    compiled: CompilerResult | None,
) -> dict[str, BundleModel]:
    """The manifest's entry of each model file, the compiled Edge TPU model included."""
    models: dict[str, BundleModel] = {}
    for variant in job.converted:
        cos = heldout.parity(variant)
        models[variant] = BundleModel(
            file=job.variant_files[variant],
            variant=variant,
            bytes=(job.staging / job.variant_files[variant]).stat().st_size,
            input=infos[variant].input,
            output=infos[variant].output,
            ops=infos[variant].ops,
            mean_cosine=float(np.mean(cos)),
            min_cosine=float(np.min(cos)),
        )
    if compiled is not None and compiled.model is not None:
        models["edgetpu"] = BundleModel(
            file=compiled.model.name,
            variant="edgetpu",
            bytes=compiled.model.stat().st_size,
            input=infos["int8"].input,
            output=infos["int8"].output,
        )
    return models


def _edgetpu_info(int8: ModelInfo, compiled: CompilerResult | None) -> EdgeTPUInfo:
    offenders = edgetpu_offenders(int8.ops)
    return EdgeTPUInfo(
        static_compatible=not offenders,
        offenders=offenders,
        compiler=compiled.version if compiled else None,
        model=compiled.model.name if compiled and compiled.model else None,
        log=compiled.log.name if compiled and compiled.log else None,
        ops_on_tpu=compiled.ops_on_tpu if compiled else None,
        ops_on_cpu=compiled.ops_on_cpu if compiled else None,
    )


def _parity(heldout: HeldOutResult) -> Parity:
    cos_int8, cos_f32 = heldout.parity("int8"), heldout.parity("float32")
    eer_torch, eer_f32, eer_int8 = heldout.eer("torch"), heldout.eer("float32"), heldout.eer("int8")
    return Parity(
        windows=len(cos_int8),
        recordings=len(heldout.labels),
        int8_mean_cosine=float(np.mean(cos_int8)),
        int8_min_cosine=float(np.min(cos_int8)),
        float32_mean_cosine=float(np.mean(cos_f32)),
        float32_min_cosine=float(np.min(cos_f32)),
        eer_torch=eer_torch,
        eer_float32=eer_f32,
        eer_int8=eer_int8,
        eer_delta_points=100.0 * (eer_int8 - eer_torch),
    )


def _manifest(
    job: ExportJob, measured: _Measured, report: GateReport, backend: Backend
) -> Manifest:
    """The manifest (its file hashes come when it is written); saves the front-end's state."""
    e = job.embedder
    state = e.frontend.state()
    np.savez(job.staging / FRONTEND_FILE, allow_pickle=False, **state)
    return Manifest(
        name=job.name,
        created=datetime.now(UTC).replace(microsecond=0).isoformat(),
        modality=e.modality,
        sample_rate=e.sample_rate,
        channels=e.channels,
        channel_names=e.channel_names,
        channel_units=_channel_units(e, Path(str(job.calib.root))),
        window=e.window,
        hop=e.hop,
        window_s=e.window / e.sample_rate,
        hop_s=e.hop / e.sample_rate,
        frontend=_frontend_info(state),
        features=[job.in_channels, job.time_steps],
        embedding_dim=int(e.model.embedding_dim),
        models=measured.models,
        thresholds=measured.thresholds,
        cohort=measured.cohort,
        parity=measured.parity,
        gate=_gate(report, job.opts),
        edgetpu=measured.edgetpu,
        calibration=Calibration(
            data=shown_path(Path(str(job.calib.root))),
            windows=len(job.calib.features),
            recordings=len(job.calib.recordings),
            seed=job.opts.seed,
        ),
        latency=measured.latency,
        source=_source(job),
        versions=_versions(backend.name, backend.version),
    )


def _gate(report: GateReport, opts: ExportOptions) -> Gate:
    return Gate(
        passed=report.passed,
        forced=opts.force and not report.passed,
        limits=opts.limits.as_dict(),
        checks=[GateCheck(name=c.name, passed=c.passed, detail=c.detail) for c in report.checks],
    )


def _source(job: ExportJob) -> Source:
    config = job.embedder.config
    return Source(
        checkpoint=shown_path(job.model_path),
        sha256=sha256_file(job.model_path),
        recipe=config.name,
        epoch=job.embedder.epoch,
        train_data=", ".join(shown_path(Path(p)) for p in config.data.train),
    )


def _card_context(job: ExportJob, heldout: HeldOutResult) -> dict[str, Any]:
    """What the model card says beyond the manifest: the encoder and the data's summaries."""
    config = job.embedder.config
    enc = config.encoder
    return {
        "architecture": encoder_text(enc),
        "teacher": teacher_text(config.distill),
        "parameters": sum(int(p.numel()) for p in job.embedder.model.parameters()),
        "summaries": find_summaries(
            [*config.data.train, Path(str(job.calib.root)), Path(str(heldout.root))]
        ),
    }
