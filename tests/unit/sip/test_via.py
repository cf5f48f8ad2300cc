"""Via values."""

from __future__ import annotations

import pytest

from ringback.sip.errors import SipParseError
from ringback.sip.via import parse_via


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
