"""RFC 4475 torture messages (tests/unit/sip/torture/*.sip, CRLF, decoded notation)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringback.sip.errors import SipParseError
from ringback.sip.message import parse_message
from ringback.sip.model import Request, Response
from ringback.sip.responses import error_response
from ringback.sip.uri import SipUri, parse_name_addr, parse_uri
from ringback.sip.via import parse_via

DATA = Path(__file__).parent / "torture"


def load(name: str) -> bytes:
    return (DATA / f"{name}.sip").read_bytes()


def req(name: str) -> Request:
    msg = parse_message(load(name))
    assert isinstance(msg, Request)
    return msg


VALID = [
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "unreason",
    "noreason",
    "trws",
    "baddate",
    "inv2543",
]


@pytest.mark.parametrize("name", VALID)
def test_valid_messages_parse_and_reserialize(name: str) -> None:
    msg = parse_message(load(name))
    again = parse_message(msg.to_bytes())
    assert again == msg


def test_wsinv() -> None:
    m = req("wsinv")
    assert m.method == "INVITE"
    assert m.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    ruri = parse_uri(m.uri)
    assert isinstance(ruri, SipUri) and ruri.has_param("UNKNOWNPARAM")
    assert ruri.get_param("unknownparam") is None
    assert m.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert m.cseq == (9, "INVITE")
    assert m.max_forwards == 68
    to = parse_name_addr(m.headers.get("To") or "")
    assert to.tag == "1918181833n" and to.uri == "sip:vivekg@chair-dnrc.example.com"
    frm = parse_name_addr(m.headers.get("f") or "")
    assert frm.display_name == 'J Rosenberg \\"' and frm.tag == "98asjd8"
    vias = [parse_via(v) for v in m.headers.get_all("Via")]
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.headers.get("Subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    contact = parse_name_addr(m.headers.get_all("Contact")[0])
    assert contact.display_name == 'Quoted string ""'
    assert contact.get_param("newparam") == "newvalue"
    assert contact.has_param("secondparam") and contact.get_param("q") == "0.33"
    route = parse_name_addr(m.headers.get("Route") or "")
    assert isinstance(route.sip_uri, SipUri) and route.sip_uri.has_param("lr")
    assert len(m.body) == 150


def test_intmeth() -> None:
    m = req("intmeth")
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = parse_uri(m.uri)
    assert isinstance(uri, SipUri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert str(uri) == m.uri
    assert m.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    to = parse_name_addr(m.headers.get("To") or "")
    assert to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    frm = parse_name_addr(m.headers.get("From") or "")
    assert frm.display_name == "token1~` token2'+_ token3*%!.-"
    assert frm.tag == "_token~1'+`*%!-."
    assert frm.get_param("fromParam''~+*_!.-%") == '"работающий"'
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.headers.get("extensionheader-!.%*+_`'~") == "\ufeff大停電"


def test_esc01_escapes() -> None:
    m = req("esc01")
    ruri = parse_uri(m.uri)
    assert isinstance(ruri, SipUri)
    assert ruri.user_unescaped == "sips:user@example.com" and ruri.host == "example.net"
    to = parse_name_addr(m.headers.get("To") or "").sip_uri
    assert isinstance(to, SipUri) and to.user_unescaped == "user"
    frm = parse_name_addr(m.headers.get("From") or "").sip_uri
    assert isinstance(frm, SipUri) and frm.user_unescaped == "I have spaces"
    assert m.call_id == "esc01.239409asdfakjkn23onasd0-3234"  # compact i:
    assert m.headers.get("Content-Type") == "application/sdp"  # compact c:
    c = parse_name_addr(m.headers.get("Contact") or "").sip_uri
    assert isinstance(c, SipUri)
    assert c.params == (("%6C%72", None), ("n%61me", "v%61lue%25%34%31"))


def test_escnull() -> None:
    m = req("escnull")
    contacts = [parse_name_addr(v).sip_uri for v in m.headers.get_all("Contact")]
    users = [u.user_unescaped for u in contacts if isinstance(u, SipUri)]
    assert users == ["\x00", "\x00\x00"]


def test_esc02_percent_is_not_an_escape() -> None:
    m = req("esc02")
    assert m.method == "RE%47IST%45R"
    assert parse_name_addr(m.headers.get("To") or "").display_name == "%Z%45"
    assert len(m.headers.get_all("Contact")) == 2
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_longreq_dblreq_semiuri_transports() -> None:
    assert parse_name_addr(req("lwsdisp").headers.get("From") or "").display_name == "caller"
    lr = req("longreq")
    vias = lr.headers.get_all("Via")
    assert len(vias) == 34 and parse_via(vias[0]).host == "sip33.example.com"
    assert parse_via(vias[-1]).received == "192.0.2.5"
    d = req("dblreq")
    assert d.method == "REGISTER" and d.body == b""  # trailing INVITE octets ignored
    s = req("semiuri")
    su = parse_uri(s.uri)
    assert isinstance(su, SipUri)
    assert su.user_unescaped == "user;par=u@example.net" and su.params == ()
    assert len(s.headers.get_all("Accept")) == 6
    t = req("transports")
    assert [parse_via(v).transport for v in t.headers.get_all("Via")] == [
        "UDP",
        "SCTP",
        "TLS",
        "UNKNOWN",
        "TCP",
    ]


def test_responses() -> None:
    u = parse_message(load("unreason"))
    assert isinstance(u, Response) and u.status == 200
    assert u.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    n = parse_message(load("noreason"))
    assert isinstance(n, Response) and n.status == 100 and n.reason == ""


# (name, status, answerable) -- RFC 4475 §3.1.2 plus §3.3 messages rejected here
INVALID = [
    ("badinv01", 400, True),  # extraneous ;;,;,, in Via
    ("clerr", 400, True),  # Content-Length larger than the datagram
    ("ncl", 400, True),  # negative Content-Length
    ("scalar02", 400, True),  # CSeq > 2**32-1 (also Max-Forwards 300)
    ("scalarlg", 400, False),  # response: never answered
    ("ltgtruri", 400, True),  # <> around the Request-URI
    ("lwsruri", 400, True),  # LWS in the Request-URI
    ("lwsstart", 400, True),  # multiple SP in the Request-Line
    ("escruri", 400, True),  # escaped headers in the Request-URI
    ("badvers", 505, True),  # SIP/7.0
    ("mismatch01", 400, True),  # CSeq method != request method
    ("mismatch02", 400, True),  # unknown method, CSeq mismatch
    ("bigcode", 400, False),  # response code > 699
    ("insuf", 400, False),  # no To/From/Call-ID: cannot answer
    ("multi01", 400, True),  # repeated single-value headers
    ("mcl01", 400, True),  # conflicting Content-Length values
]


@pytest.mark.parametrize(("name", "status", "answerable"), INVALID)
def test_invalid_messages_rejected(name: str, status: int, answerable: bool) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(load(name))
    exc = info.value
    assert exc.status == status
    assert exc.answerable is answerable
    assert exc.reason.isascii() and "\r" not in exc.reason and "\n" not in exc.reason
    resp = error_response(exc, to_tag="t1")
    if answerable:
        assert resp is not None and resp.status == status
        assert resp.headers.get("To") is not None and resp.to_tag is not None
        if name != "scalar02":  # its answer echoes the offending CSeq, by design
            assert parse_message(resp.to_bytes()) == resp
    else:
        assert resp is None


# messages whose fault is in a header the hot path parses lazily: parse_message
# accepts them, the header parser rejects them with a precise 400
LAZY_INVALID = [
    ("quotbal", "To"),  # unterminated quoted display name
    ("regbadct", "Contact"),  # addr-spec with ?headers must be in <>
    ("badaspec", "To"),  # spaces inside <...>
    ("baddn", "From"),  # unquoted display name with a comma
]


@pytest.mark.parametrize(("name", "header"), LAZY_INVALID)
def test_lazy_invalid_headers(name: str, header: str) -> None:
    m = req(name)
    with pytest.raises(SipParseError) as info:
        parse_name_addr(m.headers.get(header) or "")
    assert info.value.status == 400


def test_trws_is_accepted_liberally() -> None:
    assert req("trws").uri == "sip:remote-target@example.com"


def test_inv2543_no_branch() -> None:
    m = req("inv2543")
    assert m.top_via.branch is None and m.max_forwards is None
