"""Headers, URIs, name-addr, Via, responses, framing and limits."""

from __future__ import annotations

import pytest

from ringback.sip.errors import SipParseError
from ringback.sip.headers import Headers
from ringback.sip.message import Limits, parse_message, split_stream
from ringback.sip.model import Request, Response, parse_cseq, parse_max_forwards
from ringback.sip.responses import make_response
from ringback.sip.uri import SipUri, TelUri, parse_name_addr, parse_uri
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


def test_to_bytes_content_length_always_correct() -> None:
    r = Request("OPTIONS", "sip:x@y", Headers([("Content-Length", "99")]), b"abc")
    assert r.to_bytes().endswith(b"Content-Length: 3\r\n\r\nabc")
    assert r.to_bytes().count(b"Content-Length") == 1


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


def test_uri_parsing_and_params() -> None:
    u = parse_uri("sips:alice:pw@[2001:db8::2]:5061;transport=TLS;lr;Rbk=1?subject=hi")
    assert isinstance(u, SipUri)
    assert (u.scheme, u.user, u.password, u.host, u.port) == (
        "sips",
        "alice",
        "pw",
        "[2001:db8::2]",
        5061,
    )
    assert u.has_param("rbk") and u.get_param("TRANSPORT") == "TLS" and u.has_param("lr")
    assert u.headers == "subject=hi"
    assert str(u) == "sips:alice:pw@[2001:db8::2]:5061;transport=TLS;lr;Rbk=1?subject=hi"
    v = parse_uri("sip:+4930123@rb.example.net;user=phone")
    assert isinstance(v, SipUri)
    w = v.with_param("rbk", "1")
    assert str(w) == "sip:+4930123@rb.example.net;user=phone;rbk=1" and not v.has_param("rbk")
    assert str(w.with_param("RBK", "2")) == "sip:+4930123@rb.example.net;user=phone;RBK=2"
    assert str(parse_uri("sip:example.com")) == "sip:example.com"
    t = parse_uri("tel:+1-201-555-0123;phone-context=example.com;ext=12")
    assert isinstance(t, TelUri) and t.is_global and t.get_param("ext") == "12"
    assert (
        str(t.with_param("rbk", "1"))
        == "tel:+1-201-555-0123;phone-context=example.com;ext=12;rbk=1"
    )
    for bad in ("sip:", "sip:a@", "sip:host:99999", "sip:ho st", "sip:@h"):
        with pytest.raises(SipParseError):
            parse_uri(bad)
    with pytest.raises(SipParseError) as info:
        parse_uri("http://x")
    assert info.value.status == 416


def test_name_addr_forms() -> None:
    a = parse_name_addr("sip:a@b;tag=1;expires=60")
    assert a.uri == "sip:a@b" and a.tag == "1" and a.get_param("expires") == "60"
    assert not a.bracketed and str(a) == "sip:a@b;tag=1;expires=60"
    b = parse_name_addr('"Al \\"x\\"" <sip:a@b;lr>;tag=2')
    assert b.display_name == 'Al "x"' and b.uri == "sip:a@b;lr"
    assert parse_name_addr(str(b)) == b
    assert parse_name_addr("Bob Smith <tel:+123>").display_name == "Bob Smith"
    for bad in ('"open <sip:a@b>', "<sip:a@b", "sip:a@b?x=y", "<sip:a@b>;", "a, b <sip:x@y>"):
        with pytest.raises(SipParseError):
            parse_name_addr(bad)


def test_via_params() -> None:
    v = parse_via("SIP/2.0/UDP h.example.com:5060;branch=z9hG4bKx;rport;maddr=224.0.0.1;ttl=1")
    assert v.has_rport and v.rport is None and v.maddr == "224.0.0.1" and v.ttl == 1
    assert parse_via("SIP/2.0/UDP h;rport=1234").rport == 1234
    assert parse_via("sip/2.0/udp h").transport == "UDP"
    for bad in (
        "SIP/2.0/UDP",
        "SIP/2.0/UDP h;ttl=300",
        "SIP/2.0/UDP h;;",
        "SIP/2.0 h",
        "SIP/2.0/UDP h;rport=x",
    ):
        with pytest.raises(SipParseError):
            parse_via(bad)


def test_scalars() -> None:
    assert parse_cseq(" 0009 INVITE ") == (9, "INVITE")
    assert parse_max_forwards("0070") == 70
    for bad in ("1", "x INVITE", "4294967296 INVITE", "1 INV ITE"):
        with pytest.raises(SipParseError):
            parse_cseq(bad)
    for bad in ("256", "-1", "x", ""):
        with pytest.raises(SipParseError):
            parse_max_forwards(bad)


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
