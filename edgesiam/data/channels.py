"""Device channels a recording can be rendered through, to measure matching outside the training
channel.

A model that has only heard clean studio recordings can learn the microphone instead of the voice or
the sound. The renderers here re-record a held-out dataset folder as a device would hear it, so that
``edgesiam eval`` on the rendered copy shows what a channel change costs:

=============  ==================================================================================
``gsm``        8 kHz telephone band (300–3400 Hz) through the GSM 06.10 full-rate codec
``amr-nb``     8 kHz telephone band through the AMR narrow-band codec (mobile calls)
``ulaw``       8 kHz telephone band, G.711 µ-law (landlines, VoIP)
``cheap-mic``  a small electret microphone: weak lows and highs, a presence peak, soft clipping and
               self-noise
``far-field``  a real room impulse response and real background noise at 5–10 dB SNR
=============  ==================================================================================

The codecs run through sox (Debian's ``sox`` with ``libsox-fmt-base``); everything else is numpy.
Each file's randomness (room, noise excerpt, SNR) comes from the seed and the file's path within the
folder, so a rendering is the same whatever order or subset of files it is made in. This module is
for the workstation: the device install never imports it.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from edgesiam.data.derived import is_current, publish_audio, start_partial
from edgesiam.data.readers import read_audio, scan_dataset
from edgesiam.data.recipes.audio_common import write_wav
from edgesiam.errors import DataError

Renderer = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
"""``(audio float32 (n,), rate, rng) → audio float32 (n,)`` at the same rate and length."""

PHONE_RATE = 8000
PHONE_BAND = (300, 3400)
RENDER_FILE = "RENDER.json"
RENDER_VERSION = 1


def _sox(args: Sequence[str], data: bytes) -> bytes:
    """Run sox with stdin/stdout pipes; a failure is a ``DataError`` with sox's own words."""
    if shutil.which("sox") is None:
        raise DataError("sox is not installed (apt-get install sox libsox-fmt-base)")
    proc = subprocess.run(["sox", *args], input=data, capture_output=True, check=False)
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip()
        raise DataError(f"sox {' '.join(args)} failed: {reason}")
    return proc.stdout


def _wav_bytes(audio: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1.0, 1.0), rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def _fit(audio: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad to ``length`` samples (codecs add a few frames of delay or padding)."""
    out = np.zeros(length, dtype=np.float32)
    n = min(length, audio.shape[0])
    out[:n] = audio[:n]
    return out


def phone_codec(sox_type: str) -> Renderer:
    """The telephone band at 8 kHz through the codec sox calls ``sox_type``, back at the input rate."""
    low, high = PHONE_BAND

    def render(audio: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
        encode = ["-D", "-t", "wav", "-", "-t", sox_type, "-r", str(PHONE_RATE), "-c", "1"]
        encode += ["-", "sinc", str(low), "sinc", f"-{high}"]
        coded = _sox(encode, _wav_bytes(audio, rate))
        decode = ["-D", "-t", sox_type, "-r", str(PHONE_RATE), "-c", "1", "-", "-t", "wav"]
        decode += ["-e", "floating-point", "-b", "32", "-r", str(rate), "-"]
        back, _ = sf.read(io.BytesIO(_sox(decode, coded)), dtype="float32")
        return _fit(np.asarray(back, dtype=np.float32), audio.shape[0])

    return render


CHEAP_MIC_EFFECTS = (
    "highpass 250 highpass 250 lowpass 5500 lowpass 5500 equalizer 2800 1q 6 overdrive 6 0"
)
"""A small electret capsule: 12 dB/octave below 250 Hz and above 5.5 kHz, +6 dB presence peak at
2.8 kHz, soft clipping."""

CHEAP_MIC_SNR_DB = 30.0
"""Its self-noise, white, below the signal's level."""


def add_noise(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``signal`` plus ``noise`` scaled to ``snr_db`` below it (power over the whole clip)."""
    p_signal = float(np.mean(signal.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise.astype(np.float64) ** 2))
    if p_signal == 0.0 or p_noise == 0.0:
        return signal.astype(np.float32)
    scale = np.sqrt(p_signal / (p_noise * 10 ** (snr_db / 10)))
    mixed: np.ndarray = (signal + scale * noise).astype(np.float32)
    return mixed


def cheap_microphone(audio: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A cheap microphone's response, clipping and self-noise."""
    args = ["-D", "-t", "wav", "-", "-t", "wav", "-e", "floating-point", "-b", "32", "-"]
    coloured, _ = sf.read(
        io.BytesIO(_sox([*args, *CHEAP_MIC_EFFECTS.split()], _wav_bytes(audio, rate))),
        dtype="float32",
    )
    coloured = _fit(np.asarray(coloured, dtype=np.float32), audio.shape[0])
    hiss = np.asarray(rng.standard_normal(audio.shape[0]), dtype=np.float32)
    return add_noise(coloured, hiss, CHEAP_MIC_SNR_DB)


@dataclass(frozen=True)
class FarField:
    """A far-away talker or source: a real room impulse response, then real background noise at
    an SNR drawn from ``snr_db``."""

    rirs: tuple[np.ndarray, ...]
    noises: tuple[np.ndarray, ...]
    snr_db: tuple[float, float] = (5.0, 10.0)

    @classmethod
    def from_folder(cls, noise_root: Path, rate: int) -> FarField:
        """Impulse responses and noise from a prepared ``noise`` recipe folder (``rir/``,
        ``noise/``)."""
        found = []
        for split in ("rir", "noise"):
            paths = sorted((noise_root / split).glob("*.wav"))
            if not paths:
                raise DataError(
                    f"holds no {split}/*.wav (edgesiam data prepare noise --root ...)", noise_root
                )
            found.append(tuple(read_audio(p, rate) for p in paths))
        return cls(rirs=found[0], noises=found[1])

    def __call__(self, audio: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
        rir = self.rirs[int(rng.integers(len(self.rirs)))]
        rir = rir[int(np.argmax(np.abs(rir))) :]  # from the direct path: no added delay
        n = audio.shape[0]
        size = 1 << int(np.ceil(np.log2(n + rir.shape[0])))
        wet = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(rir, size), size)[:n]
        peak = float(np.max(np.abs(wet))) or 1.0
        wet = wet * (float(np.max(np.abs(audio))) / peak)
        noise = self.noises[int(rng.integers(len(self.noises)))]
        if noise.shape[0] < n:
            noise = np.tile(noise, int(np.ceil(n / noise.shape[0])))
        start = int(rng.integers(noise.shape[0] - n + 1))
        snr = float(rng.uniform(*self.snr_db))
        mixed = add_noise(wet.astype(np.float32), noise[start : start + n], snr)
        clipped: np.ndarray = np.clip(mixed, -1.0, 1.0).astype(np.float32)
        return clipped


CHANNELS: dict[str, str] = {
    "gsm": "8 kHz phone band through the GSM full-rate codec",
    "amr-nb": "8 kHz phone band through the AMR narrow-band codec",
    "ulaw": "8 kHz phone band, G.711 µ-law",
    "cheap-mic": "a cheap electret microphone: band-limited, presence peak, clipping, self-noise",
    "far-field": "a real room impulse response and real noise at 5-10 dB SNR",
}
"""Every channel by name, with what it simulates."""


def make_channel(name: str, rate: int, noise_root: Path | None = None) -> Renderer:
    """The renderer called ``name``; ``far-field`` needs the prepared ``noise`` recipe folder."""
    if name == "gsm":
        return phone_codec("gsm")
    if name == "amr-nb":
        return phone_codec("amr-nb")
    if name == "ulaw":
        return phone_codec("ul")
    if name == "cheap-mic":
        return cheap_microphone
    if name == "far-field":
        if noise_root is None:
            raise DataError("the far-field channel needs --noise DIR (edgesiam data prepare noise)")
        return FarField.from_folder(noise_root, rate)
    raise DataError(f"unknown channel {name!r}; known: {', '.join(CHANNELS)}")


def file_seed(seed: int, relative: str) -> int:
    """A per-file seed from the run's seed and the file's path within its folder."""
    digest = hashlib.sha256(f"{seed}:{relative}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def render_dataset(
    source: Path,
    output: Path,
    channel: str,
    *,
    seed: int = 0,
    sample_rate: int = 16000,
    noise_root: Path | None = None,
    progress: bool = True,
) -> int:
    """Render every recording of the dataset folder ``source`` through ``channel`` into ``output``.

    ``output`` becomes a dataset folder with the same labels and file stems (16-bit WAV at
    ``sample_rate``) and a ``RENDER.json`` naming the source, channel and seed. A folder already
    rendered with the same settings and files is left as it is. Returns the number of files written.
    """
    from tqdm import tqdm

    info = scan_dataset(source)
    if info.modality != "audio":
        raise DataError("channels apply to audio dataset folders only", source)
    stamp = {
        "version": RENDER_VERSION,
        "channel": channel,
        "description": CHANNELS.get(channel, ""),
        "seed": seed,
        "sample_rate": sample_rate,
        "source": source.name,
        "recordings": len(info.recordings),
    }
    if is_current(output, RENDER_FILE, stamp):
        return 0
    render = make_channel(channel, sample_rate, noise_root)
    partial = start_partial(output)
    bar = tqdm(info.recordings, desc=f"{channel}", unit="clip", disable=not progress)
    for rec in bar:
        relative = rec.path.relative_to(info.root).as_posix()
        audio = read_audio(rec.path, sample_rate)
        rendered = render(audio, sample_rate, np.random.default_rng(file_seed(seed, relative)))
        write_wav(partial / rec.label / (rec.path.stem + ".wav"), rendered, sample_rate)
    publish_audio(partial, output, RENDER_FILE, stamp, sample_rate)
    return len(info.recordings)
