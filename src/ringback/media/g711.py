"""ITU-T G.711 μ-law (PCMU) and A-law (PCMA) codecs built on numpy lookup tables.

The tables are computed once at import by the G.711 segment arithmetic (the same algorithm
as the Sun reference ``g711.c`` that CPython's ``audioop`` uses), so the results are
byte-identical to ``audioop.lin2ulaw``/``lin2alaw``/``ulaw2lin``/``alaw2lin`` for 16-bit
samples. Encoding is one table lookup per sample: the int16 sample viewed as uint16 indexes a
65,536-entry table of codes; decoding indexes a 256-entry table of int16 values.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["alaw_decode", "alaw_encode", "ulaw_decode", "ulaw_encode"]

# μ-law works on a 14-bit magnitude with a bias of 33 (0x84 >> 2); A-law on 13 bits, no bias.
_ULAW_BIAS: Final = 0x84 >> 2
_ULAW_CLIP: Final = 8159  # largest 14-bit magnitude that still fits segment 7 after the bias
# Upper end (inclusive) of each of the 8 segments, for the biased μ-law / plain A-law magnitude.
_ULAW_SEG_END: Final = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], np.int32)
_ALAW_SEG_END: Final = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], np.int32)


def _all_int16_in_uint16_order() -> npt.NDArray[np.int32]:
    """Every int16 value, placed at the index of its uint16 bit pattern (0..65535)."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    x = _all_int16_in_uint16_order() >> 2  # 14-bit, arithmetic shift (floors negatives)
    negative = x < 0
    mask = np.where(negative, 0x7F, 0xFF)  # the code is transmitted with all bits inverted
    magnitude = np.minimum(np.abs(x), _ULAW_CLIP) + _ULAW_BIAS
    segment = np.searchsorted(_ULAW_SEG_END, magnitude)  # first segment whose end >= magnitude
    mantissa = (magnitude >> (segment + 1)) & 0x0F
    code = np.where(segment >= 8, 0x7F, (segment << 4) | mantissa)
    return (code ^ mask).astype(np.uint8)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    x = _all_int16_in_uint16_order() >> 3  # 13-bit, arithmetic shift
    negative = x < 0
    mask = np.where(negative, 0x55, 0xD5)  # sign bit set for positive, even bits inverted
    magnitude = np.where(negative, -x - 1, x)  # one's complement: -1 -> 0, -4096 -> 4095
    segment = np.searchsorted(_ALAW_SEG_END, magnitude)
    mantissa = (magnitude >> np.maximum(segment, 1)) & 0x0F  # segments 0 and 1 share a step
    code = np.where(segment >= 8, 0x7F, (segment << 4) | mantissa)
    return (code ^ mask).astype(np.uint8)


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    segment = (u >> 4) & 0x07
    t = (((u & 0x0F) << 3) + 0x84) << segment
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    segment = (a >> 4) & 0x07
    step: npt.NDArray[np.int32] = np.where(segment == 0, 8, 0x108).astype(np.int32)
    shift: npt.NDArray[np.int32] = np.maximum(segment - 1, 0)
    t = (((a & 0x0F) << 4) + step) << shift
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ULAW_ENCODE: Final = _build_ulaw_encode()
_ALAW_ENCODE: Final = _build_alaw_encode()
_ULAW_DECODE: Final = _build_ulaw_decode()
_ALAW_DECODE: Final = _build_alaw_decode()
for _table in (_ULAW_ENCODE, _ALAW_ENCODE, _ULAW_DECODE, _ALAW_DECODE):
    _table.flags.writeable = False


def _as_uint16_index(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.uint16]:
    if pcm.dtype.kind != "i" or pcm.dtype.itemsize != 2:
        raise TypeError(f"expected 16-bit signed PCM samples, got dtype {pcm.dtype}")
    # asarray only copies for a non-native byte order; the view never copies.
    return np.asarray(pcm, dtype=np.int16).view(np.uint16)


def ulaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """Encode int16 PCM samples (any shape, C order) to G.711 μ-law, one byte per sample."""
    return _ULAW_ENCODE.take(_as_uint16_index(pcm)).tobytes()


def alaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """Encode int16 PCM samples (any shape, C order) to G.711 A-law, one byte per sample."""
    return _ALAW_ENCODE.take(_as_uint16_index(pcm)).tobytes()


def ulaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    """Decode G.711 μ-law bytes to a new int16 array."""
    return _ULAW_DECODE.take(np.frombuffer(data, dtype=np.uint8))


def alaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    """Decode G.711 A-law bytes to a new int16 array."""
    return _ALAW_DECODE.take(np.frombuffer(data, dtype=np.uint8))
