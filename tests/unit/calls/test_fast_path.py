"""The lean INVITE path against the full parser: the same bytes on the wire, the same
counters, the same transaction state (retransmission, ACK, Timer G) — or it steps aside."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ringback.calls import CallController, SipMetrics
from ringback.media.destinations import DestinationPolicy
from ringback.metrics import Registry
from ringback.registry.listing_index import Entry, ListingIndex
from ringback.registry.numbers import NumberingPlan
from ringback.sip.message import parse_message
from ringback.sip.model import Response

KEY = bytes(range(16))
LISTED = 8613800138000
SRC = ("192.0.2.10", 5070)


def controller(
    *, fast: bool, warnings: bool = False, compiled: bool = True
) -> tuple[CallController, Registry]:
    """A controller; `fast`: with the lean path (`compiled`: its C scan, else Python's)."""
    index = ListingIndex()
    index.upsert(LISTED, Entry(7, 3, 0, 2**32 - 1))
    registry = Registry()
    c = CallController(
        index,
        NumberingPlan(),
        SipMetrics(registry),
        index_ready=lambda: True,
        warnings=warnings,
        destinations=DestinationPolicy(["192.0.2.0/24"]),
        tag_key=KEY,
    )
    c.sync_clock(1_700_000_000.0)
    if not fast:
        c.fast = None
    elif not compiled and c.fast is not None:
        c.fast.compiled = None
    return c, registry


def common_invite(
    number: str = "+4930123456",
    *,
    via: str = "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-a1;rport",
    from_: str = '"Alice" <sip:alice@192.0.2.10>;tag=f1',
    extra: str = "",
    body: str = "",
) -> bytes:
    ruri = f"sip:{number}@192.0.2.1:5060"
    return (
        f"INVITE {ruri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from_}\r\n"
        f"To: <{ruri}>\r\nCall-ID: abc@192.0.2.10\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:alice@192.0.2.10:5070>\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
        f"{body}"
    ).encode()


Sent = list[tuple[bytes, tuple[str, int], str]]


def play(
    c: CallController, data: bytes, now: float = 10.0, source: tuple[str, int] = SRC
) -> tuple[str | None, Sent]:
    outcome = c.receive(data, source, "udp", now)
    return outcome, sent(c)


def sent(c: CallController) -> Sent:
    return [(_random_tag_out(d), dest, t) for d, dest, t in c.take_outgoing()]


def _random_tag_out(data: bytes) -> bytes:
    """Error responses (400, 481, 483...) carry a random To tag on either path."""
    if data.startswith(b"SIP/2.0 302 "):
        return data
    return re.sub(rb";tag=[0-9a-f]{12}\r\n", b";tag=RANDOM\r\n", data)


def test_the_common_invite_takes_the_lean_path_and_matches_the_full_one() -> None:
    data = common_invite()
    lean, lean_metrics = controller(fast=True)
    full, full_metrics = controller(fast=False)
    assert lean.fast is not None
    layer = lean.layers["udp"]
    assert lean.fast.invite(data, SRC, False, layer, 10.0, 1e9) == "not_listed"  # answered
    lean, lean_metrics = controller(fast=True)
    a, b = play(lean, data), play(full, data)
    assert a == b
    reply = parse_message(a[1][0][0])
    assert isinstance(reply, Response) and reply.status == 302
    assert reply.headers.get("Contact") == "<sip:+4930123456@192.0.2.1:5060;rbk>"
    assert reply.headers.get("Via") == (
        "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-a1;rport=5070;received=192.0.2.10"
    )
    assert a[1][0][1] == SRC
    assert lean_metrics.render() == full_metrics.render()
    # the retransmission gets the same bytes; Timer G repeats them until the ACK
    assert play(lean, data, 10.1) == play(full, data, 10.1)
    lean.poll(10.6)
    full.poll(10.6)
    assert lean.take_outgoing() == full.take_outgoing() == [(*a[1][0][:2], "udp")]
    ack = (
        data.replace(b"INVITE sip", b"ACK sip", 1)
        .replace(b"1 INVITE", b"1 ACK")
        .replace(
            b"To: <sip:+4930123456@192.0.2.1:5060>",
            b"To: " + (reply.headers.get("To") or "").encode(),
        )
    )
    assert play(lean, ack, 10.7) == play(full, ack, 10.7) == (None, [])
    lean.poll(12.0)
    full.poll(12.0)
    assert lean.take_outgoing() == full.take_outgoing() == []
    assert lean_metrics.render() == full_metrics.render()


def test_the_to_tag_depends_on_the_request_only() -> None:
    one, _ = controller(fast=True)
    two, _ = controller(fast=False)  # another worker, same key, the full path
    data = common_invite()
    assert play(one, data)[1][0][0] == play(two, data)[1][0][0]
    other = common_invite(from_="<sip:bob@192.0.2.10>;tag=f2")
    tags = {
        parse_message(play(c, d)[1][0][0]).to_tag
        for c, d in ((controller(fast=True)[0], data), (controller(fast=True)[0], other))
    }
    assert len(tags) == 2


def test_a_listed_number_to_be_warned_takes_the_full_path() -> None:
    lean, _ = controller(fast=True, warnings=True)
    assert lean.fast is not None
    sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    sdp += "m=audio 4000 RTP/AVP 0\r\n"
    data = common_invite("+8613800138000", extra="Content-Type: application/sdp\r\n", body=sdp)
    assert lean.fast.invite(data, SRC, False, lean.layers["udp"], 10.0, 1.7e9) is None
    assert lean.receive(data, SRC, "udp", 10.0) == "announced"


VIA_PARAMS = st.lists(
    st.sampled_from(["rport", "RPort", "received=10.0.0.1", "maddr=192.0.2.99", "ttl=1", "x=y"]),
    max_size=3,
)
NAMES = st.sampled_from(
    ["Via", "v", "VIA", "From", "f", "To", "t", "Call-ID", "i", "call-id", "CSeq", "cseq",
     "Content-Type", "content-type", "X-Custom", "Subject", "Max-Forwards", "Route", "Bad Name"]
)  # fmt: skip
VALUES = st.sampled_from(
    ["<sip:a@b>;tag=x", "<sip:a@b>", "1 INVITE", "2 ACK", "0", "70", "abc", "", " padded ",
     "SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK-x", "application/sdp", "a, b"]
)  # fmt: skip


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    number=st.sampled_from(["+4930123456", "+8613800138000", "030123456", "+49301;rbk", "x"]),
    sent_by=st.sampled_from(["192.0.2.10:5070", "192.0.2.10", "host.example:5070", "[::1]:5"]),
    branch=st.sampled_from(["z9hG4bK-a1", "z9hG4bK", "old-branch"]),
    via_params=VIA_PARAMS,
    from_=st.sampled_from(
        [
            '"A" <sip:a@h>;tag=f1',
            "<sip:a@h>;TAG=f1",
            "sip:a@h;tag=f1",
            "<sip:a@h>",
            "<sip:a@h>;tag=1;tag=2",
        ]
    ),
    extra=st.lists(st.tuples(NAMES, VALUES), max_size=3),
    trailer=st.sampled_from([b"", b"\r\n", b"x"]),
    source=st.sampled_from([SRC, ("192.0.2.11", 5060), ("127.0.0.1", 4000)]),
    retransmit=st.booleans(),
    compiled=st.booleans(),
)
@example(
    number="+4930123456",
    sent_by="192.0.2.10:5070",
    branch="z9hG4bK-a1",
    via_params=["received=10.0.0.1"],
    from_='"A" <sip:a@h>;tag=f1',
    extra=[],
    trailer=b"\r\n",
    source=SRC,
    retransmit=False,
    compiled=True,
)
def test_lean_and_full_paths_agree(
    number: str,
    sent_by: str,
    branch: str,
    via_params: list[str],
    from_: str,
    extra: list[tuple[str, str]],
    trailer: bytes,
    source: tuple[str, int],
    retransmit: bool,
    compiled: bool,
) -> None:
    via = ";".join([f"SIP/2.0/UDP {sent_by};branch={branch}", *via_params])
    lines = "".join(f"{n}: {v}\r\n" for n, v in extra)
    data = common_invite(number.replace("+49301;rbk", "+49301"), via=via, from_=from_, extra=lines)
    data += trailer  # bytes past Content-Length (sipp sends a CRLF there)
    if number.endswith(";rbk"):
        data = data.replace(b"@192.0.2.1:5060 SIP", b"@192.0.2.1:5060;rbk SIP", 1)
    lean, lean_metrics = controller(fast=True, compiled=compiled)
    full, full_metrics = controller(fast=False)
    assert play(lean, data, source=source) == play(full, data, source=source)
    if retransmit:
        assert play(lean, data, 10.2, source) == play(full, data, 10.2, source)
    lean.poll(10.6)
    full.poll(10.6)
    assert sent(lean) == sent(full)  # Timer G's output
    assert lean.transactions() == full.transactions()
    assert lean_metrics.render() == full_metrics.render()


@settings(max_examples=200, deadline=None)
@given(
    number=st.from_regex(r"\+[1-9][0-9]{8,14}", fullmatch=True),
    host=st.sampled_from(["192.0.2.10", "switch.example.net", "10.1.2.3"]),
    port=st.integers(1024, 65535),
    rport=st.booleans(),
    call_id=st.from_regex(r"[A-Za-z0-9.@_-]{1,40}", fullmatch=True),
    tag=st.from_regex(r"[A-Za-z0-9-]{1,20}", fullmatch=True),
    cseq=st.integers(0, 2**32 - 1),
    extra=st.lists(
        st.sampled_from(
            ["User-Agent: x/1", "Allow: INVITE, ACK", "P-Asserted-Identity: <sip:1@h>"]
        ),
        max_size=3,
    ),
    compiled=st.booleans(),
)
def test_common_spellings_take_the_lean_path_and_agree(
    number: str,
    host: str,
    port: int,
    rport: bool,
    call_id: str,
    tag: str,
    cseq: int,
    extra: list[str],
    compiled: bool,
) -> None:
    via = f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK{tag}" + (";rport" if rport else "")
    data = common_invite(
        number,
        via=via,
        from_=f"<sip:c@h>;tag={tag}",
        extra="".join(f"{line}\r\n" for line in extra),
    )
    data = data.replace(b"Call-ID: abc@192.0.2.10", f"Call-ID: {call_id}".encode())
    data = data.replace(b"CSeq: 1 INVITE", f"CSeq: {cseq} INVITE".encode())
    lean, lean_metrics = controller(fast=True, compiled=compiled)
    full, full_metrics = controller(fast=False)
    assert lean.fast is not None
    outcome = lean.fast.invite(data, SRC, False, lean.layers["udp"], 10.0, 1.7e9)
    assert outcome == "not_listed"
    lean.take_outgoing()
    lean, lean_metrics = controller(fast=True, compiled=compiled)
    assert play(lean, data) == play(full, data)
    assert lean_metrics.render() == full_metrics.render()


def test_sipps_invite_takes_the_lean_path() -> None:
    """sipp pads Content-Length with spaces and ends a body-less INVITE with one more CRLF
    (bytes past Content-Length, dropped)."""
    lean, _ = controller(fast=True)
    assert lean.fast is not None
    data = common_invite() + b"\r\n"
    data = data.replace(b"Content-Length: 0", b"Content-Length:     0")  # as sipp pads it
    assert lean.fast.invite(data, SRC, False, lean.layers["udp"], 10.0, 1.7e9) == "not_listed"
