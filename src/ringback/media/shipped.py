"""The warning shipped with ringback (used when a court has none of its own): a two-tone
siren (:mod:`ringback.media.siren`), a short pause, then the spoken message of
``audio/default-warning.wav`` (Mandarin, then English)."""

from __future__ import annotations

import wave
from functools import cache
from pathlib import Path

import numpy as np

from ringback.media.siren import two_tone_siren

SAMPLE_RATE = 8000
PAUSE_S = 0.4  # between the siren and the message


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


@cache
def default_warning() -> tuple[bytes, int]:
    """What a caller hears from the shipped default: (mono s16le PCM, sample rate)."""
    speech, rate = read_pcm(default_warning_path())
    pause = np.zeros(round(PAUSE_S * rate), dtype="<i2")
    return two_tone_siren(rate).astype("<i2").tobytes() + pause.tobytes() + speech, rate


def default_warning_8k() -> bytes:
    """:func:`default_warning` at 8 kHz (the shipped speech is telephone-band, 8 kHz)."""
    pcm, rate = default_warning()
    if rate != SAMPLE_RATE:
        raise ValueError(f"the shipped warning is {rate} Hz, expected {SAMPLE_RATE}")
    return pcm
