"""The bundle manifest and its file hashes (no TensorFlow, no torch: this is device code)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgesiam.errors import BundleError, EdgesiamError
from edgesiam.model.bundle import (
    MANIFEST_NAME,
    BundleModel,
    Calibration,
    EdgeTPUInfo,
    FrontEndInfo,
    Gate,
    GateCheck,
    Manifest,
    Parity,
    Source,
    TensorSpec,
    Thresholds,
    ThresholdSet,
    adaptive_s_norm,
    cohort_statistics,
    fmr_key,
    is_bundle,
    load_manifest,
    read_manifest,
    sha256_file,
    write_manifest,
)
from tests.support.paths import EVENTS_BUNDLE
from tests.support.signals import voice


def _thresholds(trials: str) -> ThresholdSet:
    return ThresholdSet(
        trials=trials,  # type: ignore[arg-type]
        genuine=10,
        impostor=100,
        eer=0.05,
        eer_threshold=0.6,
        at_fmr={"0.01": 0.7, "0.001": 0.8, "0.0001": 0.8},
        supported={"0.01": True, "0.001": False, "0.0001": False},
    )


def make_manifest(**changes: object) -> Manifest:
    tensor = TensorSpec(
        name="x", shape=[1, 10, 4], dtype="int8", scale=0.05, zero_point=-3, layout="NTC"
    )
    out = TensorSpec(name="y", shape=[1, 8], dtype="int8", scale=1 / 128, zero_point=0, layout="ND")
    fields: dict[str, object] = {
        "name": "demo",
        "created": "2026-01-01T00:00:00+00:00",
        "modality": "sensor",
        "sample_rate": 50,
        "channels": 4,
        "window": 10,
        "hop": 5,
        "window_s": 0.2,
        "hop_s": 0.1,
        "frontend": FrontEndInfo(
            kind="sensor", params={"channels": 4, "clip": 8.0}, normalised=False
        ),
        "features": [4, 10],
        "embedding_dim": 8,
        "models": {
            "int8": BundleModel(
                file="model.tflite", variant="int8", bytes=4, input=tensor, output=out, ops=["MEAN"]
            )
        },
        "thresholds": Thresholds(
            data="heldout",
            labels=3,
            recordings=9,
            recording=_thresholds("recording-vs-recording"),
            window=_thresholds("window-vs-recording"),
        ),
        "parity": Parity(
            windows=20,
            recordings=9,
            int8_mean_cosine=0.9999,
            int8_min_cosine=0.999,
            float32_mean_cosine=1.0,
            float32_min_cosine=1.0,
            eer_torch=0.05,
            eer_float32=0.05,
            eer_int8=0.05,
            eer_delta_points=0.0,
        ),
        "gate": Gate(
            passed=True,
            forced=False,
            limits={"min_mean_cosine": 0.999},
            checks=[GateCheck(name="parity.mean_cosine", passed=True, detail="ok")],
        ),
        "edgetpu": EdgeTPUInfo(static_compatible=True, offenders=[]),
        "calibration": Calibration(data="train", windows=200, recordings=10, seed=0),
        "source": Source(
            checkpoint="best.pt", sha256="0" * 64, recipe="r", epoch=1, train_data=None
        ),
        "versions": {"edgesiam": "0.1.0"},
    }
    fields.update(changes)
    return Manifest.model_validate(fields)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    root = tmp_path / "demo"
    root.mkdir()
    (root / "model.tflite").write_bytes(b"TFL3")
    np.savez(root / "frontend.npz", kind=np.array("sensor"), channels=np.array(4))
    write_manifest(root, make_manifest())
    return root


def test_manifest_round_trip_with_hashes_of_every_file(bundle: Path) -> None:
    manifest = load_manifest(bundle)
    assert manifest == make_manifest(files=manifest.files)
    assert set(manifest.files) == {"model.tflite", "frontend.npz"}
    assert manifest.files["model.tflite"] == sha256_file(bundle / "model.tflite")
    assert manifest.schema_version == 1 and manifest.format == "edgesiam-bundle"
    assert is_bundle(bundle) and not is_bundle(bundle / "model.tflite")
    # the JSON on disk is what the schema dumps
    on_disk = json.loads((bundle / MANIFEST_NAME).read_text())
    assert Manifest.model_validate(on_disk) == manifest


def test_tampered_file_is_refused_naming_the_file(bundle: Path) -> None:
    (bundle / "model.tflite").write_bytes(b"TFL3 but evil")
    with pytest.raises(BundleError, match=r"model\.tflite does not match its sha256"):
        load_manifest(bundle)
    read_manifest(bundle)  # reading without verification still works (for diagnosis)


def test_missing_file_is_refused(bundle: Path) -> None:
    (bundle / "frontend.npz").unlink()
    with pytest.raises(BundleError, match=r"frontend\.npz is missing"):
        load_manifest(bundle)


def test_manifest_rejects_unknown_keys_and_other_schema_versions(bundle: Path) -> None:
    data = json.loads((bundle / MANIFEST_NAME).read_text())
    data["surprise"] = 1
    (bundle / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(BundleError, match="surprise"):
        load_manifest(bundle)
    data.pop("surprise")
    data["schema_version"] = 99
    (bundle / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(BundleError, match="newer edgesiam"):
        load_manifest(bundle)


def test_manifest_refers_only_to_existing_files(tmp_path: Path) -> None:
    (tmp_path / "model.tflite").write_bytes(b"x")
    with pytest.raises(BundleError, match=r"missing file\(s\): frontend\.npz"):
        write_manifest(tmp_path, make_manifest())


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        load_manifest(tmp_path)
    assert issubclass(BundleError, EdgesiamError)


def test_fmr_keys() -> None:
    assert [fmr_key(f) for f in (1e-2, 1e-3, 1e-4)] == ["0.01", "0.001", "0.0001"]


def test_adaptive_s_norm_matches_its_formula() -> None:
    rng = np.random.default_rng(0)
    a, b, cohort = rng.normal(size=(3, 8)), rng.normal(size=(4, 8)), rng.normal(size=(30, 8))
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    sa, sb = cohort_statistics(a, cohort, 5), cohort_statistics(b, cohort, 5)
    raw = unit(a) @ unit(b).T
    got = adaptive_s_norm(raw, sa, sb)
    top = np.sort(unit(a)[1] @ unit(cohort).T)[-5:]
    assert sa[0][1] == pytest.approx(top.mean()) and sa[1][1] == pytest.approx(top.std())
    expected = 0.5 * ((raw[1, 2] - sa[0][1]) / sa[1][1] + (raw[1, 2] - sb[0][2]) / sb[1][2])
    assert got[1, 2] == pytest.approx(expected)


def _forced(root: Path) -> None:
    """Rewrite a bundle's manifest as if it had been exported with --force past a failed gate."""
    manifest = read_manifest(root)
    gate = Gate(
        passed=False,
        forced=True,
        limits={"min_mean_cosine": 0.999},
        checks=[
            GateCheck(name="parity.mean_cosine", passed=False, detail="mean cosine 0.97 < 0.999"),
            GateCheck(name="graph.int8_io", passed=True, detail="int8 in and out"),
        ],
    )
    write_manifest(root, manifest.model_copy(update={"gate": gate}))


def test_a_forced_bundle_warns_once_naming_its_failed_checks(
    bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    load_manifest(bundle)
    assert not [r for r in caplog.records if r.name == "edgesiam.model.bundle"]  # a passing bundle
    _forced(bundle)
    for _ in range(3):
        load_manifest(bundle)
    warnings = [r.getMessage() for r in caplog.records if r.name == "edgesiam.model.bundle"]
    assert len(warnings) == 1
    assert "failed its export gate" in warnings[0] and "--force" in warnings[0]
    assert "parity.mean_cosine: mean cosine 0.97 < 0.999" in warnings[0]
    assert "graph.int8_io" not in warnings[0]  # only the failed checks are named


def test_every_command_loading_a_forced_bundle_says_so(tmp_path: Path) -> None:
    """A real command on a real (copied) bundle: `edgesiam enroll` prints the warning once."""
    import shutil
    import subprocess
    import sys

    import soundfile as sf

    root = tmp_path / "events"
    shutil.copytree(EVENTS_BUNDLE, root)
    _forced(root)
    clip = tmp_path / "voice.wav"
    sf.write(clip, voice(2.0, seed=3), 16000, subtype="PCM_16")
    done = subprocess.run(
        [sys.executable, "-m", "edgesiam", "enroll", "--bundle", str(root), "--gallery",
         str(tmp_path / "g.npz"), "--label", "voice", str(clip)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("failed its export gate") == 1, done.stderr
    assert "parity.mean_cosine" in done.stderr
