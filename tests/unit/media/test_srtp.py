"""SDES-SRTP answers (RFC 4568) and the packets they protect (RFC 3711, libsrtp)."""

from __future__ import annotations

import base64

import pylibsrtp
import pytest

from ringback.media.codecs import G711
from ringback.media.offer_answer import SRTP, Answer, NoAnswer, Selection, negotiate, select
from ringback.media.rtp import parse_rtp_header
from ringback.media.srtp import SrtpStream, choose_crypto, new_crypto
from ringback.sip.sdp import parse_sdp

KEY = base64.b64encode(bytes(range(30))).decode()


def offer(media: str) -> bytes:
    head = "v=0\r\no=ue 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    return (head + "\r\n".join(media.strip().splitlines()) + "\r\n").encode()


@pytest.mark.parametrize(
    ("values", "chosen"),
    [
        ([f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}"], (1, "AES_CM_128_HMAC_SHA1_80")),
        ([f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20"], (1, "AES_CM_128_HMAC_SHA1_80")),
        (
            [f"1 AEAD_AES_256_GCM inline:{KEY}", f"2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}"],
            (2, "AES_CM_128_HMAC_SHA1_32"),
        ),
        ([f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4"], None),  # MKI
        ([f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} KDR=1"], None),  # session parameters
        (["1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ="], None),  # not 30 bytes
        (["garbage"], None),
    ],
)
def test_crypto_lines_we_can_answer(values: list[str], chosen: tuple[int, str] | None) -> None:
    assert choose_crypto(values) == chosen


SAVP = f"m=audio 5004 RTP/SAVP 8 0\na=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{KEY}"


def test_an_srtp_offer_gets_an_srtp_answer_with_our_own_key() -> None:
    result = negotiate(
        offer(SAVP), local_ip="198.51.100.7", local_port=20000, session_id=1,
        available=G711 | {SRTP},
    )  # fmt: skip
    assert isinstance(result, Answer), result
    m = parse_sdp(result.sdp).media[0]
    assert (m.proto, m.formats) == ("RTP/SAVP", ["8"])
    (crypto,) = [a.value for a in m.attributes if a.name == "crypto"]
    assert crypto is not None
    tag, suite, inline = crypto.split()
    assert (tag, suite) == ("3", "AES_CM_128_HMAC_SHA1_80")
    ours = inline.removeprefix("inline:")
    assert len(base64.b64decode(ours)) == 30 and ours != KEY


def test_srtp_without_libsrtp_or_a_suite_we_know_is_no_codec() -> None:
    for media, available in [
        (SAVP, G711),
        ("m=audio 5004 RTP/SAVP 0\na=crypto:1 F8_128_HMAC_SHA1_80 inline:" + KEY, G711 | {SRTP}),
    ]:
        result = select(offer(media), available)
        assert isinstance(result, NoAnswer) and result.reason == "no_codec", result


def test_plain_rtp_is_preferred_to_nothing_and_srtp_selection_keeps_the_tag() -> None:
    chosen = select(offer(SAVP), G711 | {SRTP})
    assert isinstance(chosen, Selection) and chosen.crypto == (3, "AES_CM_128_HMAC_SHA1_80")


def test_srtp_stream_packets_decrypt_with_the_answered_key() -> None:
    crypto = new_crypto(1, "AES_CM_128_HMAC_SHA1_32")
    stream = SrtpStream([bytes([i]) * 160 for i in range(3)], 8, crypto, ts0=0, seq0=7)
    session = pylibsrtp.Session(
        policy=pylibsrtp.Policy(
            key=crypto.key,
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
            srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
        )
    )
    for i in range(3):
        packet = stream.render(i)
        assert len(packet) == 12 + 160 + 4  # a 32-bit authentication tag
        assert packet[12:172] != bytes([i]) * 160  # encrypted
        plain = session.unprotect(packet)
        header = parse_rtp_header(plain)
        assert (header.sequence, header.timestamp, header.payload_type) == (7 + i, 160 * i, 8)
        assert plain[12:] == bytes([i]) * 160
