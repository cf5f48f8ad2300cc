"""Measuring received audio (8 kHz mono int16): level, likeness to a reference, pitch.

What a test caller needs to decide what it heard: the RMS level in dBFS, the peak of the
normalised cross-correlation with a reference recording (and where it lines up), and the
strongest frequencies of a tone. Pure numpy, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["Alignment", "best_alignment", "dominant_frequencies", "rms_dbfs"]

RATE: Final = 8000
FULL_SCALE: Final = 32768.0
SILENCE_DBFS: Final = -120.0  # what digital silence reports (log of zero is not a number)

Pcm = npt.NDArray[np.int16]


def rms_dbfs(pcm: Pcm) -> float:
    """RMS level relative to a full-scale square wave (0 dBFS); -120 for silence."""
    if len(pcm) == 0:
        return SILENCE_DBFS
    x = pcm.astype(np.float64)
    rms = math.sqrt(float(np.dot(x, x)) / len(x))
    if rms <= 0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 20 * math.log10(rms / FULL_SCALE))


@dataclass(frozen=True, slots=True)
class Alignment:
    """Where ``reference`` fits best in ``received``."""

    correlation: float  # normalised cross-correlation at the best lag, -1..1
    offset_s: float  # where the reference starts in the received audio (negative: before it)
    overlap_s: float  # how much of the two overlap at that lag


def best_alignment(received: Pcm, reference: Pcm, *, min_overlap: float = 0.8) -> Alignment | None:
    """The peak of the normalised cross-correlation of ``reference`` against ``received``.

    At each lag the products are summed over the overlap only and divided by the energies of
    both signals over that same overlap, so the value is 1.0 for an exact (scaled) copy
    wherever it sits. Lags whose overlap is shorter than ``min_overlap`` of the shorter
    signal are not considered: a few samples that happen to line up are not a match.
    None when either signal is empty.
    """
    a = received.astype(np.float64)
    b = reference.astype(np.float64)
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        return None
    size = 1 << (n + m - 1).bit_length()
    spectrum = np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size))
    circular = np.fft.irfft(spectrum, size)
    # lags k = -(m-1) .. n-1: c[k] = sum a[i+k] * b[i]
    lags = np.arange(-(m - 1), n)
    products = np.concatenate([circular[size - (m - 1) :], circular[:n]])
    ea = np.concatenate([[0.0], np.cumsum(a * a)])
    eb = np.concatenate([[0.0], np.cumsum(b * b)])
    a_lo = np.maximum(lags, 0)
    a_hi = np.minimum(lags + m, n)
    b_lo = np.maximum(-lags, 0)
    b_hi = np.minimum(n - lags, m)
    overlap = a_hi - a_lo
    energy = (ea[a_hi] - ea[a_lo]) * (eb[b_hi] - eb[b_lo])
    usable = (overlap >= min_overlap * min(n, m)) & (energy > 0)
    if not usable.any():
        return Alignment(0.0, 0.0, 0.0)
    ncc = np.zeros(len(lags))
    ncc[usable] = products[usable] / np.sqrt(energy[usable])
    best = int(np.argmax(np.where(usable, ncc, -np.inf)))
    return Alignment(
        min(1.0, float(ncc[best])), float(lags[best]) / RATE, float(overlap[best]) / RATE
    )


def dominant_frequencies(
    pcm: Pcm, *, count: int = 3, within_db: float = 20.0, spacing_hz: float = 60.0
) -> list[float]:
    """The strongest frequencies in ``pcm``, strongest first: up to ``count`` spectral peaks
    at least ``spacing_hz`` apart and no more than ``within_db`` below the strongest.
    Empty for silence."""
    if len(pcm) < 64:
        return []
    x = pcm.astype(np.float64)
    x = x - x.mean()
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    power[freqs < 50] = 0.0  # hum and DC are not the tone
    top = float(power.max())
    if top <= 0:
        return []
    floor = top * 10 ** (-within_db / 10)
    out: list[float] = []
    while len(out) < count:
        i = int(np.argmax(power))
        if power[i] <= 0 or power[i] < floor:
            break
        out.append(round(float(freqs[i]), 1))
        power[np.abs(freqs - freqs[i]) < spacing_hz] = 0.0
    return out
