"""The device pipeline end to end, with a tiny real int8 bundle and generated voices.

The stream concatenates held-out recordings of enrolled labels and of labels never enrolled;
events must name the enrolled label of a segment their windows overlap, and never fire on the
others. (No silence between them: the tiny test model never heard silence in training and
scores it close to one of the voices.)
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from edgesiam.data.readers import read_audio
from edgesiam.errors import ConfigError, DataError
from edgesiam.model.embedders import embed_recording
from edgesiam.model.interpreters import load_model
from edgesiam.runtime.chunk_queue import ChunkQueue
from edgesiam.runtime.config import RuntimeConfig
from edgesiam.runtime.enrollment import enroll_recordings
from edgesiam.runtime.gallery_store import GalleryStore, model_sha256
from edgesiam.runtime.pipeline import Runtime
from edgesiam.runtime.publishers import MemoryPublisher
from edgesiam.runtime.sources.base import StreamFormat
from edgesiam.runtime.sources.file import FileSource
from edgesiam.runtime.sources.mqtt import MqttSensorSource
from edgesiam.runtime.sources.stdin import StdinSource
from tests.support.cli import run_export
from tests.support.device import RUN_CLI
from tests.support.mqtt import MosquittoBroker, Subscriber, wait_until
from tests.support.runtime import make_config
from tests.support.signals import write_sensor_dataset

RATE = 16000
ENROLLED = ("voice0", "voice1", "voice2")
STREAM = ("voice0", "voice4", "voice1", "voice5", "voice2")


@dataclass(frozen=True)
class Stream:
    path: Path
    samples: np.ndarray
    segments: list[tuple[str, float, float]]

    def label_at(self, start_s: float, end_s: float) -> set[str]:
        """Labels of the segments that overlap ``[start_s, end_s]``."""
        return {label for label, a, b in self.segments if a < end_s and start_s < b}


@pytest.fixture(scope="module")
def gallery(
    audio_bundle: Path,
    audio_heldout: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    embedder = load_model(audio_bundle)
    path = tmp_path_factory.mktemp("gallery") / "gallery.npz"
    store = GalleryStore(path, model_sha256(embedder.manifest))
    for label in ENROLLED:
        takes = sorted((audio_heldout / label).glob("*.wav"))[:2]
        enroll_recordings(store, embedder, label, takes)
    return path


@pytest.fixture(scope="module")
def stream(audio_heldout: Path, tmp_path_factory: pytest.TempPathFactory) -> Stream:
    parts: list[np.ndarray] = []
    segments = []
    at = 0
    for label in STREAM:
        take = read_audio(sorted((audio_heldout / label).glob("*.wav"))[2], RATE)
        segments.append((label, at / RATE, (at + take.size) / RATE))
        parts.append(take)
        at += take.size
    samples = np.concatenate(parts)
    path = tmp_path_factory.mktemp("stream") / "stream.wav"
    sf.write(path, samples, RATE, subtype="PCM_16")
    return Stream(path, sf.read(path, dtype="float32")[0], segments)


def run_once(config: RuntimeConfig, **kw: Any) -> tuple[Runtime, MemoryPublisher]:
    runtime = Runtime(config, publisher=lambda outbox: MemoryPublisher("test-pi", outbox), **kw)
    runtime.run()
    assert isinstance(runtime.publisher, MemoryPublisher)
    return runtime, runtime.publisher


def summary_of(events: list[dict[str, Any]]) -> list[tuple[str, float, float]]:
    return [(e["label"], e["offset_s"], e["score"]) for e in events]


# --- labels and the contract ---------------------------------------------------------------------


def test_events_name_the_enrolled_label_and_never_fire_on_others(
    audio_bundle: Path,
    gallery: Path,
    stream: Stream,
    tmp_path: Path,
) -> None:
    runtime, pub = run_once(make_config(audio_bundle, gallery, stream.path, tmp_path))
    window_s = runtime.embedder.window / RATE
    events = pub.events
    assert events, "no event at all"
    for event in events:
        overlapped = stream.label_at(event["offset_s"] - window_s, event["offset_s"])
        assert event["label"] in overlapped, (event, overlapped)
    for label in ENROLLED:
        assert any(e["label"] == label for e in events), f"no event for {label}"
    assert {e["label"] for e in events} <= set(ENROLLED)
    # the contract (docs/MQTT.md)
    first = events[0]
    for key in ("id", "seq", "device", "ts", "label", "score", "threshold", "offset_s", "model"):
        assert key in first
    assert first["device"] == "test-pi" and first["schema"].startswith("edgesiam.event.")
    assert first["threshold"] == pytest.approx(runtime.embedder.threshold(1e-3), abs=1e-4)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert len({e["id"] for e in events}) == len(events)
    statuses = pub.on_topic(pub.topics.status)
    assert statuses[0] == "online" and statuses[-1] == "offline"
    metrics = pub.on_topic(pub.topics.metrics)[-1]
    for key in ("windows", "windows_per_s", "inference_ms_p50", "inference_ms_p95", "rss_mb"):
        assert key in metrics
    assert metrics["dropped_frames"] == 0 and metrics["outbox_depth"] == 0
    assert metrics["windows"] == 1 + (stream.samples.size - runtime.embedder.window) // 4000


@pytest.mark.parametrize("chunk_s", [0.013, 0.77])
def test_chunk_size_does_not_change_the_events(
    audio_bundle: Path,
    gallery: Path,
    stream: Stream,
    tmp_path: Path,
    chunk_s: float,
) -> None:
    def events_with(chunk: float, folder: str) -> tuple[list[Any], list[Any]]:
        source = {"type": "file", "path": str(stream.path), "chunk_s": chunk}
        _, pub = run_once(make_config(audio_bundle, gallery, source, tmp_path / folder))
        near = [(n["label"], n["offset_s"], n["score"]) for n in pub.on_topic(pub.topics.near_miss)]
        return summary_of(pub.events), near

    reference = events_with(0.1, "reference")
    assert reference[0]
    assert events_with(chunk_s, "other") == reference


def test_stdin_fed_through_a_pipe_gives_the_file_events(
    audio_bundle: Path,
    gallery: Path,
    stream: Stream,
    tmp_path: Path,
) -> None:
    """``producer | edgesiam run --source stdin: --no-mqtt``: the arecord use case (a recording
    piped in, so ``live=false``: the pipe waits for the pipeline instead of dropping)."""
    _, pub = run_once(make_config(audio_bundle, gallery, stream.path, tmp_path / "file"))
    pcm = sf.read(stream.path, dtype="int16")[0].astype("<i2").tobytes()
    producer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\ndata = sys.stdin.buffer.read()\n"
            "for i in range(0, len(data), 4093): sys.stdout.buffer.write(data[i:i + 4093])\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    consumer = subprocess.Popen(
        [
            *(sys.executable, "-c", RUN_CLI, "run", "--bundle", str(audio_bundle)),
            *("--gallery", str(gallery), "--source", "stdin:?live=false", "--no-mqtt"),
            *("--state-dir", str(tmp_path / "stdin"), "--device-id", "test-pi"),
        ],
        stdin=producer.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert producer.stdin is not None and producer.stdout is not None
    producer.stdout.close()  # the consumer holds it now
    producer.stdin.write(pcm)
    producer.stdin.close()
    out, err = consumer.communicate(timeout=120)
    producer.wait(10)
    assert consumer.returncode == 0, err[-3000:]
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert summary_of(events) == summary_of(pub.events) != []
    assert events[0]["source"] == "stdin" and "edgesiam run: end" in err


def run_cli(args: list[str], stdin: Any = None) -> tuple[list[dict[str, Any]], str]:
    """``edgesiam run ARGS --no-mqtt`` in its own process: (events printed, stderr)."""
    done = subprocess.run(
        [sys.executable, "-c", RUN_CLI, "run", *args, "--no-mqtt"],
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")], done.stderr


def test_a_recording_piped_into_stdin_loses_nothing_by_default(
    audio_bundle: Path,
    gallery: Path,
    stream: Stream,
    tmp_path: Path,
) -> None:
    """``cat rec.raw | edgesiam run --source stdin:``: nothing paces the pipe, yet nothing is
    dropped: the stream runs ahead of real time, so it is a recording and the pipeline waits."""
    samples = np.tile(stream.samples, 8)  # 49 s
    wav, raw = tmp_path / "long.wav", tmp_path / "long.raw"
    sf.write(wav, samples, RATE, subtype="PCM_16")
    raw.write_bytes(sf.read(wav, dtype="int16")[0].astype("<i2").tobytes())
    common = ["--bundle", str(audio_bundle), "--gallery", str(gallery), "--device-id", "test-pi"]
    by_file, file_err = run_cli(
        [*common, "--source", f"file:{wav}", "--state-dir", str(tmp_path / "s1")]
    )
    cat = subprocess.Popen(["cat", str(raw)], stdout=subprocess.PIPE)
    by_pipe, pipe_err = run_cli(
        [*common, "--source", "stdin:", "--state-dir", str(tmp_path / "s2")], cat.stdout
    )
    assert cat.wait(10) == 0
    assert "fell behind" not in pipe_err and "faster than real time" not in pipe_err
    windows = [line.split(" windows,")[0].rsplit(" ", 1)[1] for line in (file_err, pipe_err)]
    assert windows[0] == windows[1] and " 0 dropped samples" in pipe_err
    assert summary_of(by_pipe) == summary_of(by_file) != []


def test_windows_just_under_the_threshold_are_near_misses(
    audio_bundle: Path,
    gallery: Path,
    stream: Stream,
    tmp_path: Path,
) -> None:
    matching = {"threshold": 1.0, "near_miss_margin": 0.2}
    runtime, pub = run_once(
        make_config(audio_bundle, gallery, stream.path, tmp_path, matching=matching)
    )
    near = pub.on_topic(pub.topics.near_miss)
    assert len(near) == runtime.metrics.near_misses > 0
    for n in near:
        assert 0.8 <= n["score"] < 1.0 and n["threshold"] == 1.0
        assert n["label"] in ENROLLED and n["device"] == "test-pi" and n["model"]
        assert n["label"] in stream.label_at(n["offset_s"] - 0.5, n["offset_s"])


# --- bad input -----------------------------------------------------------------------------------


def test_nan_and_inf_samples_are_processed_not_fatal(
    audio_bundle: Path,
    gallery: Path,
    stream: Stream,
    tmp_path: Path,
) -> None:
    x = stream.samples.copy()
    start = int(stream.segments[2][1] * RATE) + 8000  # inside voice1
    x[start : start + 400] = np.nan
    x[start + 5000] = np.inf
    path = tmp_path / "glitch.wav"
    sf.write(path, x, RATE, subtype="FLOAT")
    for gate in ({"hangover": 2}, {"enabled": False}):
        runtime, pub = run_once(
            make_config(audio_bundle, gallery, path, tmp_path / str(gate), matching={"gate": gate})
        )
        assert runtime.metrics.windows == 1 + (x.size - runtime.embedder.window) // 4000
        labels = {e["label"] for e in pub.events}
        assert {"voice0", "voice2"} <= labels


def test_a_stream_that_cannot_fit_the_bundle_is_refused_clearly(
    audio_bundle: Path,
    gallery: Path,
    tmp_path: Path,
) -> None:
    odd_rate = {"type": "stdin", "sample_rate": 16001 * 9973}  # resampling it needs 10^8 phases
    with pytest.raises(ConfigError, match=r"cannot resample 159577973 → 16000"):
        Runtime(make_config(audio_bundle, gallery, odd_rate, tmp_path))
    with pytest.raises(ConfigError, match="mono audio"):
        Runtime(make_config(audio_bundle, gallery, {"type": "stdin", "channels": 2}, tmp_path))
    npy = tmp_path / "imu.npy"
    np.save(npy, np.zeros((100, 6), np.float32))
    with pytest.raises(ConfigError, match="sensor recording cannot feed an audio bundle"):
        Runtime(make_config(audio_bundle, gallery, npy, tmp_path))
    assert not list(tmp_path.glob("*.sqlite3-wal"))  # the outbox was closed again


def test_a_wav_of_another_rate_on_stdin_is_resampled_and_other_channels_refused(
    audio_bundle: Path,
    gallery: Path,
    stream: Stream,
    tmp_path: Path,
) -> None:
    """``arecord -r 48000 | edgesiam run --source stdin:``: the header's rate is resampled."""
    wav = tmp_path / "cd.wav"
    sf.write(wav, read_audio(stream.path, 48000), 48000, subtype="PCM_16")
    with open(wav, "rb") as fh:
        source = {"type": "stdin"}
        runtime, pub = run_once(
            make_config(audio_bundle, gallery, source, tmp_path / "a"), stdin=fh
        )
    reference, ref_pub = run_once(make_config(audio_bundle, gallery, stream.path, tmp_path / "b"))
    assert runtime.metrics.windows == reference.metrics.windows > 0
    assert [e["label"] for e in pub.events] == [e["label"] for e in ref_pub.events] != []
    sf.write(wav, np.zeros((44100, 2), np.float32), 44100, subtype="PCM_16")
    with open(wav, "rb") as fh:
        runtime = Runtime(make_config(audio_bundle, gallery, {"type": "stdin"}, tmp_path), stdin=fh)
        with pytest.raises(
            DataError, match=r"WAV at 44100 Hz, 2 channel.*arecord -f S16_LE -r 16000"
        ):
            runtime.run()


def test_another_models_gallery_is_refused(
    audio_bundle: Path,
    stream: Stream,
    tmp_path: Path,
) -> None:
    path = tmp_path / "other.npz"
    GalleryStore(path, "0" * 64, bundle_name="other").enroll("x", [np.ones(16, np.float32)])
    with pytest.raises(DataError, match="different model"):
        Runtime(make_config(audio_bundle, path, stream.path, tmp_path))


def test_silence_is_gated_before_the_model(
    audio_bundle: Path,
    gallery: Path,
    tmp_path: Path,
) -> None:
    quiet = tmp_path / "quiet.wav"
    noise = 0.001 * np.random.default_rng(0).standard_normal(3 * RATE)  # -60 dBFS
    sf.write(quiet, noise.astype(np.float32), RATE, subtype="PCM_16")
    runtime, pub = run_once(make_config(audio_bundle, gallery, quiet, tmp_path))
    assert runtime.metrics.windows == 11 and runtime.metrics.gated == 11
    assert len(runtime.metrics.inference) == 0 and pub.events == []


def test_no_gallery_yet_runs_and_matches_nothing(
    audio_bundle: Path,
    stream: Stream,
    tmp_path: Path,
) -> None:
    runtime, pub = run_once(make_config(audio_bundle, tmp_path / "none.npz", stream.path, tmp_path))
    assert pub.events == [] and runtime.metrics.windows > 0


# --- falling behind, stopping, state -------------------------------------------------------------


class BurstSource(FileSource):
    """A live source that delivers a whole recording at once: the loop must fall behind."""

    def __init__(self, path: Path) -> None:
        from edgesiam.runtime.sources.base import StreamFormat

        super().__init__(path, StreamFormat("audio", RATE, 1), chunk_s=0.05)
        self.live = True


def test_a_live_source_outrunning_the_loop_drops_and_counts(
    audio_bundle: Path,
    gallery: Path,
    stream: Stream,
    tmp_path: Path,
) -> None:
    config = make_config(audio_bundle, gallery, stream.path, tmp_path, processing={"queue_s": 0.2})
    source = BurstSource(stream.path)
    runtime = Runtime(config, publisher=lambda o: MemoryPublisher("test-pi", o), source=source)
    summary = runtime.run()
    total = stream.samples.size
    assert 0 < summary.dropped_frames < total
    assert runtime.metrics.samples + summary.dropped_frames == total
    assert summary.windows < 1 + (total - runtime.embedder.window) // 4000
    pub = runtime.publisher
    assert isinstance(pub, MemoryPublisher)
    metrics = pub.on_topic(pub.topics.metrics)[-1]
    assert metrics["dropped_frames"] == summary.dropped_frames
    for event in pub.events:
        assert event["offset_s"] <= total / RATE  # offsets stay true to the stream


def test_chunk_queue_blocks_or_drops() -> None:
    live = ChunkQueue(100, block=False)
    assert live.put(0, np.zeros((80, 1))) and not live.put(80, np.zeros((30, 1)))
    assert (live.dropped_samples, live.dropped_chunks) == (30, 1)
    assert live.get(0.1) is not None and live.put(110, np.zeros((500, 1)))  # empty: taken whole
    paced = ChunkQueue(100, block=True)
    paced.put(0, np.zeros((90, 1)))
    threading.Timer(0.2, lambda: paced.get(0.1)).start()
    started = time.monotonic()
    assert paced.put(90, np.zeros((90, 1))) and time.monotonic() - started >= 0.15
    paced.close()
    assert not paced.put(180, np.zeros((200, 1))) and paced.dropped_samples == 0


def test_chunk_queue_asks_a_callable_whether_to_wait() -> None:
    wait = [True]
    queue = ChunkQueue(100, block=lambda: wait[0])
    queue.put(0, np.zeros((90, 1)))
    threading.Timer(0.3, lambda: wait.__setitem__(0, False)).start()
    started = time.monotonic()
    assert not queue.put(90, np.zeros((90, 1)))  # waited while asked to, then dropped
    assert time.monotonic() - started >= 0.25 and queue.dropped_samples == 90


def test_a_drop_says_whether_the_device_is_too_slow_or_the_stream_is_a_recording(
    audio_bundle: Path,
    gallery: Path,
    stream: Stream,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = make_config(audio_bundle, gallery, stream.path, tmp_path, processing={"queue_s": 0.2})
    runtime = Runtime(
        config, publisher=lambda o: MemoryPublisher("test-pi", o), source=BurstSource(stream.path)
    )
    assert runtime.run().dropped_frames > 0
    assert "processing fell behind the live source file:" in caplog.text
    assert "faster than real time" not in caplog.text
    caplog.clear()
    pcm = (np.tile(stream.samples, 3) * 32767).astype("<i2").tobytes()
    producer = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert producer.stdin is not None and producer.stdout is not None
    threading.Thread(target=lambda: (producer.stdin.write(pcm), producer.stdin.close())).start()  # type: ignore[union-attr]
    source = StdinSource(StreamFormat("audio", RATE, 1), stream=producer.stdout, live=True)
    runtime = Runtime(config, publisher=lambda o: MemoryPublisher("test-pi", o), source=source)
    assert runtime.run().dropped_frames > 0
    producer.wait(10)
    assert "stdin delivers faster than real time" in caplog.text
    assert "--source stdin:?live=false" in caplog.text


def test_stop_from_another_thread_ends_cleanly_with_metrics_on_the_way(
    audio_bundle: Path,
    gallery: Path,
    stream: Stream,
    tmp_path: Path,
) -> None:
    source = {"type": "file", "path": str(stream.path), "realtime": True}
    config = make_config(audio_bundle, gallery, source, tmp_path, metrics={"interval_s": 0.1})
    runtime = Runtime(config, publisher=lambda o: MemoryPublisher("test-pi", o))
    threading.Timer(0.8, runtime.stop).start()
    started = time.monotonic()
    summary = runtime.run()
    assert summary.reason == "stopped" and time.monotonic() - started < 3.0
    assert 0.6 < summary.stream_s < 2.0
    pub = runtime.publisher
    assert isinstance(pub, MemoryPublisher)
    assert len(pub.on_topic(pub.topics.metrics)) >= 4
    assert pub.on_topic(pub.topics.status)[-1] == "offline"


def test_sequence_numbers_survive_a_restart(
    audio_bundle: Path,
    gallery: Path,
    stream: Stream,
    tmp_path: Path,
) -> None:
    config = make_config(audio_bundle, gallery, stream.path, tmp_path)
    _, first = run_once(config)
    _, second = run_once(config)
    n = len(first.events)
    assert [e["seq"] for e in second.events] == list(range(n + 1, 2 * n + 1))
    assert {e["id"] for e in first.events}.isdisjoint(e["id"] for e in second.events)


def test_metrics_percentiles_rates_memory_and_cpu() -> None:
    from edgesiam.runtime.metrics import LatencyWindow, RuntimeMetrics

    window = LatencyWindow(size=100)
    assert window.percentile(50) is None
    for ms in range(1000):
        window.add(float(ms))
    assert len(window) == 100  # bounded: only the recent ones
    assert window.percentile(50) == pytest.approx(949.5) and window.percentile(95) > 990
    now = [0.0]
    metrics = RuntimeMetrics(clock=lambda: now[0])
    metrics.windows = 40
    now[0] = 10.0
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:  # burn some CPU
        pass
    snap = metrics.snapshot(outbox_depth=3)
    assert snap["windows_per_s"] == 4.0 and snap["uptime_s"] == 10.0
    assert snap["outbox_depth"] == 3 and snap["inference_ms_p50"] is None
    assert snap["rss_mb"] > 10 and snap["peak_rss_mb"] >= snap["rss_mb"]
    assert snap["cpu_percent"] > 0  # the burn shows; its share of wall time depends on the load
    now[0] = 20.0
    assert metrics.snapshot()["windows_per_s"] == 0.0  # rates are since the last snapshot


# --- commands ------------------------------------------------------------------------------------


def test_commands_change_the_running_gallery(
    audio_bundle: Path,
    gallery: Path,
    audio_heldout: Path,
    stream: Stream,
    tmp_path: Path,
) -> None:
    copy = tmp_path / "gallery.npz"
    copy.write_bytes(gallery.read_bytes())
    config = make_config(audio_bundle, copy, stream.path, tmp_path)
    runtime = Runtime(config, publisher=lambda o: MemoryPublisher("test-pi", o))
    pub = runtime.publisher
    assert isinstance(pub, MemoryPublisher)
    assert pub.labels == list(ENROLLED)

    listed = pub.command("list", {"correlation_id": "c1"})
    assert listed["ok"] and listed["correlation_id"] == "c1"
    assert [x["label"] for x in listed["result"]["labels"]] == list(ENROLLED)

    voice4 = sorted((audio_heldout / "voice4").glob("*.wav"))[:2]
    rows = [embed_recording(runtime.embedder, read_audio(f, RATE)).tolist() for f in voice4]
    enrolled = pub.command("enroll", {"label": "voice4", "embeddings": rows})
    assert enrolled["ok"] and enrolled["result"]["recordings"] == 2
    assert "voice4" in runtime.gallery.labels and "voice4" in pub.labels

    voice5 = sorted((audio_heldout / "voice5").glob("*.wav"))[0].read_bytes()
    by_wav = pub.command(
        "enroll", {"label": "voice5", "wav_base64": base64.b64encode(voice5).decode()}
    )
    assert by_wav["ok"], by_wav
    assert GalleryStore(copy).info().labels[-1].label == "voice5"  # on disk first

    assert pub.command("threshold", {"label": "voice1", "value": 0.99})["ok"]
    fmr = pub.command("threshold", {"target_fmr": 0.01})
    assert fmr["result"]["default"] == pytest.approx(runtime.embedder.threshold(1e-2), abs=1e-4)
    assert not pub.command("threshold", {"target_fmr": 0.2})["ok"]  # not calibrated
    assert runtime.thresholds.for_label("voice1") == 0.99

    gone = pub.command("forget", {"label": "voice4"})
    assert gone["ok"] and gone["result"]["removed"] == 2 and "voice4" not in pub.labels
    assert not pub.command("forget", {"label": "nobody"})["ok"]
    assert not pub.command("enroll", {"label": "x", "embeddings": [[1.0, 2.0]]})["ok"]
    assert pub.command("reload", {})["result"]["reloaded"] == ["gallery"]

    runtime.apply_matching(config.matching)  # back to FMR 1e-3 for the run
    runtime.run()
    labels = {e["label"] for e in pub.events}
    assert "voice5" in labels and "voice4" not in labels  # enrolled over MQTT, then matched


def test_a_gallery_changed_on_disk_is_picked_up(
    audio_bundle: Path,
    gallery: Path,
    stream: Stream,
    tmp_path: Path,
) -> None:
    copy = tmp_path / "gallery.npz"
    copy.write_bytes(gallery.read_bytes())
    runtime = Runtime(
        make_config(audio_bundle, copy, stream.path, tmp_path),
        publisher=lambda o: MemoryPublisher("test-pi", o),
    )
    GalleryStore(copy, runtime.model_sha256).forget("voice1")  # e.g. `edgesiam gallery forget`
    runtime._reload_if_changed()
    assert runtime.gallery.labels == ["voice0", "voice2"]
    assert runtime.publisher.labels == ["voice0", "voice2"]  # type: ignore[attr-defined]
    runtime.outbox.close()


# --- MQTT and signals ----------------------------------------------------------------------------


@pytest.fixture
def device(
    mosquitto: MosquittoBroker,
    audio_bundle: Path,
    gallery: Path,
    tmp_path: Path,
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``edgesiam run`` in its own process, reading raw PCM from a pipe this test writes."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-c", RUN_CLI, "run", "--bundle", str(audio_bundle)),
            *("--gallery", str(gallery), "--source", "stdin:?live=false"),
            *("--broker", mosquitto.url, "--device-id", "sig"),
            *("--state-dir", str(tmp_path / "state")),
        ],
        stdin=read_end,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    os.close(read_end)
    yield proc, write_end
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    with contextlib.suppress(OSError):
        os.close(write_end)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_device_cleanly_after_delivering_events(
    device: tuple[subprocess.Popen[str], int],
    subscriber: Any,
    stream: Stream,
    sig: int,
) -> None:
    proc, pipe = device
    watcher: Subscriber = subscriber("edgesiam/sig/#")
    assert wait_until(
        lambda: any(m.payload == b"online" for m in watcher.on("edgesiam/sig/status")), 60
    )
    os.write(pipe, sf.read(stream.path, dtype="int16")[0].astype("<i2").tobytes())
    events = watcher.wait_for("edgesiam/sig/event", n=len(ENROLLED), timeout=60)
    assert {e.json()["label"] for e in events} >= set(ENROLLED)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-3000:]
    assert f"signal {signal.Signals(sig).name}" in err
    assert wait_until(lambda: watcher.on("edgesiam/sig/status")[-1].payload == b"offline", 10)
    retained = Subscriber(watcher.host, watcher.port, ["edgesiam/sig/status"]).start()
    try:
        assert wait_until(lambda: bool(retained.on("edgesiam/sig/status")), 5)
        last = retained.on("edgesiam/sig/status")[-1]
        assert last.payload == b"offline" and last.retain
    finally:
        retained.stop()


# --- an IMU over MQTT (slow: trains and exports a sensor model) ----------------------------------

MOVES_ENROLLED = ("move0", "move1", "move2")
MOVES_STREAM = ("move0", "move3", "move1", "move4", "move2")


@pytest.fixture(scope="module")
def sensor_bundle(sensor_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgesiam.train.config import TrainConfig
    from edgesiam.train.loop import train
    from tests.support.recipes import sensor_recipe

    root = tmp_path_factory.mktemp("imu")
    heldout = write_sensor_dataset(root / "heldout", labels=5, per_label=6, seed=1)
    config = TrainConfig.model_validate(sensor_recipe(sensor_dataset, heldout))
    train(config, root / "run", progress=False, log=lambda _m: None)
    bundle = root / "bundle"
    code = run_export(
        str(root / "run" / "best.pt"), "-o", str(bundle), "--calib", str(sensor_dataset)
    )
    assert code == 0
    return bundle


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ["json", "f32le"])
def test_imu_rows_over_mqtt_become_events_over_mqtt(
    sensor_bundle: Path,
    mosquitto: MosquittoBroker,
    subscriber: Any,
    tmp_path: Path,
    encoding: str,
) -> None:
    from edgesiam.data.readers import read_sensor

    heldout = sensor_bundle.parent / "heldout"
    embedder = load_model(sensor_bundle)
    store = GalleryStore(tmp_path / "gallery.npz", model_sha256(embedder.manifest))
    for label in MOVES_ENROLLED:
        enroll_recordings(store, embedder, label, sorted((heldout / label).glob("*.npy"))[:2])
    takes = [read_sensor(sorted((heldout / label).glob("*.npy"))[2]) for label in MOVES_STREAM]
    bounds = np.cumsum([0] + [t.shape[0] for t in takes]) / 50.0
    rows = np.concatenate(takes)

    config = make_config(
        sensor_bundle,
        store.path,
        {"type": "mqtt", "topic": "sensors/wrist/imu", "format": encoding},
        tmp_path / "state",
        mqtt={"enabled": True, "url": mosquitto.url, "homeassistant": False},
        processing={"queue_s": 60},
    )
    runtime = Runtime(config, embedder=embedder)
    watcher: Subscriber = subscriber("edgesiam/test-pi/#")
    done = threading.Thread(target=runtime.run, daemon=True)
    done.start()
    source = runtime.source
    assert isinstance(source, MqttSensorSource)
    assert source.subscribed.wait(10)
    for start in range(0, rows.shape[0], 25):
        part = rows[start : start + 25]
        payload = json.dumps(part.tolist()) if encoding == "json" else part.astype("<f4").tobytes()
        watcher.publish("sensors/wrist/imu", payload, qos=1)
    assert wait_until(lambda: runtime.metrics.samples == rows.shape[0], 30)
    event_topic = "edgesiam/test-pi/event"
    assert wait_until(lambda: runtime.outbox.depth == 0, 10)
    assert wait_until(lambda: len(watcher.on(event_topic)) == runtime.metrics.events, 10)
    events = watcher.on(event_topic)
    runtime.stop()
    done.join(15)
    assert not done.is_alive()
    window_s = embedder.window / 50.0
    labels = []
    for message in events:
        event = message.json()
        labels.append(event["label"])
        segment = int(np.searchsorted(bounds, event["offset_s"] - window_s / 2, side="right")) - 1
        assert MOVES_STREAM[segment] == event["label"], (event, bounds)
    assert set(labels) == set(MOVES_ENROLLED)
    assert watcher.on("edgesiam/test-pi/status")[-1].payload == b"offline"
