"""Bundles carry their float weights and recipe; the shipped ones got theirs back from their own
float TFLite model, and the torch encoder built from them computes what that model computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgesiam.core.windowing import frame
from edgesiam.model.bundle import load_manifest
from edgesiam.model.interpreters import load_model
from edgesiam.train.checkpoint import load_checkpoint
from edgesiam.train.config import TrainConfig
from edgesiam.train.encoder import Conv1dEncoder
from edgesiam.train.weights import float_tflite_parity, source_from_bundle
from tests.support.signals import make_motion, make_voice

SHIPPED = Path(__file__).resolve().parents[2] / "export"


def _windows(bundle: Path) -> np.ndarray:
    model = load_model(bundle)
    rng = np.random.default_rng(0)
    if model.modality == "audio":
        x = make_voice(150.0, 0.8, 3.0, model.sample_rate, rng)
    else:
        x = make_motion(2, 20 * model.sample_rate, model.sample_rate, rng)
    features: np.ndarray = model.frontend(frame(x, model.window, model.hop))
    return features


@pytest.mark.parametrize("name", ["speaker", "events", "motion"])
def test_shipped_bundle_weights_reproduce_its_float_model(name: str) -> None:
    bundle = SHIPPED / name
    manifest = load_manifest(bundle)
    assert {"weights.safetensors", "recipe.yaml"} <= set(manifest.files)
    source = source_from_bundle(bundle)
    assert source["config"]["name"] == manifest.source.recipe
    config = TrainConfig.model_validate(source["config"])
    encoder = Conv1dEncoder.from_config(source["in_channels"], config.encoder).eval()
    encoder.load_state_dict(source["model"])
    cos = float_tflite_parity(encoder, bundle / "model_float32.tflite", _windows(bundle))
    assert cos.min() > 0.9999


def test_export_writes_the_checkpoint_weights_and_recipe(
    audio_bundle: Path, tiny_audio_model: Path
) -> None:
    manifest = load_manifest(audio_bundle)
    assert {"weights.safetensors", "recipe.yaml"} <= set(manifest.files)
    source = source_from_bundle(audio_bundle)
    checkpoint = load_checkpoint(tiny_audio_model)
    assert source["config"] == checkpoint["config"]
    for key, value in checkpoint["model"].items():
        assert torch.equal(source["model"][key], value), key


def test_a_tampered_weights_file_is_refused(audio_bundle: Path, tmp_path: Path) -> None:
    from edgesiam.errors import BundleError

    copy = tmp_path / "bundle"
    copy.mkdir()
    for f in audio_bundle.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / "weights.safetensors").write_bytes(b"0" * 64)
    with pytest.raises(BundleError, match=r"weights\.safetensors"):
        source_from_bundle(copy)


def test_weights_are_recovered_from_the_float_model_of_a_bundle_without_them(
    audio_bundle: Path, tiny_audio_model: Path, tmp_path: Path
) -> None:
    import yaml

    from edgesiam.model.bundle import read_manifest, write_manifest
    from edgesiam.train.weights import attach_weights

    old = tmp_path / "old"
    old.mkdir()
    for f in audio_bundle.iterdir():
        if f.name not in ("weights.safetensors", "recipe.yaml"):
            (old / f.name).write_bytes(f.read_bytes())
    write_manifest(old, read_manifest(old))  # hashes what is left
    model_sha = load_manifest(old).files["model.tflite"]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(load_checkpoint(tiny_audio_model)["config"]))

    worst = attach_weights(old, recipe, _windows(old))
    assert worst > 0.9999
    manifest = load_manifest(old)
    assert manifest.files["model.tflite"] == model_sha  # the deployed model is left as it was
    recovered = source_from_bundle(old)["model"]
    trained = load_checkpoint(tiny_audio_model)["model"]
    # BatchNorm is folded into the convolution: the weights differ, the function does not
    assert set(recovered) == set(trained)


def test_weights_of_a_separable_recipe_are_not_guessed_from_a_float_model(tmp_path: Path) -> None:
    from edgesiam.errors import ModelError
    from edgesiam.train.weights import encoder_from_float_tflite

    config = TrainConfig.model_validate(
        {
            "name": "t",
            "modality": "sensor",
            "data": {"train": "x", "window_s": 1, "hop_s": 1},
            "frontend": {"type": "sensor"},
            "encoder": {"separable": True},
        }
    )
    with pytest.raises(ModelError, match=r"encoder\.separable"):
        encoder_from_float_tflite(tmp_path / "model_float32.tflite", config, 6)
