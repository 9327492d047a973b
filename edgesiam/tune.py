"""``edgesiam tune``: fine-tune a bundle's encoder on a user's own dataset folder, export it through
the same gate as ``edgesiam export``, and compare it with the original on the user's held-out data.
It composes ``train`` (torch), ``export`` (tensorflow, imported when the export runs) and
``evaluation``, so it sits above all three.

The steps, each its own function:

1. :func:`check_folder` reads every recording once and refuses, naming them, labels with too few
   recordings, files of the other modality, sensor files with the wrong channels and files that
   cannot be read;
2. :func:`split_recordings` holds out whole ``GROUP__`` groups (or, without groups, recordings), so
   the same subject or session never sits on both sides, then carves a validation part for early
   stopping out of the rest;
3. :func:`fine_tune` starts from the source's weights with the recipe's objective and augmentation,
   a tenth of its learning rate, BatchNorm statistics frozen (a few recordings make poor batch
   statistics), early stopping on the validation part and a time budget;
4. :func:`export_with_retries` exports through the gate, and when the gate fails tries what its
   report suggests (more calibration windows, the L2 step in numpy, sensor feature clipping);
5. :func:`compare` scores the tuned bundle, the original unchanged and the classic descriptor on
   the held-out part, and :func:`verdict` says which to deploy.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from pytorch_metric_learning.samplers import MPerClassSampler
from tqdm import tqdm

from edgesiam.core.frontend import FrontEnd, SensorFrontEnd, frontend_from_state
from edgesiam.core.metrics import equal_error_rate
from edgesiam.core.windowing import frame
from edgesiam.data.readers import (
    DATASET_TOML,
    DatasetInfo,
    Recording,
    SensorSpec,
    iter_recordings,
    scan_dataset,
)
from edgesiam.errors import BundleError, ConfigError, DataError, ModelError
from edgesiam.model.interpreters import is_bundle
from edgesiam.settings import parse_model
from edgesiam.train.checkpoint import (
    frontend_from_torch,
    frontend_to_torch,
    load_checkpoint,
    save_checkpoint,
)
from edgesiam.train.config import TrainConfig
from edgesiam.train.encoder import Conv1dEncoder
from edgesiam.train.loop import (
    _pick_device,
    _seed_everything,
    build_augment,
    embed_recordings,
    make_optimizer,
    sampler_batch_size,
)
from edgesiam.train.objectives import build_objective
from edgesiam.train.windows import RecordingSet, pool_datasets

TUNING_MD: Final = "TUNING.md"
TUNING_JSON: Final = "TUNING.json"

Log = Callable[[str], None]


# --- the source model ----------------------------------------------------------------------------


def load_source(path: Path) -> dict[str, Any]:
    """A bundle that carries weights, or a training checkpoint, as a checkpoint payload."""
    from edgesiam.train.weights import source_from_bundle

    if is_bundle(path):
        return source_from_bundle(path)
    if path.is_file():
        return load_checkpoint(path)
    raise ModelError(f"{path}: neither a bundle (a folder with manifest.json) nor a checkpoint")


def source_spec(source: dict[str, Any]) -> SensorSpec | None:
    """How recordings are read for the source model (None for audio)."""
    if source["modality"] != "sensor":
        return None
    names, units = source.get("channel_names"), source.get("channel_units")
    return SensorSpec(
        int(source["sample_rate"]),
        int(source["channels"]),
        tuple(names) if names else None,
        tuple(units) if units else None,
    )


# --- 1. the folder -------------------------------------------------------------------------------

MIN_PER_LABEL: Final = 5
"""Recordings a label needs: two to fit, one to validate, two held out (a genuine trial)."""


@dataclass
class Folder:
    """Every recording of the user's folder(s), read once at the model's rate and channels."""

    info: DatasetInfo
    arrays: dict[Path, np.ndarray]


def check_folder(folders: Sequence[Path], source: dict[str, Any], progress: bool = False) -> Folder:
    """Read and check the dataset folder(s); every problem found is named in one ``DataError``."""
    infos = [scan_dataset(f) for f in folders]  # mixed modalities fail here, naming a file of each
    info = pool_datasets(infos)
    modality = source["modality"]
    if info.modality != modality:
        raise DataError(
            f"holds {info.modality} recordings, but the model to tune is for {modality}", info.root
        )
    counts = info.label_counts()
    if len(counts) < 2:
        raise DataError("tuning needs at least 2 labels (a folder per label)", info.root)
    few = {label: n for label, n in counts.items() if n < MIN_PER_LABEL}
    if few:
        listed = ", ".join(f"{label} ({n})" for label, n in few.items())
        raise DataError(
            f"too few recordings per label: {listed}; each label needs at least "
            f"{MIN_PER_LABEL} (two to fit, one to validate, two held out)",
            info.root,
        )
    rate = int(source["sample_rate"])
    arrays: dict[Path, np.ndarray] = {}
    scanned = len(info.skipped)  # files that are no recordings (notes.txt): logged, not errors
    for rec, x in iter_recordings(info, rate, "skip", progress, spec=source_spec(source)):
        arrays[rec.path] = x
    unusable = info.skipped[scanned:]
    if unusable:
        listed = "\n".join(f"  {path}: {why.removeprefix(f'{path}: ')}" for path, why in unusable)
        raise DataError(
            f"{len(unusable)} recording(s) cannot be used with this model "
            f"({_model_input(source)}):\n{listed}",
            info.root,
        )
    return Folder(info, arrays)


def _model_input(source: dict[str, Any]) -> str:
    if source["modality"] == "audio":
        return f"audio at {source['sample_rate']} Hz"
    names = source.get("channel_names")
    return f"{source['channels']} sensor channels" + (f": {', '.join(names)}" if names else "")


# --- 2. the split --------------------------------------------------------------------------------

HELDOUT_FRACTION: Final = 0.3
"""At most this share of a label's recordings is held out for the comparison (two at least)."""
VAL_FRACTION: Final = 0.2
"""About this share of the rest validates the fine-tuning (one at least, from three up)."""


@dataclass
class Split:
    fit: list[Recording]
    val: list[Recording]
    heldout: list[Recording]
    by: str  # "group" or "recording"

    def summary(self) -> dict[str, Any]:
        def side(recs: list[Recording]) -> dict[str, Any]:
            groups = sorted({r.group for r in recs if r.group is not None})
            return {
                "recordings": len(recs),
                "labels": len({r.label for r in recs}),
                "groups": groups,
            }

        return {
            "by": self.by,
            "fit": side(self.fit),
            "val": side(self.val),
            "heldout": side(self.heldout),
        }


def _unit(rec: Recording, by_group: bool) -> str:
    if by_group and rec.group is not None:
        return f"group:{rec.group}"
    return f"recording:{rec.path}"


def split_recordings(
    recordings: Sequence[Recording], seed: int = 0, by_group: bool = True
) -> Split:
    """Held-out part by group (or recording), then a validation part out of the rest.

    Units (a group, or a recording without one) are visited in a seeded order; one goes to the
    held-out side when every label in it keeps three recordings to train on and either has
    nothing held out yet or stays within ``HELDOUT_FRACTION`` of its recordings (two at least,
    for a genuine trial). A label whose recordings all share one group is never held out.
    """
    rng = np.random.default_rng(seed)
    units: dict[str, list[Recording]] = {}
    for rec in recordings:
        units.setdefault(_unit(rec, by_group), []).append(rec)
    total: dict[str, int] = {}
    for rec in recordings:
        total[rec.label] = total.get(rec.label, 0) + 1
    held: dict[str, int] = dict.fromkeys(total, 0)
    heldout: list[Recording] = []
    for key in rng.permutation(sorted(units)):
        members = units[str(key)]
        take: dict[str, int] = {}
        for rec in members:
            take[rec.label] = take.get(rec.label, 0) + 1
        cap = {label: max(2, math.ceil(HELDOUT_FRACTION * total[label])) for label in take}
        if all(
            total[label] - held[label] - n >= 3
            and (held[label] == 0 or held[label] + n <= cap[label])
            for label, n in take.items()
        ):
            heldout.extend(members)
            for label, n in take.items():
                held[label] += n
    chosen = {id(r) for r in heldout}
    fit, val = split_fit_val([r for r in recordings if id(r) not in chosen], rng)
    grouped = by_group and any(r.group for r in recordings)
    split = Split(fit, val, heldout, "group" if grouped else "recording")
    _check_split(split, by_group)
    return split


def split_fit_val(
    recordings: Sequence[Recording], rng: np.random.Generator
) -> tuple[list[Recording], list[Recording]]:
    """About ``VAL_FRACTION`` of each label's recordings (one at least, when it has three) to
    validate on; the rest to fit."""
    fit: list[Recording] = []
    val: list[Recording] = []
    for label in sorted({r.label for r in recordings}):
        mine = [r for r in recordings if r.label == label]
        order = rng.permutation(len(mine))
        n_val = max(1, round(VAL_FRACTION * len(mine))) if len(mine) >= 3 else 0
        val.extend(mine[i] for i in order[:n_val])
        fit.extend(mine[i] for i in order[n_val:])
    return fit, val


def _check_split(split: Split, by_group: bool = True) -> None:
    per_label: dict[str, int] = {}
    for rec in split.heldout:
        per_label[rec.label] = per_label.get(rec.label, 0) + 1
    if sum(1 for n in per_label.values() if n >= 2) < 2:
        raise DataError(
            "the held-out part needs two labels with two recordings each, and holding out whole "
            "groups left too few (groups are the GROUP__ prefixes of the file names): add "
            "recordings or groups"
        )
    if len({r.label for r in split.val}) < 2:
        raise DataError("the validation part needs two labels: add recordings")
    refuse_overlap(split.fit + split.val, split.heldout, by_group)


def refuse_overlap(
    training: Sequence[Recording], heldout: Sequence[Recording], by_group: bool = True
) -> None:
    """Held-out data must share no file, no content and (by default) no group with training."""
    same_group = (
        sorted({r.group for r in training if r.group} & {r.group for r in heldout if r.group})
        if by_group
        else []
    )
    if same_group:
        raise DataError(
            f"group(s) {', '.join(same_group)} sit on both sides: held-out data would not be "
            "held out"
        )
    seen = {_digest(r.path): r.path for r in training}
    for rec in heldout:
        twin = seen.get(_digest(rec.path))
        if twin is not None:
            raise DataError(
                f"is the same recording as the training file {twin}: validation equal to "
                "training is refused (it would report an accuracy the model does not have)",
                rec.path,
            )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_split_folder(recs: Sequence[Recording], info: DatasetInfo, out: Path) -> Path:
    """A dataset folder of links to ``recs`` (the export reads its calibration and held-out data
    from folders), with the source folder's ``dataset.toml``."""
    out.mkdir(parents=True)
    toml = info.root / DATASET_TOML
    if toml.is_file():
        shutil.copyfile(toml, out / DATASET_TOML)
    for rec in recs:
        target = out / rec.label / rec.path.name
        target.parent.mkdir(exist_ok=True)
        if target.exists():
            raise DataError(
                f"two recordings of label {rec.label} are named {rec.path.name}", rec.path
            )
        target.symlink_to(rec.path.resolve())
    return out


# --- 3. fine-tuning ------------------------------------------------------------------------------

LR_FACTOR: Final = 0.1
"""The source recipe's learning rate is scaled by this: tuning nudges a trained model."""
TEMPLATES_PER_LABEL: Final = 10
"""Recordings per label enrolled as templates when validating a tuned model."""


def tune_config(
    source: dict[str, Any],
    folders: Sequence[Path],
    minutes: float,
    overrides: dict[str, Any],
    log: Log,
) -> TrainConfig:
    """The source's recipe with tuning defaults (a tenth of the learning rate, short epochs, the
    time budget, the user's labels as classes) and then the user's ``--set`` overrides."""
    data = copy.deepcopy(source["config"])
    optim = data.setdefault("optim", {})
    optim["lr"] = LR_FACTOR * float(optim.get("lr", 3e-3))
    optim["steps_per_epoch"] = min(int(optim.get("steps_per_epoch", 100)), 20)
    optim["epochs"] = 100
    optim["patience"] = 4
    optim["max_minutes"] = minutes
    data["data"]["train"] = [str(f) for f in folders]
    data["data"]["val"] = None
    data["data"]["classes"] = "label"
    augment = data.get("augment") or {}
    for key in ("noise_dir", "rir_dir"):
        folder = augment.get(key)
        if folder and not Path(folder).is_dir():
            log(f"augment.{key} {folder} is not here: tuning without it")
            augment[key] = None
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return parse_model(TrainConfig, data, "the tuning recipe (the bundle's recipe and --set)")


@dataclass
class TuneResult:
    state: dict[str, torch.Tensor]
    start_val_eer: float
    best_val_eer: float
    best_epoch: int
    epochs: int
    seconds: float
    batch_size: int
    device: str
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""

    @property
    def improved(self) -> bool:
        return self.best_epoch > 0


def _progress(budget_s: float, steps: int, show: bool) -> Any:
    """A bar over the time budget (epochs stop early or run out of time first), else over steps."""
    if math.isfinite(budget_s):
        return tqdm(
            total=round(budget_s),
            desc="tuning",
            unit="s",
            bar_format="{desc}: {percentage:3.0f}% of the time budget |{bar}| {n:.0f}/{total} s{postfix}",
            disable=not show,
            leave=False,
        )
    return tqdm(total=steps, desc="tuning", unit="step", disable=not show, leave=False)


def _freeze_batchnorm(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.eval()


def _windows(
    recs: Sequence[Recording],
    arrays: dict[Path, np.ndarray],
    window: int,
    hop: int,
    cap: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    names = sorted({r.label for r in recs})
    index = {name: i for i, name in enumerate(names)}
    chunks, labels = [], []
    for rec in recs:
        w = frame(arrays[rec.path], window, hop)
        if len(w) > cap:
            w = w[np.sort(rng.choice(len(w), cap, replace=False))]
        chunks.append(w.astype(np.float32))
        labels.extend([index[rec.label]] * len(w))
    return np.concatenate(chunks), np.asarray(labels, np.int64), names


def _recording_set(recs: Sequence[Recording], folder: Folder) -> RecordingSet:
    return RecordingSet(
        [folder.arrays[r.path] for r in recs], [r.label for r in recs], [r.group for r in recs]
    )


def _templates(
    recs: Sequence[Recording], rng: np.random.Generator, per_label: int = TEMPLATES_PER_LABEL
) -> list[Recording]:
    """At most ``per_label`` fit recordings of each label (seeded): the enrolled templates that
    validation recordings are scored against."""
    out: list[Recording] = []
    for label in sorted({r.label for r in recs}):
        mine = [r for r in recs if r.label == label]
        out.extend(mine[i] for i in sorted(rng.permutation(len(mine))[:per_label]))
    return out


def validation_eer(
    model: torch.nn.Module,
    frontend: FrontEnd,
    val: RecordingSet,
    templates: RecordingSet,
    window: int,
    hop: int,
    device: str,
) -> float:
    """EER of validation recordings scored against enrolled fit recordings, as a user enrols
    some recordings and matches new ones (one validation recording per label is enough)."""
    a = embed_recordings(model, frontend, val, window, hop, device)
    b = embed_recordings(model, frontend, templates, window, hop, device)
    scores = a @ b.T
    same = np.asarray(val.labels)[:, None] == np.asarray(templates.labels)[None, :]
    return float(equal_error_rate(scores[same], scores[~same])[0])


@torch.no_grad()
def _imprint_centres(
    loss: torch.nn.Module,
    model: torch.nn.Module,
    frontend: FrontEnd,
    windows: np.ndarray,
    labels: np.ndarray,
    device: str,
) -> None:
    """Start a margin-softmax loss's class centres (``W``, embedding × classes·sub-centres) at each
    label's mean embedding: random centres for the user's new labels would first pull the
    pretrained embeddings apart."""
    w = getattr(loss, "W", None)
    classes = int(labels.max()) + 1
    if not isinstance(w, torch.nn.Parameter) or w.shape[1] % classes:
        return
    model.eval()
    emb = torch.cat(
        [
            model(torch.from_numpy(frontend(windows[i : i + 256])).to(device)).float()
            for i in range(0, len(windows), 256)
        ]
    )
    y = torch.from_numpy(labels).to(emb.device)
    means = torch.stack([emb[y == c].mean(0) for c in range(classes)])
    centres = torch.nn.functional.normalize(means, dim=1).repeat_interleave(
        w.shape[1] // classes, 0
    )
    centres = centres + 0.01 * torch.randn_like(centres)  # sub-centres free to part
    w.copy_(centres.t().to(w.device, w.dtype))


@dataclass
class _Steps:
    """One fine-tuning run's moving parts: an epoch is ``steps`` P×K batches of augmented windows."""

    model: torch.nn.Module
    objective: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    frontend: FrontEnd
    augment: tuple[Any, Any]
    windows: np.ndarray
    labels: np.ndarray
    m_per_class: int
    batch: int
    steps: int
    device: str
    rng: np.random.Generator

    def epoch(self, tick: Callable[[], None]) -> float:
        """Train one epoch (BatchNorm statistics frozen); returns the mean loss."""
        self.model.train()
        _freeze_batchnorm(self.model)
        sampler = MPerClassSampler(
            self.labels,
            m=self.m_per_class,
            batch_size=self.batch,
            length_before_new_iter=self.steps * self.batch,
        )
        order = np.fromiter(iter(sampler), dtype=np.int64).reshape(-1, self.batch)[: self.steps]
        raw_aug, feat_aug = self.augment
        losses = []
        for idx in order:
            raw = self.windows[idx]
            if raw_aug is not None:
                raw = raw_aug(raw, self.rng)
            feats = self.frontend(raw)
            if feat_aug is not None:
                feats = feat_aug(feats, self.rng)
            x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).to(self.device)
            loss = self.objective(self.model(x), torch.from_numpy(self.labels[idx]).to(self.device))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            losses.append(float(loss.detach()))
            tick()
        return float(np.mean(losses))


def _setup(
    source: dict[str, Any], config: TrainConfig, folder: Folder, split: Split, log: Log
) -> tuple[_Steps, Callable[[], float]]:
    """The model from the source's weights, its objective, optimiser and batches, and the
    validation score (recordings of the validation part against enrolled fit recordings)."""
    device = _pick_device(config.device)
    _seed_everything(config.seed)  # the P×K sampler draws from numpy's global generator
    rng = np.random.default_rng(config.seed)
    window, hop = int(source["window"]), int(source["hop"])
    frontend: FrontEnd = frontend_from_state(frontend_from_torch(source["frontend"]))
    model = Conv1dEncoder.from_config(int(source["in_channels"]), config.encoder)
    model.load_state_dict(source["model"])
    model.to(device)
    windows, labels, names = _windows(
        split.fit, folder.arrays, window, hop, config.data.max_windows_per_recording, rng
    )
    objective = build_objective(config.objective, len(names), config.encoder.embedding_dim)
    objective.loss.to(device)
    _imprint_centres(objective.loss, model, frontend, windows, labels, device)
    optimizer, scheduler = make_optimizer(model, objective, config.optim)
    m = config.sampler.m_per_class
    batch = sampler_batch_size(len(names), m, config.sampler.batch_size)
    if batch != config.sampler.batch_size:
        log(
            f"batch size {batch} ({len(names)} labels × {m}) instead of the recipe's "
            f"{config.sampler.batch_size}: set sampler.batch_size to change it"
        )
    augment = build_augment(config, int(source["sample_rate"]), frontend)
    steps = _Steps(
        model,
        objective,
        optimizer,
        scheduler,
        frontend,
        augment,
        windows,
        labels,
        m,
        batch,
        config.optim.steps_per_epoch,
        device,
        rng,
    )
    val = _recording_set(split.val, folder)
    templates = _recording_set(_templates(split.fit, rng), folder)
    return steps, lambda: validation_eer(model, frontend, val, templates, window, hop, device)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def fine_tune(
    source: dict[str, Any],
    config: TrainConfig,
    folder: Folder,
    split: Split,
    progress: bool = True,
    log: Log = print,
) -> TuneResult:
    """Fine-tune the source encoder on the fit part; the best state on the validation part wins
    (the source's own weights when no epoch beats them)."""
    run, score = _setup(source, config, folder, split, log)
    start = score()
    result = TuneResult(_state(run.model), start, start, 0, 0, 0.0, run.batch, run.device)
    log(
        f"fine-tuning on {len(run.windows)} windows of {len(split.fit)} recordings "
        f"({len(set(run.labels.tolist()))} labels), device {run.device}, lr {config.optim.lr:g}, "
        f"batch {run.batch}; validation EER at the start {100 * start:.2f}%"
    )
    epochs = config.optim.epochs
    budget = 60 * (config.optim.max_minutes or math.inf)
    started, stale = time.monotonic(), 0
    bar = _progress(budget, run.steps * epochs, progress)

    def tick() -> None:
        timed = math.isfinite(budget)
        bar.update(min(time.monotonic() - started, bar.total) - bar.n if timed else 1)

    result.stopped = f"all {epochs} epochs run"
    for epoch in range(1, epochs + 1):
        loss = run.epoch(tick)
        eer = score()
        elapsed = time.monotonic() - started
        result.history.append(
            {"epoch": epoch, "loss": loss, "val_eer": eer, "seconds": round(elapsed, 1)}
        )
        bar.set_postfix(epoch=epoch, val_eer=f"{100 * eer:.2f}%")
        result.epochs = epoch
        if eer < result.best_val_eer - 1e-4:
            result.best_val_eer, result.best_epoch, stale = eer, epoch, 0
            result.state = _state(run.model)
        else:
            stale += 1
        if stale >= config.optim.patience:
            result.stopped = f"no better validation EER for {stale} epochs"
            break
        if elapsed > budget:
            result.stopped = f"time budget of {config.optim.max_minutes:g} min reached"
            break
    bar.close()
    result.seconds = time.monotonic() - started
    log(
        f"tuned for {result.epochs} epoch(s) in {result.seconds:.0f} s ({result.stopped}); "
        + (
            f"best validation EER {100 * result.best_val_eer:.2f}% at epoch {result.best_epoch}"
            if result.improved
            else "no epoch beat the original weights: they are kept"
        )
    )
    return result


def tuned_checkpoint(
    source: dict[str, Any], config: TrainConfig, result: TuneResult, path: Path
) -> Path:
    """Write the tuned encoder as a training checkpoint (what ``edgesiam export`` reads)."""
    payload = dict(source)
    for key in ("format", "format_version", "optimizer", "scheduler", "loss", "history"):
        payload.pop(key, None)
    payload.update(
        config=config.model_dump(mode="json"),
        model=result.state,
        epoch=result.best_epoch,
        metrics={"val_eer": result.best_val_eer, "start_val_eer": result.start_val_eer},
    )
    save_checkpoint(path, payload)
    return path


# --- 4. export through the gate ------------------------------------------------------------------


@dataclass
class Attempt:
    what: str
    passed: bool
    report: str


def _clipped(checkpoint: Path, clip: float) -> Path | None:
    """The checkpoint with its sensor front-end clipping features at ``±clip`` (None: no sensor
    front-end, or it clips as tightly already)."""
    data = load_checkpoint(checkpoint)
    frontend = frontend_from_state(frontend_from_torch(data["frontend"]))
    if not isinstance(frontend, SensorFrontEnd) or frontend.clip <= clip:
        return None
    state = frontend.state()
    state["clip"] = np.array(float(clip))
    data["frontend"] = frontend_to_torch(state)
    for key in ("format", "format_version"):
        data.pop(key)
    out = checkpoint.with_name(f"{checkpoint.stem}-clip{clip:g}.pt")
    save_checkpoint(out, data)
    return out


def export_with_retries(
    checkpoint: Path,
    output: Path,
    calib: Path,
    heldout: Path,
    seed: int,
    progress: bool,
    log: Log,
    export: Callable[..., Any] | None = None,
) -> tuple[Any, list[Attempt]]:
    """Export through the gate; on failure try what the gate's report suggests, in turn."""
    from edgesiam.errors import GateError
    from edgesiam.export.bundle_writer import ExportOptions, export_bundle

    run = export or export_bundle
    plans: list[tuple[str, Path | None, dict[str, Any]]] = [
        ("the default export", checkpoint, {}),
        ("1000 calibration windows", checkpoint, {"calib_windows": 1000}),
        ("the L2 step in numpy", checkpoint, {"calib_windows": 1000, "l2_in_model": False}),
    ]
    attempts: list[Attempt] = []
    for i, (what, path, extra) in enumerate([*plans, ("features clipped at ±4", None, {})]):
        if path is None:  # the last resort: a tighter sensor front-end clip
            path = _clipped(checkpoint, 4.0)
            if path is None:
                break
            extra = {"calib_windows": 1000, "l2_in_model": False}
        options = ExportOptions(
            overwrite=True, seed=seed, progress=progress, log=lambda _m: None, **extra
        )
        log(f"export attempt {i + 1}: {what}")
        try:
            result = run(path, output, calib, heldout, options)
        except GateError as exc:
            attempts.append(Attempt(what, False, exc.report.render()))
            log(exc.report.render())
            continue
        attempts.append(Attempt(what, True, result.report.render()))
        return result, attempts
    tried = "\n".join(f"- {a.what}:\n{a.report}" for a in attempts)
    raise BundleError(
        f"the tuned model failed the export gate after {len(attempts)} attempt(s); nothing "
        f"written to {output}:\n{tried}\nTry more recordings, a shorter tuning "
        "(--minutes), or `edgesiam export --force` on the tuned checkpoint to inspect it"
    )


# --- 5. the comparison ---------------------------------------------------------------------------

MIN_GAIN: Final = 0.01
"""Smallest EER gain (a fraction) for which the tuned bundle is recommended over the original."""
POOR_EER: Final = 0.3
"""An EER above this (both models) means the data, not the model, needs a look."""


def compare(
    tuned: Path, original: Path, heldout: Path, seed: int, progress: bool
) -> tuple[Any, list[str]]:
    """Held-out metrics of the tuned bundle, the original unchanged and the classic descriptor."""
    from edgesiam.evaluation import Report, load_embedder
    from edgesiam.model.embedders import embed_dataset

    info = scan_dataset(heldout)
    ours = embed_dataset(load_embedder(tuned), info, progress=progress, baseline=True)
    before = embed_dataset(load_embedder(original), info, progress=progress)
    assert ours.baseline is not None
    classic = "mfcc-stats" if info.modality == "audio" else "channel-stats"
    kind = "int8" if is_bundle(original) else "torch"
    systems = {
        "tuned (int8)": (ours.embeddings, ours.labels, ours.groups),
        f"original ({kind})": (before.embeddings, before.labels, before.groups),
        f"classic ({classic})": (ours.baseline, ours.labels, ours.groups),
    }
    return Report.from_systems(systems, seed=seed), list(systems)


def verdict(
    results: dict[str, dict[str, Any]], names: list[str], tune: TuneResult
) -> tuple[str, str]:
    """``(system to deploy, why)`` from the held-out EERs: the tuned bundle only when it is better
    by more than about one standard error of the original's EER on this many recordings
    (``sqrt(e(1 - e) / n)``, at least ``MIN_GAIN``): a small held-out part cannot tell smaller
    differences apart."""
    tuned, original, classic = (results[n].get("eer") for n in names)
    if tuned is None or original is None:
        return names[1], "the held-out part is too small for an EER: compare on more data."
    n = int(results[names[0]]["n_recordings"])
    margin = max(MIN_GAIN, math.sqrt(original * (1 - original) / max(n, 1)))
    why = f"held-out EER {100 * tuned:.2f}% tuned vs {100 * original:.2f}% original"
    if tuned <= original - margin:
        choice, text = names[0], f"Deploy the tuned bundle: {why}."
    else:
        choice = names[1]
        if not tune.improved:
            reason = (
                "no tuning epoch beat the original weights on the validation part, so the tuned "
                "bundle holds the original encoder (only its thresholds come from your data)"
            )
        elif tuned < original + margin:
            reason = (
                f"the difference is within {100 * margin:.1f} points, what {n} held-out "
                "recordings can tell apart"
            )
        else:
            reason = (
                "tuning improved the validation part but not the held-out part: too few "
                "recordings or groups to generalise from (add more, or tune shorter)"
            )
        text = f"Tuning did not beat the original ({why}): {reason}. Deploy the original."
    if classic is not None and classic <= min(tuned, original) - margin:
        text += (
            f" The classic descriptor does better still ({100 * classic:.2f}%): these labels "
            "differ in ways the encoder was not trained to notice."
        )
    if min(tuned, original) > POOR_EER:
        text += (
            f" Neither model separates these held-out recordings well (EER above "
            f"{100 * POOR_EER:g}%): recordings much shorter than the bundle's window, or labels "
            "that differ in what the bundle never learnt to hear, are typical causes."
        )
    return choice, text


# --- the whole command ---------------------------------------------------------------------------


@dataclass
class TuneRequest:
    data: list[Path]
    source: Path
    output: Path
    minutes: float = 5.0
    overrides: dict[str, Any] = field(default_factory=dict)
    heldout: Path | None = None
    split_by: str = "group"  # or "recording": GROUP__ prefixes that are no session or subject
    seed: int = 0
    overwrite: bool = False
    progress: bool = True


def _splits(request: TuneRequest, folder: Folder, source: dict[str, Any], log: Log) -> Split:
    if request.heldout is None:
        return split_recordings(folder.info.recordings, request.seed, request.split_by == "group")
    given = request.heldout.resolve()
    if any(given == d.resolve() for d in request.data):
        raise DataError(
            "is also the training folder: validation equal to training is refused (it would "
            "report an accuracy the model does not have); leave --heldout out to split by group",
            request.heldout,
        )
    other = check_folder([request.heldout], source, request.progress)
    fit, val = split_fit_val(folder.info.recordings, np.random.default_rng(request.seed))
    split = Split(fit, val, list(other.info.recordings), "folder")
    refuse_overlap(fit + val, split.heldout, request.split_by == "group")
    folder.arrays.update(other.arrays)
    log(f"held-out data: {request.heldout}")
    return split


def run_tune(request: TuneRequest, log: Log = print) -> dict[str, Any]:
    """Check, split, fine-tune, export through the gate, compare; returns the TUNING.json data."""
    out = request.output
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not request.overwrite:
        raise ConfigError(f"{out} already exists and is not empty; pass --overwrite to replace it")
    clock = {"started": time.monotonic()}
    source = load_source(request.source)
    folder = check_folder(request.data, source, request.progress)
    split = _splits(request, folder, source, log)
    sizes = split.summary()
    log(
        f"{len(folder.info)} recordings, {len(folder.info.labels)} labels: "
        f"{sizes['fit']['recordings']} to fit, {sizes['val']['recordings']} to validate, "
        f"{sizes['heldout']['recordings']} held out (split by {split.by})"
    )
    clock["checked"] = time.monotonic()
    work = out.with_name(out.name + ".tune")
    if work.exists():
        shutil.rmtree(work)
    folders = {
        name: write_split_folder(recs, folder.info, work / "split" / name)
        for name, recs in (("fit", split.fit), ("val", split.val), ("heldout", split.heldout))
    }
    config = tune_config(source, request.data, request.minutes, request.overrides, log)
    result = fine_tune(source, config, folder, split, request.progress, log)
    clock["tuned"] = time.monotonic()
    checkpoint = tuned_checkpoint(source, config, result, work / "tuned.pt")
    exported, attempts = export_with_retries(
        checkpoint, out, folders["fit"], folders["heldout"], request.seed, request.progress, log
    )
    clock["exported"] = time.monotonic()
    report, names = compare(out, request.source, folders["heldout"], request.seed, request.progress)
    choice, why = verdict(report.results, names, result)
    clock["compared"] = time.monotonic()
    document = {
        "source": str(request.source),
        "data": [str(d) for d in request.data],
        "output": str(out),
        "split": sizes,
        "settings": {
            "lr": config.optim.lr,
            "batch_size": result.batch_size,
            "m_per_class": config.sampler.m_per_class,
            "objective": config.objective.type,
            "augment": config.augment.type,
            "minutes": request.minutes,
            "device": result.device,
            "overrides": {k: v for k, v in request.overrides.items()},
        },
        "tuning": {
            "start_val_eer": result.start_val_eer,
            "best_val_eer": result.best_val_eer,
            "best_epoch": result.best_epoch,
            "epochs": result.epochs,
            "stopped": result.stopped,
            "history": result.history,
        },
        "export": [{"what": a.what, "passed": a.passed, "report": a.report} for a in attempts],
        "gate_passed": bool(exported.manifest.gate.passed),
        "heldout": report.results,
        "deploy": choice,
        "verdict": why,
        "seconds": {
            "check": round(clock["checked"] - clock["started"], 1),
            "tune": round(clock["tuned"] - clock["checked"], 1),
            "export": round(clock["exported"] - clock["tuned"], 1),
            "compare": round(clock["compared"] - clock["exported"], 1),
            "total": round(clock["compared"] - clock["started"], 1),
        },
    }
    write_tuning_report(out, document, report.markdown())
    log(report.markdown())
    log(why)
    log(f"wrote {out} ({TUNING_MD}, {TUNING_JSON}); the split and tuned.pt are in {work}")
    return document


def write_tuning_report(bundle: Path, document: dict[str, Any], table: str) -> None:
    """``TUNING.md`` and ``TUNING.json`` into the bundle, then the manifest hashes them too."""
    from edgesiam.model.bundle import read_manifest, write_manifest

    (bundle / TUNING_JSON).write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    (bundle / TUNING_MD).write_text(tuning_markdown(document, table), encoding="utf-8")
    write_manifest(bundle, read_manifest(bundle))


def tuning_markdown(doc: dict[str, Any], table: str) -> str:
    split, tuning, settings, secs = doc["split"], doc["tuning"], doc["settings"], doc["seconds"]

    def side(name: str) -> str:
        part = split[name]
        shown = part["groups"][:8]
        more = f" and {len(part['groups']) - 8} more" if len(part["groups"]) > 8 else ""
        groups = f", groups {', '.join(shown)}{more}" if shown else ""
        return f"{part['recordings']} recordings of {part['labels']} labels{groups}"

    attempts = "; ".join(
        f"{a['what']}: {'passed' if a['passed'] else 'failed'}" for a in doc["export"]
    )
    history = ", ".join(f"{100 * h['val_eer']:.2f}%" for h in tuning["history"])
    lines = [
        f"# Tuning: {Path(doc['output']).name}",
        "",
        f"Tuned from `{doc['source']}` on `{', '.join(doc['data'])}` by `edgesiam tune`.",
        "",
        "## Verdict",
        "",
        doc["verdict"],
        "",
        "## Held-out recordings (never used to tune or to pick the epoch)",
        "",
        table.rstrip(),
        "",
        "## Data",
        "",
        f"Split by {split['by']}"
        + (" (the same group is never on two sides):" if split["by"] == "group" else ":"),
        f"- fit: {side('fit')}",
        f"- validate (early stopping): {side('val')}",
        f"- held out (this table, the gate and the thresholds): {side('heldout')}",
        "",
        "## Tuning",
        "",
        f"- {settings['objective']} objective, {settings['augment']} augmentation, learning rate "
        f"{settings['lr']:g}, batch {settings['batch_size']}, device {settings['device']}, "
        f"budget {settings['minutes']:g} min"
        + (f", overrides {settings['overrides']}" if settings["overrides"] else ""),
        f"- validation EER {100 * tuning['start_val_eer']:.2f}% at the start, "
        f"{100 * tuning['best_val_eer']:.2f}% at best (epoch {tuning['best_epoch']}); "
        f"{tuning['epochs']} epoch(s), {tuning['stopped']}",
        f"- validation EER per epoch: {history or '–'}",
        f"- export: {attempts}",
        "",
        f"Times: check {secs['check']:g} s, tune {secs['tune']:g} s, export {secs['export']:g} s, "
        f"compare {secs['compare']:g} s, total {secs['total']:g} s.",
        "",
    ]
    return "\n".join(lines)
