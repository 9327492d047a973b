from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgesiam.errors import ConfigError
from edgesiam.settings import parse_model
from edgesiam.train.config import (
    LogMelConfig,
    SubCenterArcFaceObjective,
    TrainConfig,
    TripletObjective,
    load_train_config,
)

CONFIGS = sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml"))


def minimal(**extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "t",
        "modality": "audio",
        "data": {"train": "x", "sample_rate": 16000, "window_s": 1.0, "hop_s": 0.5},
        "frontend": {"type": "logmel"},
    }
    base.update(extra)
    return base


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_recipes_validate(path: Path) -> None:
    config = load_train_config(path)
    assert config.name == path.stem


def test_there_are_three_reference_recipes() -> None:
    assert {p.stem for p in CONFIGS} >= {"speaker", "events", "motion"}


def test_unknown_key_is_named_with_its_path() -> None:
    data = minimal(optim={"lr": 0.1, "epoch": 3})
    with pytest.raises(ConfigError) as info:
        parse_model(TrainConfig, data, "recipe.yaml")
    assert "optim.epoch: unknown key" in str(info.value)


def test_wrong_type_is_reported_with_path() -> None:
    data = minimal(sampler={"batch_size": "many"})
    with pytest.raises(ConfigError, match=r"sampler\.batch_size"):
        parse_model(TrainConfig, data, "recipe.yaml")


def test_type_field_selects_the_variant() -> None:
    config = parse_model(TrainConfig, minimal(objective={"type": "subcenter_arcface"}), "r")
    assert isinstance(config.objective, SubCenterArcFaceObjective)
    assert isinstance(parse_model(TrainConfig, minimal(), "r").objective, TripletObjective)
    assert isinstance(config.frontend, LogMelConfig)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"frontend": {"type": "sensor"}}, "needs frontend.type: logmel"),
        ({"frontend": {"type": "logmel", "fmax": 12000}}, "Nyquist"),
        ({"sampler": {"batch_size": 30, "m_per_class": 4}}, "multiple of m_per_class"),
        ({"encoder": {"channels": [8, 8], "kernel_sizes": [3]}}, "one entry per block"),
        ({"encoder": {"kernel_sizes": [4, 3, 3, 3]}}, "odd"),
        (
            {
                "encoder": {
                    "channels": [8],
                    "kernel_sizes": [3],
                    "strides": [1],
                    "dilations": [1],
                    "separable": True,
                }
            },
            r"encoder: .*separable applies to the blocks after the first",
        ),
        ({"augment": {"type": "imu"}}, "does not apply to audio"),
    ],
)
def test_cross_field_rules(patch: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_model(TrainConfig, minimal(**patch), "r")


def test_overrides_use_dotted_keys(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(minimal()))
    config = load_train_config(path, {"optim.epochs": 3, "data.hop_s": 0.25})
    assert config.optim.epochs == 3
    assert config.data.hop_s == 0.25


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_train_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_train_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_train_config(tmp_path / "missing.yaml")
