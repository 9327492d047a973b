"""``edgesiam bench --quick`` on the tiny audio bundle: the JSON, the markdown table, the plot."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from edgesiam.tools.bench import measure, report
from edgesiam.tools.bench.cli import add_bench_parser


def bench(*args: str) -> int:
    parser = argparse.ArgumentParser(prog="edgesiam")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args(["bench", *args])
    code: int = parsed.func(parsed)
    return code


@pytest.fixture()
def bundles(audio_bundle: Path, tmp_path: Path) -> Path:
    root = tmp_path / "bundles"
    shutil.copytree(audio_bundle, root / audio_bundle.name)
    return root


def positive(value: object) -> bool:
    return isinstance(value, int | float) and value > 0 and value == value


def test_quick_bench_writes_json_table_and_plot(
    bundles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    plots = tmp_path / "plots"
    md = tmp_path / "bench.md"
    code = bench(
        "--bundles",
        str(bundles),
        "--quick",
        "--skip-mqtt",
        "--skip-rss",
        "--runs",
        str(tmp_path / "no-runs"),
        "--json",
        str(out),
        "--plots",
        str(plots),
        "--markdown",
        str(md),
        "-q",
    )
    assert code == 0
    data = json.loads(out.read_text())
    for key in (
        "bundles",
        "pipeline_ms_per_audio_second",
        "pipeline_audio_rtf",
        "matching",
        "device_rss",
        "mqtt",
        "peers",
        "goals",
        "machine",
    ):
        assert key in data, key
    assert positive(data["pipeline_ms_per_audio_second"])
    assert 0 < data["pipeline_audio_rtf"] < 1  # keeps up with a live stream
    assert data["pipeline_imu_rtf"] is None  # no sensor bundle here
    name = next(iter(bundles.iterdir())).name
    entry = data["bundles"][name]
    assert entry["modality"] == "audio"
    assert positive(entry["sizes"]["models_bytes"]["int8"])
    for key in ("tflite_int8", "tflite_float32"):
        lat = entry["latency"][key]
        assert positive(lat["p50_ms"]) and lat["p95_ms"] >= lat["p50_ms"]
    assert entry["latency"]["torch_eager"]["status"] == "no checkpoint"
    pipe = entry["pipeline"]
    assert pipe["windows"] > 0 and positive(pipe["window_ms_p50"])
    assert pipe["dominant_stage"] in ("frontend", "model", "matching")
    assert abs(sum(pipe["stage_share"].values()) - 1) < 0.01
    assert pipe["profile_top"]
    sizes = data["matching"]["sizes"]
    assert set(sizes) == {"1", "100", "1000"}
    assert all(positive(v["p50_ms"]) for v in sizes.values())
    centred = data["matching"]["centred"]
    assert set(centred) == set(sizes) and all(positive(v["p50_ms"]) for v in centred.values())
    assert data["device_rss"] == {"status": "skipped"}
    assert data["mqtt"] == {"status": "skipped"}
    assert data["goals"]["device_rss_mb"]["met"] is None

    table = md.read_text()
    assert table == capsys.readouterr().out.rstrip("\n") + "\n"
    rows = [line for line in table.splitlines() if line.startswith(f"| {name} |")]
    assert len(rows) == 1
    assert (plots / "matching_latency.png").stat().st_size > 1000
    assert data["plots"] == [str(plots / "matching_latency.png")]


def test_torch_eager_measured_from_a_checkpoint(tiny_audio_model: Path, audio_bundle: Path) -> None:
    res = measure.model_latency(audio_bundle, runs=5, warmup=1, checkpoint=tiny_audio_model)
    assert positive(res["torch_eager"]["p50_ms"])


def test_table_has_a_row_per_bundle() -> None:
    def entry(modality: str) -> dict[str, object]:
        return {
            "modality": modality,
            "sizes": {"models_bytes": {"int8": 1000, "float32": 4000}},
            "latency": {
                "torch_eager": {"status": "no checkpoint"},
                "tflite_int8": {"p50_ms": 0.1, "p95_ms": 0.2},
                "tflite_float32": {"p50_ms": 0.2, "p95_ms": 0.3},
            },
            "pipeline": {
                "ms_per_second": 1.0,
                "real_time_factor": 0.001,
                "dominant_stage": "model",
                "stage_share": {"frontend": 0.2, "model": 0.7, "matching": 0.1},
            },
        }

    data = {
        "bundles": {"a": entry("audio"), "b": entry("sensor")},
        "matching": {"dim": 8, "sizes": {"1": {"p50_ms": 0.01, "p95_ms": 0.02}}},
        "device_rss": {"status": "skipped"},
        "mqtt": {"status": "skipped"},
    }
    data["goals"] = measure.goals(data)
    md = report.markdown(data)
    assert "| a | audio |" in md and "| b | sensor |" in md
    assert "no checkpoint" in md


def test_no_bundles_is_an_error(tmp_path: Path) -> None:
    assert bench("--bundles", str(tmp_path), "--quick", "-q") == 2


def test_accuracy_on_the_same_held_out_trials(
    audio_bundle: Path, audio_heldout: Path, tmp_path: Path
) -> None:
    from edgesiam.tools.bench.accuracy import accuracy_all

    data = tmp_path / "data"
    (data / "speech").mkdir(parents=True)
    shutil.copytree(audio_heldout, data / "speech" / "test")
    result = accuracy_all(
        {"speaker": audio_bundle, "events": audio_bundle, "unknown": audio_bundle},
        data,
        plots=tmp_path / "plots",
        episodes=50,
        peers=False,
    )
    assert set(result) == {"speaker:speech/test", "events:events/test"}
    missing = result["events:events/test"]
    assert missing["status"] == "not prepared"
    assert "edgesiam data prepare events" in missing["reason"]
    entry = result["speaker:speech/test"]
    assert entry["status"] == "ok" and entry["recordings"] == 36 and entry["labels"] == 6
    assert set(entry["systems"]) == {"edgesiam int8", "MFCC statistics"}
    for metrics in entry["systems"].values():
        assert 0.0 <= metrics["eer"] <= 1.0
        assert 0.0 <= metrics["way5_shot1"] <= 1.0
    assert Path(entry["det_plot"]).stat().st_size > 1000
    table = report.accuracy_table({"accuracy": result})
    assert "| edgesiam int8 |" in table and "| MFCC statistics |" in table
    assert "not prepared" in table


def test_size_goals_are_per_tier() -> None:
    """A ``-base`` bundle is held to the base tier's limit, every other bundle to the tiny one's."""

    def entry(int8_bytes: int) -> dict[str, object]:
        return {"sizes": {"models_bytes": {"int8": int8_bytes}}}

    data: dict[str, object] = {
        "bundles": {
            "speaker": entry(146_000),
            "events": entry(149_000),
            "speaker-base": entry(510_000),
        }
    }
    goals = measure.goals(data)
    assert goals["int8_model_kb"] == {"value": 149.0, "goal": 150.0, "op": "<=", "met": True}
    assert goals["int8_model_kb_base"] == {"value": 510.0, "goal": 1000.0, "op": "<=", "met": True}
    data["bundles"] = {"speaker": entry(151_000), "speaker-base": entry(1_200_000)}
    goals = measure.goals(data)
    assert goals["int8_model_kb"]["met"] is False and goals["int8_model_kb_base"]["met"] is False
    data["bundles"] = {"speaker": entry(146_000)}
    assert measure.goals(data)["int8_model_kb_base"] == {
        "value": None,
        "goal": 1000.0,
        "op": "<=",
        "met": None,
    }


def test_goal_against_the_cheapest_peer() -> None:
    data: dict[str, object] = {
        "bundles": {},
        "peers": {
            "a": {"ms_per_audio_second": 10.0, "ratio_to_ours": 20.0},
            "b": {"ms_per_audio_second": 4.0, "ratio_to_ours": 8.0},
            "c": {"status": "not installable", "ratio_to_ours": None},
        },
    }
    goal = measure.goals(data)["cheapest_peer_ratio"]
    assert goal == {"value": 8.0, "goal": 10.0, "op": ">=", "met": False}
    data["peers"] = {"status": "not measured (--quick)"}
    assert measure.goals(data)["cheapest_peer_ratio"]["met"] is None
