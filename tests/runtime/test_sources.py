"""Sources: files (audio and sensor), raw PCM on a pipe, MQTT sensor rows, serial lines, and the
clear errors for what cannot fit a bundle or is not installed."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO, cast

import numpy as np
import pytest
import soundfile as sf

from edgesiam.data.readers import read_audio
from edgesiam.errors import ConfigError, DataError, MissingExtraError
from edgesiam.mqtt.client import MqttSettings
from edgesiam.runtime.sources import open_source, source_config
from edgesiam.runtime.sources.base import StreamFormat
from edgesiam.runtime.sources.file import FileSource
from edgesiam.runtime.sources.mqtt import MqttSensorSource
from edgesiam.runtime.sources.rows import parse_csv_row, parse_sensor_payload
from edgesiam.runtime.sources.serial import SerialSource
from edgesiam.runtime.sources.stdin import StdinSource, StreamPacing
from tests.support.mqtt import MosquittoBroker, Subscriber, wait_until
from tests.support.signals import make_motion, make_voice

AUDIO = StreamFormat("audio", 16000, 1)
IMU = StreamFormat("sensor", 50, 6)


def collect(source: object, limit_s: float = 10.0) -> np.ndarray:
    chunks = []
    deadline = time.monotonic() + limit_s
    for chunk in source.chunks():  # type: ignore[attr-defined]
        chunks.append(chunk)
        if time.monotonic() > deadline:
            break
    return np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)


@pytest.fixture(scope="module")
def voice_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("src") / "voice.wav"
    x = make_voice(150.0, 0.6, 1.2, 16000, np.random.default_rng(0))
    sf.write(path, x, 16000, subtype="PCM_16")
    return path


# --- files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_s", [0.001, 0.1, 0.37, 5.0])
def test_audio_file_yields_the_recording_whatever_the_chunk(
    voice_wav: Path, chunk_s: float
) -> None:
    source = FileSource(voice_wav, AUDIO, chunk_s=chunk_s)
    samples = collect(source)
    assert samples.shape[1] == 1 and samples.dtype == np.float32
    np.testing.assert_array_equal(samples[:, 0], read_audio(voice_wav, 16000))
    assert not source.live and source.duration_s == pytest.approx(1.2)


def test_audio_file_is_resampled_and_mixed_down(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    left = make_voice(200.0, 0.5, 1.0, 22050, rng)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, 0.5 * left], axis=1), 22050, subtype="FLOAT")
    samples = collect(FileSource(path, AUDIO, chunk_s=0.05))[:, 0]
    whole = read_audio(path, 16000)
    assert abs(samples.shape[0] - whole.shape[0]) <= 2
    n = min(samples.shape[0], whole.shape[0])
    assert np.max(np.abs(samples[:n] - whole[:n])) < 1e-3  # streaming soxr ≈ whole-file soxr


def test_realtime_file_is_paced_and_closable(voice_wav: Path) -> None:
    source = FileSource(voice_wav, AUDIO, chunk_s=0.1, realtime=True)
    assert source.live
    started = time.monotonic()
    samples = collect(source)
    assert samples.shape[0] == 19200 and time.monotonic() - started >= 1.1
    source = FileSource(voice_wav, AUDIO, chunk_s=0.1, realtime=True)
    threading.Timer(0.25, source.close).start()
    started = time.monotonic()
    assert collect(source).shape[0] < 19200 and time.monotonic() - started < 0.8


def test_sensor_files_csv_with_header_and_npy(tmp_path: Path) -> None:
    x = make_motion(2, 120, 50, np.random.default_rng(0))
    x[5, 3] = np.nan
    csv = tmp_path / "walk.csv"
    lines = ["ax,ay,az,gx,gy,gz"] + [",".join(f"{v:.6f}" for v in row) for row in x]
    csv.write_text("\n".join(lines) + "\n")
    np.save(tmp_path / "walk.npy", x)
    for path in (csv, tmp_path / "walk.npy"):
        got = collect(FileSource(path, IMU, chunk_s=0.3))
        assert got.shape == (120, 6)
        np.testing.assert_allclose(got, x, atol=1e-5)
        assert np.isnan(got[5, 3])  # kept: the front-end replaces it


def test_files_that_cannot_feed_the_bundle_are_refused(tmp_path: Path, voice_wav: Path) -> None:
    five = tmp_path / "five.npy"
    np.save(five, np.zeros((100, 5), np.float32))
    with pytest.raises(ConfigError, match=r"5 channel.*takes 6 channels"):
        FileSource(five, IMU)
    with pytest.raises(ConfigError, match="audio file cannot feed a sensor bundle"):
        FileSource(voice_wav, IMU)
    with pytest.raises(ConfigError, match="sensor recording cannot feed an audio bundle"):
        FileSource(five, AUDIO)
    with pytest.raises(DataError, match=r"unknown file type '\.mp4'"):
        (tmp_path / "a.mp4").write_bytes(b"x")
        FileSource(tmp_path / "a.mp4", AUDIO)
    with pytest.raises(DataError, match="no such file"):
        FileSource(tmp_path / "missing.wav", AUDIO)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(DataError, match="cannot read audio"):
        FileSource(bad, AUDIO)


# --- stdin ---------------------------------------------------------------------------------------


def pcm_producer(samples: np.ndarray, header: bytes = b"") -> subprocess.Popen[bytes]:
    """A separate process writing raw s16le to its stdout, in odd-sized pieces, like arecord."""
    data = header + (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    code = (
        "import sys, time\n"
        "data = sys.stdin.buffer.read()\n"
        "out = sys.stdout.buffer\n"
        "for i in range(0, len(data), 1001):\n"
        "    out.write(data[i:i + 1001]); out.flush()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None
    proc.stdin.write(data)
    proc.stdin.close()
    return proc


def wav_header(rate: int, channels: int, bits: int = 16, tag: int = 1) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    return (
        b"RIFF\xff\xff\xff\x7fWAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"LIST\x04\x00\x00\x00INFO"
        + b"data\xff\xff\xff\x7f"
    )


def test_stdin_reads_raw_s16le_from_a_pipe() -> None:
    x = (0.5 * np.sin(np.linspace(0, 200, 16000))).astype(np.float32)
    proc = pcm_producer(x)
    assert proc.stdout is not None
    source = StdinSource(AUDIO, stream=proc.stdout, chunk_s=0.1)
    got = collect(source)[:, 0]
    proc.wait(10)
    expected = (x * 32767).astype(np.int16) / np.float32(32768)
    np.testing.assert_array_equal(got, expected.astype(np.float32))


def test_stdin_skips_a_matching_wav_header_and_refuses_another() -> None:
    x = (0.25 * np.ones(800)).astype(np.float32)
    proc = pcm_producer(x, wav_header(16000, 1))
    got = collect(StdinSource(AUDIO, stream=proc.stdout))[:, 0]
    proc.wait(10)
    np.testing.assert_allclose(got, 0.25, atol=1e-4)
    assert got.shape == (800,)
    proc = pcm_producer(x, wav_header(44100, 2))
    with pytest.raises(DataError, match=r"WAV at 44100 Hz, 2 channel.*arecord -f S16_LE -r 16000"):
        collect(StdinSource(AUDIO, stream=proc.stdout))
    proc.wait(10)


def test_stdin_f32le_and_a_trailing_partial_frame() -> None:
    x = np.array([0.1, -0.2, np.nan, 0.4], np.float32)
    got = collect(StdinSource(AUDIO, encoding="f32le", stream=io.BytesIO(x.tobytes() + b"\x01")))
    np.testing.assert_array_equal(got[:, 0], x)  # NaN passes through: the front-end handles it


def test_stdin_at_the_wrong_channels_or_an_unusable_rate_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"2 channel\(s\) but the bundle takes mono"):
        StdinSource(AUDIO, channels=2)
    with pytest.raises(ConfigError, match="filter phases"):
        StdinSource(AUDIO, sample_rate=16001 * 9973)
    sensor = StdinSource(IMU, channels=6, encoding="f32le", stream=io.BytesIO(b""))
    assert sensor.channels == 6 and collect(sensor).shape[0] == 0


def sine(rate: int, seconds: float, hz: float = 1000.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(round(rate * seconds)) / rate)).astype(
        np.float32
    )


def assert_is_the_resampled_sine(got: np.ndarray, seconds: float) -> None:
    """``got``: a 1 kHz sine of amplitude 0.5 at 16 kHz, as long as the input was."""
    assert got.shape == (round(16000 * seconds), 1)
    inner = got[2000:-2000, 0]
    spectrum = np.abs(np.fft.rfft(inner * np.hanning(inner.size)))
    assert abs(np.argmax(spectrum) * 16000 / inner.size - 1000.0) < 1.0
    assert np.sqrt(2 * np.mean(inner**2)) == pytest.approx(0.5, rel=2e-3)


@pytest.mark.parametrize("rate", [48000, 44100])
def test_stdin_at_a_declared_rate_is_resampled_to_the_bundles(rate: int) -> None:
    proc = pcm_producer(sine(rate, 2.0))
    source = open_source(f"stdin:?sample_rate={rate}", AUDIO, stdin=cast(BinaryIO, proc.stdout))
    assert source.sample_rate == 16000
    got = collect(source)
    proc.wait(10)
    assert_is_the_resampled_sine(got, 2.0)


def test_stdin_takes_the_rate_of_its_wav_header_unless_one_is_declared() -> None:
    proc = pcm_producer(sine(48000, 1.0), wav_header(48000, 1))
    got = collect(StdinSource(AUDIO, stream=cast(BinaryIO, proc.stdout)))
    proc.wait(10)
    assert_is_the_resampled_sine(got, 1.0)
    proc = pcm_producer(sine(48000, 0.1), wav_header(48000, 1))
    with pytest.raises(DataError, match=r"WAV at 48000 Hz.*expects 44100 Hz"):
        collect(StdinSource(AUDIO, sample_rate=44100, stream=cast(BinaryIO, proc.stdout)))
    proc.wait(10)


def test_stdin_is_a_recording_when_it_is_a_file_or_runs_ahead_of_real_time(tmp_path: Path) -> None:
    raw = tmp_path / "rec.raw"
    raw.write_bytes(b"\x00\x00" * 1600)
    with open(raw, "rb") as redirected:  # edgesiam run --source stdin: < rec.raw
        assert StdinSource(AUDIO, stream=redirected).live is False
        assert StdinSource(AUDIO, stream=redirected, live=True).live is True
    pacing = StreamPacing(1000.0, buffered_s=0.5)  # a live stream is ahead by 1.5 s at most
    pacing.add(1400)
    assert not pacing.unpaced and 1.3 < pacing.ahead_s() <= 1.4
    pacing.add(200)
    assert pacing.unpaced  # for good: a microphone never delivers 1.6 s in no time
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as pipe, os.fdopen(write_end, "wb"):
        source = StdinSource(AUDIO, stream=pipe)
        assert source.live and source.pacing.limit_s == pytest.approx(65536 / 32000 + 1.0)
        assert not source.wait_for_room()  # nothing read yet: not ahead of real time


def test_stdin_stops_when_closed_while_waiting() -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as reader, os.fdopen(write_end, "wb"):
        source = StdinSource(AUDIO, stream=reader)
        threading.Timer(0.2, source.close).start()
        started = time.monotonic()
        assert collect(source).shape[0] == 0
        assert time.monotonic() - started < 2.0


# --- rows of sensor values -----------------------------------------------------------------------


def test_sensor_payloads_json_and_packed_float32() -> None:
    row = [0.1, 0.2, 1.0, 0.0, 0.0, 0.1]
    assert parse_sensor_payload(json.dumps(row).encode(), "json", 6).shape == (1, 6)
    rows = parse_sensor_payload(json.dumps([row, row, row]).encode(), "json", 6)
    assert rows.shape == (3, 6) and rows.dtype == np.float32
    wrapped = parse_sensor_payload(json.dumps({"samples": [row, [None] * 6]}).encode(), "json", 6)
    assert np.isnan(wrapped[1]).all()
    packed = np.arange(12, dtype="<f4").tobytes()
    np.testing.assert_array_equal(
        parse_sensor_payload(packed, "f32le", 6), np.arange(12, dtype=np.float32).reshape(2, 6)
    )
    for payload, encoding, message in [
        (b"[1, 2, 3]", "json", "3 value"),
        (b"{", "json", "not JSON"),
        (b'{"rows": []}', "json", "'samples'"),
        (b'[[1, 2, 3, 4, 5, "x"]]', "json", "other than numbers"),
        (b"[]", "json", "non-empty"),
        (b"\x00" * 20, "f32le", "20 bytes"),
    ]:
        with pytest.raises(DataError, match=message):
            parse_sensor_payload(payload, encoding, 6)  # type: ignore[arg-type]


def test_csv_rows() -> None:
    assert parse_csv_row("ax,ay,az\n", 3) is None and parse_csv_row("  \r\n", 3) is None
    for line in ("1,2,3", "1;2;3", "1\t2\t3", " 1 2 3 "):
        np.testing.assert_array_equal(parse_csv_row(line, 3), [1, 2, 3])
    assert np.isnan(parse_csv_row("1,nan,3", 3)).sum() == 1  # type: ignore[arg-type]
    with pytest.raises(DataError, match="2 value"):
        parse_csv_row("1,2", 3)
    with pytest.raises(DataError, match="not all values are numbers"):
        parse_csv_row("1,x,3", 3)


def test_serial_lines_become_chunks_and_bad_lines_are_skipped() -> None:
    rows = make_motion(1, 30, 50, np.random.default_rng(0))
    text = "ax,ay,az,gx,gy,gz\n" + "".join(",".join(f"{v:.5f}" for v in r) + "\n" for r in rows)
    text = text.replace("\n", "\n1,2,3\n", 1) + "garbage,,\n"
    source = SerialSource(IMU, "loop://", stream=io.BytesIO(text.encode()), chunk_s=0.1)
    got = collect(source)
    assert got.shape == (30, 6)
    np.testing.assert_allclose(got, rows, atol=1e-4)
    assert source.rejected == 2


def test_serial_port_through_pyserial(tmp_path: Path) -> None:
    pytest.importorskip("serial")
    import pty

    controller, device = pty.openpty()
    source = SerialSource(IMU, os.ttyname(device), chunk_s=0.1)
    rows = [[i, 0, 1, 0, 0, 0] for i in range(10)]
    os.write(controller, "".join(",".join(map(str, r)) + "\r\n" for r in rows).encode())
    got: list[np.ndarray] = []
    reader = threading.Thread(target=lambda: got.extend(source.chunks()))
    reader.start()
    wait_until(lambda: sum(len(c) for c in got) >= 10, timeout=5)
    source.close()
    reader.join(5)
    os.close(controller)
    os.close(device)
    np.testing.assert_array_equal(np.concatenate(got)[:, 0], np.arange(10))


# --- missing extras ------------------------------------------------------------------------------


def test_missing_libraries_name_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(MissingExtraError, match=r"sounddevice.*edgesiam\[mic\]"):
        open_source("mic:", AUDIO)
    monkeypatch.setitem(sys.modules, "serial", None)
    with pytest.raises(MissingExtraError, match=r"pyserial.*edgesiam\[serial\]"):
        open_source("serial:/dev/ttyACM0", IMU)
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
    with pytest.raises(MissingExtraError, match=r"paho-mqtt.*edgesiam\[device\]"):
        open_source("mqtt:imu", IMU)


class FakeInputStream:
    """sounddevice.InputStream's shape: calls back from its own thread with (frames, channels)."""

    def __init__(
        self, *, callback: Any, blocksize: int, channels: int, samplerate: float, **_: Any
    ) -> None:
        self.callback, self.blocksize, self.channels = callback, blocksize, channels
        self.samplerate = samplerate
        self.pause_s = 0.0
        self.thread = threading.Thread(target=self._feed)

    def blocks(self) -> list[np.ndarray]:
        return [np.full((self.blocksize, self.channels), i, np.float32) for i in range(5)]

    def _feed(self) -> None:
        for i, block in enumerate(self.blocks()):
            self.callback(block, block.shape[0], None, SimpleNamespace(input_overflow=i == 4))
            time.sleep(self.pause_s)

    def __enter__(self) -> FakeInputStream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join()


class FakeUsbMicStream(FakeInputStream):
    """A microphone that delivers a 1 kHz sine, 2 s of it, in PortAudio-sized blocks."""

    def blocks(self) -> list[np.ndarray]:
        assert self.samplerate in (44100, 48000)
        self.pause_s = 0.002  # faster than real time, slow enough not to overflow the queue
        x = sine(int(self.samplerate), 2.0)[:, None]
        return [x[i : i + 512] for i in range(0, x.shape[0], 512)]


def fake_portaudio(rates: tuple[int, ...], default_rate: float, stream: type) -> SimpleNamespace:
    def check(**settings: Any) -> None:
        if settings["samplerate"] not in rates:
            raise ValueError("Invalid sample rate")

    def query(device: Any, kind: str) -> dict[str, Any]:
        assert kind == "input"
        return {"name": "USB Audio", "default_samplerate": default_rate}

    return SimpleNamespace(check_input_settings=check, query_devices=query, InputStream=stream)


def read_mic(source: Any, until: Any) -> list[np.ndarray]:
    got: list[np.ndarray] = []
    reader = threading.Thread(target=lambda: got.extend(source.chunks()))
    reader.start()
    assert wait_until(lambda: until(got), timeout=10)
    source.close()
    reader.join(5)
    return got


def test_mic_source_through_a_fake_portaudio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        sys.modules, "sounddevice", fake_portaudio((16000,), 16000.0, FakeInputStream)
    )
    source = open_source("mic:?chunk_s=0.05", AUDIO)
    got = read_mic(source, lambda got: len(got) == 5)
    assert [c.shape for c in got] == [(800, 1)] * 5 and [c[0, 0] for c in got] == [0, 1, 2, 3, 4]
    assert source.overflows == 1  # type: ignore[attr-defined]
    with pytest.raises(
        DataError, match=r"cannot record 1 channel\(s\) at 44100.*python -m sounddevice"
    ):
        open_source("mic:USB?sample_rate=44100", StreamFormat("audio", 44100, 1))


@pytest.mark.parametrize("native", [48000, 44100])
def test_a_mic_that_cannot_record_at_the_bundles_rate_is_resampled(
    monkeypatch: pytest.MonkeyPatch, native: int
) -> None:
    """Many USB microphones do only 44.1/48 kHz: record at that rate, resample on the device."""
    fake = fake_portaudio((44100, 48000), float(native), FakeUsbMicStream)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    source = open_source("mic:USB", AUDIO)
    assert source.sample_rate == 16000 and source.capture_rate == native  # type: ignore[attr-defined]
    got = read_mic(source, lambda got: sum(c.shape[0] for c in got) >= 31000)
    out = np.concatenate(got)
    assert 31000 <= out.shape[0] <= 32000  # the last unit (32 ms) waits for more input
    assert_is_the_resampled_sine(np.concatenate([out, np.zeros((32000 - out.shape[0], 1))]), 2.0)
    assert source.overflows == 1  # type: ignore[attr-defined]
    explicit = open_source("mic:USB?sample_rate=44100", AUDIO)
    assert explicit.capture_rate == 44100  # type: ignore[attr-defined]
    nothing = fake_portaudio((22050,), 8000.0, FakeUsbMicStream)
    monkeypatch.setitem(sys.modules, "sounddevice", nothing)
    with pytest.raises(DataError, match=r"cannot record 1 channel\(s\) at 8000 Hz"):
        open_source("mic:USB", AUDIO)


def test_open_source_takes_uris_dicts_and_configs(voice_wav: Path) -> None:
    by_uri = open_source(f"file:{voice_wav}", AUDIO)
    by_dict = open_source({"type": "file", "path": str(voice_wav)}, AUDIO)
    by_config = open_source(source_config(f"file:{voice_wav}?chunk_s=0.5"), AUDIO)
    assert isinstance(by_uri, FileSource) and isinstance(by_dict, FileSource)
    assert by_uri.description == by_dict.description == by_config.description
    with pytest.raises(ConfigError, match=r"source\.file\.speed: unknown key"):
        open_source(f"file:{voice_wav}?speed=2", AUDIO)


# --- MQTT ----------------------------------------------------------------------------------------


def test_mqtt_source_reads_json_rows_and_packed_floats(
    mosquitto: MosquittoBroker, subscriber: object
) -> None:
    settings = MqttSettings(url=mosquitto.url, device_id="pi", homeassistant=False)
    publisher: Subscriber = subscriber("unused/#")  # type: ignore[operator]
    got: list[np.ndarray] = []
    sources = {
        "json": MqttSensorSource(IMU, "sensors/wrist/imu", "json", broker=settings),
        "f32le": MqttSensorSource(IMU, "sensors/+/bin", "f32le", broker=settings),
    }
    threads = [
        threading.Thread(target=lambda s=s: got.extend(s.chunks()), daemon=True)
        for s in sources.values()
    ]
    for t in threads:
        t.start()
    assert all(s.subscribed.wait(10) for s in sources.values())
    rows = make_motion(0, 8, 50, np.random.default_rng(0))
    publisher.publish("sensors/wrist/imu", json.dumps(rows[:2].tolist()))
    publisher.publish("sensors/wrist/imu", json.dumps({"samples": rows[2:4].tolist()}))
    publisher.publish("sensors/wrist/imu", b"[1, 2]")  # wrong width: skipped, counted
    publisher.publish("sensors/wrist/imu", b"not json")
    publisher.publish("sensors/wrist/bin", rows[4:].astype("<f4").tobytes())
    publisher.publish("sensors/wrist/bin", b"\x00\x01\x02")
    assert wait_until(lambda: sum(len(c) for c in got) >= 8, timeout=10)
    assert wait_until(lambda: sources["json"].rejected == 2 and sources["f32le"].rejected == 1)
    for s in sources.values():
        s.close()
    for t in threads:
        t.join(5)
        assert not t.is_alive()
    received = np.concatenate(got)
    assert received.shape == (8, 6)
    order = np.argsort(received[:, 0])
    np.testing.assert_allclose(received[order], rows[np.argsort(rows[:, 0])], atol=1e-6)
    assert sources["json"].description.endswith(f":{mosquitto.port}/sensors/wrist/imu")


def test_mqtt_source_wrong_channels_is_refused_at_once() -> None:
    with pytest.raises(ConfigError, match=r"delivers 3 channel\(s\) but the bundle takes 6"):
        MqttSensorSource(IMU, "imu", channels=3)
