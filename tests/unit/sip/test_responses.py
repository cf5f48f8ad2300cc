"""Responses built from requests (RFC 3261 §8.2.6)."""

from __future__ import annotations

from ringback.sip.message import parse_message
from ringback.sip.model import Request
from ringback.sip.responses import make_response

INV = (
    b"INVITE sip:+4930123@rb.example.net SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1, SIP/2.0/TCP p.example.com;branch=z9hG4bK0\r\n"
    b"Via: SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bK2;received=192.0.2.9\r\n"
    b'f: "A" <sip:a@example.com>;tag=ft\r\n'
    b"t: sip:+4930123@rb.example.net\r\n"
    b"i: cid@x\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"Contact: <sip:a@192.0.2.1>\r\n"
    b"l: 0\r\n\r\n"
)


def test_make_response() -> None:
    m = parse_message(INV)
    assert isinstance(m, Request)
    r = make_response(m, 302, to_tag="tt", extra_headers=[("Contact", "<sip:x@y;rbk=1>")])
    assert r.reason == "Moved Temporarily"
    assert [n for n, _ in r.headers] == ["Via", "Via", "From", "To", "Call-ID", "CSeq", "Contact"]
    assert r.to_tag == "tt"
    assert parse_message(r.to_bytes()) == r
    r100 = make_response(m, 100)
    assert r100.to_tag is None and r100.reason == "Trying"
    r2 = make_response(m, 183, body=b"v=0\r\n", content_type="application/sdp")
    assert r2.to_tag and r2.headers.get("Content-Type") == "application/sdp"
    assert make_response(m, 299).reason == "OK"
