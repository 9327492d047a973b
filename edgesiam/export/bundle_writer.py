"""Export end to end: checkpoint → TFLite models → gate → thresholds, cohort, model card, manifest.

:func:`export_bundle` writes the bundle in a staging folder beside the output and moves it into
place only when the gate passes (or ``force`` is set), so a failed export never leaves a bundle
that looks deployable.
"""

from __future__ import annotations

import json
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
from edgesiam.core.metrics import equal_error_rate, threshold_at_fmr, trial_scores
from edgesiam.core.normalise import window_recording_trials
from edgesiam.core.windowing import frame
from edgesiam.errors import ConfigError, GateError, MissingExtraError, ModelError
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
from edgesiam.model.bundle import (
    FMR_TARGETS,
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
    ThresholdSet,
    adaptive_s_norm,
    cohort_statistics,
    fmr_key,
    sha256_file,
    write_manifest,
)
from edgesiam.model.interpreters import TFLiteModel, find_backend, inspect_model, measure_latency

if TYPE_CHECKING:
    from edgesiam.train.checkpoint import CheckpointEmbedder

COHORT_FILE: Final = "cohort.npy"
FRONTEND_FILE: Final = "frontend.npz"
MODEL_CARD: Final = "MODEL_CARD.md"
MAX_WINDOW_TRIALS: Final = 5_000_000


# --- thresholds --------------------------------------------------------------------------------


def threshold_set(
    genuine: np.ndarray,
    impostor: np.ndarray,
    trials: str,
    scores: str = "cosine",
    targets: Sequence[float] = FMR_TARGETS,
) -> ThresholdSet:
    """Thresholds at each target false-match rate and at the EER, from trial scores."""
    eer, eer_threshold = equal_error_rate(genuine, impostor)
    return ThresholdSet(
        trials=trials,
        scores=scores,
        genuine=len(genuine),
        impostor=len(impostor),
        eer=eer,
        eer_threshold=eer_threshold,
        at_fmr={fmr_key(f): threshold_at_fmr(impostor, f) for f in targets},
        supported={fmr_key(f): bool(len(impostor) * f >= 3.0) for f in targets},
    )


def recording_trials(
    embeddings: np.ndarray, labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine of every pair i < j of recordings: ``(genuine, impostor)``."""
    trials = trial_scores(embeddings, list(labels))
    return trials.genuine, trials.impostor


def window_trials(
    heldout: HeldOutResult,
    model: str = "int8",
    seed: int = 0,
    cohort: np.ndarray | None = None,
    top_k: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """Each window against every other recording's embedding: what a live matcher scores
    (AS-normalised against ``cohort`` when one is given).

    Windows are subsampled (seeded) so that there are at most ``MAX_WINDOW_TRIALS`` trials.
    """
    windows = heldout.window_matrix(model).astype(np.float64)
    owner = heldout.window_owner()
    recs = heldout.recordings[model].astype(np.float64)
    limit = max(1, MAX_WINDOW_TRIALS // max(1, len(recs)))
    if len(windows) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(windows), limit, replace=False))
        windows, owner = windows[keep], owner[keep]
    codes = np.unique(np.asarray(heldout.labels), return_inverse=True)[1]
    return window_recording_trials(windows, owner, recs, codes, cohort, top_k)


# --- cohort (adaptive s-norm) ------------------------------------------------------------------


@dataclass
class CohortResult:
    info: CohortInfo
    embeddings: np.ndarray


def evaluate_cohort(
    heldout_embeddings: np.ndarray,
    labels: Sequence[str],
    cohort: np.ndarray,
    top_k: int,
    data: str,
) -> CohortResult:
    """Held-out EER with raw cosines and with adaptive s-norm against ``cohort``.

    The cohort is used (``info.used``) only when it lowers the EER.
    """
    k = max(1, min(int(top_k), len(cohort)))
    e = l2_normalize(heldout_embeddings, axis=1).astype(np.float64)
    genuine, impostor = recording_trials(e, labels)
    eer_raw = equal_error_rate(genuine, impostor)[0]
    stats = cohort_statistics(e, cohort, k)
    normalised = adaptive_s_norm(e @ e.T, stats, stats)
    codes = np.unique(np.asarray(labels), return_inverse=True)[1]
    i, j = np.triu_indices(len(e), k=1)
    same = codes[i] == codes[j]
    scores = normalised[i, j]
    eer_norm = equal_error_rate(scores[same], scores[~same])[0]
    used = eer_norm < eer_raw - 1e-9
    info = CohortInfo(
        top_k=k,
        size=len(cohort),
        data=data,
        eer_raw=eer_raw,
        eer_normalised=eer_norm,
        used=used,
        file=COHORT_FILE if used else None,
        thresholds=threshold_set(
            scores[same], scores[~same], "recording-vs-recording", "adaptive-s-norm"
        )
        if used
        else None,
    )
    return CohortResult(info, np.asarray(cohort, dtype=np.float32))


# --- training data summaries and the model card ------------------------------------------------


def shown_path(path: Path) -> str:
    """``path`` as a model card shows it: relative to the working folder, else its last two parts;
    never this machine's absolute path."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return f"{path.parent.name}/{path.name}"


def find_summaries(folders: Sequence[Path | None]) -> list[tuple[Path, dict[str, Any]]]:
    """``SUMMARY.json`` files in, or one or two levels above, each data folder (deduplicated)."""
    found: dict[Path, dict[str, Any]] = {}
    for folder in folders:
        if folder is None:
            continue
        base = Path(folder).resolve()
        for candidate in (base, base.parent, base.parent.parent):
            path = candidate / "SUMMARY.json"
            if path.is_file() and path not in found:
                try:
                    data = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                if isinstance(data, dict):
                    found[path] = data
                break
    return list(found.items())


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"


INTENDED_USE: Final = {
    "audio": (
        "Few-shot, open-set matching of short audio windows (who is speaking, which known sound "
        "just happened) on small devices: enrol a few recordings of a new label, then compare each "
        "live window with the enrolled templates by cosine similarity and accept at a calibrated "
        "threshold."
    ),
    "sensor": (
        "Few-shot, open-set matching of multichannel sensor windows (which known motion, gesture "
        "or activity) on small devices: enrol a few recordings of a new label, then compare each "
        "live window with the enrolled templates by cosine similarity and accept at a calibrated "
        "threshold."
    ),
}


def model_card(manifest: Manifest, context: dict[str, Any]) -> str:
    """``MODEL_CARD.md``, generated from the manifest and the export's context."""
    m = manifest
    p = m.parity
    lines = [
        f"# Model card: {m.name}",
        "",
        f"Generated by edgesiam {__version__} on {m.created} from `{m.source.checkpoint}` "
        f"(recipe `{m.source.recipe}`, epoch {m.source.epoch}). Do not edit: export again. "
        "`manifest.json` holds every number below and the sha256 of every file.",
        "",
        "## Intended use",
        "",
        INTENDED_USE[m.modality],
        "",
        "Not intended for: security or identity decisions on their own (the thresholds are "
        "calibrated on a small held-out set), or monitoring people who have not agreed to it. "
        "Accuracy on data unlike the training data (other microphones, sensor placements, rooms, "
        "languages) is unknown until measured.",
        "",
        "## Model",
        "",
        f"- Input: {m.modality}, {m.sample_rate} Hz, {m.channels} channel(s)"
        + (f" ({', '.join(m.channel_names)})" if m.channel_names else "")
        + (f" in {', '.join(u or '-' for u in m.channel_units)}" if m.channel_units else "")
        + f"; windows of {m.window_s:g} s ({m.window} samples), hop {m.hop_s:g} s",
        f"- Front-end: {m.frontend.kind} → features {m.features[0]}×{m.features[1]} "
        f"(`{m.frontend.file}` holds its whole state)",
        f"- Encoder: {context['architecture']}; {context['parameters']:,} parameters",
        f"- Embedding: {m.embedding_dim} dimensions, L2-normalised, compared by cosine",
        f"- Deployed model: `{m.models[m.model].file}` (full-integer int8; input scale "
        f"{m.models[m.model].input.scale:.6g}, zero-point {m.models[m.model].input.zero_point}; "
        f"layout {m.models[m.model].input.layout})",
    ]
    lines.append(
        "- Float weights `weights.safetensors` and recipe `recipe.yaml`: what `edgesiam tune` "
        "starts from (never read on the device)"
    )
    lines += [
        "",
        "| file | variant | size |",
        "| --- | --- | --- |",
    ]
    for entry in m.models.values():
        lines.append(f"| `{entry.file}` | {entry.variant} | {_size(entry.bytes)} |")
    lines += ["", "## Data", ""]
    lines.append(f"- Training data: `{m.source.train_data}`")
    lines.append(
        f"- Calibration: {m.calibration.windows} windows of {m.calibration.recordings} recordings "
        f"from `{m.calibration.data}`"
    )
    lines.append(
        f"- Held-out evaluation: {m.thresholds.recordings} recordings of {m.thresholds.labels} "
        f"labels from `{m.thresholds.data}` (labels never seen in training)"
    )
    summaries: list[tuple[Path, dict[str, Any]]] = context["summaries"]
    if not summaries:
        lines.append("- No `SUMMARY.json` was found beside the data: sources and licences unknown.")
    for path, summary in summaries:
        lines += ["", f"### {summary.get('name', path.parent.name)} (`{shown_path(path)}`)", ""]
        if "licence" in summary or "license" in summary:
            lines.append(f"- Licence: {summary.get('licence', summary.get('license'))}")
        for source in summary.get("sources", []) or []:
            lines.append(f"- Source: {source}")
        for note in summary.get("notes", []) or []:
            lines.append(f"- Note: {note}")
        splits = summary.get("splits")
        if isinstance(splits, dict):
            parts = [
                f"{k}: {v.get('labels', '?')} labels, {v.get('recordings', '?')} recordings"
                for k, v in splits.items()
                if isinstance(v, dict)
            ]
            if parts:
                lines.append("- Splits: " + "; ".join(parts))
    lines += [
        "",
        "## Metrics on held-out labels",
        "",
        "| model | EER | mean cosine to torch | min cosine to torch |",
        "| --- | --- | --- | --- |",
        f"| torch float32 (reference) | {_pct(p.eer_torch)} | 1 | 1 |",
        f"| TFLite float32 | {_pct(p.eer_float32)} | {p.float32_mean_cosine:.6f} | "
        f"{p.float32_min_cosine:.6f} |",
        f"| TFLite int8 (deployed) | {_pct(p.eer_int8)} | {p.int8_mean_cosine:.6f} | "
        f"{p.int8_min_cosine:.6f} |",
    ]
    for key, entry in m.models.items():
        if key in ("int8", "float32", "edgetpu") or entry.mean_cosine is None:
            continue
        lines.append(
            f"| TFLite {key} | – | {entry.mean_cosine:.6f} | {entry.min_cosine or 0.0:.6f} |"
        )
    lines += [
        "",
        f"EER int8 − torch: {p.eer_delta_points:+.2f} points, over {p.windows} windows of "
        f"{p.recordings} recordings.",
        "",
        "Thresholds (accept when score ≥ threshold), int8 model:",
        "",
        "| trials | EER | at EER | "
        + " | ".join(f"FMR {k}" for k in m.thresholds.window.at_fmr)
        + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in m.thresholds.window.at_fmr) + " |",
    ]
    sets = [m.thresholds.window, m.thresholds.recording]
    if m.cohort is not None and m.cohort.thresholds is not None:
        sets.append(m.cohort.thresholds)
    for t in sets:
        cells = [f"{v:.4f}" + ("" if t.supported[k] else " (*)") for k, v in t.at_fmr.items()]
        lines.append(
            f"| {t.trials} ({t.scores}; {t.genuine} genuine, {t.impostor} impostor) | "
            f"{_pct(t.eer)} | {t.eer_threshold:.4f} | " + " | ".join(cells) + " |"
        )
    lines.append("")
    lines.append(
        "(*) fewer than 3/FMR impostor trials: the threshold is not backed by data; calibrate on "
        "more held-out recordings before relying on it."
    )
    if m.cohort is not None:
        c = m.cohort
        lines += [
            "",
            f"Score normalisation (adaptive s-norm, top {c.top_k} of a {c.size}-recording cohort "
            f"from `{c.data}`): held-out EER {_pct(c.eer_raw)} raw, {_pct(c.eer_normalised)} "
            + (
                "normalised; the cohort ships as `cohort.npy`."
                if c.used
                else "normalised; not better, so no cohort ships."
            ),
        ]
    lines += ["", "## Export gate", ""]
    lines.append("Passed." if m.gate.passed else "FAILED (exported with --force: do not deploy).")
    lines.append("")
    for check in m.gate.checks:
        lines.append(f"- {'✓' if check.passed else '✗'} `{check.name}`: {check.detail}")
    lines += ["", "## Latency", ""]
    if m.latency is not None:
        lat = m.latency
        lines.append(
            f"One int8 window: median {lat.median_ms:.3f} ms, p95 {lat.p95_ms:.3f} ms over "
            f"{lat.runs} runs with {lat.backend} {lat.backend_version} on {lat.machine} "
            "(the export machine; measure on the device with `edgesiam bench`)."
        )
    else:
        lines.append("Not measured.")
    edgetpu = m.edgetpu
    lines += [
        "",
        "## Edge TPU",
        "",
        (
            "All ops are Edge TPU operations."
            if edgetpu.static_compatible
            else f"Ops the Edge TPU does not support: {', '.join(edgetpu.offenders)}."
        ),
        (
            f"Compiled with edgetpu_compiler {edgetpu.compiler or ''}: `{edgetpu.model}` "
            f"({edgetpu.ops_on_tpu} ops on the TPU, {edgetpu.ops_on_cpu} on the CPU)."
            if edgetpu.model
            else "Not compiled (edgetpu_compiler was not on PATH at export)."
        ),
        "",
        "## Versions",
        "",
        ", ".join(f"{k} {v}" for k, v in m.versions.items()),
        "",
    ]
    return "\n".join(lines)


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
    from edgesiam.export.convert import VARIANT_FILES, convert_all, keras_parity, read_calibration
    from edgesiam.export.keras_mirror import build_keras_mirror, import_tensorflow, mirror_spec

    import_tensorflow()  # fail early, before any data is read
    compiler = find_compiler(opts.edgetpu_compiler)
    if opts.edgetpu_compiler and compiler is None:
        raise ConfigError(f"edgetpu compiler not found: {opts.edgetpu_compiler}")

    embedder = CheckpointEmbedder(model_path)
    config = embedder.config
    if heldout_dir is None:
        val = config.data.val
        if val is None or not Path(val).is_dir():
            raise ConfigError(
                "the gate and the thresholds need held-out labels: pass --heldout DATA_DIR "
                "(the recipe's data.val folder is not available)"
            )
        heldout_dir = Path(val)
        say(f"held-out data: the recipe's validation folder {heldout_dir}")
    name = opts.name or output.name

    say(f"reading calibration windows from {calib_dir}")
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
    say(f"converting with {len(calib.features)} calibration windows")
    converted = convert_all(keras_model, calib.features, opts.variants)

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
    tflite: dict[str, TFLiteModel] = {}
    job.converted = {
        k: job.converted[k] for k in sorted(job.converted, key=list(job.variant_files).index)
    }
    for variant, data in job.converted.items():
        path = job.staging / job.variant_files[variant]
        path.write_bytes(data)
        tflite[variant] = TFLiteModel(path, backend=backend)
    int8 = tflite["int8"]

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
    result: CompilerResult | None = None
    if job.compiler is not None:
        say(f"compiling for the Edge TPU with {job.compiler}")
        result = run_edgetpu_compiler(
            job.staging / job.variant_files["int8"], job.staging, job.compiler
        )
    report = evaluate_gate(heldout, infos["int8"], job.opts.limits, result)
    say(report.render())
    if not report.passed and not job.opts.force:
        raise GateError(report)

    # thresholds with the deployed model
    rec_gen, rec_imp = recording_trials(heldout.recordings["int8"], heldout.labels)
    win_gen, win_imp = window_trials(heldout, "int8", seed=job.opts.seed)
    thresholds = Thresholds(
        data=str(heldout.root),
        labels=len(set(heldout.labels)),
        recordings=len(heldout.labels),
        recording=threshold_set(rec_gen, rec_imp, "recording-vs-recording"),
        window=threshold_set(win_gen, win_imp, "window-vs-recording"),
    )

    cohort_info: CohortInfo | None = None
    if job.opts.cohort and len(job.calib.recordings) >= 2:
        cohort = np.stack(
            [
                recording_embedding(
                    l2_normalize(
                        int8.run(
                            job.embedder.frontend(frame(x, job.embedder.window, job.embedder.hop))
                        ),
                        axis=1,
                    )
                )
                for x in job.calib.recordings[: job.opts.cohort_size]
            ]
        )
        cohort_result = evaluate_cohort(
            heldout.recordings["int8"],
            heldout.labels,
            cohort,
            job.opts.cohort_top_k,
            str(job.calib.root),
        )
        cohort_info = cohort_result.info
        if cohort_info.used:
            np.save(job.staging / COHORT_FILE, cohort_result.embeddings)
            gen, imp = window_trials(
                heldout, "int8", job.opts.seed, cohort_result.embeddings, cohort_info.top_k
            )
            window_set = threshold_set(gen, imp, "window-vs-recording", "adaptive-s-norm")
            cohort_info = cohort_info.model_copy(update={"window_thresholds": window_set})
        say(
            f"adaptive s-norm: held-out EER {100 * cohort_info.eer_raw:.2f}% raw, "
            f"{100 * cohort_info.eer_normalised:.2f}% normalised"
            + (" (cohort shipped)" if cohort_info.used else " (no gain: no cohort)")
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
    if result is not None and result.model is not None:
        models["edgetpu"] = BundleModel(
            file=result.model.name,
            variant="edgetpu",
            bytes=result.model.stat().st_size,
            input=infos["int8"].input,
            output=infos["int8"].output,
        )
    offenders = edgetpu_offenders(infos["int8"].ops)
    edgetpu = EdgeTPUInfo(
        static_compatible=not offenders,
        offenders=offenders,
        compiler=result.version if result else None,
        model=result.model.name if result and result.model else None,
        log=result.log.name if result and result.log else None,
        ops_on_tpu=result.ops_on_tpu if result else None,
        ops_on_cpu=result.ops_on_cpu if result else None,
    )

    cos_int8, cos_f32 = heldout.parity("int8"), heldout.parity("float32")
    eer_torch, eer_f32, eer_int8 = heldout.eer("torch"), heldout.eer("float32"), heldout.eer("int8")
    parity = Parity(
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

    state = job.embedder.frontend.state()
    np.savez(job.staging / FRONTEND_FILE, allow_pickle=False, **state)
    config = job.embedder.config
    manifest = Manifest(
        name=job.name,
        created=datetime.now(UTC).replace(microsecond=0).isoformat(),
        modality=job.embedder.modality,
        sample_rate=job.embedder.sample_rate,
        channels=job.embedder.channels,
        channel_names=job.embedder.channel_names,
        channel_units=_channel_units(job.embedder, Path(str(job.calib.root))),
        window=job.embedder.window,
        hop=job.embedder.hop,
        window_s=job.embedder.window / job.embedder.sample_rate,
        hop_s=job.embedder.hop / job.embedder.sample_rate,
        frontend=_frontend_info(state),
        features=[job.in_channels, job.time_steps],
        embedding_dim=int(job.embedder.model.embedding_dim),
        models=models,
        thresholds=thresholds,
        cohort=cohort_info,
        parity=parity,
        gate=Gate(
            passed=report.passed,
            forced=job.opts.force and not report.passed,
            limits=job.opts.limits.as_dict(),
            checks=[
                GateCheck(name=c.name, passed=c.passed, detail=c.detail) for c in report.checks
            ],
        ),
        edgetpu=edgetpu,
        calibration=Calibration(
            data=str(job.calib.root),
            windows=len(job.calib.features),
            recordings=len(job.calib.recordings),
            seed=job.opts.seed,
        ),
        latency=latency,
        source=Source(
            checkpoint=str(job.model_path),
            sha256=sha256_file(job.model_path),
            recipe=config.name,
            epoch=job.embedder.epoch,
            train_data=", ".join(str(p) for p in config.data.train),
        ),
        versions=_versions(backend.name, backend.version),
    )
    enc = config.encoder
    context = {
        "architecture": (
            f"{len(enc.channels)} Conv1d blocks (channels {enc.channels}, kernels "
            f"{enc.kernel_sizes}, strides {enc.strides}, dilations {enc.dilations}) → mean over "
            f"time → linear {enc.embedding_dim}"
        ),
        "parameters": sum(int(p.numel()) for p in job.embedder.model.parameters()),
        "summaries": find_summaries(
            [*config.data.train, Path(str(job.calib.root)), Path(str(heldout.root))]
        ),
    }
    from edgesiam.train.weights import write_training_files

    write_training_files(job.staging, config, job.embedder.model.state_dict())
    (job.staging / MODEL_CARD).write_text(model_card(manifest, context), encoding="utf-8")
    manifest = write_manifest(job.staging, manifest)
    _install(job.staging, job.output)
    say(
        f"bundle {job.output}: int8 {_size(models['int8'].bytes)}, parity mean "
        f"{parity.int8_mean_cosine:.5f} / min {parity.int8_min_cosine:.5f}, EER int8 "
        f"{100 * eer_int8:.2f}% (torch {100 * eer_torch:.2f}%)"
        + ("" if report.passed else " — GATE FAILED, written because of --force")
    )
    return ExportResult(job.output, manifest, report)
