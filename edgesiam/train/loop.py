"""The training loop: P×K batches of raw windows → augmentation → front-end → encoder → metric loss.

Each epoch is a fixed number of batches; after each one the encoder embeds the validation recordings
(labels never seen in training) and the equal error rate on them decides early stopping and which
checkpoint is ``best.pt``. ``last.pt`` is written every epoch so ``--resume`` continues where a crash
left off. On CUDA the forward pass runs in mixed precision. Under ``torchrun`` (WORLD_SIZE > 1) the
encoder is wrapped in DistributedDataParallel (NCCL on GPUs, gloo on CPUs); rank 0 validates and
writes checkpoints.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from pytorch_metric_learning.samplers import MPerClassSampler
from tqdm import tqdm

from edgesiam import __version__
from edgesiam.core.embedding import recording_embedding
from edgesiam.core.frontend import FrontEnd, LogMelFrontEnd, LogMelParams, SensorFrontEnd
from edgesiam.core.metrics import equal_error_rate, trial_scores
from edgesiam.core.windowing import frame
from edgesiam.data.readers import DatasetInfo, dataset_units, iter_recordings, scan_dataset
from edgesiam.errors import ConfigError, DataError
from edgesiam.train.augment import AudioAugmenter, ImuAugmenter, spec_augment
from edgesiam.train.checkpoint import (
    frontend_to_torch,
    load_checkpoint,
    save_checkpoint,
)
from edgesiam.train.config import (
    AudioAugmentConfig,
    ImuAugmentConfig,
    LogMelConfig,
    OptimConfig,
    SensorFrontEndConfig,
    TrainConfig,
)
from edgesiam.train.distill import Distiller, teacher_targets
from edgesiam.train.encoder import Conv1dEncoder, parameter_count
from edgesiam.train.objectives import Objective, build_objective
from edgesiam.train.windows import (
    RecordingSet,
    WindowSet,
    load_recordings,
    load_windows,
    pool_datasets,
    resolve_sample_rate,
)

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


@dataclass
class TrainResult:
    output: Path
    best_epoch: int
    best_val_eer: float | None
    epochs_run: int
    seconds: float
    windows_per_second: float
    parameters: int
    history: list[dict[str, Any]] = field(default_factory=list)


def _setup_distributed(device_kind: str) -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    backend = "nccl" if device_kind == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def _pick_device(choice: str) -> str:
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for, but torch sees no CUDA device")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def warmup_cosine(step: int, total: int, warmup: float = 0.05, floor: float = 0.01) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to ``floor``.

    A function of the step and the configured total alone, so a run resumed with more epochs
    simply continues on the longer schedule.
    """
    ramp = max(1, round(warmup * total))
    if step < ramp:
        return (step + 1) / ramp
    progress = min(1.0, (step - ramp) / max(1, total - ramp))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(
    model: torch.nn.Module,
    objective: Objective,
    optim: OptimConfig,
    extra: Sequence[torch.nn.Module] = (),
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the encoder (and the loss's own parameters, at their rate, when it learns
    some; and training-only ``extra`` modules such as a distillation head), with the warm-up
    cosine schedule over the configured steps: training and tuning alike."""
    groups: list[dict[str, Any]] = [{"params": model.parameters()}]
    if objective.learnable:
        groups.append({"params": objective.loss.parameters(), "lr": objective.lr})
    groups.extend({"params": module.parameters()} for module in extra)
    optimizer = torch.optim.AdamW(groups, lr=optim.lr, weight_decay=optim.weight_decay)
    total_steps = optim.epochs * optim.steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, total_steps)
    )
    return optimizer, scheduler


def sampler_batch_size(classes: int, m_per_class: int, batch_size: int) -> int:
    """The P×K batch the sampler can fill: the recipe's, or as many classes as there are.

    pytorch-metric-learning's ``MPerClassSampler`` asserts ``m_per_class × classes ≥ batch_size``;
    a small recipe on few labels would die there with no hint of what to change.
    """
    if classes < 2:
        raise ConfigError(
            f"training needs at least 2 classes per batch, the data give {classes}: add labels, "
            "or set data.classes: recording (each recording its own class)"
        )
    return min(batch_size, classes * m_per_class)  # both are multiples of m_per_class


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_frontend(config: TrainConfig, windows: WindowSet, sample_rate: int) -> FrontEnd:
    """The front-end of a recipe, with normalisation statistics fitted on training windows."""
    fe = config.frontend
    rng = np.random.default_rng(config.seed)
    sample = windows.windows[
        rng.choice(len(windows.windows), min(2000, len(windows.windows)), False)
    ]
    if isinstance(fe, LogMelConfig):
        params = LogMelParams(
            sample_rate=sample_rate,
            n_fft=fe.n_fft,
            win_length=fe.win_length,
            hop_length=fe.hop_length,
            n_mels=fe.n_mels,
            fmin=fe.fmin,
            fmax=fe.fmax,
        )
        raw = LogMelFrontEnd(params)
        return raw.with_normalisation(raw(sample))
    assert isinstance(fe, SensorFrontEndConfig)
    return SensorFrontEnd.fit(sample, clip=fe.clip)


def _load_noise(folder: Path | None, sample_rate: int) -> list[np.ndarray] | None:
    if folder is None:
        return None
    info = scan_dataset(folder) if (folder / "dataset.toml").exists() else None
    if info is None:
        from edgesiam.data.readers import AUDIO_EXTENSIONS, read_audio

        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        if not files:
            raise DataError("no audio files for augmentation", folder)
        return [read_audio(p, sample_rate) for p in files]
    return [x for _, x in iter_recordings(info, sample_rate=sample_rate, progress=False)]


def build_augment(
    config: TrainConfig, sample_rate: int, frontend: FrontEnd
) -> tuple[Augment | None, Augment | None]:
    """Raw-window augmentation and feature augmentation for a recipe (either may be None)."""
    aug = config.augment
    if isinstance(aug, AudioAugmentConfig):
        augmenter = AudioAugmenter(
            noise=_load_noise(aug.noise_dir, sample_rate),
            rirs=_load_noise(aug.rir_dir, sample_rate),
            snr_db=aug.snr_db,
            noise_p=aug.noise_p,
            gain_db=aug.gain_db,
            shift_max=aug.shift,
            reverb_p=aug.reverb_p,
            channel_p=aug.channel_p,
            sample_rate=sample_rate,
        )
        spec = aug.specaugment
        feature_aug: Augment | None = None
        if spec is not None:

            def feature_aug(f: np.ndarray, rng: np.random.Generator) -> np.ndarray:
                return spec_augment(
                    f,
                    rng,
                    freq_masks=spec.freq_masks,
                    freq_width=spec.freq_width,
                    time_masks=spec.time_masks,
                    time_width=spec.time_width,
                )

        return augmenter, feature_aug
    if isinstance(aug, ImuAugmentConfig):
        imu = ImuAugmenter(
            triads=aug.triads,
            rotate=aug.rotate,
            max_angle_deg=aug.max_angle_deg,
            scale=aug.scale,
            jitter_std=aug.jitter_std,
            time_warp=aug.time_warp,
            triad_scale=aug.triad_scale,
        )
        return imu, None
    return None, None


@torch.no_grad()
def embed_recordings(
    model: torch.nn.Module,
    frontend: FrontEnd,
    recordings: RecordingSet,
    window: int,
    hop: int,
    device: str,
    batch_size: int = 256,
) -> np.ndarray:
    """Recording embeddings (docs/ARCHITECTURE.md, contract 3) of every recording in the set, with the torch model."""
    model.eval()
    per_window = [frame(x, window, hop) for x in recordings.recordings]
    counts = [len(w) for w in per_window]
    windows = np.concatenate(per_window)
    outs = []
    for i in range(0, len(windows), batch_size):
        feats = torch.from_numpy(frontend(windows[i : i + batch_size])).to(device)
        outs.append(model(feats).float().cpu().numpy())
    flat = np.concatenate(outs)
    bounds = np.cumsum([0, *counts])
    return np.stack([recording_embedding(flat[a:b]) for a, b in itertools.pairwise(bounds)])


def validation_eer(
    model: torch.nn.Module,
    frontend: FrontEnd,
    recordings: RecordingSet,
    window: int,
    hop: int,
    device: str,
) -> float:
    emb = embed_recordings(model, frontend, recordings, window, hop, device)
    trials = trial_scores(emb, recordings.labels)
    return float(equal_error_rate(trials.genuine, trials.impostor)[0])


def _validation_sets(config: TrainConfig, sample_rate: int, show: bool) -> dict[str, RecordingSet]:
    """``data.val`` and every ``data.val_ood`` folder, by name, each with two labels or more."""
    out: dict[str, RecordingSet] = {}
    assert config.data.val is not None
    for folder in [config.data.val, *config.data.val_ood]:
        info = scan_dataset(folder, on_error=config.data.on_error)
        recordings = load_recordings(info, sample_rate, config.data.on_error, progress=show)
        if len(set(recordings.labels)) < 2:
            raise DataError("validation needs at least two labels", info.root)
        name = folder.name if folder.name not in out else str(folder)
        out[name] = recordings
    return out


def _plot_history(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax1 = plt.subplots(figsize=(7, 4))
    ax1.plot(epochs, [h["loss"] for h in history], color="tab:blue", label="training loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss", color="tab:blue")
    val = [(h["epoch"], h["val_eer"]) for h in history if h.get("val_eer") is not None]
    if val:
        ax2 = ax1.twinx()
        ax2.plot([e for e, _ in val], [100 * v for _, v in val], color="tab:red", marker="o")
        ax2.set_ylabel("validation EER on unseen labels (%)", color="tab:red")
    ax1.set_title("edgesiam training")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@dataclass
class _Run:
    """Where this process trains: its device, its place among the DDP processes, what it says."""

    device: str
    ddp: Distributed
    say: Callable[[str], None]
    show: bool


def _start(config: TrainConfig, progress: bool, log: Callable[[str], None]) -> _Run:
    device = _pick_device(config.device)
    ddp = _setup_distributed(device)
    if device == "cuda":
        torch.cuda.set_device(ddp.local_rank)
        device = f"cuda:{ddp.local_rank}"
    say = log if ddp.is_main else (lambda _msg: None)
    return _Run(device, ddp, say, progress and ddp.is_main)


@dataclass
class _Data:
    """What a run trains and validates on, at the recipe's rate, window and hop."""

    infos: list[DatasetInfo]
    info: DatasetInfo
    sample_rate: int
    window: int
    hop: int
    train_set: WindowSet
    val_sets: dict[str, RecordingSet]

    @property
    def channels(self) -> int:
        return 1 if self.train_set.windows.ndim == 2 else int(self.train_set.windows.shape[2])


def _load_data(config: TrainConfig, run: _Run) -> _Data:
    infos = [scan_dataset(p, on_error=config.data.on_error) for p in config.data.train]
    info = pool_datasets(infos)
    if info.modality != config.modality:
        raise DataError(
            f"the recipe is for {config.modality}, the folder holds {info.modality}", info.root
        )
    sample_rate = resolve_sample_rate(info, config.data.sample_rate)
    window = round(config.data.window_s * sample_rate)
    hop = max(1, round(config.data.hop_s * sample_rate))
    folders = ", ".join(str(p) for p in config.data.train)
    run.say(f"reading {len(info)} training recordings ({len(info.labels)} labels) from {folders}")
    train_set = load_windows(
        info,
        sample_rate,
        window,
        hop,
        config.data.max_windows_per_recording,
        config.data.min_recordings_per_label,
        np.random.default_rng(config.seed),
        on_error=config.data.on_error,
        progress=run.show,
        classes=config.data.classes,
    )
    val_sets: dict[str, RecordingSet] = {}
    if config.data.val is not None and run.ddp.is_main:
        val_sets = _validation_sets(config, sample_rate, run.show)
    return _Data(infos, info, sample_rate, window, hop, train_set, val_sets)


@dataclass
class _Parts:
    """The front-end, the encoder and what trains it."""

    frontend: FrontEnd
    raw_aug: Augment | None
    feat_aug: Augment | None
    in_channels: int
    frames: int
    model: torch.nn.Module
    objective: Objective
    distiller: Distiller | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    use_amp: bool
    scaler: torch.amp.GradScaler


def _build(config: TrainConfig, data: _Data, run: _Run) -> _Parts:
    frontend = build_frontend(config, data.train_set, data.sample_rate)
    raw_aug, feat_aug = build_augment(config, data.sample_rate, frontend)
    in_channels, frames = frontend.feature_shape(data.window)
    model: torch.nn.Module = Conv1dEncoder.from_config(in_channels, config.encoder).to(run.device)
    objective = build_objective(
        config.objective, len(data.train_set.label_names), config.encoder.embedding_dim
    )
    objective.loss.to(run.device)
    distiller: Distiller | None = None
    if config.distill is not None:
        run.say(f"distilling from {config.distill.teacher} ({config.distill.kind})")
        targets = teacher_targets(config.distill, data.infos, progress=run.show)
        distiller = Distiller.build(config.distill, targets, config.encoder.embedding_dim)
        distiller.to(run.device)
    head = [distiller.head] if distiller is not None and distiller.head is not None else []
    optimizer, scheduler = make_optimizer(model, objective, config.optim, extra=head)
    use_amp = run.device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    return _Parts(
        frontend,
        raw_aug,
        feat_aug,
        in_channels,
        frames,
        model,
        objective,
        distiller,
        optimizer,
        scheduler,
        use_amp,
        scaler,
    )


@dataclass
class _Progress:
    """What carries from one epoch to the next, and across ``--resume`` (in ``last.pt``)."""

    rng: np.random.Generator
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 1
    best_eer: float = math.inf
    best_epoch: int = 0
    stale: int = 0
    windows_seen: int = 0


def _resume(path: Path, config: TrainConfig, parts: _Parts, run: _Run) -> _Progress:
    """The progress saved in ``last.pt``, its weights and optimiser state loaded into ``parts``."""
    state = load_checkpoint(path)
    parts.model.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.scheduler.load_state_dict(state["scheduler"])
    if state.get("loss") is not None:
        parts.objective.loss.load_state_dict(state["loss"])
    start_epoch = int(state["epoch"]) + 1
    progress = _Progress(
        rng=np.random.default_rng([config.seed, run.ddp.rank, start_epoch]),
        history=state["history"],
        start_epoch=start_epoch,
        best_eer=float(state["best_eer"]),
        best_epoch=int(state["best_epoch"]),
        stale=int(state["stale"]),
    )
    run.say(f"resuming from epoch {start_epoch - 1} (best validation EER {progress.best_eer:.4f})")
    return progress


def _payload(
    config: TrainConfig, data: _Data, parts: _Parts, epoch: int, metrics: dict[str, Any]
) -> dict[str, Any]:
    """A checkpoint: the weights with everything needed to embed as in training."""
    return {
        "edgesiam_version": __version__,
        "config": config.model_dump(mode="json"),
        "frontend": frontend_to_torch(parts.frontend.state()),
        "modality": config.modality,
        "sample_rate": data.sample_rate,
        "window": data.window,
        "hop": data.hop,
        "channels": data.channels,
        "channel_names": data.info.channels,
        "channel_units": dataset_units(data.info, data.info.channels),
        "in_channels": parts.in_channels,
        "label_names": data.train_set.label_names,
        "model": {k: v.detach().cpu() for k, v in parts.model.state_dict().items()},
        "epoch": epoch,
        "metrics": metrics,
    }


def _wrapped(model: torch.nn.Module, run: _Run) -> torch.nn.Module:
    """The encoder as the training steps call it: inside DistributedDataParallel under DDP."""
    if not run.ddp.enabled:
        return model
    device_ids = [run.ddp.local_rank] if run.device.startswith("cuda") else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def _batch_size(config: TrainConfig, data: _Data, run: _Run) -> int:
    """The sampler's batch size, smaller than the recipe's when there are too few classes."""
    classes = len(data.train_set.label_names)
    m = config.sampler.m_per_class
    batch_size = sampler_batch_size(classes, m, config.sampler.batch_size)
    if batch_size != config.sampler.batch_size:
        run.say(
            f"batch size {batch_size} ({batch_size // m} classes × {m}): only {classes} classes "
            f"for the recipe's sampler.batch_size {config.sampler.batch_size}"
        )
    return batch_size


def _epoch_batches(batch_size: int, config: TrainConfig, data: _Data) -> np.ndarray:
    """This epoch's batches of window indices: P labels × K windows each (PML's sampler)."""
    sampler = MPerClassSampler(
        data.train_set.labels,
        m=config.sampler.m_per_class,
        batch_size=batch_size,
        length_before_new_iter=config.optim.steps_per_epoch * batch_size,
    )
    order = np.fromiter(iter(sampler), dtype=np.int64)
    return order.reshape(-1, batch_size)[: config.optim.steps_per_epoch]


def _step(
    idx: np.ndarray,
    data: _Data,
    parts: _Parts,
    train_model: torch.nn.Module,
    rng: np.random.Generator,
    run: _Run,
) -> float:
    """One optimiser step on the windows ``idx``; returns its loss."""
    raw = data.train_set.windows[idx]
    if parts.raw_aug is not None:
        raw = parts.raw_aug(raw, rng)
    feats = parts.frontend(raw)
    if parts.feat_aug is not None:
        feats = parts.feat_aug(feats, rng)
    x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).to(run.device)
    y = torch.from_numpy(data.train_set.labels[idx]).to(run.device)
    with torch.autocast("cuda", dtype=torch.float16, enabled=parts.use_amp):
        emb = train_model(x)
    loss: torch.Tensor = parts.objective(emb.float(), y)
    if parts.distiller is not None:
        rec = torch.from_numpy(data.train_set.recording[idx]).to(run.device)
        loss = loss + parts.distiller(emb.float(), rec)
    parts.optimizer.zero_grad(set_to_none=True)
    parts.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
    if run.ddp.enabled and parts.objective.learnable:
        for p in parts.objective.loss.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= run.ddp.world_size
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    parts.scheduler.step()
    return float(loss.detach())


def _train_epoch(
    epoch: int,
    batch_size: int,
    config: TrainConfig,
    data: _Data,
    parts: _Parts,
    train_model: torch.nn.Module,
    progress: _Progress,
    run: _Run,
) -> list[float]:
    """The losses of one epoch's steps (the windows trained on are counted in ``progress``)."""
    parts.model.train()
    batches = _epoch_batches(batch_size, config, data)
    losses: list[float] = []
    desc = f"epoch {epoch}/{config.optim.epochs}"
    bar = tqdm(batches, desc=desc, disable=not run.show, leave=False)
    for idx in bar:
        losses.append(_step(idx, data, parts, train_model, progress.rng, run))
        progress.windows_seen += len(idx) * run.ddp.world_size
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    return losses


def _validate(
    entry: dict[str, Any], data: _Data, parts: _Parts, progress: _Progress, run: _Run
) -> bool:
    """Add the validation EER(s) to ``entry``; whether the encoder improved on the best so far."""
    if not data.val_sets:
        return True
    eers = {
        name: validation_eer(parts.model, parts.frontend, vs, data.window, data.hop, run.device)
        for name, vs in data.val_sets.items()
    }
    entry["val_eer"] = float(np.mean(list(eers.values())))
    if len(eers) > 1:
        entry["val_eers"] = eers
    return bool(entry["val_eer"] < progress.best_eer - 1e-4)


def _save(
    entry: dict[str, Any],
    improved: bool,
    output: Path,
    config: TrainConfig,
    data: _Data,
    parts: _Parts,
    progress: _Progress,
) -> None:
    """``best.pt`` when the encoder improved, ``last.pt`` always (with what --resume needs)."""
    epoch = int(entry["epoch"])
    if improved:
        progress.best_eer = entry.get("val_eer", math.nan) if data.val_sets else progress.best_eer
        progress.best_epoch, progress.stale = epoch, 0
        save_checkpoint(output / "best.pt", _payload(config, data, parts, epoch, entry))
    else:
        progress.stale += 1
    progress.history.append(entry)
    resumable = {
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "loss": parts.objective.loss.state_dict() if parts.objective.learnable else None,
        "history": progress.history,
        "best_eer": progress.best_eer,
        "best_epoch": progress.best_epoch,
        "stale": progress.stale,
    }
    save_checkpoint(output / "last.pt", _payload(config, data, parts, epoch, entry) | resumable)


def _should_stop(config: TrainConfig, progress: _Progress, started: float, run: _Run) -> bool:
    """Early stopping (no better validation EER for ``patience`` epochs) or the time limit."""
    stop = False
    if progress.stale >= config.optim.patience:
        run.say(f"no better validation EER for {progress.stale} epochs: stopping early")
        stop = True
    limit = config.optim.max_minutes
    if limit is not None and time.monotonic() - started > 60 * limit:
        run.say(f"time limit of {limit} minutes reached: stopping")
        stop = True
    return stop


def _end_epoch(
    entry: dict[str, Any],
    output: Path,
    config: TrainConfig,
    data: _Data,
    parts: _Parts,
    progress: _Progress,
    started: float,
    run: _Run,
) -> bool:
    """Validate, checkpoint and report on the main process; whether every process stops."""
    stop = False
    if run.ddp.is_main:
        improved = _validate(entry, data, parts, progress, run)
        _save(entry, improved, output, config, data, parts, progress)
        val_text = f", validation EER {100 * entry['val_eer']:.2f}%" if "val_eer" in entry else ""
        mark = " *" if improved else ""
        run.say(f"epoch {entry['epoch']}: loss {entry['loss']:.4f}{val_text}{mark}")
        stop = _should_stop(config, progress, started, run)
    if run.ddp.enabled:
        flag = torch.tensor([1.0 if stop else 0.0], device=run.device)
        dist.broadcast(flag, src=0)
        stop = bool(flag.item())
    return stop


def _write_summary(result: TrainResult, config: TrainConfig, output: Path, run: _Run) -> None:
    """``history.json`` and ``training.png`` beside the checkpoints, and the closing line."""
    summary = {
        "name": config.name,
        "best_epoch": result.best_epoch,
        "best_val_eer": result.best_val_eer,
        "epochs_run": result.epochs_run,
        "train_seconds": round(result.seconds, 1),
        "windows_per_second": round(result.windows_per_second, 1),
        "parameters": result.parameters,
        "device": run.device,
        "world_size": run.ddp.world_size,
        "history": result.history,
    }
    (output / "history.json").write_text(json.dumps(summary, indent=2) + "\n")
    if result.history:
        _plot_history(result.history, output / "training.png")
    eer = result.best_val_eer
    run.say(
        f"done in {result.seconds / 60:.1f} min ({result.windows_per_second:.0f} windows/s); "
        f"best epoch {result.best_epoch}"
        + (f", validation EER {100 * eer:.2f}%" if eer is not None else "")
        + f"; checkpoint {output / 'best.pt'}"
    )


def train(
    config: TrainConfig,
    output: Path,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train the recipe's encoder into ``output`` (``best.pt``, ``last.pt``, ``history.json``)."""
    run = _start(config, progress, log)
    _seed_everything(config.seed + run.ddp.rank)
    rng = np.random.default_rng(config.seed + 1000 * run.ddp.rank)
    data = _load_data(config, run)
    parts = _build(config, data, run)
    state = _Progress(rng)
    output.mkdir(parents=True, exist_ok=True)
    if resume and (output / "last.pt").exists():
        state = _resume(output / "last.pt", config, parts, run)
    train_model = _wrapped(parts.model, run)
    run.say(
        f"{len(data.train_set.windows)} windows of {data.window} samples, "
        f"{len(data.train_set.label_names)} labels; features {parts.in_channels}×{parts.frames}; "
        f"encoder {parameter_count(parts.model):,} parameters; device {run.device}"
        + (f" × {run.ddp.world_size} processes" if run.ddp.enabled else "")
    )
    batch_size = _batch_size(config, data, run)
    started = time.monotonic()
    epoch = state.start_epoch - 1
    for epoch in range(state.start_epoch, config.optim.epochs + 1):
        losses = _train_epoch(epoch, batch_size, config, data, parts, train_model, state, run)
        entry: dict[str, Any] = {
            "epoch": epoch,
            "loss": float(np.mean(losses)) if losses else math.nan,
            "seconds": round(time.monotonic() - started, 1),
        }
        if _end_epoch(entry, output, config, data, parts, state, started, run):
            break
    return _finish(config, output, parts, state, epoch, started, run)


def _finish(
    config: TrainConfig,
    output: Path,
    parts: _Parts,
    state: _Progress,
    epoch: int,
    started: float,
    run: _Run,
) -> TrainResult:
    """The run's result; replicas checked, the summary written, the DDP group closed."""
    seconds = time.monotonic() - started
    if run.ddp.enabled:
        _check_replicas_in_sync(parts.model, run.device)
        run.say(f"replicas in sync across {run.ddp.world_size} processes")
    best = state.best_eer
    result = TrainResult(
        output=output,
        best_epoch=state.best_epoch,
        best_val_eer=None if math.isinf(best) or math.isnan(best) else best,
        epochs_run=epoch - state.start_epoch + 1,
        seconds=seconds,
        windows_per_second=state.windows_seen / max(seconds, 1e-9),
        parameters=parameter_count(parts.model),
        history=state.history,
    )
    if run.ddp.is_main:
        _write_summary(result, config, output, run)
    if run.ddp.enabled:
        dist.barrier()
        dist.destroy_process_group()
    return result


def _check_replicas_in_sync(model: torch.nn.Module, device: str) -> None:
    """All DDP replicas must end with identical weights; anything else is a bug worth stopping on."""
    flat = torch.cat([p.detach().flatten().double() for p in model.parameters()]).to(device)
    checksum = torch.stack([flat.sum(), (flat * flat).sum()])
    gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    if any(not torch.allclose(g, gathered[0], rtol=1e-9, atol=1e-9) for g in gathered):
        raise RuntimeError("DDP replicas diverged: weights differ between processes")
