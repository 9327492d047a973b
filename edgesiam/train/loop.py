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
from edgesiam.data.readers import dataset_units, iter_recordings, scan_dataset
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


def train(
    config: TrainConfig,
    output: Path,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train the recipe's encoder into ``output`` (``best.pt``, ``last.pt``, ``history.json``)."""
    device = _pick_device(config.device)
    ddp = _setup_distributed(device)
    if device == "cuda":
        torch.cuda.set_device(ddp.local_rank)
        device = f"cuda:{ddp.local_rank}"
    say = log if ddp.is_main else (lambda _msg: None)
    show = progress and ddp.is_main
    _seed_everything(config.seed + ddp.rank)
    rng = np.random.default_rng(config.seed + 1000 * ddp.rank)

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
    say(f"reading {len(info)} training recordings ({len(info.labels)} labels) from {folders}")
    train_set = load_windows(
        info,
        sample_rate,
        window,
        hop,
        config.data.max_windows_per_recording,
        config.data.min_recordings_per_label,
        np.random.default_rng(config.seed),
        on_error=config.data.on_error,
        progress=show,
        classes=config.data.classes,
    )
    channels = 1 if train_set.windows.ndim == 2 else int(train_set.windows.shape[2])
    val_sets: dict[str, RecordingSet] = {}
    if config.data.val is not None and ddp.is_main:
        val_sets = _validation_sets(config, sample_rate, show)
    frontend = build_frontend(config, train_set, sample_rate)
    raw_aug, feat_aug = build_augment(config, sample_rate, frontend)
    in_channels, frames = frontend.feature_shape(window)

    model: torch.nn.Module = Conv1dEncoder.from_config(in_channels, config.encoder).to(device)
    n_params = parameter_count(model)
    objective = build_objective(
        config.objective, len(train_set.label_names), config.encoder.embedding_dim
    )
    objective.loss.to(device)
    distiller: Distiller | None = None
    if config.distill is not None:
        say(f"distilling from {config.distill.teacher} ({config.distill.kind})")
        targets = teacher_targets(config.distill, infos, progress=show)
        distiller = Distiller.build(config.distill, targets, config.encoder.embedding_dim)
        distiller.to(device)
    head = [distiller.head] if distiller is not None and distiller.head is not None else []
    optimizer, scheduler = make_optimizer(model, objective, config.optim, extra=head)
    use_amp = device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    history: list[dict[str, Any]] = []
    start_epoch, best_eer, best_epoch, stale = 1, math.inf, 0, 0
    output.mkdir(parents=True, exist_ok=True)
    if resume and (output / "last.pt").exists():
        state = load_checkpoint(output / "last.pt")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("loss") is not None:
            objective.loss.load_state_dict(state["loss"])
        history = state["history"]
        start_epoch = int(state["epoch"]) + 1
        best_eer = float(state["best_eer"])
        best_epoch = int(state["best_epoch"])
        stale = int(state["stale"])
        rng = np.random.default_rng([config.seed, ddp.rank, start_epoch])
        say(f"resuming from epoch {start_epoch - 1} (best validation EER {best_eer:.4f})")

    train_model: torch.nn.Module = model
    if ddp.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[ddp.local_rank] if device.startswith("cuda") else None
        )

    say(
        f"{len(train_set.windows)} windows of {window} samples, {len(train_set.label_names)} labels; "
        f"features {in_channels}×{frames}; encoder {n_params:,} parameters; device {device}"
        + (f" × {ddp.world_size} processes" if ddp.enabled else "")
    )

    def payload(epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            "edgesiam_version": __version__,
            "config": config.model_dump(mode="json"),
            "frontend": frontend_to_torch(frontend.state()),
            "modality": config.modality,
            "sample_rate": sample_rate,
            "window": window,
            "hop": hop,
            "channels": channels,
            "channel_names": info.channels,
            "channel_units": dataset_units(info, info.channels),
            "in_channels": in_channels,
            "label_names": train_set.label_names,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "epoch": epoch,
            "metrics": metrics,
        }

    labels_t = train_set.labels
    batch_size = sampler_batch_size(
        len(train_set.label_names), config.sampler.m_per_class, config.sampler.batch_size
    )
    if batch_size != config.sampler.batch_size:
        say(
            f"batch size {batch_size} ({batch_size // config.sampler.m_per_class} classes × "
            f"{config.sampler.m_per_class}): only {len(train_set.label_names)} classes for the "
            f"recipe's sampler.batch_size {config.sampler.batch_size}"
        )
    started = time.monotonic()
    windows_seen = 0
    epoch = start_epoch - 1
    for epoch in range(start_epoch, config.optim.epochs + 1):
        model.train()
        sampler = MPerClassSampler(
            labels_t,
            m=config.sampler.m_per_class,
            batch_size=batch_size,
            length_before_new_iter=config.optim.steps_per_epoch * batch_size,
        )
        order = np.fromiter(iter(sampler), dtype=np.int64)
        batches = order.reshape(-1, batch_size)[: config.optim.steps_per_epoch]
        losses = []
        bar = tqdm(
            batches, desc=f"epoch {epoch}/{config.optim.epochs}", disable=not show, leave=False
        )
        for idx in bar:
            raw = train_set.windows[idx]
            if raw_aug is not None:
                raw = raw_aug(raw, rng)
            feats = frontend(raw)
            if feat_aug is not None:
                feats = feat_aug(feats, rng)
            x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).to(device)
            y = torch.from_numpy(labels_t[idx]).to(device)
            with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                emb = train_model(x)
            loss: torch.Tensor = objective(emb.float(), y)
            if distiller is not None:
                rec = torch.from_numpy(train_set.recording[idx]).to(device)
                loss = loss + distiller(emb.float(), rec)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
            if ddp.enabled and objective.learnable:
                for p in objective.loss.parameters():
                    if p.grad is not None:
                        dist.all_reduce(p.grad)
                        p.grad /= ddp.world_size
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            losses.append(float(loss.detach()))
            windows_seen += len(idx) * ddp.world_size
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        entry: dict[str, Any] = {
            "epoch": epoch,
            "loss": float(np.mean(losses)) if losses else math.nan,
            "seconds": round(time.monotonic() - started, 1),
        }
        stop = False
        if ddp.is_main:
            if val_sets:
                eers = {
                    name: validation_eer(model, frontend, vs, window, hop, device)
                    for name, vs in val_sets.items()
                }
                entry["val_eer"] = float(np.mean(list(eers.values())))
                if len(eers) > 1:
                    entry["val_eers"] = eers
                improved = entry["val_eer"] < best_eer - 1e-4
            else:
                improved = True
            if improved:
                best_eer = entry.get("val_eer", math.nan) if val_sets else best_eer
                best_epoch, stale = epoch, 0
                save_checkpoint(output / "best.pt", payload(epoch, entry))
            else:
                stale += 1
            history.append(entry)
            save_checkpoint(
                output / "last.pt",
                payload(epoch, entry)
                | {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "loss": objective.loss.state_dict() if objective.learnable else None,
                    "history": history,
                    "best_eer": best_eer,
                    "best_epoch": best_epoch,
                    "stale": stale,
                },
            )
            val_text = (
                f", validation EER {100 * entry['val_eer']:.2f}%" if "val_eer" in entry else ""
            )
            say(f"epoch {epoch}: loss {entry['loss']:.4f}{val_text}{' *' if improved else ''}")
            if stale >= config.optim.patience:
                say(f"no better validation EER for {stale} epochs: stopping early")
                stop = True
            limit = config.optim.max_minutes
            if limit is not None and time.monotonic() - started > 60 * limit:
                say(f"time limit of {limit} minutes reached: stopping")
                stop = True
        if ddp.enabled:
            flag = torch.tensor([1.0 if stop else 0.0], device=device)
            dist.broadcast(flag, src=0)
            stop = bool(flag.item())
        if stop:
            break

    seconds = time.monotonic() - started
    if ddp.enabled:
        _check_replicas_in_sync(model, device)
        say(f"replicas in sync across {ddp.world_size} processes")
    result = TrainResult(
        output=output,
        best_epoch=best_epoch,
        best_val_eer=None if math.isinf(best_eer) or math.isnan(best_eer) else best_eer,
        epochs_run=epoch - start_epoch + 1,
        seconds=seconds,
        windows_per_second=windows_seen / max(seconds, 1e-9),
        parameters=n_params,
        history=history,
    )
    if ddp.is_main:
        summary = {
            "name": config.name,
            "best_epoch": result.best_epoch,
            "best_val_eer": result.best_val_eer,
            "epochs_run": result.epochs_run,
            "train_seconds": round(seconds, 1),
            "windows_per_second": round(result.windows_per_second, 1),
            "parameters": n_params,
            "device": device,
            "world_size": ddp.world_size,
            "history": history,
        }
        (output / "history.json").write_text(json.dumps(summary, indent=2) + "\n")
        if history:
            _plot_history(history, output / "training.png")
        say(
            f"done in {seconds / 60:.1f} min ({result.windows_per_second:.0f} windows/s); "
            f"best epoch {best_epoch}"
            + (f", validation EER {100 * best_eer:.2f}%" if result.best_val_eer is not None else "")
            + f"; checkpoint {output / 'best.pt'}"
        )
    if ddp.enabled:
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
