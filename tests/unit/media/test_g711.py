"""G.711 codecs: exhaustive agreement with audioop, plus checks that do not need audioop."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest

from ringback.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

ALL_SAMPLES: npt.NDArray[np.int16] = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


@pytest.fixture(scope="module")
def audioop() -> ModuleType:
    """CPython's audioop (removed in 3.13): the reference implementation while it exists."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module: ModuleType = pytest.importorskip("audioop")
    return module


# --- byte-identical to audioop over every input ----------------------------------------------


def test_ulaw_encode_matches_audioop_for_every_int16(audioop: ModuleType) -> None:
    assert ulaw_encode(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES.tobytes(), 2)


def test_alaw_encode_matches_audioop_for_every_int16(audioop: ModuleType) -> None:
    assert alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES.tobytes(), 2)


def test_ulaw_decode_matches_audioop_for_every_code(audioop: ModuleType) -> None:
    expected = np.frombuffer(audioop.ulaw2lin(ALL_CODES, 2), dtype=np.int16)
    np.testing.assert_array_equal(ulaw_decode(ALL_CODES), expected)


def test_alaw_decode_matches_audioop_for_every_code(audioop: ModuleType) -> None:
    expected = np.frombuffer(audioop.alaw2lin(ALL_CODES, 2), dtype=np.int16)
    np.testing.assert_array_equal(alaw_decode(ALL_CODES), expected)


# --- published G.711 values, independent of audioop ---------------------------------------------
# μ-law: codes are sent bit-inverted, 0xFF is +0 and 0x7F is -0; the largest step decodes to
# ±8031 in 14-bit units (±32124 as int16). A-law: even bits inverted (XOR 0x55), so the
# smallest positive/negative steps are 0xD5/0x55 (±8 as int16) and the largest 0xAA/0x2A
# (±4032 in 13-bit units, ±32256 as int16).
# Note -1..-4 -> 0x7E, not the 0x7F ("-0") of ITU-T G.191's reference coder: like audioop (Sun's
# g711.c), the encoder floors negative samples to 14 bits (-1 >> 2 == -1) instead of taking the
# one's complement; byte-identity with audioop is the contract here.

ULAW_ENCODE_CASES = [
    (0, 0xFF),
    (1, 0xFF),
    (4, 0xFE),
    (-5, 0x7E),
    (100, 0xF2),
    (-100, 0x72),
    (8031 * 4, 0x80),
    (32767, 0x80),
    (-8031 * 4, 0x00),
    (-32768, 0x00),
]
ULAW_DECODE_CASES = [(0xFF, 0), (0x7F, 0), (0x80, 8031 * 4), (0x00, -8031 * 4), (0xF0, 120)]
ALAW_ENCODE_CASES = [
    (0, 0xD5),
    (15, 0xD5),
    (16, 0xD4),
    (-1, 0x55),
    (-16, 0x55),
    (-17, 0x54),
    (32767, 0xAA),
    (-32768, 0x2A),
]
ALAW_DECODE_CASES = [(0xD5, 8), (0x55, -8), (0xAA, 4032 * 8), (0x2A, -4032 * 8), (0x80, 5504)]


@pytest.mark.parametrize(("sample", "code"), ULAW_ENCODE_CASES)
def test_ulaw_encode_published_values(sample: int, code: int) -> None:
    assert ulaw_encode(np.array([sample], dtype=np.int16)) == bytes([code])


@pytest.mark.parametrize(("code", "sample"), ULAW_DECODE_CASES)
def test_ulaw_decode_published_values(code: int, sample: int) -> None:
    assert int(ulaw_decode(bytes([code]))[0]) == sample


@pytest.mark.parametrize(("sample", "code"), ALAW_ENCODE_CASES)
def test_alaw_encode_published_values(sample: int, code: int) -> None:
    assert alaw_encode(np.array([sample], dtype=np.int16)) == bytes([code])


@pytest.mark.parametrize(("code", "sample"), ALAW_DECODE_CASES)
def test_alaw_decode_published_values(code: int, sample: int) -> None:
    assert int(alaw_decode(bytes([code]))[0]) == sample


# --- structural properties over every input -----------------------------------------------------


@pytest.mark.parametrize(
    ("encode", "decode", "negative_zero"),
    [(ulaw_encode, ulaw_decode, {0x7F}), (alaw_encode, alaw_decode, set())],
    ids=["ulaw", "alaw"],
)
def test_codes_are_stable_and_reconstruction_is_monotonic(
    encode: Callable[[npt.NDArray[np.int16]], bytes],
    decode: Callable[[bytes], npt.NDArray[np.int16]],
    negative_zero: set[int],
) -> None:
    decoded = decode(ALL_CODES)
    # Every code except μ-law's "-0" survives decode -> encode unchanged.
    reencoded = encode(decoded)
    changed = {c for c in range(256) if reencoded[c] != c}
    assert changed == negative_zero
    # Quantisation never reverses order, and every input lands near its reconstruction.
    reconstruction = decode(encode(ALL_SAMPLES)).astype(np.int32)
    assert np.all(np.diff(reconstruction) >= 0)
    error = np.abs(reconstruction - ALL_SAMPLES.astype(np.int32))
    relative = error / np.maximum(np.abs(ALL_SAMPLES.astype(np.int32)), 256)
    assert float(relative.max()) < 0.07  # logarithmic companding: ~3 % step, clipped ends


def test_encode_accepts_any_layout_and_byte_order() -> None:
    pcm = np.arange(-3000, 3000, 7, dtype=np.int16)
    expected = ulaw_encode(pcm)
    assert ulaw_encode(pcm.astype(">i2")) == expected
    strided = np.repeat(pcm, 2)[::2]
    assert not strided.flags.c_contiguous
    assert ulaw_encode(strided) == expected
    assert alaw_encode(pcm.reshape(2, -1)) == alaw_encode(pcm)
    assert ulaw_encode(np.array([], dtype=np.int16)) == b""
    assert len(ulaw_decode(b"")) == 0


def test_decode_returns_writable_int16() -> None:
    out = alaw_decode(b"\xd5\x55")
    assert out.dtype == np.int16
    out[0] = 1  # a fresh array, not a view of the lookup table


def test_encode_rejects_non_int16() -> None:
    with pytest.raises(TypeError, match="16-bit"):
        ulaw_encode(np.zeros(4, dtype=np.float32))
    with pytest.raises(TypeError, match="16-bit"):
        alaw_encode(np.zeros(4, dtype=np.int32))
