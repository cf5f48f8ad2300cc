"""Requests and responses: shared readers, equality, serialization; CSeq, Max-Forwards."""

from __future__ import annotations

import pytest

from ringback.sip.errors import SipParseError
from ringback.sip.headers import Headers
from ringback.sip.model import Request, Response, parse_cseq, parse_max_forwards


def test_to_bytes_content_length_always_correct() -> None:
    r = Request("OPTIONS", "sip:x@y", Headers([("Content-Length", "99")]), b"abc")
    assert r.to_bytes().endswith(b"Content-Length: 3\r\n\r\nabc")
    assert r.to_bytes().count(b"Content-Length") == 1


def test_scalars() -> None:
    assert parse_cseq(" 0009 INVITE ") == (9, "INVITE")
    assert parse_max_forwards("0070") == 70
    for bad in ("1", "x INVITE", "4294967296 INVITE", "1 INV ITE"):
        with pytest.raises(SipParseError):
            parse_cseq(bad)
    for bad in ("256", "-1", "x", ""):
        with pytest.raises(SipParseError):
            parse_max_forwards(bad)


def test_requests_and_responses_share_their_header_readers() -> None:
    h = Headers(
        [
            ("Via", "SIP/2.0/UDP h;branch=z9hG4bK1, SIP/2.0/UDP g"),
            ("From", "<sip:a@b>;tag=f1"),
            ("To", "<sip:c@d>;tag=t1"),
            ("Call-ID", "cid"),
            ("CSeq", "3 INVITE"),
        ]
    )
    req = Request("INVITE", "sip:c@d", h.copy())
    resp = Response(486, "Busy Here", h.copy())
    for m in (req, resp):
        assert (m.call_id, m.cseq, m.from_tag, m.to_tag) == ("cid", (3, "INVITE"), "f1", "t1")
        assert m.top_via.branch == "z9hG4bK1"
    assert req.top_via is req.top_via  # a request keeps what it parsed
    assert req != resp and resp != req
    assert resp == Response(486, "Busy Here", h.copy()) != Response(486, "Busy", h.copy())
    with pytest.raises(TypeError):
        hash(req)
    with pytest.raises(SipParseError):
        _ = Response(200).top_via
