"""parse_message and split_stream: header forms, required fields, bodies, limits, framing."""

from __future__ import annotations

import pytest

from ringback.sip.errors import SipParseError
from ringback.sip.message import Limits, parse_message, split_stream
from ringback.sip.model import Request, Response
from ringback.sip.uri import parse_name_addr
from ringback.sip.via import parse_via

INV = (
    b"INVITE sip:+4930123@rb.example.net SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1, SIP/2.0/TCP p.example.com;branch=z9hG4bK0\r\n"
    b"Via: SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bK2;received=192.0.2.9\r\n"
    b'f: "A, \\"B\\"" <sip:a@example.com>;tag=ft\r\n'
    b"t: sip:+4930123@rb.example.net\r\n"
    b"i: cid@x\r\n"
    b"CSeq: 7 INVITE\r\n"
    b'Contact: "x,y" <sip:a@192.0.2.1;transport=udp>, <sip:b@h>;q=0.5\r\n'
    b"k: 100rel, timer\r\n"
    b"l: 4\r\n\r\nbodyEXTRA"
)


def test_headers_compact_multi_and_lists() -> None:
    m = parse_message(INV)
    assert isinstance(m, Request)
    h = m.headers
    assert (
        h.get("via")
        == "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1, SIP/2.0/TCP p.example.com;branch=z9hG4bK0"
    )
    assert len(h.get_all("Via")) == 3 and len(h.get_raw("v")) == 2
    assert h.get_all("Contact") == ['"x,y" <sip:a@192.0.2.1;transport=udp>', "<sip:b@h>;q=0.5"]
    assert h.get_all("Supported") == ["100rel", "timer"]
    assert h.get_all("From") == ['"A, \\"B\\"" <sip:a@example.com>;tag=ft']
    assert m.body == b"body"  # truncated to Content-Length (§18.3)
    assert ("Call-ID", "cid@x") in h.items()
    h.set("Supported", "x")
    assert h.get_all("k") == ["x"]
    assert h.remove("contact") == 1 and "Contact" not in h
    h.add("X-Test", " v ")
    assert h.get("x-test") == "v"
    via = parse_via(h.get_all("Via")[2])
    assert via.host == "[2001:db8::1]" and via.port == 5070 and via.received == "192.0.2.9"
    assert m.from_tag == "ft" and m.to_tag is None
    assert parse_name_addr(h.get("From") or "").display_name == 'A, "B"'


def test_missing_headers_answerable() -> None:
    base = INV.replace(b"i: cid@x\r\n", b"")
    with pytest.raises(SipParseError) as info:
        parse_message(base)
    assert info.value.status == 400 and not info.value.answerable
    assert "Call-ID" in info.value.reason
    with pytest.raises(SipParseError) as info:
        parse_message(INV.replace(b"l: 4", b"l: 40"))
    assert info.value.answerable and "shorter than Content-Length" in info.value.reason


def test_udp_without_content_length_takes_rest() -> None:
    m = parse_message(INV.replace(b"l: 4\r\n", b""))
    assert m.body == b"bodyEXTRA"


def test_lf_only_tolerated() -> None:
    m = parse_message(INV.replace(b"\r\n", b"\n"))
    assert isinstance(m, Request) and m.body == b"body"


def test_limits() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(INV, Limits(max_message_size=100))
    assert info.value.status == 513
    with pytest.raises(SipParseError) as info:
        parse_message(INV, Limits(max_header_count=5))
    assert info.value.status == 513 and "header" in info.value.reason
    with pytest.raises(SipParseError) as info:
        parse_message(INV, Limits(max_line_length=60))
    assert info.value.status == 513 and "line" in info.value.reason


def test_split_stream() -> None:
    one = INV.replace(b"bodyEXTRA", b"body")
    buf = b"\r\n\r\n" + one + one[:30]
    msg, used = split_stream(buf)
    assert msg == one and used == 4 + len(one)
    rest = buf[used:]
    assert split_stream(rest) == (None, 0)
    assert split_stream(b"\r\n\r\n") == (None, 4)
    with pytest.raises(SipParseError):
        split_stream(INV.replace(b"l: 4\r\n", b""))
    assert split_stream(one[:-2]) == (None, 0)


def test_response_parse() -> None:
    raw = (
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    r = parse_message(raw)
    assert isinstance(r, Response) and r.status == 180 and r.reason == "Ringing"
    assert r.to_bytes() == raw
    with pytest.raises(SipParseError) as info:
        parse_message(raw.replace(b"SIP/2.0 180", b"SIP/3.0 180"))
    assert info.value.status == 505
