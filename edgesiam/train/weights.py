"""A bundle's float weights and resolved recipe: what ``edgesiam tune`` starts from.

An exported bundle carries ``weights.safetensors`` (the encoder's torch ``state_dict``) and
``recipe.yaml`` (the validated recipe it was trained with) beside its TFLite models; the manifest
names and hashes both. The device never reads them. :func:`source_from_bundle` turns such a bundle
back into the payload of a training checkpoint, so tuning starts from a bundle or a checkpoint
alike.

Bundles exported before they carried weights can get them back from their own
``model_float32.tflite`` (:func:`encoder_from_float_tflite`): BatchNorm was folded into each
convolution on export, so the folded kernels and biases go into an encoder whose BatchNorm is the
identity, which computes exactly the same function.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
import yaml
from safetensors.numpy import load_file, save_file

from edgesiam.core.frontend import frontend_from_state
from edgesiam.errors import BundleError, ModelError
from edgesiam.model.bundle import load_manifest
from edgesiam.settings import parse_model
from edgesiam.train.checkpoint import frontend_to_torch
from edgesiam.train.config import TrainConfig
from edgesiam.train.encoder import Conv1dEncoder, ConvBlock

WEIGHTS_FILE: Final = "weights.safetensors"
RECIPE_FILE: Final = "recipe.yaml"


def write_training_files(folder: Path, config: TrainConfig, state: dict[str, Any]) -> None:
    """``weights.safetensors`` and ``recipe.yaml`` of an encoder, into ``folder``."""
    arrays = {k: np.ascontiguousarray(_numpy(v)) for k, v in state.items()}
    save_file(arrays, str(folder / WEIGHTS_FILE), metadata={"format": "edgesiam-encoder"})
    (folder / WEIGHTS_FILE).chmod(0o644)  # written owner-only; a bundle is copied to devices
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    (folder / RECIPE_FILE).write_text(
        "# The resolved recipe this bundle's encoder was trained with (written by export).\n"
        + text,
        encoding="utf-8",
    )


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return np.asarray(value.detach().cpu().numpy())
    return np.asarray(value)


def read_recipe(path: Path) -> TrainConfig:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise BundleError(f"{path}: cannot read the bundle's recipe ({exc})") from None
    return parse_model(TrainConfig, data, str(path))


def source_from_bundle(bundle: Path) -> dict[str, Any]:
    """A bundle with weights → the payload of a training checkpoint (what ``tune`` starts from)."""
    manifest = load_manifest(bundle)  # verifies every hash, the weights' and recipe's included
    if not {WEIGHTS_FILE, RECIPE_FILE} <= set(manifest.files):
        raise BundleError(
            f"{bundle}: the bundle carries no float weights ({WEIGHTS_FILE}) or recipe "
            f"({RECIPE_FILE}); export it again with this edgesiam, or tune from its training "
            "checkpoint (--from runs/NAME/best.pt)"
        )
    config = read_recipe(bundle / RECIPE_FILE)
    with np.load(bundle / manifest.frontend.file, allow_pickle=False) as z:
        state = {k: z[k] for k in z.files}
    weights = {k: torch.from_numpy(v.copy()) for k, v in load_file(bundle / WEIGHTS_FILE).items()}
    in_channels = int(manifest.features[0])
    encoder = Conv1dEncoder.from_config(in_channels, config.encoder)
    try:
        encoder.load_state_dict(weights)
    except RuntimeError as exc:
        raise BundleError(
            f"{bundle / WEIGHTS_FILE}: does not fit the encoder of {RECIPE_FILE} ({exc})"
        ) from None
    frontend_from_state(state)  # a bad front-end fails here, not after training
    return {
        "config": config.model_dump(mode="json"),
        "frontend": frontend_to_torch(state),
        "modality": manifest.modality,
        "sample_rate": manifest.sample_rate,
        "window": manifest.window,
        "hop": manifest.hop,
        "channels": manifest.channels,
        "channel_names": manifest.channel_names,
        "channel_units": manifest.channel_units,
        "in_channels": in_channels,
        "model": encoder.state_dict(),
        "epoch": manifest.source.epoch,
        "metrics": {},
    }


# --- weights back from a float TFLite model ------------------------------------------------------


def _constants(path: Path) -> dict[str, np.ndarray]:
    """Name → value of every float constant tensor (weights and biases) of a TFLite model."""
    from edgesiam.export.keras_mirror import import_tensorflow

    tf, _ = import_tensorflow()
    interpreter = tf.lite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    out: dict[str, np.ndarray] = {}
    for detail in interpreter.get_tensor_details():
        if detail["dtype"] != np.float32:
            continue
        try:
            out[detail["name"]] = np.array(interpreter.get_tensor(detail["index"]))
        except ValueError:  # an activation: no value before the model runs
            continue
    return out


def _find(constants: dict[str, np.ndarray], pattern: str, shape: tuple[int, ...]) -> np.ndarray:
    found = [v for k, v in constants.items() if re.search(pattern, k) and tuple(v.shape) == shape]
    if len(found) != 1:
        raise ModelError(
            f"expected one tensor matching {pattern!r} of shape {shape} in the float model, "
            f"found {len(found)}"
        )
    return found[0]


def _identity_norm(norm: torch.nn.BatchNorm1d, bias: np.ndarray) -> None:
    """BatchNorm that only adds ``bias``: mean 0, sqrt(var + eps) = 1, scale 1."""
    assert norm.running_mean is not None and norm.running_var is not None
    norm.running_mean.zero_()
    norm.running_var.fill_(1.0 - norm.eps)
    norm.weight.fill_(1.0)
    norm.bias.copy_(torch.from_numpy(bias.copy()))


def encoder_from_float_tflite(path: Path, config: TrainConfig, in_channels: int) -> Conv1dEncoder:
    """The torch encoder of an exported ``model_float32.tflite`` (BatchNorm as the identity)."""
    if config.encoder.separable:
        raise ModelError(
            f"{path}: weights are recovered only for full convolutions, and the recipe sets "
            "encoder.separable (a separable bundle carries its weights from export)"
        )
    encoder = Conv1dEncoder.from_config(in_channels, config.encoder)
    constants = _constants(path)
    width = in_channels
    with torch.no_grad():
        for i, block in enumerate(encoder.blocks):
            assert isinstance(block, ConvBlock) and isinstance(block.conv, torch.nn.Conv1d)
            out, k = int(block.conv.out_channels), int(block.conv.kernel_size[0])
            kernel = _find(constants, rf"/conv{i}(_\d+)?/convolution$", (out, 1, k, width))
            bias = _find(constants, rf"/conv{i}(_\d+)?/BiasAdd", (out,))
            block.conv.weight.copy_(torch.from_numpy(kernel[:, 0].transpose(0, 2, 1).copy()))
            _identity_norm(block.norm, bias)
            width = out
        dim = encoder.embedding_dim
        projection = _find(constants, r"/projection(_\d+)?/MatMul", (dim, width))
        encoder.projection.weight.copy_(torch.from_numpy(projection.copy()))
        encoder.projection.bias.copy_(
            torch.from_numpy(_find(constants, r"/projection(_\d+)?/BiasAdd", (dim,)).copy())
        )
    return encoder.eval()


def float_tflite_parity(encoder: Conv1dEncoder, path: Path, features: np.ndarray) -> np.ndarray:
    """Per-window cosine between the torch encoder and a float TFLite model on ``features``."""
    from edgesiam.model.interpreters import TFLiteModel

    model = TFLiteModel(path)
    ref = np.concatenate([model.run(features[i : i + 1]) for i in range(len(features))])
    with torch.no_grad():
        ours = encoder(torch.from_numpy(np.ascontiguousarray(features, np.float32))).numpy()
    ref = ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
    cosines: np.ndarray = np.sum(ours * ref, axis=1)
    return cosines


def attach_weights(bundle: Path, recipe: Path, features: np.ndarray) -> float:
    """Give a bundle exported without them its float weights and recipe, recovered from its own
    ``model_float32.tflite``; ``model.tflite`` and every other file stay as they are.

    The recovered encoder must reproduce the float model on ``features`` (real windows through
    the bundle's front-end) with a cosine above 0.9999; returns the smallest cosine.
    """
    from edgesiam.model.bundle import write_manifest
    from edgesiam.train.config import load_train_config

    manifest = load_manifest(bundle)
    config = load_train_config(recipe)
    if config.modality != manifest.modality:
        raise ModelError(
            f"{recipe} is a {config.modality} recipe, {bundle} a {manifest.modality} bundle"
        )
    encoder = encoder_from_float_tflite(
        bundle / manifest.models["float32"].file, config, int(manifest.features[0])
    )
    worst = float(
        np.min(float_tflite_parity(encoder, bundle / manifest.models["float32"].file, features))
    )
    if not worst > 0.9999:
        raise ModelError(
            f"{bundle}: the recovered encoder does not reproduce model_float32.tflite "
            f"(min cosine {worst:.6f}); is {recipe} the recipe it was trained with?"
        )
    write_training_files(bundle, config, encoder.state_dict())
    write_manifest(bundle, manifest)  # hashes the two new files
    return worst
