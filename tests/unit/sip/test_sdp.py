"""SDP parse/serialize (RFC 4566)."""

from __future__ import annotations

import pytest

from ringback.sip.sdp import SdpError, parse_sdp

OFFER = (
    "v=0\r\no=- 1 2 IN IP4 192.0.2.10\r\ns=call\r\ni=info\r\nu=http://x\r\ne=a@b\r\n"
    "p=+1 555\r\nc=IN IP4 192.0.2.10\r\nb=AS:64\r\nt=0 0\r\nr=7d 1h 0 25h\r\nz=0 -1h\r\n"
    "k=prompt\r\na=sendrecv\r\n"
    "m=audio 49170 RTP/AVP 0 8 101\r\nc=IN IP6 2001:db8::10\r\nb=TIAS:64000\r\n"
    "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
    "a=ptime:20\r\na=sendonly\r\n"
    "m=video 0/2 RTP/AVP 31\r\n"
)


def test_parse_and_round_trip() -> None:
    sd = parse_sdp(OFFER.encode())
    assert sd.origin.address == "192.0.2.10" and sd.session_name == "call"
    assert sd.connection is not None and sd.connection.host == "192.0.2.10"
    a = sd.media[0]
    assert (a.media, a.port, a.proto, a.formats) == ("audio", 49170, "RTP/AVP", ["0", "8", "101"])
    assert a.connection is not None and a.connection.addrtype == "IP6"
    maps = a.rtpmaps()
    assert maps[8].encoding == "PCMA" and maps[101].encoding == "telephone-event"
    assert a.fmtp(101) == "0-16" and a.ptime == 20
    assert sd.direction_of(a) == "sendonly" and sd.direction_of(sd.media[1]) == "sendrecv"
    assert sd.media[1].port_count == 2
    assert sd.to_str() == OFFER
    assert parse_sdp(sd.to_bytes()) == sd


def test_sloppy_lines_tolerated() -> None:
    sloppy = OFFER.replace("\r\n", "  \n") + "\n\n"
    assert parse_sdp(sloppy).to_str() == OFFER


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("v=1\r\n", "v=0"),
        ("v=0\r\ns=-\r\nt=0 0\r\n", "o="),
        ("v=0\r\no=- 1 2 IN IP4\r\n", "6 fields"),
        ("v=0\r\no=- 1 2 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n", "connection"),
        (
            "v=0\r\no=- 1 2 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\nm=audio x RTP/AVP 0\r\n",
            "port",
        ),
        ("v=0\r\no=- 1 2 IN IP4 h\r\ns=-\r\nc=IN IP5 h\r\n", "c="),
        (
            "v=0\r\no=- 1 2 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\nm=audio 1 RTP/AVP\r\n",
            "formats",
        ),
        ("v=0\r\no=- 1 2 IN IP4 h\r\nbogus\r\n", "malformed"),
    ],
)
def test_unusable(text: str, why: str) -> None:
    with pytest.raises(SdpError, match=why):
        parse_sdp(text)
