"""RFC 3264 offer/answer for a send-only announcement (no network)."""

from __future__ import annotations

import pytest

from ringback.media.offer_answer import Answer, NoAnswer, negotiate
from ringback.sip.sdp import parse_sdp


def offer(*media: str, c: str = "IN IP4 192.0.2.10", session: str = "") -> bytes:
    lines = ["v=0", "o=alice 2890844526 2890844526 IN IP4 192.0.2.10", "s=-", f"c={c}", "t=0 0"]
    if session:
        lines.append(session)
    for m in media:
        lines += m.strip().splitlines()
    return ("\r\n".join(lines) + "\r\n").encode()


AUDIO_PCMU_FIRST = """
m=audio 49170 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
"""
AUDIO_PCMA_FIRST = "m=audio 49170 RTP/AVP 8 0 101\na=rtpmap:101 telephone-event/8000"


def answer_of(sdp: bytes, **kw: object) -> Answer:
    params: dict[str, object] = {
        "local_ip": "198.51.100.7",
        "local_port": 20000,
        "session_id": 4242,
    }
    params.update(kw)
    result = negotiate(sdp, **params)  # type: ignore[arg-type]
    assert isinstance(result, Answer), result
    return result


def test_pcmu_first_is_chosen_and_answer_is_sendonly_ptime20() -> None:
    a = answer_of(offer(AUDIO_PCMU_FIRST))
    assert (a.codec, a.payload_type) == ("PCMU", 0)
    assert a.remote_addr == ("192.0.2.10", 49170)
    assert a.remote_family == 4
    sdp = parse_sdp(a.sdp)
    assert str(sdp.origin) == "ringback 4242 4242 IN IP4 198.51.100.7"
    assert sdp.connection is not None and str(sdp.connection) == "IN IP4 198.51.100.7"
    (m,) = sdp.media
    assert (m.media, m.port, m.proto, m.formats) == ("audio", 20000, "RTP/AVP", ["0", "101"])
    assert m.direction == "sendonly"
    assert m.ptime == 20
    rtpmaps = [a.value for a in m.attributes if a.name == "rtpmap"]
    assert rtpmaps == ["0 PCMU/8000", "101 telephone-event/8000"]
    assert m.fmtp(101) == "0-16"  # RFC 4733: offered back as the caller numbered it
    assert a.sdp.endswith(b"\r\n")


def test_offerers_preference_order_wins() -> None:
    a = answer_of(offer(AUDIO_PCMA_FIRST))
    assert (a.codec, a.payload_type) == ("PCMA", 8)
    assert parse_sdp(a.sdp).media[0].formats == ["8", "101"]


def test_dynamic_payload_type_for_pcma_is_honoured() -> None:
    a = answer_of(
        offer(
            "m=audio 5004 RTP/AVP 96 101\na=rtpmap:96 pcma/8000\na=rtpmap:101 telephone-event/8000"
        )
    )
    assert (a.codec, a.payload_type) == ("PCMA", 96)
    m = parse_sdp(a.sdp).media[0]
    assert m.formats == ["96", "101"]
    assert m.rtpmaps()[96].encoding == "PCMA"


def test_unsupported_codecs_before_g711_are_skipped() -> None:
    a = answer_of(offer("m=audio 5004 RTP/AVP 9 18 111 8\na=rtpmap:111 opus/48000/2"))
    assert (a.codec, a.payload_type) == ("PCMA", 8)


def test_telephone_event_only_is_no_codec() -> None:
    r = negotiate(
        offer("m=audio 5004 RTP/AVP 101\na=rtpmap:101 telephone-event/8000"),
        local_ip="198.51.100.7",
        local_port=20000,
        session_id=1,
    )
    assert isinstance(r, NoAnswer) and r.reason == "no_codec"


def test_no_g711_is_no_codec() -> None:
    r = negotiate(
        offer("m=audio 5004 RTP/AVP 9 111\na=rtpmap:111 opus/48000/2"),
        local_ip="198.51.100.7",
        local_port=20000,
        session_id=1,
    )
    assert isinstance(r, NoAnswer) and r.reason == "no_codec"


def test_ipv6_offer_and_ipv6_answer() -> None:
    a = answer_of(offer(AUDIO_PCMU_FIRST, c="IN IP6 2001:db8::10"), local_ip="2001:db8::7")
    assert a.remote_addr == ("2001:db8::10", 49170)
    assert a.remote_family == 6
    sdp = parse_sdp(a.sdp)
    assert str(sdp.connection) == "IN IP6 2001:db8::7"
    assert sdp.origin.addrtype == "IP6"


def test_video_is_answered_with_port_zero_and_order_kept() -> None:
    a = answer_of(offer("m=video 51372 RTP/AVP 96\na=rtpmap:96 H264/90000", AUDIO_PCMA_FIRST))
    sdp = parse_sdp(a.sdp)
    assert [(m.media, m.port) for m in sdp.media] == [("video", 0), ("audio", 20000)]
    assert sdp.media[0].formats == ["96"]


def test_second_audio_stream_is_rejected() -> None:
    a = answer_of(offer(AUDIO_PCMU_FIRST, "m=audio 49180 RTP/AVP 8"))
    assert [m.port for m in parse_sdp(a.sdp).media] == [20000, 0]


def test_media_level_connection_overrides_session() -> None:
    a = answer_of(offer("m=audio 7078 RTP/AVP 0\nc=IN IP4 203.0.113.5"))
    assert a.remote_addr == ("203.0.113.5", 7078)


@pytest.mark.parametrize("direction", ["sendrecv", "recvonly"])
def test_offers_we_can_play_to(direction: str) -> None:
    a = answer_of(offer(AUDIO_PCMU_FIRST + f"a={direction}\n"))
    assert a.offer_direction == direction
    assert parse_sdp(a.sdp).media[0].direction == "sendonly"


@pytest.mark.parametrize("direction", ["sendonly", "inactive"])
def test_offers_nobody_listens_to_are_inactive(direction: str) -> None:
    r = negotiate(
        offer(AUDIO_PCMU_FIRST + f"a={direction}\n"),
        local_ip="198.51.100.7",
        local_port=20000,
        session_id=1,
    )
    assert isinstance(r, NoAnswer) and r.reason == "inactive"


def test_session_level_inactive() -> None:
    r = negotiate(
        offer(AUDIO_PCMU_FIRST, session="a=inactive"),
        local_ip="198.51.100.7",
        local_port=20000,
        session_id=1,
    )
    assert isinstance(r, NoAnswer) and r.reason == "inactive"


def test_hold_address_is_inactive() -> None:
    r = negotiate(
        offer(AUDIO_PCMU_FIRST, c="IN IP4 0.0.0.0"),
        local_ip="198.51.100.7",
        local_port=20000,
        session_id=1,
    )
    assert isinstance(r, NoAnswer) and r.reason == "inactive"


@pytest.mark.parametrize("body", [None, b"", b"  \r\n"])
def test_no_sdp(body: bytes | None) -> None:
    r = negotiate(body, local_ip="198.51.100.7", local_port=20000, session_id=1)
    assert isinstance(r, NoAnswer) and r.reason == "no_sdp"


@pytest.mark.parametrize(
    "body",
    [b"hello", b"v=0\r\nm=audio x RTP/AVP 0\r\n", offer("m=audio 5004 RTP/AVP 0\na=rtpmap:0 PCMU")],
)
def test_bad_sdp(body: bytes) -> None:
    r = negotiate(body, local_ip="198.51.100.7", local_port=20000, session_id=1)
    assert isinstance(r, NoAnswer) and r.reason == "bad_sdp"


def test_hostname_connection_address_is_refused() -> None:
    r = negotiate(
        offer(AUDIO_PCMU_FIRST, c="IN IP4 pbx.example.com"),
        local_ip="198.51.100.7",
        local_port=20000,
        session_id=1,
    )
    assert isinstance(r, NoAnswer) and r.reason == "bad_sdp"


@pytest.mark.parametrize(
    "media",
    [
        "m=video 51372 RTP/AVP 96",
        "m=audio 0 RTP/AVP 0",
    ],
)
def test_no_usable_audio(media: str) -> None:
    r = negotiate(offer(media), local_ip="198.51.100.7", local_port=20000, session_id=1)
    assert isinstance(r, NoAnswer) and r.reason == "no_audio"


def test_avpf_profile_is_echoed() -> None:
    a = answer_of(offer("m=audio 5004 RTP/AVPF 0"))
    assert parse_sdp(a.sdp).media[0].proto == "RTP/AVPF"


def test_linphone_style_offer() -> None:
    body = (
        b"v=0\r\no=+8613800138000 1234 678 IN IP6 2001:db8::dead\r\ns=Talk\r\n"
        b"c=IN IP6 2001:db8::dead\r\nt=0 0\r\n"
        b"a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n"
        b"m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100\r\n"
        b"a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\na=rtpmap:97 speex/16000\r\n"
        b"a=rtpmap:98 speex/8000\r\na=rtpmap:101 telephone-event/48000\r\n"
        b"a=rtpmap:99 telephone-event/16000\r\na=rtpmap:100 telephone-event/8000\r\n"
        b"a=rtcp-fb:* trr-int 1000\r\na=rtcp-fb:* ccm tmmbr\r\n"
    )
    a = answer_of(body)
    assert (a.codec, a.payload_type, a.remote_addr) == ("PCMU", 0, ("2001:db8::dead", 7078))


def test_the_lab_callee_answers_sendrecv_like_a_phone() -> None:
    from ringback.media.offer_answer import Selection, answer_sdp, select

    chosen = select(offer(AUDIO_PCMA_FIRST))
    assert isinstance(chosen, Selection)
    warning = answer_sdp(chosen, local_ip="198.51.100.7", local_port=20000, session_id=1)
    phone = answer_sdp(
        chosen, local_ip="198.51.100.7", local_port=20000, session_id=1, direction="sendrecv"
    )
    assert b"a=sendonly" in warning and b"a=sendrecv" not in warning
    assert b"a=sendrecv" in phone and b"a=sendonly" not in phone
