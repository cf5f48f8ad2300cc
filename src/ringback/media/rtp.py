"""RFC 3550 RTP sender core (sans-I/O): packets of one announcement stream, and its schedule.

An announcement is one talkspurt: the gaps between repetitions of the recording are sent as
silence frames (see :mod:`ringback.media.prepared`) with timestamps running on, so the marker
bit is set on the first packet only and the receiver's jitter buffer never has to re-sync.
(The alternative, sending nothing in the gaps, would need a marker on the first packet after
every gap and a timestamp jump; some gateways play comfort noise or drop the talkspurt start.)

Nothing here touches a socket, a clock or the event loop: :class:`RtpStream` turns a packet
index into bytes, :class:`StreamSchedule` turns a packet index into a due time.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "PTIME_S",
    "SAMPLES_PER_PACKET",
    "RtpHeader",
    "RtpStream",
    "StreamSchedule",
    "is_rtcp",
    "parse_rtp_header",
]

PTIME_S: Final = 0.020
SAMPLES_PER_PACKET: Final = 160  # 20 ms at 8 kHz
HEADER_LEN: Final = 12
_VERSION_BITS: Final = 0x80  # V=2, P=0, X=0, CC=0
_FIELDS: Final = struct.Struct(">BHI")  # byte 1 (M|PT), sequence number, timestamp
_HEADER: Final = struct.Struct(">BBHII")


@dataclass(frozen=True, slots=True)
class RtpHeader:
    version: int
    padding: bool
    extension: bool
    csrc_count: int
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    header_len: int  # fixed header + CSRCs + extension: where the payload starts


def is_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """True for RTCP (or anything in the RTCP range of RFC 5761 §4 when muxed with RTP)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def parse_rtp_header(data: bytes | bytearray | memoryview) -> RtpHeader:
    """Parse an RTP header; ``ValueError`` if ``data`` is not an RTP version 2 packet."""
    if len(data) < HEADER_LEN:
        raise ValueError(f"RTP packet too short: {len(data)} bytes")
    b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
    if b0 >> 6 != 2:
        raise ValueError(f"not RTP version 2 (version {b0 >> 6})")
    cc = b0 & 0x0F
    header_len = HEADER_LEN + 4 * cc
    if b0 & 0x10:
        if len(data) < header_len + 4:
            raise ValueError("RTP header extension truncated")
        (ext_words,) = struct.unpack_from(">H", data, header_len + 2)
        header_len += 4 + 4 * ext_words
    if len(data) < header_len:
        raise ValueError("RTP header truncated")
    return RtpHeader(
        version=2,
        padding=bool(b0 & 0x20),
        extension=bool(b0 & 0x10),
        csrc_count=cc,
        marker=bool(b1 & 0x80),
        payload_type=b1 & 0x7F,
        sequence=seq,
        timestamp=ts,
        ssrc=ssrc,
        header_len=header_len,
    )


class RtpStream:
    """The packets of one stream: packet ``i`` carries ``payloads[i]``.

    Sequence numbers and timestamps start at random values (RFC 3550 §5.1) unless given,
    and wrap at 2**16 / 2**32. The 12-byte header lives in one preallocated buffer;
    :meth:`render` rewrites only byte 1, the sequence number and the timestamp, then copies
    the payload behind it, so a packet costs one ``pack_into`` and one slice assignment.
    """

    __slots__ = (
        "_b1",
        "_b1_first",
        "_buf",
        "_payloads",
        "_seq0",
        "_step",
        "_ts0",
        "count",
        "payload_type",
        "ssrc",
    )

    def __init__(
        self,
        payloads: list[bytes],
        payload_type: int,
        *,
        ssrc: int | None = None,
        seq0: int | None = None,
        ts0: int | None = None,
        samples_per_packet: int = SAMPLES_PER_PACKET,
    ) -> None:
        if not 0 <= payload_type <= 127:
            raise ValueError(f"payload type out of range: {payload_type}")
        if not payloads:
            raise ValueError("an RTP stream needs at least one payload")
        self._payloads = payloads
        self.count = len(payloads)
        self.payload_type = payload_type
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc & 0xFFFFFFFF
        self._seq0 = secrets.randbits(16) if seq0 is None else seq0 & 0xFFFF
        self._ts0 = secrets.randbits(32) if ts0 is None else ts0 & 0xFFFFFFFF
        self._step = samples_per_packet
        self._b1 = payload_type
        self._b1_first = 0x80 | payload_type  # marker: start of the (single) talkspurt
        self._buf = bytearray(HEADER_LEN + len(payloads[0]))
        _HEADER.pack_into(self._buf, 0, _VERSION_BITS, payload_type, 0, 0, self.ssrc)

    def __len__(self) -> int:
        return self.count

    @property
    def seq0(self) -> int:
        return self._seq0

    @property
    def ts0(self) -> int:
        return self._ts0

    def render(self, i: int) -> bytearray:
        """Packet ``i`` in the stream's shared buffer: send it before the next call."""
        buf = self._buf
        _FIELDS.pack_into(
            buf,
            1,
            self._b1_first if i == 0 else self._b1,
            (self._seq0 + i) & 0xFFFF,
            (self._ts0 + i * self._step) & 0xFFFFFFFF,
        )
        buf[HEADER_LEN:] = self._payloads[i]
        return buf

    def packet(self, i: int) -> bytes:
        """Packet ``i`` as new bytes (for tests and tools; the pacer uses :meth:`render`)."""
        if not 0 <= i < self.count:
            raise IndexError(f"packet index {i} out of range 0..{self.count - 1}")
        return bytes(self.render(i))


@dataclass(frozen=True, slots=True)
class StreamSchedule:
    """Packet ``i`` is due at ``start + i * interval``, computed from ``start`` every time
    (never by adding intervals up), so rounding cannot accumulate into drift."""

    start: float
    count: int
    interval: float = PTIME_S

    def due(self, i: int) -> float:
        return self.start + i * self.interval

    def due_count(self, now: float) -> int:
        """How many packets (from packet 0) are due at ``now``."""
        if now < self.start:
            return 0
        # The epsilon keeps a packet due exactly at ``now`` from being lost to rounding.
        n = int((now - self.start) / self.interval + 1e-9) + 1
        return min(n, self.count)

    @property
    def last_due(self) -> float:
        return self.due(self.count - 1)

    @property
    def end(self) -> float:
        """When the last frame has finished playing."""
        return self.due(self.count)
