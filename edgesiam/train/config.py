"""The training recipe: what to learn from, what to learn, and how (``edgesiam train RECIPE``).

Strict like every config (:mod:`edgesiam.settings`): unknown keys are errors, every field is
described, and the choice between variants (front-end, objective, augmentation) is made by a
``type`` field. Errors name the path of the offending key, e.g.
``objective.margin: Input should be greater than 0``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from edgesiam.paths import UserPath
from edgesiam.settings import StrictModel, apply_overrides, load_yaml, parse_model

# ------------------------------------------------------------------------------------------------
# front-ends


class LogMelConfig(StrictModel):
    """Log-mel spectrogram front-end for audio (the filterbank is stored with the model)."""

    type: Literal["logmel"] = "logmel"
    n_fft: int = Field(512, gt=0, description="FFT size in samples")
    win_length: int = Field(400, gt=0, description="analysis window in samples (≤ n_fft)")
    hop_length: int = Field(160, gt=0, description="hop between frames in samples")
    n_mels: int = Field(40, gt=0, le=256, description="mel bins = encoder input channels")
    fmin: float = Field(20.0, ge=0, description="lowest mel band edge in Hz")
    fmax: float = Field(8000.0, gt=0, description="highest mel band edge in Hz (≤ sample_rate/2)")

    @model_validator(mode="after")
    def _window_fits(self) -> LogMelConfig:
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        if self.fmin >= self.fmax:
            raise ValueError(f"fmin ({self.fmin}) must be below fmax ({self.fmax})")
        return self


class SensorFrontEndConfig(StrictModel):
    """Per-channel standardisation for sensor streams (statistics fitted on the training data)."""

    type: Literal["sensor"] = "sensor"
    clip: float = Field(8.0, gt=0, description="clip standardised values to ±clip")


FrontEndConfig = Annotated[LogMelConfig | SensorFrontEndConfig, Field(discriminator="type")]


# ------------------------------------------------------------------------------------------------
# data


class DataConfig(StrictModel):
    """Where the training and validation recordings are, and how they are cut into windows."""

    @field_validator("train", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, (str, Path)) else value

    train: list[UserPath] = Field(
        description="dataset folder(s) of the training labels; several folders are pooled "
        "(a label is the folder's label name, so the same name in two folders is one label)"
    )
    val: UserPath | None = Field(
        None, description="dataset folder of held-out labels for per-epoch validation EER"
    )
    val_ood: list[UserPath] = Field(
        default_factory=list,
        description="more validation folders, e.g. the validation labels re-rendered through "
        "device channels (edgesiam data render): the checkpoint kept is the one with the best "
        "mean EER over data.val and these, so the choice rewards what holds out of domain",
    )
    sample_rate: int | None = Field(
        None, gt=0, description="rate to resample to (audio; sensors take dataset.toml's)"
    )
    window_s: float = Field(gt=0, description="window length in seconds")
    hop_s: float = Field(gt=0, description="hop between windows in seconds")
    max_windows_per_recording: int = Field(
        16, gt=0, description="cap on training windows taken from one recording"
    )
    min_recordings_per_label: int = Field(
        1, ge=1, description="labels with fewer recordings are left out of training"
    )
    classes: Literal["label", "label_and_group", "recording"] = Field(
        "label",
        description="what a training class is: the label; each (label, group) pair, e.g. "
        "activity × subject; or each recording (instance discrimination). Finer classes help "
        "open-set use when there are few labels",
    )
    on_error: Literal["fail", "skip"] = Field(
        "fail", description="what to do with a malformed recording: stop, or skip and report it"
    )


# ------------------------------------------------------------------------------------------------
# encoder


class EncoderConfig(StrictModel):
    """Conv1d + BatchNorm + ReLU blocks, mean pooling over time, a linear projection, L2 norm."""

    channels: list[int] = Field(
        default_factory=lambda: [64, 96, 128, 128], description="output channels of each block"
    )
    kernel_sizes: list[int] = Field(default_factory=lambda: [5, 3, 3, 3])
    strides: list[int] = Field(default_factory=lambda: [2, 2, 1, 1])
    dilations: list[int] = Field(default_factory=lambda: [1, 1, 2, 4])
    embedding_dim: int = Field(64, gt=0, description="size of the L2-normalised embedding")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout before the projection")
    input_norm: Literal["none", "mean"] = Field(
        "none",
        description="'mean' subtracts each feature channel's mean over the window before the "
        "first block: a fixed microphone or line colouring (a constant offset of log-mel bins) "
        "then no longer changes the embedding",
    )
    pooling: Literal["mean", "stats"] = Field(
        "mean",
        description="'stats' pools each channel's mean and its spread over time (statistics "
        "pooling, as x-vector and ECAPA speaker models do; the spread is half the mean absolute "
        "deviation, which quantises to int8 better than the standard deviation) instead of the "
        "mean alone",
    )
    residual: bool = Field(
        False,
        description="add each block's input to its output where the block keeps its width and "
        "stride 1 (residual connections: deeper stacks train better)",
    )
    separable: bool = Field(
        False,
        description="make every block after the first depthwise-separable: a per-channel "
        "convolution with the block's kernel, stride and dilation, then a 1×1 convolution to its "
        "output channels (about K times fewer weights, so wider or deeper stacks fit the int8 "
        "budget); the first block stays a full convolution over the input features",
    )

    @model_validator(mode="after")
    def _same_lengths(self) -> EncoderConfig:
        lengths = {
            "channels": len(self.channels),
            "kernel_sizes": len(self.kernel_sizes),
            "strides": len(self.strides),
            "dilations": len(self.dilations),
        }
        if len(set(lengths.values())) != 1 or not self.channels:
            raise ValueError(
                "channels, kernel_sizes, strides and dilations need one entry per block, "
                f"got {lengths}"
            )
        if min(self.channels + self.kernel_sizes + self.strides + self.dilations) < 1:
            raise ValueError("channels, kernel sizes, strides and dilations must be ≥ 1")
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(
                f"kernel sizes must be odd (symmetric padding), got {self.kernel_sizes}"
            )
        if self.separable and len(self.channels) < 2:
            raise ValueError(
                "separable applies to the blocks after the first, and this encoder has one "
                "block: add blocks to channels, kernel_sizes, strides and dilations, or set "
                "separable: false"
            )
        return self


# ------------------------------------------------------------------------------------------------
# objectives (pytorch-metric-learning)


class ContrastiveObjective(StrictModel):
    """Pair loss: pull same-label pairs above pos_margin, push others below neg_margin (cosine)."""

    type: Literal["contrastive"] = "contrastive"
    pos_margin: float = Field(1.0, description="cosine similarity a positive pair should reach")
    neg_margin: float = Field(
        0.3, description="cosine similarity a negative pair should stay under"
    )
    mining: Literal["none", "pair_margin"] = "pair_margin"


class TripletObjective(StrictModel):
    """Triplet margin loss with batch mining of hard or semi-hard negatives."""

    type: Literal["triplet"] = "triplet"
    margin: float = Field(0.2, gt=0)
    mining: Literal["hard", "semihard", "all"] = "semihard"


class SubCenterArcFaceObjective(StrictModel):
    """Additive angular margin softmax with sub-centres (robust to noisy labels)."""

    type: Literal["subcenter_arcface"] = "subcenter_arcface"
    margin_deg: float = Field(28.6, gt=0, lt=90, description="angular margin in degrees")
    scale: float = Field(32.0, gt=0)
    sub_centers: int = Field(3, ge=1)
    lr: float = Field(0.01, gt=0, description="learning rate of the class centres")


class SupConObjective(StrictModel):
    """Supervised contrastive loss over every pair in the batch."""

    type: Literal["supcon"] = "supcon"
    temperature: float = Field(0.1, gt=0)


ObjectiveConfig = Annotated[
    ContrastiveObjective | TripletObjective | SubCenterArcFaceObjective | SupConObjective,
    Field(discriminator="type"),
]


class SamplerConfig(StrictModel):
    """P×K batches: batch_size / m_per_class labels, m_per_class windows each."""

    m_per_class: int = Field(4, ge=2)
    batch_size: int = Field(128, ge=4)

    @model_validator(mode="after")
    def _divisible(self) -> SamplerConfig:
        if self.batch_size % self.m_per_class:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of "
                f"m_per_class ({self.m_per_class})"
            )
        return self


# ------------------------------------------------------------------------------------------------
# augmentation


class SpecAugmentConfig(StrictModel):
    freq_masks: int = Field(2, ge=0)
    freq_width: int = Field(6, ge=0)
    time_masks: int = Field(2, ge=0)
    time_width: int = Field(10, ge=0)


class AudioAugmentConfig(StrictModel):
    """Waveform augmentation from real recordings, then SpecAugment on the log-mel features."""

    type: Literal["audio"] = "audio"
    noise_dir: UserPath | None = Field(None, description="folder of noise recordings to mix in")
    rir_dir: UserPath | None = Field(None, description="folder of room impulse responses")
    noise_p: float = Field(0.5, ge=0, le=1)
    snr_db: tuple[float, float] = (5.0, 20.0)
    gain_db: tuple[float, float] = (-6.0, 6.0)
    shift: float = Field(0.1, ge=0, le=1, description="max time shift, fraction of a window")
    reverb_p: float = Field(0.3, ge=0, le=1)
    channel_p: float = Field(
        0.0,
        ge=0,
        le=1,
        description="probability of a random device channel per window: band limits, "
        "equaliser peaks and dips, 8-bit mu-law or soft clipping",
    )
    specaugment: SpecAugmentConfig | None = Field(default_factory=SpecAugmentConfig)


class ImuAugmentConfig(StrictModel):
    """IMU augmentation: one random 3-D rotation for accelerometer and gyroscope together, etc."""

    type: Literal["imu"] = "imu"
    triads: list[tuple[int, int, int]] = Field(
        default_factory=lambda: [(0, 1, 2), (3, 4, 5)],
        description="channel index triples (x, y, z) rotated together",
    )
    rotate: bool = True
    max_angle_deg: float = Field(180.0, ge=0, le=180)
    scale: tuple[float, float] = (0.9, 1.1)
    jitter_std: float = Field(0.01, ge=0)
    time_warp: float = Field(0.1, ge=0, lt=1)
    triad_scale: tuple[float, float] = Field(
        (1.0, 1.0),
        description="gain range per 3-axis sensor and window, log-uniform: robustness to a "
        "sensor's scale or units being other than declared, e.g. [0.5, 2.0]",
    )


class NoAugmentConfig(StrictModel):
    type: Literal["none"] = "none"


AugmentConfig = Annotated[
    AudioAugmentConfig | ImuAugmentConfig | NoAugmentConfig, Field(discriminator="type")
]


# ------------------------------------------------------------------------------------------------
# distillation from a pretrained teacher


class DistillConfig(StrictModel):
    """Learn from a large pretrained teacher as well as from the labels.

    The teacher embeds each CLEAN training recording once (cached on disk); the encoder sees
    augmented, channel-degraded windows of it and is pulled towards what the teacher says of the
    clean recording, so it learns the teacher's notion of similarity and to ignore the channel.
    The teacher never ships: nothing of it is in the exported bundle.
    """

    teacher: Literal["campplus", "aisfx"] = Field(
        "campplus",
        description="the teacher: campplus (CAM++ speaker embeddings, Apache-2.0) or aisfx "
        "(sound-effect embeddings, CC BY 4.0); both licences allow distilling shipped models",
    )
    kind: Literal["relation", "feature"] = Field(
        "relation",
        description="'relation' matches the batch's matrix of cosine similarities to the "
        "teacher's (no extra weights); 'feature' maps each embedding to the teacher's space "
        "through a linear head (training only) and maximises their cosine",
    )
    weight: float = Field(1.0, gt=0, description="weight of the distillation term in the loss")
    root: UserPath = Field(
        Path("data"),
        description="data root whose .cache holds the teacher's weights and embeddings",
    )
    folders: list[UserPath] | None = Field(
        None,
        description="the data.train folders the teacher speaks for (default: all); windows of "
        "the others learn from their labels alone, e.g. the speakers pooled into an events "
        "recipe as extra classes",
    )


# ------------------------------------------------------------------------------------------------
# optimisation and the whole recipe


class OptimConfig(StrictModel):
    """AdamW with a warm-up and cosine-decay schedule; an epoch is a fixed number of P×K batches."""

    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    epochs: int = Field(30, ge=1)
    steps_per_epoch: int = Field(100, ge=1)
    patience: int = Field(
        6, ge=1, description="epochs without a better validation EER before stopping"
    )
    max_minutes: float | None = Field(
        None, gt=0, description="stop after this wall time (the best checkpoint is kept)"
    )


class TrainConfig(StrictModel):
    """A training recipe: what to learn from, what to learn, and how."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="name of the model (bundle name)")
    modality: Literal["audio", "sensor"]
    seed: int = 0
    data: DataConfig
    frontend: FrontEndConfig
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    objective: ObjectiveConfig = Field(default_factory=TripletObjective)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    augment: AugmentConfig = Field(default_factory=NoAugmentConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    distill: DistillConfig | None = Field(
        None, description="learn from a pretrained teacher's embeddings too (audio only)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="cuda when available under auto; mixed precision on cuda"
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.modality == "audio":
            if not isinstance(self.frontend, LogMelConfig):
                raise ValueError("an audio recipe needs frontend.type: logmel")
            if self.data.sample_rate is None:
                raise ValueError("an audio recipe needs data.sample_rate")
            if self.frontend.fmax > self.data.sample_rate / 2:
                raise ValueError(
                    f"frontend.fmax ({self.frontend.fmax}) is above the Nyquist frequency "
                    f"of data.sample_rate ({self.data.sample_rate})"
                )
            if isinstance(self.augment, ImuAugmentConfig):
                raise ValueError("augment.type imu does not apply to audio")
            if self.distill is not None and self.distill.folders is not None:
                unknown = [str(f) for f in self.distill.folders if f not in self.data.train]
                if unknown:
                    raise ValueError(
                        f"distill.folders must be data.train folders; not among them: {unknown}"
                    )
        else:
            if not isinstance(self.frontend, SensorFrontEndConfig):
                raise ValueError("a sensor recipe needs frontend.type: sensor")
            if isinstance(self.augment, AudioAugmentConfig):
                raise ValueError("augment.type audio does not apply to sensors")
            if self.distill is not None:
                raise ValueError("distill: the teachers embed audio; a sensor recipe has none")
        return self


def load_train_config(path: Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read and validate a training recipe; ``overrides`` are dotted keys (``optim.epochs``)."""
    data = load_yaml(path)
    if isinstance(data, dict) and overrides:
        data = apply_overrides(data, overrides)
    return parse_model(TrainConfig, data, str(path))
