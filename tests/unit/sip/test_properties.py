"""Hypothesis: round trips and "only SipParseError/SdpError may escape"."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringback.sip.errors import SipParseError
from ringback.sip.headers import Headers
from ringback.sip.message import parse_message, split_stream
from ringback.sip.model import Request, Response
from ringback.sip.sdp import (
    Attribute,
    MediaDescription,
    Origin,
    SdpError,
    SessionDescription,
    parse_sdp,
)
from ringback.sip.uri import SipUri, parse_name_addr, parse_uri
from ringback.sip.via import parse_via

TORTURE = [p.read_bytes() for p in sorted((Path(__file__).parent / "torture").glob("*.sip"))]
token = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
    min_size=1,
    max_size=12,
)
alnum = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
hostname = st.lists(alnum, min_size=1, max_size=3).map(".".join)
host = st.one_of(
    hostname,
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.just("[2001:db8::1]"),
)
params = st.lists(
    st.tuples(token.filter(lambda s: "=" not in s), st.one_of(st.none(), alnum)), max_size=3
)
sip_uris = st.builds(
    SipUri,
    st.sampled_from(["sip", "sips"]),
    st.one_of(st.none(), alnum),
    st.none(),
    host,
    st.one_of(st.none(), st.integers(1, 65535)),
    params.map(tuple),
    st.none(),
)
value_text = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method = draw(st.sampled_from(["INVITE", "OPTIONS", "BYE", "X-EXT"]))
    uri = str(draw(sip_uris))
    h = Headers()
    for _ in range(draw(st.integers(1, 3))):
        h.add("Via", f"SIP/2.0/UDP {draw(host)};branch=z9hG4bK{draw(alnum)}")
    h.add("From", f"<{draw(sip_uris)}>;tag={draw(alnum)}")
    h.add("To", f"<{draw(sip_uris)}>")
    h.add("Call-ID", draw(value_text))
    h.add("CSeq", f"{draw(st.integers(0, 2**32 - 1))} {method}")
    h.add("Max-Forwards", str(draw(st.integers(0, 255))))
    for _ in range(draw(st.integers(0, 3))):
        h.add("X-" + draw(alnum), draw(value_text))
    return Request(method, uri, h, draw(st.binary(max_size=50)))


@given(requests())
def test_request_round_trip(req: Request) -> None:
    assert parse_message(req.to_bytes()) == req


@given(
    requests(),
    st.integers(100, 699),
    st.text(
        st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_categories=["Cc"]),
        max_size=20,
    ),
)
def test_response_round_trip(req: Request, status: int, reason: str) -> None:
    resp = Response(status, reason, req.headers.copy(), req.body)
    assert parse_message(resp.to_bytes()) == resp


@given(sip_uris)
def test_uri_round_trip(uri: SipUri) -> None:
    assert parse_uri(str(uri)) == uri


@st.composite
def sdps(draw: st.DrawFn) -> SessionDescription:
    ip = draw(st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))))
    sd = SessionDescription(Origin("-", str(draw(st.integers(0, 10**9))), "1", "IN", "IP4", ip))
    sd.connection = parse_sdp(f"v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\n").connection
    for _ in range(draw(st.integers(0, 3))):
        fmts = draw(st.lists(st.integers(0, 127).map(str), min_size=1, max_size=4))
        m = MediaDescription("audio", draw(st.integers(0, 65535)), "RTP/AVP", fmts)
        for pt in fmts:
            m.attributes.append(Attribute("rtpmap", f"{pt} X{pt}/8000"))
        if draw(st.booleans()):
            m.attributes.append(
                Attribute(draw(st.sampled_from(["sendonly", "recvonly", "inactive"])))
            )
        sd.media.append(m)
    return sd


@given(sdps())
def test_sdp_round_trip(sd: SessionDescription) -> None:
    assert parse_sdp(sd.to_bytes()) == sd


def _never_crash(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except SipParseError as exc:
        assert 400 <= exc.status <= 599 and exc.reason.isascii()
        return
    # lazily parsed parts may fail too, but only with SipParseError
    for name in ("From", "To", "Contact", "Route"):
        for v in msg.headers.get_all(name):
            try:
                na = parse_name_addr(v)
                na.sip_uri  # noqa: B018
            except SipParseError:
                pass
    for v in msg.headers.get_all("Via"):
        with contextlib.suppress(SipParseError):
            parse_via(v)
    if isinstance(msg, Request):
        with contextlib.suppress(SipParseError):
            parse_uri(msg.uri)
    with contextlib.suppress(SdpError):
        parse_sdp(msg.body)
    with contextlib.suppress(SipParseError):
        split_stream(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_never_crash(data: bytes) -> None:
    _never_crash(data)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(TORTURE),
    st.lists(
        st.tuples(
            st.integers(0, 4000), st.integers(0, 255), st.sampled_from(["set", "del", "ins"])
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_mutated_messages_never_crash(base: bytes, edits: list[tuple[int, int, str]]) -> None:
    data = bytearray(base)
    for pos, byte, op in edits:
        if not data:
            break
        i = pos % len(data)
        if op == "set":
            data[i] = byte
        elif op == "del":
            del data[i]
        else:
            data.insert(i, byte)
    _never_crash(bytes(data))
