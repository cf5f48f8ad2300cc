"""The Opus packets of an Ogg Opus file (RFC 3533 pages, RFC 7845 mapping), pure.

ffmpeg's ``libopus`` writes Ogg; an RTP Opus payload (RFC 7587) is one Opus packet, so the
packets are read back out of the pages: lacing values of 255 continue a packet, anything
less ends it (a packet may continue on the next page). The first two packets are the
``OpusHead`` and ``OpusTags`` headers, not audio.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = ["ogg_packets", "opus_file", "opus_packets"]

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


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else r << 1
        table.append(r & 0xFFFFFFFF)
    return table


_CRC: Final = _crc_table()


def _crc(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[((crc >> 24) & 0xFF) ^ b]
    return crc


def _page(packets: list[bytes], granule: int, seq: int, flags: int, serial: int) -> bytes:
    lacing = bytearray()
    for p in packets:
        lacing += b"\xff" * (len(p) // 255) + bytes([len(p) % 255])
    header = bytearray(_PAGE.pack(b"OggS", 0, flags, granule, serial, seq, 0, len(lacing)))
    page = bytes(header) + bytes(lacing) + b"".join(packets)
    crc = _crc(page)
    return page[:22] + crc.to_bytes(4, "little") + page[26:]


def opus_file(packets: list[bytes], *, channels: int = 1, samples_per_packet: int = 960) -> bytes:
    """An Ogg Opus file (RFC 7845) of ``packets`` (20 ms each at 48 kHz by default), one
    packet a page: so ffmpeg can decode Opus received over RTP (``ringback dial``)."""
    serial = 0x52424B  # "RBK"
    head = b"OpusHead" + bytes([1, channels]) + (0).to_bytes(2, "little")
    head += (48000).to_bytes(4, "little") + (0).to_bytes(2, "little") + b"\x00"
    tags = b"OpusTags" + (8).to_bytes(4, "little") + b"ringback" + (0).to_bytes(4, "little")
    out = [_page([head], 0, 0, 0x02, serial), _page([tags], 0, 1, 0, serial)]
    for i, packet in enumerate(packets):
        last = i == len(packets) - 1
        granule = (i + 1) * samples_per_packet
        out.append(_page([packet], granule, i + 2, 0x04 if last else 0, serial))
    return b"".join(out)
