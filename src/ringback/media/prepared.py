"""A recording ready to play: 20 ms RTP payloads per encoding, made once, shared by every call.

:meth:`PreparedAudio.from_pcm` encodes 8 kHz 16-bit PCM to μ-law and A-law (fast, numpy);
:func:`ringback.media.encode.prepare_all` adds G.722, Opus and AMR through ffmpeg (slow:
off the event loop) and lays them out with :meth:`PreparedAudio.from_encoded`. The
repetitions and the silence between them are the same ``bytes`` objects listed again, so
a 3× repeat costs list slots, not audio. :class:`PreparedCache`
keeps the prepared forms of the recordings in use within a byte budget (LRU), so nothing
is encoded per call.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Final, Literal

import numpy as np

from ringback.media.g711 import alaw_encode, ulaw_encode

__all__ = [
    "FRAME_MS",
    "FRAME_SAMPLES",
    "SILENCE",
    "Codec",
    "PreparedAudio",
    "PreparedCache",
]

Codec = Literal["PCMU", "PCMA"]
SAMPLE_RATE: Final = 8000
FRAME_MS: Final = 20
FRAME_SAMPLES: Final = SAMPLE_RATE * FRAME_MS // 1000  # 160
# The code for a zero sample: μ-law 0xFF (+0, bits inverted), A-law 0xD5 (even bits inverted).
SILENCE: Final[dict[str, bytes]] = {
    "PCMU": b"\xff" * FRAME_SAMPLES,
    "PCMA": b"\xd5" * FRAME_SAMPLES,
}


def _split(encoded: bytes) -> list[bytes]:
    return [encoded[i : i + FRAME_SAMPLES] for i in range(0, len(encoded), FRAME_SAMPLES)]


class PreparedAudio:
    """One recording as 20 ms frames per frames key (see :mod:`ringback.media.codecs`),
    with repeats and gaps laid out."""

    __slots__ = (
        "_frames",
        "_nbytes",
        "_silence",
        "frame_count",
        "gap_frames",
        "recording_frames",
        "repeat",
    )

    def __init__(
        self,
        frames: dict[str, list[bytes]],
        *,
        repeat: int,
        gap_frames: int,
        recording_frames: int,
        silence: dict[str, bytes] | None = None,
    ) -> None:
        self._frames = frames
        self._silence = silence if silence is not None else dict(SILENCE)
        self.repeat = repeat
        self.gap_frames = gap_frames
        self.recording_frames = recording_frames
        self.frame_count = len(next(iter(frames.values())))
        if any(len(f) != self.frame_count for f in frames.values()):
            raise ValueError("every encoding must have as many frames")
        distinct = recording_frames + gap_frames
        self._nbytes = sum(sum(len(p) for p in f[:distinct]) for f in frames.values())

    @classmethod
    def from_pcm(cls, pcm_s16le: bytes, *, repeat: int = 1, gap_ms: int = 0) -> PreparedAudio:
        """Prepare 8 kHz mono signed 16-bit little-endian PCM.

        The last frame is padded with silence; ``gap_ms`` of silence (rounded up to whole
        20 ms frames) separates the ``repeat`` plays, with none after the last.
        """
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        if gap_ms < 0:
            raise ValueError(f"gap_ms must be >= 0, got {gap_ms}")
        if len(pcm_s16le) % 2:
            raise ValueError("PCM data has an odd number of bytes (not 16-bit samples)")
        if not pcm_s16le:
            raise ValueError("empty recording")
        samples = np.frombuffer(pcm_s16le, dtype="<i2")
        padded = np.zeros(-(-samples.size // FRAME_SAMPLES) * FRAME_SAMPLES, dtype=np.int16)
        padded[: samples.size] = samples
        gap_frames = -(-gap_ms // FRAME_MS)
        frames: dict[str, list[bytes]] = {}
        for codec, encode in (("PCMU", ulaw_encode), ("PCMA", alaw_encode)):
            one = _split(encode(padded))
            silence = [SILENCE[codec]] * gap_frames
            laid_out = list(one)
            for _ in range(repeat - 1):
                laid_out += silence
                laid_out += one
            frames[codec] = laid_out
        return cls(
            frames,
            repeat=repeat,
            gap_frames=gap_frames,
            recording_frames=padded.size // FRAME_SAMPLES,
        )

    @classmethod
    def from_encoded(
        cls,
        encoded: dict[str, list[bytes]],
        *,
        recording_frames: int,
        gap_frames: int,
        repeat: int,
    ) -> PreparedAudio:
        """Lay out frames encoded once as the recording followed by ``max(gap_frames, 1)``
        frames of silence: the recording ``repeat`` times with the gap between; the last
        silent frame is each encoding's silence (to loop with, :meth:`silence`)."""
        frames: dict[str, list[bytes]] = {}
        silence: dict[str, bytes] = {}
        expected = recording_frames + max(gap_frames, 1)
        for key, enc in encoded.items():
            if len(enc) != expected:
                raise ValueError(f"{key}: {len(enc)} frames, expected {expected}")
            one = enc[:recording_frames]
            gap = enc[recording_frames : recording_frames + gap_frames]
            silence[key] = enc[-1]
            laid_out = list(one)
            for _ in range(repeat - 1):
                laid_out += gap
                laid_out += one
            frames[key] = laid_out
        return cls(
            frames,
            repeat=repeat,
            gap_frames=gap_frames,
            recording_frames=recording_frames,
            silence=silence,
        )

    def silence(self, key: str) -> bytes:
        """One 20 ms frame of silence for frames key ``key``."""
        try:
            return self._silence[key]
        except KeyError:
            raise ValueError(f"unsupported codec {key!r}") from None

    def has(self, key: str) -> bool:
        return key in self._frames

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(self._frames)

    def frames(self, codec: str) -> list[bytes]:
        """The payloads for frames key ``codec`` ("PCMU", "AMR-WB@2/be", ...), in play order.

        The list is shared: do not modify it.
        """
        try:
            return self._frames[codec]
        except KeyError:
            raise ValueError(f"unsupported codec {codec!r}") from None

    @property
    def duration_s(self) -> float:
        return self.frame_count * FRAME_MS / 1000

    @property
    def nbytes(self) -> int:
        """Audio bytes held (each distinct frame counted once) plus the lists' slots."""
        return self._nbytes + len(self._frames) * 8 * self.frame_count


CacheKey = tuple[Hashable, int, int]


class PreparedCache:
    """LRU of :class:`PreparedAudio` keyed by (recording id, repeat, gap_ms), within a byte
    budget. The most recently used entry is always kept, even when alone it is over budget.
    """

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[CacheKey, PreparedAudio] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, recording_id: Hashable, repeat: int, gap_ms: int) -> PreparedAudio | None:
        key = (recording_id, repeat, gap_ms)
        audio = self._entries.get(key)
        if audio is None:
            return None
        self._entries.move_to_end(key)
        return audio

    def get_or_prepare(
        self, recording_id: Hashable, repeat: int, gap_ms: int, load_pcm: Callable[[], bytes]
    ) -> PreparedAudio:
        """The cached form, or ``load_pcm()`` prepared and cached (a miss encodes once)."""
        audio = self.get(recording_id, repeat, gap_ms)
        if audio is not None:
            self.hits += 1
            return audio
        self.misses += 1
        audio = PreparedAudio.from_pcm(load_pcm(), repeat=repeat, gap_ms=gap_ms)
        self.put(recording_id, repeat, gap_ms, audio)
        return audio

    def put(self, recording_id: Hashable, repeat: int, gap_ms: int, audio: PreparedAudio) -> None:
        key = (recording_id, repeat, gap_ms)
        old = self._entries.pop(key, None)
        if old is not None:
            self.nbytes -= old.nbytes
        self._entries[key] = audio
        self.nbytes += audio.nbytes
        while self.nbytes > self.max_bytes and len(self._entries) > 1:
            _, evicted = self._entries.popitem(last=False)
            self.nbytes -= evicted.nbytes

    def invalidate(self, recording_id: Hashable) -> None:
        """Forget every prepared form of a recording (e.g. replaced or deleted)."""
        for key in [k for k in self._entries if k[0] == recording_id]:
            self.nbytes -= self._entries.pop(key).nbytes
