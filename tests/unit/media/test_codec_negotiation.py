"""Offer/answer beyond G.711 (issue 15): the caller's first prepared codec, with its payload
type, clock rate, channels and fmtp; RFC 4733 telephone-event offered back."""

from __future__ import annotations

import pytest

from ringback.media.codecs import ENCODINGS, G711
from ringback.media.offer_answer import Answer, NoAnswer, Selection, negotiate, select
from ringback.sip.sdp import parse_sdp

ALL = frozenset(ENCODINGS)


def offer(media: str) -> bytes:
    head = "v=0\r\no=ue 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    return (head + "\r\n".join(media.strip().splitlines()) + "\r\n").encode()


def chosen(media: str, available: frozenset[str] = ALL) -> Selection:
    result = select(offer(media), available)
    assert isinstance(result, Selection), result
    return result


def answer(media: str, available: frozenset[str] = ALL) -> tuple[Answer, list[str]]:
    result = negotiate(
        offer(media), local_ip="198.51.100.7", local_port=20000, session_id=9, available=available
    )
    assert isinstance(result, Answer), result
    m = parse_sdp(result.sdp).media[0]
    return result, [f"{a.name}:{a.value}" if a.value else a.name for a in m.attributes]


def test_g722_static_is_answered_at_its_sdp_clock_of_8000() -> None:
    a, attrs = answer("m=audio 5004 RTP/AVP 9 0 8")
    assert (a.codec, a.payload_type) == ("G722", 9)
    assert attrs == ["rtpmap:9 G722/8000", "ptime:20", "sendonly"]
    s = chosen("m=audio 5004 RTP/AVP 9 0 8")
    assert s.samples_per_packet == 160  # RFC 3551: G.722's RTP clock is 8 kHz


def test_opus_keeps_the_callers_dynamic_number_and_its_telephone_event() -> None:
    media = """m=audio 5004 RTP/AVP 111 126 101 0
a=rtpmap:111 opus/48000/2
a=fmtp:111 useinbandfec=1
a=rtpmap:126 telephone-event/48000
a=rtpmap:101 telephone-event/8000
a=fmtp:126 0-15"""
    a, attrs = answer(media)
    assert (a.codec, a.payload_type) == ("opus", 111)
    assert attrs == [
        "rtpmap:111 opus/48000/2",
        "fmtp:111 stereo=0;sprop-stereo=0;useinbandfec=0",
        "rtpmap:126 telephone-event/48000",  # the one at the codec's clock rate
        "fmtp:126 0-15",
        "ptime:20",
        "sendonly",
    ]
    assert parse_sdp(a.sdp).media[0].formats == ["111", "126"]
    assert chosen(media).samples_per_packet == 960  # RFC 7587: 48 kHz RTP clock


def test_amr_wb_octet_aligned_and_its_mode_set_are_honoured() -> None:
    media = (
        "m=audio 5004 RTP/AVP 104\na=rtpmap:104 AMR-WB/16000\n"
        "a=fmtp:104 octet-align=1;mode-set=0,1,2"
    )
    _, attrs = answer(media)
    assert attrs[:2] == ["rtpmap:104 AMR-WB/16000", "fmtp:104 octet-align=1;mode-set=0,1,2"]
    s = chosen(media)
    assert (s.frames, s.samples_per_packet) == ("AMR-WB@2/oa", 320)


def test_amr_without_octet_align_is_bandwidth_efficient() -> None:
    s = chosen("m=audio 5004 RTP/AVP 97\na=rtpmap:97 AMR/8000")
    assert (s.codec, s.frames, s.fmtp, s.samples_per_packet) == ("AMR", "AMR@7/be", None, 160)
    s = chosen("m=audio 5004 RTP/AVP 97\na=rtpmap:97 AMR/8000\na=fmtp:97 octet-align=0")
    assert s.frames == "AMR@7/be"


@pytest.mark.parametrize(
    "fmtp",
    [
        "mode-set=0,2,4",  # 12.2 kbit/s (mode 7) not allowed: we prepared no other
        "octet-align=1;crc=1",
        "octet-align=1;robust-sorting=1",
        "octet-align=1;interleaving=4",
        "mode-set=x",
    ],
)
def test_amr_we_cannot_send_is_skipped_for_the_next_format(fmtp: str) -> None:
    s = chosen(f"m=audio 5004 RTP/AVP 97 8\na=rtpmap:97 AMR/8000\na=fmtp:97 {fmtp}")
    assert (s.codec, s.payload_type) == ("PCMA", 8)


def test_a_codec_not_prepared_is_skipped() -> None:
    media = "m=audio 5004 RTP/AVP 96 9 0\na=rtpmap:96 AMR-WB/16000"
    assert chosen(media, G711).codec == "PCMU"
    assert chosen(media, G711 | {"G722"}).codec == "G722"
    assert chosen(media).codec == "AMR-WB"


@pytest.mark.parametrize(
    "media",
    [
        "m=audio 5004 RTP/AVP 96 101\na=rtpmap:96 EVS/16000\na=rtpmap:101 telephone-event/16000",
        "m=audio 5004 RTP/AVP 111\na=rtpmap:111 opus/48000/1",  # RFC 7587 says /2
        "m=audio 5004 RTP/AVP 97\na=rtpmap:97 AMR-WB/8000",  # wrong clock
        "m=audio 5004 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x",  # SRTP only
    ],
)
def test_offers_we_cannot_play_are_no_codec(media: str) -> None:
    result = select(offer(media), ALL)
    assert isinstance(result, NoAnswer) and result.reason == "no_codec", result


@pytest.mark.parametrize(
    ("media", "step"),
    [
        ("m=audio 5004 RTP/AVP 0", 160),
        ("m=audio 5004 RTP/AVP 9", 160),  # G.722: 16 kHz audio, 8 kHz RTP clock
        ("m=audio 5004 RTP/AVP 111\na=rtpmap:111 opus/48000/2", 960),
        ("m=audio 5004 RTP/AVP 97\na=rtpmap:97 AMR/8000", 160),
        ("m=audio 5004 RTP/AVP 98\na=rtpmap:98 AMR-WB/16000", 320),
    ],
)
def test_packets_are_stamped_at_the_codecs_rtp_clock(media: str, step: int) -> None:
    """What the pacer sends for a selection: 20 ms apart, timestamps ``step`` apart."""
    from ringback.media.rtp import RtpStream, parse_rtp_header

    s = chosen(media)
    stream = RtpStream(
        [b"\x01" * 33] * 5,
        s.payload_type,
        ts0=2**32 - step,
        samples_per_packet=s.samples_per_packet,
    )
    headers = [parse_rtp_header(stream.packet(i)) for i in range(5)]
    assert [h.timestamp for h in headers] == [2**32 - step, 0, step, 2 * step, 3 * step]
    assert {h.payload_type for h in headers} == {s.payload_type}
