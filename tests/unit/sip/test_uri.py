"""sip:, sips: and tel: URIs; name-addr values."""

from __future__ import annotations

import pytest

from ringback.sip.errors import SipParseError
from ringback.sip.uri import SipUri, TelUri, parse_name_addr, parse_uri


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
