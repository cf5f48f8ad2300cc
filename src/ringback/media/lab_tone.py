"""The lab callee's tone: clearly not a warning, easy for a test to recognise.

Alternating 1 kHz and 1.4 kHz beeps of 200 ms with 200 ms of silence after each pair, at
-12 dBFS, as 8 kHz mono signed 16-bit PCM.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 8000
FREQUENCIES = (1000.0, 1400.0)
BEEP_S = 0.2


def lab_tone_pcm(seconds: float) -> bytes:
    """``seconds`` of the pattern (rounded to whole 20 ms frames)."""
    beep = int(SAMPLE_RATE * BEEP_S)
    t = np.arange(beep) / SAMPLE_RATE
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.005)  # no clicks
    amplitude = 10 ** (-12 / 20) * 32767
    cycle = np.concatenate(
        [amplitude * fade * np.sin(2 * np.pi * f * t) for f in FREQUENCIES] + [np.zeros(beep)]
    )
    total = round(seconds / 0.02) * 160
    repeats = -(-total // len(cycle))
    return np.tile(cycle, repeats)[:total].astype("<i2").tobytes()
