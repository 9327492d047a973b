"""Export end to end on a tiny trained model: the gate, the int8 graph, thresholds, the bundle."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from edgesiam.data.readers import scan_dataset
from edgesiam.errors import BundleError, ConfigError, DataError, GateError, MissingExtraError
from edgesiam.export.cohort import evaluate_cohort
from edgesiam.export.gate import (
    EDGETPU_OPS,
    CompilerResult,
    compiler_check,
    edgetpu_static_check,
    graph_checks,
    parse_compiler_output,
)
from edgesiam.export.thresholds import threshold_set
from edgesiam.model.bundle import load_manifest
from edgesiam.model.embedders import EmbeddedDataset, embed_dataset
from edgesiam.model.interpreters import BundleEmbedder, inspect_model, load_model
from tests.support.cli import cohort_always_shipped, run_export
from tests.support.edgetpu import FAKE_COMPILER
from tests.support.signals import write_sensor_dataset

CLEAN_INT8_OPS = {"PAD", "RESHAPE", "CONV_2D", "MEAN", "FULLY_CONNECTED", "L2_NORMALIZATION"}


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def test_export_passes_the_gate_and_writes_a_complete_bundle(audio_bundle: Path) -> None:
    m = load_manifest(audio_bundle)
    assert m.gate.passed and not m.gate.forced
    names = {c.name for c in m.gate.checks}
    assert names == {
        "parity.mean_cosine",
        "parity.min_cosine",
        "eer.delta",
        "graph.int8_io",
        "graph.integer_only",
        "edgetpu.ops",
    }
    assert all(c.passed for c in m.gate.checks)
    assert set(m.files) == {
        "model.tflite",
        "model_float32.tflite",
        "frontend.npz",
        "MODEL_CARD.md",
        "weights.safetensors",
        "recipe.yaml",
    }
    assert m.parity.int8_mean_cosine >= 0.999 and m.parity.int8_min_cosine >= 0.99
    assert m.parity.float32_min_cosine > 0.9999
    assert m.parity.eer_delta_points <= 0.5
    assert m.calibration.windows >= 200
    assert m.modality == "audio" and m.sample_rate == 16000 and m.window == 8000 and m.hop == 4000
    assert m.frontend.kind == "logmel" and m.frontend.params["n_mels"] == 24
    assert m.features == [24, 48] and m.embedding_dim == 16 and m.distance == "cosine"
    assert {"edgesiam", "tensorflow", "torch", "numpy"} <= set(m.versions)
    # quantisation parameters are the model's own
    int8 = m.models["int8"]
    info = inspect_model(audio_bundle / "model.tflite")
    assert int8.input == info.input and int8.output == info.output
    assert int8.input.dtype == "int8" and int8.input.layout == "NTC"
    assert int8.input.scale is not None and int8.input.scale > 0
    assert m.cohort is not None and not m.cohort.used and m.cohort.file is None
    assert 0 <= m.cohort.eer_raw <= 1 and 0 <= m.cohort.eer_normalised <= 1
    card = (audio_bundle / "MODEL_CARD.md").read_text()
    for heading in ("## Intended use", "## Data", "## Metrics on held-out labels", "## Latency"):
        assert heading in card
    assert "TFLite int8 (deployed)" in card and "KiB" in card
    assert m.latency is not None and m.latency.median_ms > 0
    leftovers = [p.name for p in audio_bundle.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_int8_graph_is_integer_only_and_edge_tpu_compatible(audio_bundle: Path) -> None:
    info = inspect_model(audio_bundle / "model.tflite")
    assert set(info.ops) == CLEAN_INT8_OPS
    assert "DEQUANTIZE" not in info.ops and "QUANTIZE" not in info.ops
    assert {dtype for _, dtype in info.tensors} <= {"int8", "int32"}
    assert set(info.ops) <= EDGETPU_OPS
    assert load_manifest(audio_bundle).models["int8"].ops == info.ops


def test_graph_checks_catch_a_float_tail() -> None:
    """Keras' UnitNormalization lowers to DEQUANTIZE + float ops: the gate must say so."""
    from edgesiam.export.convert import to_tflite
    from edgesiam.export.keras_mirror import import_tensorflow

    _, keras = import_tensorflow()
    inputs = keras.Input(shape=(8, 3), batch_size=1)
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Conv1D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.UnitNormalization()(keras.layers.Dense(5)(h)))
    calib = np.random.default_rng(0).normal(size=(16, 3, 8)).astype(np.float32)
    info = inspect_model(model_content=to_tflite(model, "int8", calib))
    checks = {c.name: c for c in graph_checks(info)}
    assert not checks["graph.integer_only"].passed
    assert "DEQUANTIZE" in checks["graph.integer_only"].detail
    assert "float32" in checks["graph.integer_only"].detail
    static = edgetpu_static_check(info)
    assert not static.passed and "DEQUANTIZE" in static.detail


def test_thresholds_are_monotone_in_fmr(audio_bundle: Path) -> None:
    m = load_manifest(audio_bundle)
    for table in (m.thresholds.window, m.thresholds.recording):
        values = [table.at_fmr[k] for k in ("0.01", "0.001", "0.0001")]
        assert values == sorted(values)
        assert table.genuine > 0 and table.impostor > 0
    assert m.thresholds.labels == 6 and m.thresholds.recordings == 36
    # with plenty of trials the thresholds rise strictly as the target FMR falls
    rng = np.random.default_rng(0)
    t = threshold_set(rng.normal(2, 1, 2000), rng.normal(0, 1, 100_000), "window-vs-recording")
    values = [t.at_fmr[k] for k in ("0.01", "0.001", "0.0001")]
    assert values[0] < values[1] < values[2]
    assert all(t.supported.values())
    assert 0.1 < t.eer < 0.2 and values[0] == pytest.approx(2.326, abs=0.1)


def test_bundle_embeds_like_torch_through_embed_dataset(
    audio_bundle: Path, torch_reference: EmbeddedDataset, audio_heldout: Path
) -> None:
    info = scan_dataset(audio_heldout)
    device = load_model(audio_bundle)
    assert isinstance(device, BundleEmbedder) and device.model_key == "int8"
    ours = embed_dataset(device, info, progress=False)
    ref = torch_reference
    assert ours.paths == ref.paths
    assert _cosines(ours.embeddings, ref.embeddings).min() >= 0.999
    assert device.threshold(1e-3) == load_manifest(audio_bundle).thresholds.window.at_fmr["0.001"]
    float32 = BundleEmbedder(audio_bundle, model="float32")
    from edgesiam.data.readers import read_audio

    x = read_audio(info.recordings[0].path, device.sample_rate)[: 2 * device.window]
    features = device.frontend(x.reshape(2, device.window))
    assert _cosines(float32.embed_features(features), device.embed_features(features)).min() > 0.999


def test_tampered_bundle_is_refused(audio_bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(audio_bundle, copy)
    data = bytearray((copy / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.tflite").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.tflite does not match its sha256"):
        load_model(copy)
    with pytest.raises(BundleError, match="not a bundle"):
        load_model(tmp_path)


def test_edgetpu_delegate_needs_an_edgetpu_model(audio_bundle: Path) -> None:
    with pytest.raises(BundleError, match=r"no 'edgetpu' model.*edgetpu_compiler"):
        BundleEmbedder(audio_bundle, delegate="edgetpu")


def test_sabotaged_int8_weights_fail_the_gate(
    monkeypatch: pytest.MonkeyPatch,
    tiny_audio_model: Path,
    audio_dataset: Path,
    audio_heldout: Path,
    tmp_path: Path,
) -> None:
    from edgesiam.export import convert

    original = convert.to_tflite

    def sabotaged(model, variant, calibration=None):  # type: ignore[no-untyped-def]
        if variant != "int8":
            return original(model, variant, calibration)
        layer = model.get_layer("conv0")
        weights = layer.get_weights()
        noise = np.random.default_rng(0).normal(size=weights[0].shape).astype(np.float32)
        layer.set_weights([weights[0] * (1 + 0.5 * noise), weights[1]])
        try:
            return original(model, variant, calibration)
        finally:
            layer.set_weights(weights)

    monkeypatch.setattr(convert, "to_tflite", sabotaged)
    out = tmp_path / "bundle"
    with pytest.raises(GateError) as caught:
        run_export(
            str(tiny_audio_model), "-o", str(out), "--calib", str(audio_dataset),
            "--heldout", str(audio_heldout),
        )  # fmt: skip
    report = str(caught.value)
    assert "FAIL  parity.mean_cosine" in report and "gate FAILED: parity.mean_cosine" in report
    assert "PASS  graph.integer_only" in report  # the graph is still clean: only numbers differ
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no staging folder left behind


def test_force_writes_a_failing_bundle_marked_as_failed_with_extra_variants(
    tiny_audio_model: Path, audio_dataset: Path, audio_heldout: Path, tmp_path: Path
) -> None:
    out = tmp_path / "forced"
    code = run_export(
        str(tiny_audio_model), "-o", str(out), "--calib", str(audio_dataset),
        "--heldout", str(audio_heldout), "--min-mean-cosine", "0.99999", "--force",
        "--float16", "--dynamic-range",
    )  # fmt: skip
    assert code == 0
    m = load_manifest(out)
    assert not m.gate.passed and m.gate.forced
    failed = [c.name for c in m.gate.checks if not c.passed]
    assert failed == ["parity.mean_cosine"]
    assert m.gate.limits["min_mean_cosine"] == 0.99999
    assert "FAILED (exported with --force" in (out / "MODEL_CARD.md").read_text()
    assert list(m.models) == ["int8", "float32", "float16", "dynamic-range"]
    for key in ("float16", "dynamic-range"):
        entry = m.models[key]
        assert (out / entry.file).is_file() and entry.mean_cosine is not None
        assert entry.mean_cosine > 0.999
        assert BundleEmbedder(out, model=key).model.input.dtype == "float32"
    with pytest.raises(ConfigError, match="already exists"):
        run_export(str(tiny_audio_model), "-o", str(out), "--calib", str(audio_dataset))


def test_fake_edgetpu_compiler_on_path_is_called_and_lands_in_the_bundle(
    monkeypatch: pytest.MonkeyPatch,
    tiny_audio_model: Path,
    audio_dataset: Path,
    audio_heldout: Path,
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    script = bin_dir / "edgetpu_compiler"
    script.write_text(FAKE_COMPILER.format(calls=calls))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    # make the score-normalisation cohort "help", so the cohort file ships too
    from edgesiam.export import bundle_writer

    monkeypatch.setattr(bundle_writer, "evaluate_cohort", cohort_always_shipped)
    out = tmp_path / "tpu"
    run_export(
        str(tiny_audio_model), "-o", str(out), "--calib", str(audio_dataset),
        "--heldout", str(audio_heldout),
    )  # fmt: skip
    args = calls.read_text().split()
    assert args[:2] == ["-s", "-o"] and args[3].endswith("model.tflite")
    m = load_manifest(out)
    assert m.models["edgetpu"].file == "model_edgetpu.tflite"
    assert m.models["edgetpu"].input == m.models["int8"].input
    assert m.edgetpu.compiler == "16.0.384591198" and m.edgetpu.ops_on_cpu == 0
    assert m.edgetpu.log == "edgetpu_compiler.log"
    assert "Number of operations that will run on CPU: 0" in (out / m.edgetpu.log).read_text()
    assert {"model_edgetpu.tflite", "edgetpu_compiler.log", "cohort.npy"} <= set(m.files)
    check = next(c for c in m.gate.checks if c.name == "edgetpu.compiler")
    assert check.passed and "16.0.384591198" in check.detail
    assert m.cohort is not None and m.cohort.file == "cohort.npy"
    cohort = np.load(out / "cohort.npy")
    assert cohort.shape == (m.cohort.size, m.embedding_dim)
    # and the window thresholds a device scoring with it compares with (matching.score_norm)
    window = m.cohort.window_thresholds
    assert window is not None and window.scores == "adaptive-s-norm" and window.impostor > 0
    # the delegate library is not installed here: a clear error, naming it
    with pytest.raises(BundleError, match=r"libedgetpu\.so\.1.*could not be loaded"):
        BundleEmbedder(out, delegate="edgetpu")


def test_compiler_output_with_cpu_ops_fails_the_check() -> None:
    text = (
        "Edge TPU Compiler version 16.0.384591198\n"
        "Operator                       Count      Status\n"
        "CONV_2D                        2          Mapped to Edge TPU\n"
        "GATHER                         1          Operation not supported\n"
        "Number of operations that will run on Edge TPU: 2\n"
        "Number of operations that will run on CPU: 1\n"
    )
    version, on_tpu, on_cpu, cpu_ops = parse_compiler_output(text)
    assert (version, on_tpu, on_cpu) == ("16.0.384591198", 2, 1)
    check = compiler_check(
        CompilerResult(
            ran=True, returncode=0, version=version, model=Path("m_edgetpu.tflite"),
            log=Path("edgetpu_compiler.log"), ops_on_tpu=on_tpu, ops_on_cpu=on_cpu,
            cpu_ops=cpu_ops,
        )
    )  # fmt: skip
    assert not check.passed and "GATHER (Operation not supported)" in check.detail
    failed = compiler_check(CompilerResult(ran=True, returncode=1, error="exit status 1"))
    assert not failed.passed and "exit status 1" in failed.detail


def test_cohort_is_used_only_when_it_lowers_the_eer() -> None:
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(8, 16))
    labels = [f"l{i}" for i in range(8) for _ in range(5)]
    hub = rng.normal(size=16)
    # recordings lean on a shared 'hub' direction by different amounts: raw cosines mix them
    weight = rng.uniform(0, 3, size=(40, 1))
    emb = np.repeat(centres, 5, axis=0) + 0.6 * rng.normal(size=(40, 16)) + weight * hub
    cohort = rng.normal(size=(60, 16)) + rng.uniform(0, 3, size=(60, 1)) * hub
    result = evaluate_cohort(emb, labels, cohort, top_k=20, data="train")
    assert result.info.eer_normalised < result.info.eer_raw
    assert result.info.used and result.info.file == "cohort.npy"
    assert result.info.thresholds is not None
    assert result.info.thresholds.scores == "adaptive-s-norm"
    useless = evaluate_cohort(np.repeat(centres, 5, axis=0), labels, cohort, 20, "train")
    assert useless.info.eer_raw == 0.0 and not useless.info.used and useless.info.file is None


def test_calibration_needs_200_real_windows(tiny_audio_model: Path, tmp_path: Path) -> None:
    import soundfile as sf

    from edgesiam.export.convert import read_calibration
    from edgesiam.train.checkpoint import CheckpointEmbedder

    embedder = CheckpointEmbedder(tiny_audio_model)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        sf.write(tmp_path / label / "x.wav", np.zeros(embedder.window, np.float32), 16000)
    with pytest.raises(DataError, match=r"at least 200 windows.*only 2"):
        read_calibration(embedder, tmp_path)


def test_export_without_tensorflow_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgesiam.export.keras_mirror import import_tensorflow

    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(MissingExtraError, match=r"edgesiam\[export\]"):
        import_tensorflow()


def test_manifest_json_is_generated_not_hand_written(audio_bundle: Path) -> None:
    data = json.loads((audio_bundle / "manifest.json").read_text())
    assert data["schema_version"] == 1 and data["created"].endswith("+00:00")
    assert data["source"]["sha256"] and len(data["files"]["model.tflite"]) == 64


@pytest.mark.slow
def test_sensor_model_exports_and_embeds_like_torch(sensor_dataset: Path, tmp_path: Path) -> None:
    from edgesiam.train.checkpoint import CheckpointEmbedder
    from edgesiam.train.config import TrainConfig
    from edgesiam.train.loop import train
    from tests.support.recipes import sensor_recipe

    config = TrainConfig.model_validate(sensor_recipe(sensor_dataset, sensor_dataset))
    train(config, tmp_path / "run", progress=False, log=lambda _m: None)
    heldout = write_sensor_dataset(tmp_path / "heldout", labels=4, seed=7)
    out = tmp_path / "bundle"
    code = run_export(
        str(tmp_path / "run" / "best.pt"), "-o", str(out), "--calib", str(sensor_dataset),
        "--heldout", str(heldout), "--l2-in-numpy",
    )  # fmt: skip
    assert code == 0
    m = load_manifest(out)
    assert m.modality == "sensor" and m.sample_rate == 50 and m.channels == 6
    assert m.channel_names == ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    assert m.features == [6, 100] and m.frontend.kind == "sensor" and m.frontend.normalised
    assert m.models["int8"].ops is not None and m.models["int8"].ops[-1] == "FULLY_CONNECTED"
    info = scan_dataset(heldout)
    ours = embed_dataset(BundleEmbedder(out), info, progress=False)
    ref = embed_dataset(CheckpointEmbedder(tmp_path / "run" / "best.pt"), info, progress=False)
    assert _cosines(ours.embeddings, ref.embeddings).min() >= 0.999
