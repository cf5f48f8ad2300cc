"""The SDP inside an INVITE body, as SIP-I/SIP-T trunks send it."""

from __future__ import annotations

from ringback.sip.body import sdp_of

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 8\r\n"
)
ISUP = bytes.fromhex("0100600a0003020a08831013")


def sip_i_body(boundary: str = "unique-boundary-1", crlf: bytes = b"\r\n") -> bytes:
    return crlf.join(
        [
            b"--" + boundary.encode(),
            b"Content-Type: application/sdp",
            b"",
            SDP.rstrip(b"\r\n"),
            b"--" + boundary.encode(),
            b"Content-Type: application/isup;version=itu-t92+",
            b"Content-Disposition: signal;handling=optional",
            b"",
            ISUP,
            b"--" + boundary.encode() + b"--",
            b"",
        ]
    )


def test_plain_sdp_body_is_the_sdp() -> None:
    assert sdp_of("application/sdp", SDP) == SDP
    assert sdp_of("Application/SDP; charset=utf-8", SDP) == SDP


def test_sdp_found_in_a_sip_i_multipart_body() -> None:
    body = sip_i_body()
    assert sdp_of('multipart/mixed;boundary="unique-boundary-1"', body) == SDP.rstrip(b"\r\n")
    assert sdp_of("multipart/mixed; boundary=unique-boundary-1", body) == SDP.rstrip(b"\r\n")


def test_sdp_second_after_isup_and_lf_only_framing() -> None:
    body = (
        b"--b1\nContent-Type: application/isup\n\n"
        + ISUP
        + b"\n--b1\nc: application/sdp\n\n"
        + SDP.replace(b"\r\n", b"\n")
        + b"\n--b1--\n"
    )
    found = sdp_of("multipart/mixed;boundary=b1", body)
    assert found is not None and found.startswith(b"v=0\n") and found.endswith(b"RTP/AVP 8\n")


def test_no_sdp_anywhere() -> None:
    assert sdp_of("application/isup", ISUP) is None
    assert sdp_of("multipart/mixed", sip_i_body()) is None  # no boundary parameter
    assert sdp_of('multipart/mixed;boundary="other"', sip_i_body()) is None
    only_isup = b"--b\r\nContent-Type: application/isup\r\n\r\n" + ISUP + b"\r\n--b--\r\n"
    assert sdp_of("multipart/mixed;boundary=b", only_isup) is None
    assert sdp_of(None, SDP) is None
    assert sdp_of("application/sdp", b"") is None
