"""Opus packets out of Ogg pages (RFC 3533 lacing, RFC 7845 headers)."""

from __future__ import annotations

import struct

import pytest

from ringback.media.ogg import ogg_packets, opus_packets


def page(packets: list[bytes], *, continued_tail: bytes = b"") -> bytes:
    lacing = bytearray()
    body = bytearray()
    for p in packets:
        n = len(p)
        while n >= 255:
            lacing.append(255)
            n -= 255
        lacing.append(n)
        body += p
    if continued_tail:  # a packet that goes on on the next page: all lacing values 255
        lacing += bytes([255] * (len(continued_tail) // 255))
        body += continued_tail
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, 0, 0, 1, 0, 0, len(lacing))
    return header + bytes(lacing) + bytes(body)


def test_packets_are_split_by_lacing_and_join_across_pages() -> None:
    big = bytes(range(256)) * 2  # 512 bytes: lacing 255, 255, 2
    first_half = b"x" * 510
    data = page([b"OpusHead....", b"OpusTags...."]) + page(
        [b"a" * 3, big], continued_tail=first_half
    )
    data += page([b"y" * 7, b"z"])
    assert ogg_packets(data) == [
        b"OpusHead....",
        b"OpusTags....",
        b"aaa",
        big,
        first_half + b"y" * 7,
        b"z",
    ]
    assert opus_packets(data) == [b"aaa", big, first_half + b"y" * 7, b"z"]


def test_an_empty_packet_ends_with_a_zero_lacing_value() -> None:
    assert ogg_packets(page([b"", b"q"])) == [b"", b"q"]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"OggS\0", "truncated"),
        (b"RIFF" + b"\0" * 30, "no Ogg page"),
        (page([b"OpusHead"])[:-3], "truncated"),
    ],
)
def test_malformed_ogg_is_refused(data: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ogg_packets(data)


def test_opus_needs_its_headers() -> None:
    with pytest.raises(ValueError, match="OpusHead"):
        opus_packets(page([b"vorbis", b"x"]))
