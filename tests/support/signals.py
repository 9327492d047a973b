"""Synthetic signals and the small dataset folders made of them (the dataset-folder contract).

Each label of the audio set is a 'voice' (a harmonic tone with its own pitch and spectral tilt, with
vibrato and noise); each label of the sensor set is a motion pattern on 6 IMU channels. They are
easy enough that a tiny encoder learns them in seconds, so tests can check that training works.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import soundfile as sf

from edgesiam.data.readers import read_audio

VOICE_RATE = 16000
"""The sample rate of :func:`voice` (that of the shipped ``export/events`` bundle)."""


def make_voice(
    f0: float, tilt: float, seconds: float, rate: int, rng: np.random.Generator
) -> np.ndarray:
    """A harmonic tone at ``f0`` Hz with vibrato and a little noise, peak 0.5 (float32)."""
    t = np.arange(int(seconds * rate)) / rate
    vibrato = 1 + 0.02 * np.sin(2 * np.pi * rng.uniform(4, 6) * t)
    phase = 2 * np.pi * np.cumsum(f0 * vibrato) / rate
    x = sum((h**-tilt) * np.sin(h * phase) for h in range(1, 12) if h * f0 < rate / 2)
    x = x / np.max(np.abs(x)) * 0.5 + 0.01 * rng.standard_normal(len(t))
    return np.asarray(x, dtype=np.float32)


def voice(seconds: float, seed: int) -> np.ndarray:
    """A generated voice (float32 in [-1, 1]) at :data:`VOICE_RATE`."""
    return make_voice(180.0, 0.7, seconds, VOICE_RATE, np.random.default_rng(seed))


def to_pcm(x: np.ndarray) -> bytes:
    """Float samples as the little-endian 16-bit PCM that ``stdin:`` and MQTT sources read."""
    return np.clip(np.round(x * 32767), -32768, 32767).astype("<i2").tobytes()


def make_motion(kind: int, n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows of 6 IMU channels (acc, gyro) moving in pattern ``kind``, gravity on acc_z."""
    t = np.arange(n) / rate
    freq = 0.8 + 0.6 * kind
    amp = np.array([1.0, 0.5, 0.2, 0.3, 0.6, 0.1]) * (1 + 0.3 * (kind % 3))
    phase = np.linspace(0, np.pi * (kind % 4) / 2, 6)
    x = amp * np.sin(2 * np.pi * freq * t[:, None] + phase) + 0.05 * rng.standard_normal((n, 6))
    x[:, 2] += 1.0  # gravity
    return x.astype(np.float32)


def write_audio_dataset(
    root: Path,
    labels: int = 6,
    per_label: int = 4,
    seconds: float = 1.3,
    seed: int = 0,
    rate: int = 16000,
) -> Path:
    """An audio dataset folder: ``voiceI/gJ__takeK.wav``, two groups per label."""
    rng = np.random.default_rng(seed)
    for i in range(labels):
        f0 = 110 * 2 ** (i / 3)
        tilt = 0.5 + 0.25 * (i % 4)
        folder = root / f"voice{i}"
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_label):
            x = make_voice(
                f0 * rng.uniform(0.97, 1.03), tilt, seconds * rng.uniform(0.8, 1.2), rate, rng
            )
            sf.write(folder / f"g{j % 2}__take{j}.wav", x, rate, subtype="PCM_16")
    return root


def write_sensor_dataset(
    root: Path,
    labels: int = 5,
    per_label: int = 4,
    seconds: float = 6.0,
    seed: int = 0,
    rate: int = 50,
) -> Path:
    """A sensor dataset folder: ``dataset.toml`` and ``moveI/sJ__recK.npy``, two groups per label."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    (root / "dataset.toml").write_text(
        f'modality = "sensor"\nsample_rate = {rate}\nchannels = {names!r}\n'.replace("'", '"')
    )
    for i in range(labels):
        folder = root / f"move{i}"
        folder.mkdir(exist_ok=True)
        for j in range(per_label):
            np.save(
                folder / f"s{j % 2}__rec{j}.npy", make_motion(i, int(seconds * rate), rate, rng)
            )
    return root


def voice_clip(path: Path, f0: float = 140.0) -> Path:
    """A 2 s voice at ``f0`` Hz written to ``path`` as a 16 kHz WAV (an enrollment clip)."""
    rng = np.random.default_rng(7)
    sf.write(path, make_voice(f0, 0.7, 2.0, 16000, rng), 16000, subtype="PCM_16")
    return path


def wav_bytes(seconds: float = 0.5, rate: int = 16000) -> bytes:
    """The bytes of a 16-bit mono WAV file of a constant level (an upload or a command's clip)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x10" * int(seconds * rate))
    return buffer.getvalue()


HELDOUT_ENROLLED = ("voice0", "voice1", "voice2")
"""The voices of the held-out set (``audio_heldout``) that the device tests enroll."""

HELDOUT_STREAM = ("voice0", "voice4", "voice1", "voice5", "voice2") * 2
"""The voices of :func:`write_heldout_stream`, in order: enrolled ones and others in turn."""


def write_heldout_stream(heldout: Path, path: Path) -> Path:
    """Held-out takes of enrolled and never-enrolled voices, back to back (about 13 s, 16 kHz)."""
    takes = [
        read_audio(sorted((heldout / label).glob("*.wav"))[2 + i // 5], VOICE_RATE)
        for i, label in enumerate(HELDOUT_STREAM)
    ]
    sf.write(path, np.concatenate(takes), VOICE_RATE, subtype="PCM_16")
    return path
