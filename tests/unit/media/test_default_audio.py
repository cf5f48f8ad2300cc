"""The shipped default warning recording is fit to play down a G.711 telephone channel."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

WAV = Path(__file__).resolve().parents[3] / "src/ringback/media/audio/default-warning.wav"


@pytest.fixture(scope="module")
def samples() -> npt.NDArray[np.float64]:
    """The recording as floats in [-1, 1)."""
    with wave.open(str(WAV), "rb") as w:
        frames = w.readframes(w.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype(np.float64) / 32768.0


def test_format_is_8khz_mono_16bit_pcm() -> None:
    with wave.open(str(WAV), "rb") as w:
        assert w.getframerate() == 8000
        assert w.getnchannels() == 1
        assert w.getsampwidth() == 2
        assert w.getcomptype() == "NONE"


def test_duration_and_size() -> None:
    with wave.open(str(WAV), "rb") as w:
        seconds = w.getnframes() / w.getframerate()
    assert 8.0 <= seconds <= 25.0
    assert WAV.stat().st_size < 300 * 1024


def test_not_clipped(samples: npt.NDArray[np.float64]) -> None:
    peak = float(np.max(np.abs(samples)))
    assert peak < 10 ** (-0.5 / 20)  # at least 0.5 dB of headroom below full scale


def test_has_speech_energy(samples: npt.NDArray[np.float64]) -> None:
    rms_db = 20 * np.log10(np.sqrt(np.mean(samples**2)))
    assert -30.0 < rms_db < -8.0  # telephone speech level, far above silence (< -60 dBFS)
    # Speech throughout, not a short blip: most 50 ms windows carry signal.
    n = len(samples) // 400 * 400
    window_rms = np.sqrt(np.mean(samples[:n].reshape(-1, 400) ** 2, axis=1))
    active = float(np.mean(20 * np.log10(window_rms + 1e-12) > -45.0))
    assert active > 0.5


# ---------------------------------------------------------------- the siren before it (issue 15)


def test_the_shipped_warning_opens_with_a_two_tone_siren_then_the_message() -> None:
    from ringback.media.shipped import PAUSE_S, default_warning, read_pcm
    from ringback.media.siren import HIGH_HZ, LOW_HZ, SIREN_S

    pcm, rate = default_warning()
    speech, speech_rate = read_pcm(WAV)
    assert rate == speech_rate == 8000
    heard = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    siren_n = round(SIREN_S * rate)
    pause_n = round(PAUSE_S * rate)
    assert pcm[2 * (siren_n + pause_n) :] == speech  # the message, unchanged, after it
    assert not np.any(heard[siren_n : siren_n + pause_n])  # a silent pause between
    n = round(0.3 * rate)
    for k in range(8):  # hi, lo, hi, lo ...: each 300 ms segment is one pure tone
        segment = heard[k * n : (k + 1) * n]
        spectrum = np.abs(np.fft.rfft(segment * np.hanning(n)))
        peak_hz = np.argmax(spectrum) * rate / n
        want = HIGH_HZ if k % 2 == 0 else LOW_HZ
        assert abs(peak_hz - want) <= rate / n, (k, peak_hz)
        rms_db = 20 * np.log10(np.sqrt(np.mean(segment**2)))
        assert -18 < rms_db < -13, rms_db
    assert float(np.max(np.abs(heard[:siren_n]))) < 0.26  # no clipping, no clicks above it
    # the edges ramp: the first and last samples of every tone are near zero
    assert abs(heard[0]) < 0.01 and abs(heard[n - 1]) < 0.01
