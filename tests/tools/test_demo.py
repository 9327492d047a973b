"""``edgesiam demo``: data → bundle → enroll → stream → runtime → MQTT events → scored summary.

The default test builds a tiny data root from the generated voices of ``tests/support/signals.py`` (with a
``SUMMARY.json`` so the speech recipe counts as prepared) and runs the demo with the tiny session
bundle and the embedded amqtt broker. The slow test runs the real thing: the shipped
``export/speaker`` bundle on the real held-out speakers of ``data/speech/test`` (made by
``make demo`` or ``make data``).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from edgesiam.errors import BundleError, DataError
from edgesiam.tools.demo.cli import add_demo_parser
from edgesiam.tools.demo.scoring import DemoReport, Segment, score_events
from tests.support.signals import write_audio_dataset

ROOT = Path(__file__).resolve().parents[2]
REAL_BUNDLE = ROOT / "export" / "speaker"
REAL_DATA = ROOT / "data"

pytest.importorskip("amqtt", reason="the embedded broker needs edgesiam[broker]")
pytest.importorskip("paho.mqtt", reason="the subscriber needs paho-mqtt")


def demo_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgesiam")
    add_demo_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def run_cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, DemoReport]:
    parsed = demo_parser().parse_args(["demo", *args])
    code = parsed.func(parsed)
    out = capsys.readouterr().out
    workdir = Path(parsed.workdir)
    data = json.loads((workdir / "summary.json").read_text())
    return code, out, DemoReport(**data)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ROOT/speech/test``: 6 generated 'speakers' × 8 clips, marked as a prepared recipe."""
    from edgesiam.data.recipes import get_recipe

    root = tmp_path_factory.mktemp("demo_data")
    write_audio_dataset(root / "speech" / "test", labels=6, per_label=8, seed=3)
    summary = {"name": "speech", "version": get_recipe("speech").version}
    (root / "speech" / "SUMMARY.json").write_text(json.dumps(summary))
    return root


def check_report(report: DemoReport, out: str, events: bool = True) -> None:
    """The numbers add up, and the events really came over MQTT (``events``: there were some)."""
    assert report.events_received == report.events_decided
    assert report.events_received > 0 or not events
    assert report.hits + report.false_matches == report.events_received
    assert (
        report.false_never_enrolled + report.false_wrong_label + report.false_noise
        == report.false_matches
    )
    assert report.detected_turns + report.missed_turns == report.enrolled_turns > 0
    assert report.hits >= 0 and report.detected_turns <= report.hits
    assert report.windows > 0 and report.windows_per_s > 0 and 0 < report.real_time_factor < 1
    seqs = [e["seq"] for e in report.events]
    assert seqs == list(range(1, len(seqs) + 1))  # a fresh state dir: every seq, once
    assert len({e["id"] for e in report.events}) == len(seqs)
    assert all(e["received"] > 0 for e in report.events)  # stamped by the subscriber
    assert report.statuses[:1] == ["online"] and report.statuses[-1] == "offline"
    # every event of both runs was printed live, and the summary is printed
    before = report.before["events_received"] if report.before else 0
    assert out.count(" seq ") == report.events_received + before
    for line in ("summary", "hits", "false matches", "misses", "windows/s", "real-time factor"):
        assert line in out


def test_the_demo_end_to_end_on_the_tiny_bundle(
    audio_bundle: Path,
    tiny_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, report = run_cli(
        *("--bundle", str(audio_bundle), "--data", str(tiny_data)),
        *("--labels", "2", "--enroll-clips", "2", "--seed", "1"),
        *("--workdir", str(tmp_path / "demo")),
        capsys=capsys,
    )
    assert code == 0
    check_report(report, out)
    assert report.hits > 0
    assert len(report.enrolled) == 2 and len(report.never_enrolled) == 3
    assert not set(report.enrolled) & set(report.never_enrolled)
    assert report.broker.startswith("embedded amqtt (mqtt://127.0.0.1:")
    # the truth file and the stream are there, and the enrolment clips stay out of the stream
    truth = json.loads((tmp_path / "demo" / "stream.json").read_text())
    assert {t["label"] for t in truth} == set(report.enrolled) | set(report.never_enrolled)
    assert (tmp_path / "demo" / "stream.wav").stat().st_size > 0
    from edgesiam.runtime.gallery_store import GalleryStore

    gallery = GalleryStore(tmp_path / "demo" / "gallery.npz").list()
    enrolled_from = {(info.label, src) for info in gallery for src in info.sources}
    streamed = {(t["label"], clip) for t in truth for clip in t["clips"]}
    assert len(enrolled_from) == 4 and not enrolled_from & streamed
    # the calibration step ran on speakers neither enrolled nor in the stream, and both runs show
    assert "summary (before calibration)" in out and "summary (after calibration)" in out
    assert report.phase == "after calibration" and report.before is not None
    assert set(report.calibration or {}) == set(report.enrolled)
    background = {p.name for p in (tmp_path / "demo" / "background").iterdir()}
    assert background and not background & {t["label"] for t in truth}
    assert "calibration    before → after" in out
    # the same stream calibrated for more false matches per hour: lower thresholds, one row each
    assert [row["max_false_per_hour"] for row in report.tradeoff] == [1.0, 10.0, 60.0]
    main = report.calibration or {}
    for label in report.enrolled:
        found = [main[label]] + [row["thresholds"][label] for row in report.tradeoff]
        assert found == sorted(found, reverse=True) and found[0] > found[-1]
    for row in report.tradeoff:
        assert 0 <= row["detected_turns"] <= row["enrolled_turns"] == report.enrolled_turns
        assert f"{row['max_false_per_hour']:>5g} per hour: hits {row['hits']}," in out
    assert out.count(" seq ") == report.events_received + report.before["events_received"]


def test_the_same_seed_gives_the_same_plan_and_events(
    audio_bundle: Path,
    tiny_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def once(name: str) -> tuple[DemoReport, str]:
        _, _, report = run_cli(
            *("--bundle", str(audio_bundle), "--data", str(tiny_data), "--labels", "2"),
            *("--enroll-clips", "2", "--others", "1", "--turns", "1", "--seed", "5"),
            *("--workdir", str(tmp_path / name)),
            capsys=capsys,
        )
        return report, (tmp_path / name / "stream.json").read_text()

    first, truth = once("a")
    again, truth_again = once("a")  # the same workdir again: a fresh state, seq from 1
    assert truth == truth_again
    assert (first.enrolled, first.never_enrolled) == (again.enrolled, again.never_enrolled)
    key = [(e["label"], e["offset_s"], e["seq"]) for e in first.events]
    assert key == [(e["label"], e["offset_s"], e["seq"]) for e in again.events]


def test_the_plan_enrolls_different_people_and_keeps_them_out_of_the_stream_and_background(
    tmp_path: Path,
) -> None:
    """Hedgewars packs may be one actor, a kt- and a kl- label of one language one translator: the
    demo enrolls at most one label per person, and no never-enrolled or background speaker may be
    one of the enrolled people or of the stream's visitors."""
    from edgesiam.data.recipes.speech import person_of
    from edgesiam.tools.demo.run import _background
    from edgesiam.tools.demo.stream import make_plan

    names = ["hw-british", "hw-pirate", "hw-russian", "kt-ca", "kl-ca", "kl-cs", "kt-el", "kt-wa"]
    test_dir = write_audio_dataset(tmp_path / "test", labels=len(names), per_label=6, seed=1)
    for i, name in enumerate(names):
        (test_dir / f"voice{i}").rename(test_dir / name)
    val_dir = write_audio_dataset(tmp_path / "val", labels=2, per_label=3, seed=2)
    for i, name in enumerate(["hw-singer", "kt-nn"]):  # validation speakers join the background
        (val_dir / f"voice{i}").rename(val_dir / name)
    assert person_of("hw-british") == person_of("hw-surfer") == "hedgewars"
    assert person_of("kt-ca") == person_of("kl-ca") != person_of("kt-el")
    assert person_of("kt-nn") == person_of("kl-nb")  # Norwegian, one language group
    assert person_of("voice0") == "voice0"  # any other folder is its own person
    for seed in range(12):
        plan = make_plan(test_dir, labels=3, enroll_clips=2, others=2, seed=seed, window_s=1.0)
        people = [person_of(s) for s in plan.enrolled]
        assert len(plan.enrolled) == 3 and len(set(people)) == 3
        assert not {person_of(s) for s in plan.never_enrolled} & set(people)
        background = _background(plan, test_dir, tmp_path / f"work{seed}", 16000)
        spare = sorted(p.stem for p in background.iterdir()) if background else []
        visitors = {person_of(s) for s in plan.enrolled + plan.never_enrolled}
        assert all(person_of(s) not in visitors for s in spare)
        everyone = [*names, "hw-singer", "kt-nn"]
        assert set(spare) == {n for n in everyone if person_of(n) not in visitors}
        assert "kt-nn" in spare  # no test label is Norwegian
    # each background speaker is one recording: their clips back to back, as a device hears talk
    assert background is not None
    talk, rate = sf.read(str(background / "kt-nn.wav"))
    clips = sum(sf.info(str(f)).duration for f in sorted((val_dir / "kt-nn").iterdir()))
    assert rate == 16000 and len(talk) / rate == pytest.approx(clips + 0.5 + 3 * 0.15, abs=0.01)
    with pytest.raises(DataError, match="different people"):
        make_plan(test_dir, labels=6, enroll_clips=2, others=0, seed=0, window_s=1.0)


def test_scoring_hits_misses_and_false_matches() -> None:
    segments = [
        Segment("alice", 0.5, 4.0, True),
        Segment("mallory", 4.6, 8.0, False),
        Segment("bob", 8.6, 12.0, True),
        Segment("alice", 12.6, 16.0, True),
    ]

    def event(seq: int, label: str, offset: float) -> dict[str, Any]:
        return {"seq": seq, "id": f"d-{seq}", "label": label, "score": 0.9, "threshold": 0.8,
                "offset_s": offset}  # fmt: skip

    scored = score_events(
        [
            event(1, "alice", 2.0),  # hit
            event(2, "alice", 3.5),  # a second hit in the same turn
            event(3, "alice", 6.0),  # during mallory, never enrolled
            event(4, "alice", 10.0),  # bob is talking
            event(5, "bob", 9.0),  # the window [8, 9] overlaps bob's turn: hit
            event(6, "bob", 17.5),  # after the end: noise
        ],
        segments,
        window_s=1.0,
    )
    verdicts = [s.verdict for s in scored]
    assert verdicts == ["hit", "hit", "never_enrolled", "wrong_label", "hit", "noise"]
    assert {s.segment for s in scored if s.hit} == {0, 2}  # alice's second turn was missed
    assert scored[0].speaking == ["alice"] and scored[5].speaking == []


def test_a_missing_bundle_or_data_is_a_clear_error(
    audio_bundle: Path, tiny_data: Path, tmp_path: Path
) -> None:
    from edgesiam.tools.demo.run import run_demo

    with pytest.raises(BundleError, match=r"no such bundle.*export/speaker"):
        run_demo(tmp_path / "nope", tiny_data, workdir=tmp_path / "w", out=io.StringIO())
    (tmp_path / "not-a-bundle").mkdir()
    with pytest.raises(BundleError, match="not a bundle directory"):
        run_demo(tmp_path / "not-a-bundle", tiny_data, workdir=tmp_path / "w", out=io.StringIO())
    empty = tmp_path / "data"
    (empty / "speech" / "test").mkdir(parents=True)
    (empty / "speech" / "SUMMARY.json").write_text(
        json.dumps({"name": "speech", "version": json.loads(
            (tiny_data / "speech" / "SUMMARY.json").read_text())["version"]})
    )  # fmt: skip
    with pytest.raises(DataError, match=r"no held-out speakers.*edgesiam data prepare speech"):
        run_demo(audio_bundle, empty, workdir=tmp_path / "w", out=io.StringIO())
    with pytest.raises(DataError, match=r"speaker\(s\) have at least"):
        run_demo(audio_bundle, tiny_data, labels=7, workdir=tmp_path / "w", out=io.StringIO())


@pytest.mark.slow
@pytest.mark.skipif(
    not (REAL_DATA / "speech" / "test").is_dir() or not REAL_BUNDLE.is_dir(),
    reason="needs data/speech/test (make demo or make data) and export/speaker",
)
def test_the_demo_on_real_speech_with_the_shipped_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, report = run_cli(
        *("--bundle", str(REAL_BUNDLE), "--data", str(REAL_DATA)),
        *("--labels", "2", "--enroll-clips", "2", "--workdir", str(tmp_path / "demo")),
        capsys=capsys,
    )
    assert code == 0
    # calibrated for one false match a day, the device may stay silent on this short stream
    check_report(report, out, events=False)
    assert report.before is not None and report.before["hits"] > 0  # at the bundle's threshold
    assert report.false_matches <= report.before["false_matches"]
    assert all(label[:3] in ("kt-", "kl-", "hw-") for label in report.enrolled)
    assert report.real_time_factor < 0.5


def test_the_tradeoff_targets_are_parsed_and_checked() -> None:
    parser = demo_parser()
    assert parser.parse_args(["demo"]).tradeoff == (1.0, 10.0, 60.0)
    assert parser.parse_args(["demo", "--tradeoff", "0.5,3"]).tradeoff == (0.5, 3.0)
    assert parser.parse_args(["demo", "--tradeoff", "none"]).tradeoff == ()
    defaults = parser.parse_args(["demo"])
    assert (defaults.centre, defaults.aggregate) == ("background", "mean")  # the speaker profiles
    for bad in ("ten", "1,-2", "0"):
        with pytest.raises(SystemExit):
            parser.parse_args(["demo", "--tradeoff", bad])
