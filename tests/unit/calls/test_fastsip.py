"""The compiled scan (src/ringback/_fastsip.c) against its Python reference
(`FastRedirect.scan`): the same answer for every message, byte for byte, or it declines."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_fast_path import NAMES, VALUES, common_invite, controller

from ringback.calls import fast_path
from ringback.calls.fast_path import FastRedirect, Scan
from ringback.sip.fast import fast_via_branch, top_via_value
from ringback.sip.message import Limits

LIMITS = Limits()


def test_the_compiled_scan_is_built_and_used() -> None:
    """pip builds it (scripts/setup installs gcc and Python's headers): a missing build is
    a failure here, not a silent fall back to the slower Python scan."""
    assert fast_path.COMPILED_SCAN is not None
    lean, _ = controller(fast=True)
    assert lean.fast is not None and lean.fast.compiled is fast_path.COMPILED_SCAN


def both(
    data: bytes, source: tuple[str, int] = ("192.0.2.10", 5070), reliable: bool = False
) -> tuple[Scan | None, Scan | bytes | None]:
    """(Python scan, compiled scan) of `data`, the compiled one with the names the Python
    one has classified (as in use: the compiled scan hands unseen names to Python)."""
    lean, _ = controller(fast=True)
    fast = lean.fast
    assert isinstance(fast, FastRedirect) and fast_path.COMPILED_SCAN is not None
    python = fast.scan(data, source, reliable)
    compiled = fast_path.COMPILED_SCAN(
        data,
        source[0],
        source[1],
        reliable,
        LIMITS.max_message_size,
        LIMITS.max_header_count,
        LIMITS.max_line_length,
        fast._names,
    )
    return python, compiled


def agree(
    data: bytes, source: tuple[str, int] = ("192.0.2.10", 5070), reliable: bool = False
) -> tuple[Scan | None, Scan | bytes | None]:
    python, compiled = both(data, source, reliable)
    assert not isinstance(compiled, bytes), compiled  # every name was classified first
    if compiled is None and python is not None:
        # The one documented difference: a Via host or port outside ASCII, which the
        # Python scan reads as Unicode; the full path answers those the same.
        via = next(line for line in data.split(b"\r\n") if line.startswith(b"Via: "))
        assert not via.isascii(), (data, python)
        return python, compiled
    assert compiled == python
    return python, compiled


def test_the_common_invite() -> None:
    python, compiled = agree(common_invite())
    assert python is not None and compiled == python
    ruri, call_id, from_tag, key, dest, head_a, head_b = python
    assert ruri == b"sip:+4930123456@192.0.2.1:5060"
    assert (call_id, from_tag) == (b"abc@192.0.2.10", b"f1")
    assert key == ("z9hG4bK-a1", "192.0.2.10", "5070", "INVITE")
    assert dest == ("192.0.2.10", 5070)
    assert head_a.endswith(b"To: <sip:+4930123456@192.0.2.1:5060>")
    assert head_a.startswith(
        b"Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-a1;rport=5070;received=192.0.2.10\r\n"
    )
    assert head_b == b"\r\nCall-ID: abc@192.0.2.10\r\nCSeq: 1 INVITE\r\n"


def test_an_unseen_header_name_is_handed_to_python() -> None:
    lean, _ = controller(fast=True)
    assert lean.fast is not None and fast_path.COMPILED_SCAN is not None
    data = common_invite(extra="X-New: 1\r\n")
    args = (data, "192.0.2.10", 5070, False, 65535, 128, 8192)
    known: dict[bytes, str | None] = {b"Contact": None}
    assert fast_path.COMPILED_SCAN(*args, known) == b"X-New"
    assert fast_path.COMPILED_SCAN(*args, {**known, b"X-New": ""}) is None  # not fine
    assert fast_path.COMPILED_SCAN(*args, {**known, b"X-New": None}) is not None
    assert lean.fast.invite(data, ("192.0.2.10", 5070), False, lean.layers["udp"], 1, 2)
    assert lean.fast._names == {b"Contact": None, b"X-New": None}  # classified by Python


def mostly(good: str, *odd: str) -> st.SearchStrategy[str]:
    """`good` six times in seven, else one of `odd`: most messages are accepted by both."""
    return st.sampled_from([good] * (6 * len(odd)) + list(odd))


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    number=mostly("+4930123456", "+8613800138000", "030123456", "x", ""),
    sent_by=mostly(
        "192.0.2.10:5070", "192.0.2.10", "Host.Example:5070", "[::1]:5", "h:0", "h:65536",
        "h:", "...", "a_b", "h:١٢", "hé", "192.0.2.10:5070:1",
    ),
    transport=mostly("UDP", "TCP", "tls", "WSS", "U1", ""),
    branch=mostly("z9hG4bK-a1", "z9hG4bK", "old-branch", "z9hG4bKé", ""),
    via_params=st.lists(
        mostly(
            "rport", "RPort", "rport=9", "received=10.0.0.1", "maddr=192.0.2.99", "ttl=1",
            "x=y", "x=", "", "Branch=z9hG4bK-b", "branch",
        ),
        max_size=4,
    ),
    from_=mostly(
        '"A" <sip:a@h>;tag=f1', "<sip:a@h>;TAG=f1", "sip:a@h;tag=f1", "<sip:a@h>",
        "<sip:a@h>;tag=1;tag=2", "<sip:a@h> ;tag=1", '<sip:a@h>;x="";tag=1',
        "<sip:a@h>x;tag=1", "<sip:a@h>;tag=", "<sip:a@h>;tag",
    ),
    extra=st.lists(st.tuples(NAMES, VALUES), max_size=3),
    cseq=mostly("1 INVITE", "4294967295 INVITE", "4294967296 INVITE", "1  INVITE",
                "01 INVITE", "x INVITE", "1 ACK", "12345678901 INVITE"),
    max_forwards=mostly("Max-Forwards: 70\r\n", "Max-Forwards: 0\r\n", "",
                        "Max-Forwards: 255\r\n", "Max-Forwards: 256\r\n",
                        "Max-Forwards:70 \r\n", "Max-Forwards: 0070\r\n"),
    length=mostly("0", "   0", "1", "00000000000000000000000", "99999999999999999999",
                  "-1", "", "2 "),
    trailer=st.sampled_from([b"", b"\r\n", b"xy"]),
    source=st.sampled_from([("192.0.2.10", 5070), ("192.0.2.11", 5060), ("HOST.example", 1)]),
    reliable=st.booleans(),
)  # fmt: skip
@example(
    number="+4930123456",
    sent_by="hé",
    transport="UDP",
    branch="z9hG4bK-a1",
    via_params=[],
    from_="<sip:a@h>;tag=1",
    extra=[],
    cseq="1 INVITE",
    max_forwards="",
    length="0",
    trailer=b"",
    source=("192.0.2.10", 5070),
    reliable=False,
)
def test_compiled_and_python_scans_agree(
    number: str,
    sent_by: str,
    transport: str,
    branch: str,
    via_params: list[str],
    from_: str,
    extra: list[tuple[str, str]],
    cseq: str,
    max_forwards: str,
    length: str,
    trailer: bytes,
    source: tuple[str, int],
    reliable: bool,
) -> None:
    via = ";".join([f"SIP/2.0/{transport} {sent_by};branch={branch}", *via_params])
    lines = "".join(f"{n}: {v}\r\n" for n, v in extra)
    data = common_invite(number, via=via, from_=from_, extra=lines)
    data = data.replace(b"CSeq: 1 INVITE", f"CSeq: {cseq}".encode())
    data = data.replace(b"Max-Forwards: 70\r\n", max_forwards.encode())
    data = data.replace(b"Content-Length: 0", f"Content-Length: {length}".encode()) + trailer
    agree(data, source, reliable)


MUTATIONS = st.lists(
    st.tuples(
        st.integers(0, 400),
        st.integers(0, 3),
        st.sampled_from(
            [b"", b" ", b"\t", b"\r", b"\n", b"\r\n", b":", b";", b",", b'"', b"<", b">",
             b"=", b"\xc3\xa9", b"\x00", b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n", b"0",
             b"tag", b"\r\n\r\n", b"To", b"v: x\r\n"]
        ),
    ),
    max_size=4,
)  # fmt: skip


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(mutations=MUTATIONS, reliable=st.booleans())
def test_mutated_invites_agree(mutations: list[tuple[int, int, bytes]], reliable: bool) -> None:
    """Random cuts and insertions in a real INVITE: every answer is the same."""
    data = bytearray(common_invite(via="SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-a1;rport"))
    for at, cut, insert in mutations:
        at = min(at, len(data))
        data[at : at + cut] = insert
    agree(bytes(data), reliable=reliable)


def test_limits_are_the_python_scans() -> None:
    lean, _ = controller(fast=True)
    fast = lean.fast
    assert fast is not None and fast_path.COMPILED_SCAN is not None
    many = "".join(f"X-H{i}: v\r\n" for i in range(200))
    for extra in ("", many):
        data = common_invite(extra=extra)
        fast.scan(data, ("192.0.2.10", 5070), False)  # classify the names
        for limits in ((65535, 128, 8192), (100, 128, 8192), (65535, 4, 8192), (65535, 128, 20)):
            python = FastRedirect(fast.decider, fast.metrics, Limits(*limits), b"k")
            python._names = fast._names
            compiled = fast_path.COMPILED_SCAN(
                data, "192.0.2.10", 5070, False, *limits, fast._names
            )
            assert compiled == python.scan(data, ("192.0.2.10", 5070), False), limits


def python_ack_key(data: bytes) -> tuple[str, str, str] | None:
    value = top_via_value(data)
    return None if value is None else fast_via_branch(value)


def ack_agrees(data: bytes) -> tuple[str, str, str] | None:
    assert fast_path.COMPILED_ACK_KEY is not None
    python, compiled = python_ack_key(data), fast_path.COMPILED_ACK_KEY(data)
    if compiled is None and python is not None:
        # The documented difference: a Via value with bytes outside printable ASCII.
        via = top_via_value(data)
        assert via is not None and not all(" " <= c < "\x7f" or c == "\t" for c in via)
        return python
    assert compiled == python
    return python


def an_ack(via: str = "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-a1;rport") -> bytes:
    return (
        f"ACK sip:+4930123456@192.0.2.1:5060 SIP/2.0\r\nMax-Forwards: 70\r\nVia: {via}\r\n"
        "From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 ACK\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def test_the_acks_key() -> None:
    assert ack_agrees(an_ack()) == ("z9hG4bK-a1", "192.0.2.10", "5070")
    assert ack_agrees(an_ack("SIP/2.0/TLS Switch.Example;BRANCH=z9;x")) == (
        "z9",
        "switch.example",
        "5061",
    )
    assert ack_agrees(an_ack("SIP/2.0/UDP h;branch;branch=x")) is None


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    name=mostly("Via", "v", "VIA", "V", "Via ", "Vi", "Vary", "v\t"),
    via=mostly(
        "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-a1;rport",
        "SIP/2.0/TCP h;branch=z9", "SIP/2.0/wss h;Branch=1", "SIP/2.0/UDP h:;branch=1",
        "SIP/2.0/UDP h:0;branch=1", "SIP/2.0/UDP h:123456;branch=1", "SIP/2.0/UDP [::1];branch=1",
        "SIP/2.0/UDP h;x=1", "SIP/2.0/UDP h", "SIP/2.0/UDP h;branch=a b", "SIP/2.0/UDP h, b",
        " SIP/2.0/UDP h;branch=1\t", "SIP/2.0/UDP hé;branch=1", "sip/2.0/UDP h;branch=1",
        "SIP/2.0/UDP h;branch", "SIP/2.0/UDP h:1:2;branch=1", "SIP/2.0/UDP\th;branch=1",
    ),
    before=st.lists(mostly("X-A: 1", "Vary: x", "v: SIP/2.0/UDP other;branch=2"), max_size=2),
)  # fmt: skip
def test_compiled_and_python_ack_keys_agree(name: str, via: str, before: list[str]) -> None:
    data = an_ack(via).replace(b"Via: ", f"{name}: ".encode(), 1)
    lines = "".join(f"{line}\r\n" for line in before).encode()
    ack_agrees(data.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\n" + lines))


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(mutations=MUTATIONS)
def test_mutated_acks_agree(mutations: list[tuple[int, int, bytes]]) -> None:
    data = bytearray(an_ack())
    for at, cut, insert in mutations:
        at = min(at, len(data))
        data[at : at + cut] = insert
    ack_agrees(bytes(data))
