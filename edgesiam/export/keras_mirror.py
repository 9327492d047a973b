"""A Keras model that computes exactly what a trained ``Conv1dEncoder`` computes.

Converting a Keras mirror with ``TFLiteConverter.from_keras_model`` gives the cleanest int8 graph
(PAD, RESHAPE, CONV_2D, MEAN, FULLY_CONNECTED, L2_NORMALIZATION; int8 in and out): each
Conv1d → BatchNorm pair becomes one convolution with the BatchNorm folded into its weights and bias,
torch's symmetric padding becomes ZeroPadding1D + a 'valid' Conv1D (TFLite's SAME padding differs
from torch's at stride 2), the ReLU is fused, the mean over time is GlobalAveragePooling1D, the
projection is a Dense layer and the L2 normalisation is ``tf.math.l2_normalize`` (Keras'
``UnitNormalization`` lowers to float SQUARE/SUM/RSQRT ops with a DEQUANTIZE; this one lowers to
the int8 L2_NORMALIZATION op). Dropout is the identity at inference and is left out. A
depthwise-separable block becomes a bias-free DepthwiseConv1D (DEPTHWISE_CONV_2D) followed by a
1×1 Conv1D (CONV_2D) that carries the folded BatchNorm and the ReLU.

The mirror's input is channels-last ``(T, C_in)`` with a fixed batch of 1 (the Edge TPU wants
static shapes); features ``(B, C_in, T)`` are transposed to ``(B, T, C_in)`` before they go in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgesiam.errors import MissingExtraError, ModelError


@dataclass(frozen=True)
class ConvSpec:
    """One folded convolution: weights ``(K, C_in, C_out)`` (Keras layout) and bias ``(C_out,)``."""

    kernel: np.ndarray
    bias: np.ndarray
    stride: int
    dilation: int
    padding: int
    residual: bool = False  # the block's input is added to its output (ADD)
    # separable: the depthwise kernel ``(K, C_in, 1)`` that stride, dilation and padding belong
    # to; ``kernel`` is then the 1×1 pointwise one ``(1, C_in, C_out)``
    depthwise: np.ndarray | None = None


@dataclass(frozen=True)
class MirrorSpec:
    """Everything the mirror needs from a torch encoder, as numpy arrays."""

    in_channels: int
    convs: list[ConvSpec]
    projection_kernel: np.ndarray  # (C_last, D)
    projection_bias: np.ndarray  # (D,)
    input_norm: str = "none"  # "mean": subtract each input channel's mean over time first
    pooling: str = "mean"  # "stats": mean and standard deviation of each channel over time

    @property
    def embedding_dim(self) -> int:
        return int(self.projection_bias.shape[0])


def fold_batchnorm(
    conv_weight: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    eps: float,
    conv_bias: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fold an inference-mode BatchNorm into the convolution before it.

    ``conv_weight`` is torch's ``(C_out, C_in, K)``; returns the folded weight in the same layout
    and the bias ``(C_out,)``, in float64 for exactness.
    """
    w = np.asarray(conv_weight, dtype=np.float64)
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(running_var, np.float64) + eps)
    b0 = np.zeros(w.shape[0]) if conv_bias is None else np.asarray(conv_bias, np.float64)
    bias = (b0 - np.asarray(running_mean, np.float64)) * scale + np.asarray(beta, np.float64)
    return w * scale[:, None, None], bias


def _numpy(t: Any) -> np.ndarray:
    return np.asarray(t.detach().cpu().double().numpy())


def _block_spec(block: Any, skip: bool) -> ConvSpec:
    """One torch ``ConvBlock`` (full or depthwise-separable) as a folded ``ConvSpec``."""
    depthwise = getattr(block.conv, "depthwise", None)
    conv = block.conv.pointwise if depthwise is not None else block.conv
    spatial = depthwise if depthwise is not None else conv
    norm = block.norm
    if any(c.padding_mode != "zeros" for c in (conv, spatial)) or conv.groups != 1:
        raise ModelError("only plain zero-padded convolutions can be exported")
    if depthwise is not None and (
        depthwise.groups != depthwise.in_channels or depthwise.bias is not None
    ):
        raise ModelError("a separable block must start with a bias-free depthwise convolution")
    if not norm.track_running_stats or norm.running_mean is None:
        raise ModelError("BatchNorm without running statistics cannot be folded for export")
    weight, bias = fold_batchnorm(
        _numpy(conv.weight),
        _numpy(norm.running_mean),
        _numpy(norm.running_var),
        _numpy(norm.weight) if norm.affine else np.ones(conv.out_channels),
        _numpy(norm.bias) if norm.affine else np.zeros(conv.out_channels),
        float(norm.eps),
        _numpy(conv.bias) if conv.bias is not None else None,
    )
    return ConvSpec(
        kernel=weight.transpose(2, 1, 0).astype(np.float32),
        bias=bias.astype(np.float32),
        stride=int(spatial.stride[0]),
        dilation=int(spatial.dilation[0]),
        padding=int(spatial.padding[0]),
        residual=bool(skip),
        depthwise=None
        if depthwise is None
        else _numpy(depthwise.weight).transpose(2, 0, 1).astype(np.float32),
    )


def mirror_spec(encoder: Any) -> MirrorSpec:
    """Read a torch ``Conv1dEncoder`` (in eval mode or not: BatchNorm uses running statistics)."""
    skips = getattr(encoder, "skips", [False] * len(encoder.blocks))
    convs = [_block_spec(block, skip) for block, skip in zip(encoder.blocks, skips, strict=True)]
    projection = encoder.projection
    return MirrorSpec(
        in_channels=int(encoder.in_channels),
        convs=convs,
        projection_kernel=_numpy(projection.weight).T.astype(np.float32),
        projection_bias=_numpy(projection.bias).astype(np.float32),
        input_norm=str(getattr(encoder, "input_norm", "none")),
        pooling=str(getattr(encoder, "pooling", "mean")),
    )


def import_tensorflow() -> tuple[Any, Any]:
    """``(tensorflow, keras)`` with Keras on the TensorFlow backend, or ``MissingExtraError``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        import keras
        import tensorflow as tf
    except ImportError:
        raise MissingExtraError("tensorflow", "export") from None
    if keras.backend.backend() != "tensorflow":
        raise ModelError(
            f"export needs Keras on the TensorFlow backend, this Keras uses "
            f"{keras.backend.backend()!r}: unset KERAS_BACKEND"
        )
    return tf, keras


def _strided(
    h: Any, layer: Any, weights: list[np.ndarray], stride: int, subsample: Any, i: int
) -> Any:
    """Apply ``layer`` with its weights set, then take the stride it could not."""
    h = layer(h)
    layer.set_weights(weights)
    if layer.strides[0] != stride:
        h = subsample(stride, name=f"stride{i}")(h)
    return h


def _mirror_block(keras: Any, subsample: Any, h: Any, conv: ConvSpec, i: int) -> Any:
    """Block ``i``: torch padding, the (depthwise + pointwise, or full) convolution with the
    folded BatchNorm and fused ReLU, and the residual ADD."""
    block_input = h
    if conv.padding:
        h = keras.layers.ZeroPadding1D(conv.padding, name=f"pad{i}")(h)
    # Keras refuses stride > 1 together with dilation > 1: convolve densely, then subsample.
    window = {
        "strides": conv.stride if conv.dilation == 1 else 1,
        "dilation_rate": conv.dilation,
        "padding": "valid",
    }
    out = conv.kernel.shape[2]
    if conv.depthwise is not None:
        depthwise = keras.layers.DepthwiseConv1D(
            conv.depthwise.shape[0], use_bias=False, name=f"depthwise{i}", **window
        )
        h = _strided(h, depthwise, [conv.depthwise], conv.stride, subsample, i)
        layer = keras.layers.Conv1D(out, 1, activation="relu", name=f"conv{i}")
        stride = 1
    else:
        layer = keras.layers.Conv1D(
            out, conv.kernel.shape[0], activation="relu", name=f"conv{i}", **window
        )
        stride = conv.stride
    h = _strided(h, layer, [conv.kernel, conv.bias], stride, subsample, i)
    if conv.residual:
        h = keras.layers.Add(name=f"residual{i}")([block_input, h])
    return h


def build_keras_mirror(spec: MirrorSpec, time_steps: int, l2_in_model: bool = True) -> Any:
    """A ``keras.Model`` ``(1, T, C_in)`` → ``(1, D)`` computing the encoder's forward pass."""
    tf, keras = import_tensorflow()

    class L2Normalize(keras.layers.Layer):  # type: ignore[misc,name-defined]
        """``tf.math.l2_normalize`` over the last axis: one int8 L2_NORMALIZATION op."""

        def call(self, x: Any) -> Any:
            return tf.math.l2_normalize(x, axis=-1)

    class Subsample(keras.layers.Layer):  # type: ignore[misc,name-defined]
        """Every ``step``-th time step from the first: a dilated conv's stride (STRIDED_SLICE)."""

        def __init__(self, step: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.step = step

        def call(self, x: Any) -> Any:
            return x[:, :: self.step, :]

    class CentreOverTime(keras.layers.Layer):  # type: ignore[misc,name-defined]
        """Each channel minus its mean over time (MEAN, SUB)."""

        def call(self, x: Any) -> Any:
            return x - tf.reduce_mean(x, axis=1, keepdims=True)

    class StatsPool(keras.layers.Layer):  # type: ignore[misc,name-defined]
        """Mean over time and ``mean(relu(x - mean))`` (the spread), concatenated."""

        def call(self, x: Any) -> Any:
            mean = tf.reduce_mean(x, axis=1, keepdims=True)
            spread = tf.reduce_mean(tf.nn.relu(x - mean), axis=1)
            return tf.concat([tf.squeeze(mean, axis=1), spread], axis=-1)

    inputs = keras.Input(shape=(time_steps, spec.in_channels), batch_size=1, name="features")
    h = inputs
    if spec.input_norm == "mean":
        h = CentreOverTime(name="centre")(h)
    for i, conv in enumerate(spec.convs):
        h = _mirror_block(keras, Subsample, h, conv, i)
    if spec.pooling == "stats":
        h = StatsPool(name="stats")(h)
    else:
        h = keras.layers.GlobalAveragePooling1D(name="mean")(h)
    dense = keras.layers.Dense(spec.embedding_dim, name="projection")
    h = dense(h)
    dense.set_weights([spec.projection_kernel, spec.projection_bias])
    if l2_in_model:
        h = L2Normalize(name="l2_normalize")(h)
    return keras.Model(inputs, h, name="edgesiam_encoder")
