"""The model card describes the encoder that was trained, options included."""

from __future__ import annotations

from edgesiam.export.model_card import encoder_text
from edgesiam.train.config import EncoderConfig

BASE = {
    "channels": [16, 24, 24],
    "kernel_sizes": [5, 3, 3],
    "strides": [2, 1, 1],
    "dilations": [1, 2, 4],
    "embedding_dim": 8,
}


def test_a_plain_encoder_pools_the_mean() -> None:
    text = encoder_text(EncoderConfig.model_validate(BASE))
    assert text.startswith("3 Conv1d blocks (channels [16, 24, 24], kernels [5, 3, 3]")
    assert text.endswith("→ mean over time → linear 8")
    assert "separable" not in text and "residual" not in text


def test_the_options_are_named() -> None:
    enc = EncoderConfig.model_validate(
        {**BASE, "pooling": "stats", "residual": True, "separable": True}
    )
    text = encoder_text(enc)
    assert "depthwise-separable after the first" in text
    assert "residual where a block keeps its width" in text
    assert "→ mean and spread over time (statistics pooling) → linear 8" in text


def test_the_teacher_is_named_with_its_licence() -> None:
    from edgesiam.export.model_card import teacher_text
    from edgesiam.train.config import DistillConfig

    assert teacher_text(None) is None
    text = teacher_text(DistillConfig.model_validate({"teacher": "campplus", "weight": 50}))
    assert text == "speakers: CAM++, 192-d, 16 kHz (Apache-2.0) (relation distillation, weight 50)"
