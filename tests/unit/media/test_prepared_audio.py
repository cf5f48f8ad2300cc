"""Prepared recordings: 20 ms framing, padding, repeats, gaps, round trip, cache."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from ringback.media import shipped
from ringback.media.g711 import alaw_decode, ulaw_decode
from ringback.media.prepared import SILENCE, PreparedAudio, PreparedCache


def tone(n: int, freq: float = 440.0, amp: float = 0.5) -> npt.NDArray[np.int16]:
    t = np.arange(n) / 8000.0
    return (np.sin(2 * np.pi * freq * t) * amp * 32767).astype(np.int16)


def test_exact_frames() -> None:
    p = PreparedAudio.from_pcm(tone(1600).astype("<i2").tobytes())
    for codec in ("PCMU", "PCMA"):
        frames = p.frames(codec)
        assert len(frames) == 10
        assert all(len(f) == 160 for f in frames)
    assert p.duration_s == pytest.approx(0.2)


def test_last_frame_is_padded_with_silence() -> None:
    p = PreparedAudio.from_pcm(tone(170).tobytes())
    assert p.frame_count == 2
    assert p.frames("PCMU")[1][10:] == b"\xff" * 150
    assert p.frames("PCMA")[1][10:] == b"\xd5" * 150


def test_repeat_with_gap() -> None:
    pcm = tone(800).tobytes()  # 5 frames
    p = PreparedAudio.from_pcm(pcm, repeat=3, gap_ms=50)  # 50 ms -> 3 frames, rounded up
    for codec in ("PCMU", "PCMA"):
        frames = p.frames(codec)
        assert len(frames) == 5 + 3 + 5 + 3 + 5
        once = frames[:5]
        assert frames[5:8] == [SILENCE[codec]] * 3
        assert frames[8:13] == once
        assert frames[13:16] == [SILENCE[codec]] * 3
        assert frames[16:] == once
    assert p.duration_s == pytest.approx(21 * 0.02)


def test_no_gap_means_back_to_back() -> None:
    p = PreparedAudio.from_pcm(tone(320).tobytes(), repeat=2, gap_ms=0)
    assert p.frames("PCMU") == p.frames("PCMU")[:2] * 2


@pytest.mark.parametrize(("codec", "decode"), [("PCMU", ulaw_decode), ("PCMA", alaw_decode)])
def test_frames_decode_back_close_to_source(codec: str, decode: object) -> None:
    src = tone(8000, amp=0.3)
    p = PreparedAudio.from_pcm(src.tobytes())
    decoded = decode(b"".join(p.frames(codec)))  # type: ignore[operator]
    assert decoded.size == 8000
    err = decoded.astype(np.float64) - src.astype(np.float64)
    snr = 10 * np.log10(np.mean(src.astype(np.float64) ** 2) / np.mean(err**2))
    assert snr > 30  # G.711 gives ~38 dB on a tone at this level


def test_shipped_recording_prepares() -> None:
    pcm = shipped.read_pcm8k(shipped.default_warning_path())
    p = PreparedAudio.from_pcm(pcm, repeat=2, gap_ms=1000)
    n = -(-len(pcm) // 320)
    assert p.frame_count == 2 * n + 50
    assert p.duration_s == pytest.approx(p.frame_count * 0.02)


@pytest.mark.parametrize(
    ("pcm", "kw"),
    [(b"", {}), (b"\x00", {}), (b"\x00\x00", {"repeat": 0}), (b"\x00\x00", {"gap_ms": -1})],
)
def test_invalid_input(pcm: bytes, kw: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        PreparedAudio.from_pcm(pcm, **kw)


def test_unknown_codec() -> None:
    with pytest.raises(ValueError):
        PreparedAudio.from_pcm(b"\x00\x00").frames("G722")


def test_cache_prepares_once_per_key() -> None:
    cache = PreparedCache()
    loads: list[str] = []

    def load() -> bytes:
        loads.append("x")
        return tone(1600).tobytes()

    a = cache.get_or_prepare("rec-1", 2, 500, load)
    b = cache.get_or_prepare("rec-1", 2, 500, load)
    assert a is b and len(loads) == 1
    c = cache.get_or_prepare("rec-1", 1, 500, load)
    assert c is not a and len(loads) == 2
    assert (cache.hits, cache.misses) == (1, 2)
    cache.invalidate("rec-1")
    assert len(cache) == 0 and cache.nbytes == 0


def test_cache_evicts_least_recently_used_within_budget() -> None:
    one = PreparedAudio.from_pcm(tone(8000).tobytes())  # 50 frames
    cache = PreparedCache(max_bytes=int(one.nbytes * 2.5))
    cache.put("a", 1, 0, one)
    cache.put("b", 1, 0, PreparedAudio.from_pcm(tone(8000).tobytes()))
    assert cache.get("a", 1, 0) is one  # "a" is now the most recent
    cache.put("c", 1, 0, PreparedAudio.from_pcm(tone(8000).tobytes()))
    assert ("a", 1, 0) in cache and ("c", 1, 0) in cache and ("b", 1, 0) not in cache
    assert cache.nbytes <= cache.max_bytes


def test_cache_keeps_a_single_oversized_entry() -> None:
    cache = PreparedCache(max_bytes=10)
    cache.put("big", 1, 0, PreparedAudio.from_pcm(tone(8000).tobytes()))
    assert len(cache) == 1
