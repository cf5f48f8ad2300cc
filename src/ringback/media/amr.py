"""AMR and AMR-WB (RFC 4867): the storage format ffmpeg writes, and the RTP payloads.

ffmpeg (libopencore_amrnb / libvo_amrwbenc) writes the storage format of RFC 4867 §5: a
magic line (``#!AMR\\n`` or ``#!AMR-WB\\n``), then one frame after another, each a header
octet ``P FT(4) Q P P`` and the speech bits padded to whole octets. The speech bits are in
the same (sensitivity) order as in an RTP payload, so a payload is only re-framed:

- octet-aligned (§4.4, ``octet-align=1``): a CMR octet (``CMR(4) R(4)``), the ToC octet
  (``F FT(4) Q P P`` — the storage header with F=0), the speech octets as stored;
- bandwidth-efficient (§4.3, the default): CMR (4 bits), ToC (``F FT(4) Q``: 6 bits), the
  speech bits, then zero bits to the next octet boundary.

One frame per packet (20 ms), no interleaving, no CRC, no robust sorting; CMR is 15 (no
mode request). Pure functions: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "AMR_NB",
    "AMR_WB",
    "AmrFrame",
    "AmrKind",
    "depacketize",
    "packetize",
    "parse_storage",
    "to_storage",
]

NO_REQUEST: Final = 15  # CMR value: no mode request
NO_DATA: Final = 15  # frame type: no data


@dataclass(frozen=True, slots=True)
class AmrKind:
    """AMR-NB or AMR-WB: the file magic, the clock rate and speech bits per frame type."""

    name: str  # the SDP encoding name
    magic: bytes
    clock_rate: int
    bits: dict[int, int]  # frame type -> speech bits (speech modes, SID, NO_DATA)
    speech_modes: int  # frame types 0 .. speech_modes-1 are speech modes (mode-set values)

    @property
    def samples_per_frame(self) -> int:
        return self.clock_rate // 50  # 20 ms


# 3GPP TS 26.101 Table 1a / TS 26.201 Table 1a (RFC 4867 §3.6).
AMR_NB: Final = AmrKind(
    "AMR",
    b"#!AMR\n",
    8000,
    {0: 95, 1: 103, 2: 118, 3: 134, 4: 148, 5: 159, 6: 204, 7: 244, 8: 39, 15: 0},
    8,
)
AMR_WB: Final = AmrKind(
    "AMR-WB",
    b"#!AMR-WB\n",
    16000,
    {0: 132, 1: 177, 2: 253, 3: 285, 4: 317, 5: 365, 6: 397, 7: 461, 8: 477, 9: 40, 15: 0},
    9,
)


@dataclass(frozen=True, slots=True)
class AmrFrame:
    frame_type: int
    quality: bool  # Q: the frame is not damaged
    speech: bytes  # the speech bits, padded with zero bits to whole octets


def parse_storage(data: bytes, kind: AmrKind) -> list[AmrFrame]:
    """The frames of an RFC 4867 §5 single-channel file; ``ValueError`` if malformed."""
    if not data.startswith(kind.magic):
        raise ValueError(f"not an {kind.name} storage file (magic {data[:9]!r})")
    frames: list[AmrFrame] = []
    pos = len(kind.magic)
    while pos < len(data):
        header = data[pos]
        frame_type = (header >> 3) & 0x0F
        bits = kind.bits.get(frame_type)
        if bits is None:
            raise ValueError(f"frame type {frame_type} at offset {pos} is reserved")
        size = (bits + 7) // 8
        if pos + 1 + size > len(data):
            raise ValueError(f"frame at offset {pos} truncated")
        frames.append(AmrFrame(frame_type, bool(header & 0x04), data[pos + 1 : pos + 1 + size]))
        pos += 1 + size
    return frames


def to_storage(frames: list[AmrFrame], kind: AmrKind) -> bytes:
    """The inverse of :func:`parse_storage` (for decoding what we hear with ffmpeg)."""
    out = bytearray(kind.magic)
    for f in frames:
        out.append((f.frame_type << 3) | (0x04 if f.quality else 0))
        out += f.speech
    return bytes(out)


def packetize(frame: AmrFrame, kind: AmrKind, *, octet_aligned: bool) -> bytes:
    """One RTP payload carrying ``frame`` (CMR 15, F=0)."""
    q = 1 if frame.quality else 0
    if octet_aligned:
        return bytes([NO_REQUEST << 4, (frame.frame_type << 3) | (q << 2)]) + frame.speech
    nbits = kind.bits[frame.frame_type]
    header = (NO_REQUEST << 6) | (frame.frame_type << 1) | q  # CMR(4) F(1)=0 FT(4) Q(1): 10 bits
    speech = int.from_bytes(frame.speech, "big") >> (len(frame.speech) * 8 - nbits)
    total = 10 + nbits
    pad = -total % 8
    value = ((header << nbits) | speech) << pad
    return value.to_bytes((total + pad) // 8, "big")


def depacketize(payload: bytes, kind: AmrKind, *, octet_aligned: bool) -> list[AmrFrame]:
    """The frames of one RTP payload (any number of frames, F bits followed); ``ValueError``
    if malformed. Used by ``ringback dial`` to decode what it hears."""
    if octet_aligned:
        if len(payload) < 2:
            raise ValueError("AMR payload too short")
        pos = 1
        tocs: list[int] = []
        while True:
            if pos >= len(payload):
                raise ValueError("AMR table of contents truncated")
            toc = payload[pos]
            tocs.append(toc)
            pos += 1
            if not toc & 0x80:
                break
        frames = []
        for toc in tocs:
            ft = (toc >> 3) & 0x0F
            bits = kind.bits.get(ft)
            if bits is None:
                raise ValueError(f"reserved frame type {ft}")
            size = (bits + 7) // 8
            if pos + size > len(payload):
                raise ValueError("AMR speech data truncated")
            frames.append(AmrFrame(ft, bool(toc & 0x04), payload[pos : pos + size]))
            pos += size
        return frames
    total = len(payload) * 8
    value = int.from_bytes(payload, "big")

    def take(start: int, n: int) -> int:
        if start + n > total:
            raise ValueError("AMR payload truncated")
        return (value >> (total - start - n)) & ((1 << n) - 1)

    pos = 4
    entries: list[tuple[int, bool]] = []
    while True:
        toc = take(pos, 6)
        pos += 6
        entries.append(((toc >> 1) & 0x0F, bool(toc & 1)))
        if not toc & 0x20:
            break
    frames = []
    for ft, quality in entries:
        bits = kind.bits.get(ft)
        if bits is None:
            raise ValueError(f"reserved frame type {ft}")
        speech = take(pos, bits) if bits else 0
        pos += bits
        size = (bits + 7) // 8
        frames.append(AmrFrame(ft, quality, (speech << (size * 8 - bits)).to_bytes(size, "big")))
    return frames
