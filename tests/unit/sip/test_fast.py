"""The hand-written hot-path readers agree with the full parsers wherever those accept."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ringback.sip.errors import SipParseError
from ringback.sip.fast import fast_sip_uri, fast_via_branch, top_via_value
from ringback.sip.message import parse_message
from ringback.sip.uri import SipUri, parse_uri
from ringback.sip.via import Via, default_port, parse_via

alnum = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
hostname = st.lists(alnum, min_size=1, max_size=3).map(".".join)
host = st.one_of(
    hostname,
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.sampled_from(["[2001:db8::1]", "Switch.Example.COM"]),
)
port = st.one_of(st.just(""), st.integers(0, 65535).map(lambda p: f":{p}"))
token = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!*_+`'~", min_size=1
)
via_params = st.lists(
    st.one_of(
        alnum.map(lambda b: f";branch=z9hG4bK{b}"),
        st.sampled_from([";rport", ";rport=5060", ";received=192.0.2.1", ";ttl=4", ";lr"]),
        st.builds(
            ";{}{}".format,
            token.filter(lambda t: t.lower() not in ("ttl", "rport", "branch")),
            st.one_of(st.just(""), alnum.map("={}".format)),
        ),
    ),
    max_size=4,
).map("".join)
transport = st.sampled_from(["UDP", "TCP", "TLS", "udp", "WSS", "SCTP"])
plain_via = st.builds("SIP/2.0/{} {}{}{}".format, transport, host, port, via_params)
odd_via = st.one_of(
    st.builds("{}, {}".format, plain_via, plain_via),
    st.builds("SIP / 2.0 / {} {}{}".format, transport, host, via_params),
    st.builds("{}\xff{}".format, plain_via, alnum),
    st.sampled_from(["", "SIP/2.0/UDP", "SIP/2.0/UDP h;branch", "garbage"]),
)
via_name = st.sampled_from(["Via", "VIA", "via", "v", "V"])
colon = st.sampled_from([":", ": ", " : ", "\t:", ":  "])


@st.composite
def ack_messages(draw: st.DrawFn, *, odd: bool = True) -> bytes:
    """An ACK as bytes: valid dialog headers, one or more Via lines, optional noise."""
    vias = [
        draw(via_name) + draw(colon) + draw(st.one_of(plain_via, odd_via) if odd else plain_via)
        for _ in range(draw(st.integers(1, 3)))
    ]
    others = [
        'From: "A" <sip:+4940987654@switch.example.com>;tag=1928',
        "To: <sip:+4930123456@rb.example.net>;tag=abc",
        "Call-ID: a84b4c76e66710@pc33",
        "CSeq: 314159 ACK",
        "Max-Forwards: 70",
    ]
    noise = [
        "X-Via: SIP/2.0/UDP elsewhere;branch=z9hG4bKnot",
        "Supported: 100rel",
        "Subject: about Via: SIP/2.0/UDP h;branch=z9hG4bKq",
    ]
    if odd:
        noise += [
            "Vendor: v1",
            "v-x: 1",
            "X: a\nVia: SIP/2.0/UDP lf;branch=z9hG4bKlf",
            "X: a\rVia: SIP/2.0/UDP cr;branch=z9hG4bKcr",
            "Via\x0b: SIP/2.0/UDP vt;branch=z9hG4bKvt",
            "Via\xc2\xa0: SIP/2.0/UDP nbsp;branch=z9hG4bKnbsp",
            " folded continuation",
            "\tfolded continuation",
        ]
    lines = others + vias + draw(st.lists(st.sampled_from(noise), max_size=3))
    lines = draw(st.permutations(lines))
    if not odd:  # the Via lines keep their order, and no V-header comes first
        lines = [ln for ln in lines if not ln.lower().startswith("v")] + vias
    eol = draw(st.sampled_from(["\r\n", "\r\n", "\n"])) if odd else "\r\n"
    body = draw(st.sampled_from([b"", b"\r\nVia: SIP/2.0/UDP body;branch=z9hG4bKbody\r\n"]))
    head = "ACK sip:+4930123456@rb.example.net SIP/2.0" + eol + eol.join(lines) + eol + eol
    return head.encode("utf-8", "surrogateescape").replace(b"\xc3\xbf", b"\xff") + body


def _parsed_top_via(data: bytes) -> str | None:
    try:
        return parse_message(data).headers.get("Via")
    except SipParseError as exc:
        raise AssertionError("not a valid message") from exc


@given(ack_messages())
@example(b"ACK sip:a@b SIP/2.0\r\nX: a\nVia: fake\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n")
def test_top_via_value_agrees_with_parse_message(data: bytes) -> None:
    value = top_via_value(data)
    try:
        message = parse_message(data)
    except SipParseError:
        return  # not a validator: for rejected input any answer will do
    if value is not None:
        assert value == message.headers.get("Via")


@given(ack_messages(odd=False))
def test_top_via_value_reads_the_common_spelling(data: bytes) -> None:
    expected = _parsed_top_via(data)
    assert expected is not None
    assert top_via_value(data) == (None if "," in expected else expected)


@pytest.mark.parametrize(
    "data",
    [
        b"ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b\r\n\r\n",
        b"ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a;\r\n branch=z9hG4bK1\r\n\r\n",
        b"ACK sip:a@b SIP/2.0\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\n\n",  # bare LF head
        b"ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1",  # no end of head
        b"ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\rx\r\n\r\n",
        b"ACK sip:a@b SIP/2.0\r\nVendor: x\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\r\n",
        b"ACK sip:a@b SIP/2.0\r\nVia\x0b: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\r\n",
        b"ACK sip:a@b SIP/2.0\r\nCSeq: 1 ACK\r\n\r\nVia: SIP/2.0/UDP in-body\r\n",
        b"\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\r\n",
        b"",
    ],
)
def test_top_via_value_gives_up_on_the_unusual(data: bytes) -> None:
    assert top_via_value(data) is None


def test_top_via_value_reads_compact_and_spaced_forms() -> None:
    for line in [b"v: X", b"V :X", b"via\t:  X  ", b"VIA:X"]:
        data = b"ACK sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n" + line + b"\r\nFrom: <sip:c@d>\r\n\r\n"
        assert top_via_value(data) == "X", line
    assert top_via_value(b"ACK sip:a@b SIP/2.0\r\nVia: \xff\r\n\r\n") == "\udcff"


plain_user = st.text("+0123456789-.()", min_size=1, max_size=16)
uri_param = st.tuples(
    st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._!~*'", max_size=6),
    st.sampled_from(["", "=", "=phone", "=udp", "=a=b", "=%41"]),
).map("".join)
common_uris = st.builds(
    "sip:{}@{}{}{}".format,
    plain_user,
    host,
    port,
    st.lists(uri_param.filter(lambda p: p and p[0] != "=" and "%" not in p), max_size=4).map(
        lambda ps: "".join(";" + p for p in ps)
    ),
)
uri_text = st.one_of(
    common_uris,
    st.builds(
        "{}{}@{}{}".format,
        st.sampled_from(["sip:", "sips:", "SIP:", "tel:", "sip:alice", "sip:+1:pw"]),
        plain_user,
        st.one_of(host, st.sampled_from(["", ";x", "ho!st", "h:99999", "h:05060", "[::1"])),
        st.lists(uri_param, max_size=3).map(lambda ps: "".join(";" + p for p in ps)),
    ),
    st.text('sip:+0123456789@;=.%?"<>() \t\x0babcXYZ-[]\xa0', max_size=30),
)


@given(uri_text)
@example("sip:+861@h;\x0buser=phone")
@example("sip:+861@h;;user")
def test_fast_sip_uri_agrees_with_parse_uri(text: str) -> None:
    fast = fast_sip_uri(text)
    try:
        uri = parse_uri(text)
    except SipParseError:
        return  # not a validator: for rejected input any answer will do
    if fast is not None:
        assert isinstance(uri, SipUri)
        user, names = fast
        assert user == uri.user_unescaped
        assert names == {name.lower() for name, _ in uri.params}


@given(common_uris)
def test_fast_sip_uri_reads_the_common_form(text: str) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    assert fast_sip_uri(text) == (uri.user, {name.lower() for name, _ in uri.params})


@pytest.mark.parametrize(
    "text",
    [
        "tel:+8613800138000",
        "sips:+8613800138000@h",
        "sip:h",
        "sip:alice@h",
        "sip:+86:pw@h",
        "sip:%2B86@h",
        "sip:+86@h?subject=x",
        'sip:+86@h;x="y"',
        "sip:@h",
        "sip:+86@",
        "sip:+86@;user=phone",
    ],
)
def test_fast_sip_uri_gives_up_on_the_unusual(text: str) -> None:
    assert fast_sip_uri(text) is None


def _via_branch(via: Via) -> tuple[str | None, str, str]:
    port = default_port(via.transport) if via.port is None else via.port
    return via.branch, via.host.lower(), str(port)


def test_fast_via_branch_reads_the_common_spelling() -> None:
    for value in [
        "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-a1;rport",
        "SIP/2.0/UDP Switch.Example.COM;branch=z9hG4bKabc",
        "SIP/2.0/TLS sbc.example;received=1.2.3.4;BRANCH=z9hG4bKx9",
        "SIP/2.0/tcp 10.0.0.1:65535;branch=z9hG4bK1;ttl=4",
        "SIP/2.0/UDP host;branch=1234",  # RFC 2543 branch: the caller tells
    ]:
        assert fast_via_branch(value) == _via_branch(parse_via(value)), value


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1",
        "SIP / 2.0 / UDP host;branch=z9hG4bK1",
        "SIP/2.0/UDP host:05060;branch=z9hG4bK1",
        "SIP/2.0/UDP host:5060",
        "SIP/2.0/UDP host:5060;rport",
        "SIP/2.0/UDP host ; branch=z9hG4bK1",
        "SIP/2.0/UDP host;x=a b;branch=z9hG4bK1",
    ],
)
def test_fast_via_branch_gives_up_on_the_unusual(value: str) -> None:
    assert fast_via_branch(value) is None


via_text = st.one_of(
    plain_via,
    st.builds(
        "SIP/2.0/{} {}{}{}{}".format,
        transport,
        host,
        port,
        via_params,
        st.sampled_from([";branch", ';x="a;branch=z9hG4bKq"', ";x=a b", ";", ";ttl=999", ""]),
    ).map(lambda v: v if "branch=" in v else v + ";branch=z9hG4bKlast"),
    st.text("SIP/2.0UDP ;branch=z9hG4bK:5060.\"'\t", max_size=40),
)


@given(via_text)
@example("SIP/2.0/UDP h;branch;branch=z9hG4bKq")
@example('SIP/2.0/UDP h;x="a;branch=z9hG4bKq";branch=z9hG4bKr')
def test_fast_via_branch_agrees_with_parse_via(value: str) -> None:
    fast = fast_via_branch(value)
    try:
        via = parse_via(value)
    except SipParseError:
        return  # not a validator: for rejected input any answer will do
    if fast is not None:
        assert fast == _via_branch(via)


@given(
    st.builds(
        "SIP/2.0/{} {}{}{};branch=z9hG4bK{}{}".format,
        transport,
        host.filter(lambda h: not h.startswith("[")),
        st.one_of(st.just(""), st.integers(1, 65535).map(":{}".format)),
        via_params,
        alnum,
        via_params,
    )
)
def test_fast_via_branch_reads_plain_vias(value: str) -> None:
    assert fast_via_branch(value) == _via_branch(parse_via(value))
