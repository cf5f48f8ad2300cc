"""RTP packet headers (RFC 3550) and the drift-free stream schedule."""

from __future__ import annotations

import pytest

from ringback.media.rtp import RtpStream, StreamSchedule, is_rtcp, parse_rtp_header

PAYLOADS = [bytes([i]) * 160 for i in range(10)]


def test_header_fields() -> None:
    s = RtpStream(PAYLOADS, 8, ssrc=0xDEADBEEF, seq0=1000, ts0=5000)
    for i in range(10):
        pkt = s.packet(i)
        assert len(pkt) == 172
        h = parse_rtp_header(pkt)
        assert (h.version, h.padding, h.extension, h.csrc_count) == (2, False, False, 0)
        assert h.payload_type == 8
        assert h.marker is (i == 0)
        assert h.sequence == 1000 + i
        assert h.timestamp == 5000 + 160 * i
        assert h.ssrc == 0xDEADBEEF
        assert pkt[h.header_len :] == PAYLOADS[i]


def test_sequence_and_timestamp_wrap() -> None:
    s = RtpStream(PAYLOADS, 0, ssrc=1, seq0=0xFFFE, ts0=0xFFFFFFFF - 200)
    seqs = [parse_rtp_header(s.packet(i)).sequence for i in range(4)]
    tss = [parse_rtp_header(s.packet(i)).timestamp for i in range(3)]
    assert seqs == [0xFFFE, 0xFFFF, 0, 1]
    assert tss == [0xFFFFFFFF - 200, 0xFFFFFFFF - 40, 119]


def test_random_initial_values_differ() -> None:
    streams = [RtpStream(PAYLOADS, 0) for _ in range(8)]
    assert len({s.ssrc for s in streams}) > 1
    assert len({s.seq0 for s in streams}) > 1
    assert len({s.ts0 for s in streams}) > 1
    for s in streams:
        h = parse_rtp_header(s.packet(0))
        assert (h.sequence, h.timestamp, h.ssrc) == (s.seq0, s.ts0, s.ssrc)


def test_render_reuses_one_buffer_and_marker_is_cleared() -> None:
    s = RtpStream(PAYLOADS, 0, ssrc=7, seq0=0, ts0=0)
    first = s.render(0)
    assert first[1] == 0x80
    assert s.render(1) is first
    assert first[1] == 0x00
    assert s.render(0)[1] == 0x80  # replaying packet 0 is well defined too


def test_packet_index_out_of_range() -> None:
    s = RtpStream(PAYLOADS, 0)
    with pytest.raises(IndexError):
        s.packet(10)


@pytest.mark.parametrize("bad", [b"", b"\x80" * 11, b"\x40" + b"\x00" * 11])
def test_parse_rejects_non_rtp(bad: bytes) -> None:
    with pytest.raises(ValueError):
        parse_rtp_header(bad)


def test_parse_csrc_and_extension() -> None:
    pkt = (
        bytes([0x92, 0x00])
        + b"\x00" * 10
        + b"\x00\x00\x00\x01" * 2
        + b"\xbe\xde\x00\x01"
        + (b"\x00" * 4)
        + b"payload"
    )
    h = parse_rtp_header(pkt)
    assert (h.csrc_count, h.extension, h.header_len) == (2, True, 12 + 8 + 8)
    assert pkt[h.header_len :] == b"payload"


def test_rtcp_detection() -> None:
    for pt in range(200, 205):
        assert is_rtcp(bytes([0x80, pt]) + b"\x00" * 6)
    assert not is_rtcp(RtpStream(PAYLOADS, 0).packet(0))
    assert not is_rtcp(RtpStream(PAYLOADS, 8).packet(1))


def test_schedule_30s_recording() -> None:
    start = 12345.678
    sched = StreamSchedule(start, 1500)
    assert sched.last_due - start == pytest.approx(29.98, abs=1e-9)
    assert sched.end - start == pytest.approx(30.0, abs=1e-9)
    # computed from the start, so the error never grows with i
    assert all(abs(sched.due(i) - (start + i * 0.02)) < 1e-9 for i in range(1500))


def test_schedule_due_count() -> None:
    sched = StreamSchedule(100.0, 1500)
    assert sched.due_count(99.999) == 0
    assert sched.due_count(100.0) == 1
    assert sched.due_count(100.0199) == 1
    assert sched.due_count(100.02) == 2
    assert sched.due_count(100.0 + 0.02 * 777) == 778  # exact boundaries survive rounding
    assert sched.due_count(200.0) == 1500
