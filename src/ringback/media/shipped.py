"""The warning recording shipped with ringback (used when a court has none of its own)."""

from __future__ import annotations

import wave
from pathlib import Path

SAMPLE_RATE = 8000


def audio_dir() -> Path:
    """The shipped recordings: package data in ``ringback/media/audio/``."""
    return Path(__file__).resolve().parent / "audio"


def default_warning_path() -> Path:
    return audio_dir() / "default-warning.wav"


def read_pcm(path: Path) -> tuple[bytes, int]:
    """A mono 16-bit WAV as (little-endian PCM bytes, sample rate)."""
    with wave.open(str(path), "rb") as wav:
        if (wav.getnchannels(), wav.getsampwidth()) != (1, 2):
            raise ValueError(f"{path}: expected mono 16-bit PCM")
        return wav.readframes(wav.getnframes()), wav.getframerate()


def read_pcm8k(path: Path) -> bytes:
    """Read an 8 kHz mono 16-bit WAV as little-endian PCM bytes (no resampling here)."""
    with wave.open(str(path), "rb") as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise ValueError(f"{path}: expected 8 kHz mono 16-bit PCM")
        return wav.readframes(wav.getnframes())
