"""The Opus packets of an Ogg Opus file (RFC 3533 pages, RFC 7845 mapping), pure.

ffmpeg's ``libopus`` writes Ogg; an RTP Opus payload (RFC 7587) is one Opus packet, so the
packets are read back out of the pages: lacing values of 255 continue a packet, anything
less ends it (a packet may continue on the next page). The first two packets are the
``OpusHead`` and ``OpusTags`` headers, not audio.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = ["ogg_packets", "opus_packets"]

_PAGE: Final = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, seq, crc, n


def ogg_packets(data: bytes) -> list[bytes]:
    """Every packet of the (single) logical stream in ``data``; ``ValueError`` if malformed."""
    packets: list[bytes] = []
    partial = bytearray()
    pos = 0
    while pos < len(data):
        if len(data) - pos < _PAGE.size:
            raise ValueError(f"Ogg page header truncated at offset {pos}")
        capture, version, _flags, _granule, _serial, _seq, _crc, nseg = _PAGE.unpack_from(data, pos)
        if capture != b"OggS" or version != 0:
            raise ValueError(f"no Ogg page at offset {pos}")
        lacing = data[pos + _PAGE.size : pos + _PAGE.size + nseg]
        body = pos + _PAGE.size + nseg
        if len(lacing) != nseg or body + sum(lacing) > len(data):
            raise ValueError(f"Ogg page at offset {pos} truncated")
        for size in lacing:
            partial += data[body : body + size]
            body += size
            if size < 255:
                packets.append(bytes(partial))
                partial.clear()
        pos = body
    return packets


def opus_packets(data: bytes) -> list[bytes]:
    """The audio packets of an Ogg Opus file (the two header packets left out)."""
    packets = ogg_packets(data)
    if len(packets) < 2 or not packets[0].startswith(b"OpusHead"):
        raise ValueError("not an Ogg Opus stream (no OpusHead)")
    if not packets[1].startswith(b"OpusTags"):
        raise ValueError("Ogg Opus stream without OpusTags")
    return packets[2:]
