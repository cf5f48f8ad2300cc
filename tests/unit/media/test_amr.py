"""RFC 4867 AMR/AMR-WB payloads: the bit layouts of §4.3 (bandwidth-efficient) and §4.4
(octet-aligned) from the storage format of §5, checked against the RFC's own figures."""

from __future__ import annotations

import pytest

from ringback.media.amr import (
    AMR_NB,
    AMR_WB,
    AmrFrame,
    AmrKind,
    depacketize,
    packetize,
    parse_storage,
    to_storage,
)


def bits_of(data: bytes) -> str:
    return "".join(f"{b:08b}" for b in data)


def speech(nbits: int, pattern: str = "1011001110001111") -> tuple[str, bytes]:
    """``nbits`` speech bits d(0)..d(n-1) and their storage octets (zero-padded)."""
    d = (pattern * (nbits // len(pattern) + 1))[:nbits]
    padded = d + "0" * (-nbits % 8)
    return d, int(padded or "0", 2).to_bytes(len(padded) // 8, "big")


def test_bandwidth_efficient_single_frame_is_rfc4867_section_4_3_5_1() -> None:
    """§4.3.5.1: CMR=15, F=0, FT=4 (AMR 7.4 kbit/s, 148 bits), Q=1, d(0)..d(147), then
    two padding bits P to make the payload octet-aligned: 4+6+148+2 = 160 bits."""
    d, stored = speech(148)
    payload = packetize(AmrFrame(4, True, stored), AMR_NB, octet_aligned=False)
    assert len(payload) == 20
    assert bits_of(payload) == "1111" + "0" + "0100" + "1" + d + "00"


def test_octet_aligned_single_frame_is_rfc4867_section_4_4() -> None:
    """§4.4.1-4.4.3: CMR octet (CMR=15, R=0000), ToC octet (F=0, FT, Q=1, P=00), then the
    speech octets, the last padded with zeros (AMR-WB 12.65: 253 bits in 32 octets)."""
    d, stored = speech(253)
    payload = packetize(AmrFrame(2, True, stored), AMR_WB, octet_aligned=True)
    assert bits_of(payload[:2]) == "11110000" + "0" + "0010" + "1" + "00"
    assert bits_of(payload[2:]) == d + "000"
    assert len(payload) == 2 + 32


@pytest.mark.parametrize("kind", [AMR_NB, AMR_WB])
@pytest.mark.parametrize("octet_aligned", [True, False])
def test_every_frame_type_survives_a_round_trip(kind: AmrKind, octet_aligned: bool) -> None:
    for ft, nbits in kind.bits.items():
        _, stored = speech(nbits)
        frame = AmrFrame(ft, ft != 8, stored)
        payload = packetize(frame, kind, octet_aligned=octet_aligned)
        expected_bits = (16 if octet_aligned else 10) + (
            -(-nbits // 8) * 8 if octet_aligned else nbits
        )
        assert len(payload) == -(-expected_bits // 8)
        assert depacketize(payload, kind, octet_aligned=octet_aligned) == [frame]


def test_storage_format_parses_what_rfc4867_section_5_describes() -> None:
    """§5.1 magic then §5.3 frames: header octet P FT Q P P, speech octets."""
    _, s1 = speech(244)
    _, s2 = speech(39)
    data = b"#!AMR\n" + bytes([7 << 3 | 4]) + s1 + bytes([8 << 3 | 4]) + s2 + bytes([15 << 3 | 4])
    frames = parse_storage(data, AMR_NB)
    assert [(f.frame_type, f.quality, len(f.speech)) for f in frames] == [
        (7, True, 31),
        (8, True, 5),
        (15, True, 0),
    ]
    assert to_storage(frames, AMR_NB) == data


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"#!AMR-WB\n", "not an AMR"),
        (b"#!AMR\n" + bytes([12 << 3]), "reserved"),
        (b"#!AMR\n" + bytes([7 << 3 | 4]) + b"\0" * 10, "truncated"),
    ],
)
def test_bad_storage_files_are_refused(data: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_storage(data, AMR_NB)
