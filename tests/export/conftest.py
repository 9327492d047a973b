"""Fixtures of the export tests: one tiny trained audio model and its bundle, shared by the session.

Training (a few seconds) and one export (TensorFlow's import and two conversions, ~10 s) are done
once; each test that needs another export (sabotage, --force, the fake Edge TPU compiler) pays
only the conversions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from edgesiam.config import TrainConfig
from edgesiam.data.readers import scan_dataset
from edgesiam.embedders import EmbeddedDataset, embed_dataset
from tests.train.test_loop import audio_recipe


def export_parser() -> argparse.ArgumentParser:
    from edgesiam.export.cli import add_export_parser

    parser = argparse.ArgumentParser(prog="edgesiam")
    add_export_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def run_export(*args: str) -> int:
    """``edgesiam export ARGS`` through the sub-command's own parser and ``cmd_export``."""
    parsed = export_parser().parse_args(["export", *args, "--quiet"])
    code: int = parsed.func(parsed)
    return code


@pytest.fixture(scope="session")
def tiny_audio_model(
    audio_dataset: Path, audio_heldout: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    from edgesiam.train.loop import train

    out = tmp_path_factory.mktemp("tiny_audio_run")
    config = TrainConfig.model_validate(audio_recipe(audio_dataset, audio_heldout, epochs=2))
    train(config, out, progress=False, log=lambda _m: None)
    return out / "best.pt"


@pytest.fixture(scope="session")
def audio_bundle(
    tiny_audio_model: Path,
    audio_dataset: Path,
    audio_heldout: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    bundle = tmp_path_factory.mktemp("bundles") / "tiny-audio"
    code = run_export(
        str(tiny_audio_model),
        "-o",
        str(bundle),
        "--calib",
        str(audio_dataset),
        "--heldout",
        str(audio_heldout),
    )
    assert code == 0
    return bundle


@pytest.fixture(scope="session")
def torch_reference(tiny_audio_model: Path, audio_heldout: Path) -> EmbeddedDataset:
    """The workstation path: the torch checkpoint's recording embeddings of the held-out set."""
    from edgesiam.train.checkpoint import CheckpointEmbedder

    embedder = CheckpointEmbedder(tiny_audio_model)
    return embed_dataset(embedder, scan_dataset(audio_heldout), progress=False)
