"""The two-tone siren that opens the shipped default warning, synthesised here.

Press reports of the courts' systems say a caller "will hear a siren and recorded message".
This is a hi-lo siren: 900 Hz and 650 Hz alternating every 300 ms, four cycles (2.4 s),
each tone shaped with 10 ms raised-cosine edges so no codec hears a click, at −15 dBFS
RMS (about the loudness of the speech after it). Both tones are inside every codec's
passband (AMR-NB's and G.711's 300–3400 Hz) and are not DTMF frequencies. Made by code,
not a sound file, so nothing is committed for it and it is exact at any sample rate.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["HIGH_HZ", "LOW_HZ", "SIREN_S", "two_tone_siren"]

HIGH_HZ: Final = 900.0
LOW_HZ: Final = 650.0
TONE_S: Final = 0.3
CYCLES: Final = 4
SIREN_S: Final = 2 * TONE_S * CYCLES
AMPLITUDE: Final = 0.25  # sine peak: −12 dBFS, −15 dBFS RMS
RAMP_S: Final = 0.010


def two_tone_siren(rate: int) -> npt.NDArray[np.int16]:
    """The siren as int16 samples at ``rate`` Hz."""
    n = round(TONE_S * rate)
    t = np.arange(n) / rate
    ramp = round(RAMP_S * rate)
    envelope = np.ones(n)
    edge = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    envelope[:ramp] = edge
    envelope[n - ramp :] = edge[::-1]
    tones = [AMPLITUDE * envelope * np.sin(2 * np.pi * f * t) for f in (HIGH_HZ, LOW_HZ)]
    siren = np.concatenate(tones * CYCLES)
    return np.round(siren * 32767).astype(np.int16)
