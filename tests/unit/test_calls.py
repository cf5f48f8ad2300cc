"""The call policy played through with no network: bytes in, bytes out, a fake clock."""

from __future__ import annotations

import pytest

from ringback.calls import ALLOW, CallController, SipMetrics
from ringback.metrics import Registry
from ringback.registry.listing_index import Entry, ListingIndex
from ringback.registry.numbers import NumberingPlan
from ringback.sip.message import parse_message
from ringback.sip.model import Response

LISTED = 8613800138000
SRC = ("192.0.2.10", 5070)


def invite(
    ruri: str,
    *,
    branch: str = "z9hG4bK-a1",
    max_forwards: int = 70,
    call_id: str = "c1",
    extra: str = "",
) -> bytes:
    return (
        f"INVITE {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5070;branch={branch};rport\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        'From: "Caller" <sip:alice@192.0.2.10>;tag=from1\r\n'
        f"To: <{ruri}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:alice@192.0.2.10:5070>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def request(method: str, *, branch: str = "z9hG4bK-b1", cseq: str = "", extra: str = "") -> bytes:
    return (
        f"{method} sip:ringback@192.0.2.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5070;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@192.0.2.10>;tag=from1\r\n"
        "To: <sip:ringback@192.0.2.1>\r\n"
        "Call-ID: c2\r\n"
        f"CSeq: {cseq or '1 ' + method}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


class Harness:
    def __init__(self, *, ready: bool = True) -> None:
        self.index = ListingIndex()
        self.index.upsert(LISTED, Entry(7, 3, 0, 2**32 - 1))
        self.registry = Registry()
        self.metrics = SipMetrics(self.registry)
        self.ready = ready
        self.controller = CallController(
            self.index, NumberingPlan(), self.metrics, index_ready=lambda: self.ready
        )
        self.controller.epoch_offset = 1_700_000_000.0
        self.now = 100.0

    def send(
        self, data: bytes, transport: str = "udp", source: tuple[str, int] = SRC
    ) -> list[Response]:
        self.controller.receive(data, source, transport, self.now)
        return self.take()

    def take(self) -> list[Response]:
        out = []
        for data, _dest, _transport in self.controller.take_outgoing():
            message = parse_message(data)
            assert isinstance(message, Response)
            out.append(message)
        return out

    def advance(self, seconds: float) -> list[Response]:
        self.now += seconds
        self.controller.poll(self.now)
        return self.take()


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_unlisted_number_gets_302_to_the_loop_marked_request_uri(h: Harness) -> None:
    [response] = h.send(invite("sip:+8613700137000@192.0.2.1:5060;user=phone"))
    assert response.status == 302
    assert response.headers.get("Contact") == "<sip:+8613700137000@192.0.2.1:5060;user=phone;rbk>"
    assert response.headers.get("Call-ID") == "c1"
    assert response.to_tag
    assert "X-Ringback-Warning" not in response.headers
    assert h.metrics.decisions.get("not_listed") == 1


@pytest.mark.parametrize(
    "ruri",
    [
        "sip:13700137000@switch.example.cn",
        "sip:0086-137-0013-7000@192.0.2.1",
        "sips:+8613700137000@192.0.2.1",
        "tel:+86-137-0013-7000",
        "sip:%2B8613700137000@192.0.2.1",
    ],
)
def test_other_uri_forms_are_normalised_and_redirected(h: Harness, ruri: str) -> None:
    [response] = h.send(invite(ruri))
    assert response.status == 302
    contact = response.headers.get("Contact")
    assert contact is not None and "rbk" in contact
    assert h.metrics.decisions.get("not_listed") == 1


def test_listed_number_without_announcer_gets_302_marked_skipped(h: Harness) -> None:
    [response] = h.send(invite("sip:013800138000@192.0.2.1"))  # national form of LISTED
    assert response.status == 302
    assert response.headers.get("X-Ringback-Warning") == "skipped; reason=listed_unannounced"
    assert response.headers.get("Contact") == "<sip:013800138000@192.0.2.1;rbk>"


def test_loop_marked_request_uri_is_redirected_at_once_without_lookup(h: Harness) -> None:
    [response] = h.send(invite("sip:+8613800138000@192.0.2.1;rbk"))
    assert response.status == 302
    assert response.headers.get("Contact") == "<sip:+8613800138000@192.0.2.1;rbk>"
    assert "X-Ringback-Warning" not in response.headers
    assert h.metrics.decisions.get("loop_marked") == 1


def test_index_not_ready_fails_open(h: Harness) -> None:
    h.ready = False
    [response] = h.send(invite("sip:+8613800138000@192.0.2.1"))
    assert response.status == 302
    assert h.metrics.decisions.get("index_not_ready") == 1


def test_unparseable_callee_is_redirected_and_counted(h: Harness) -> None:
    [response] = h.send(invite("sip:alice@192.0.2.1"))
    assert response.status == 302
    assert response.headers.get("Contact") == "<sip:alice@192.0.2.1;rbk>"
    assert h.metrics.decisions.get("bad_number") == 1


def test_expired_listing_is_not_announced(h: Harness) -> None:
    h.index.upsert(8613900139000, Entry(8, 0, 0, int(h.controller.epoch_offset + h.now) - 1))
    [response] = h.send(invite("sip:+8613900139000@192.0.2.1"))
    assert response.status == 302 and "X-Ringback-Warning" not in response.headers


def test_retransmitted_invite_gets_the_same_response_and_no_new_decision(h: Harness) -> None:
    [first] = h.send(invite("sip:+8613700137000@192.0.2.1"))
    [again] = h.send(invite("sip:+8613700137000@192.0.2.1"))
    assert again.to_bytes() == first.to_bytes()
    assert h.metrics.decisions.get("not_listed") == 1


def test_302_is_retransmitted_over_udp_until_ack(h: Harness) -> None:
    [first] = h.send(invite("sip:+8613700137000@192.0.2.1"))
    assert h.advance(0.49) == []
    assert [r.status for r in h.advance(0.02)] == [302]  # Timer G = T1
    assert [r.status for r in h.advance(1.0)] == [302]  # then 2*T1
    ack = (
        "ACK sip:+8613700137000@192.0.2.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-a1\r\n"
        'Max-Forwards: 70\r\nFrom: "Caller" <sip:alice@192.0.2.10>;tag=from1\r\n'
        f"To: {first.headers.get('To')}\r\nCall-ID: c1\r\nCSeq: 1 ACK\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    assert h.send(ack) == []
    assert h.advance(10.0) == []


def test_tcp_gets_no_retransmissions(h: Harness) -> None:
    [response] = h.send(invite("sip:+8613700137000@192.0.2.1"), transport="tcp")
    assert response.status == 302
    assert h.advance(40.0) == []


def test_options_answers_allow_accept_supported(h: Harness) -> None:
    [response] = h.send(request("OPTIONS"))
    assert response.status == 200
    assert response.headers.get("Allow") == ALLOW
    assert response.headers.get("Accept") == "application/sdp"
    assert response.headers.get("Supported") == "100rel"


def test_bye_gets_481_and_unknown_method_405_with_allow(h: Harness) -> None:
    assert [r.status for r in h.send(request("BYE"))] == [481]
    [response] = h.send(request("SUBSCRIBE", branch="z9hG4bK-sub"))
    assert response.status == 405 and response.headers.get("Allow") == ALLOW


def test_max_forwards_zero_gets_483(h: Harness) -> None:
    [response] = h.send(invite("sip:+8613700137000@192.0.2.1", max_forwards=0))
    assert response.status == 483
    [response] = h.send(
        request("OPTIONS", branch="z9hG4bK-o0").replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
    )
    assert response.status == 483


def test_cancel_with_no_matching_invite_gets_481(h: Harness) -> None:
    [response] = h.send(request("CANCEL", branch="z9hG4bK-nothing"))
    assert response.status == 481


def test_cancel_after_final_response_gets_200_and_no_487(h: Harness) -> None:
    h.send(invite("sip:+8613700137000@192.0.2.1", branch="z9hG4bK-cx"))
    cancel = (
        b"CANCEL sip:+8613700137000@192.0.2.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-cx\r\n"
        b'Max-Forwards: 70\r\nFrom: "Caller" <sip:alice@192.0.2.10>;tag=from1\r\n'
        b"To: <sip:+8613700137000@192.0.2.1>\r\nCall-ID: c1\r\nCSeq: 1 CANCEL\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert [r.status for r in h.send(cancel)] == [200]


def test_malformed_but_answerable_gets_400_with_a_reason(h: Harness) -> None:
    bad = invite("sip:+8613700137000@192.0.2.1").replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE")
    h.controller.receive(bad, SRC, "udp", h.now)
    [(data, dest, transport)] = h.controller.take_outgoing()
    status_line = data.split(b"\r\n", 1)[0].decode()
    assert status_line.startswith("SIP/2.0 400 ")
    assert "CSeq" in status_line  # the reason says what is wrong
    assert b"Call-ID: c1\r\n" in data and dest == SRC and transport == "udp"
    assert h.metrics.parse_errors.get("yes") == 1
    [response] = h.send(
        invite("sip:+8613700137000@192.0.2.1", max_forwards=70).replace(
            b"Max-Forwards: 70", b"Max-Forwards: many"
        )
    )
    assert response.status == 400 and "Max-Forwards" in response.reason


def test_unanswerable_garbage_is_dropped_and_counted(h: Harness) -> None:
    assert h.send(b"\x00\xffnot sip at all\r\n\r\n") == []
    assert h.send(b"INVITE sip:x SIP/2.0\r\n\r\n") == []
    assert h.metrics.parse_errors.get("no") == 2


def test_responses_sent_to_us_are_ignored(h: Harness) -> None:
    assert (
        h.send(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-r\r\n"
            b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        == []
    )


def test_a_broken_index_fails_open(h: Harness) -> None:
    def explode(number: int, now: float) -> None:
        raise RuntimeError("index corrupted")

    h.index.lookup = explode  # type: ignore[method-assign]
    [response] = h.send(invite("sip:+8613800138000@192.0.2.1"))
    assert response.status == 302
    assert response.headers.get("Contact") == "<sip:+8613800138000@192.0.2.1;rbk>"
    assert h.metrics.decisions.get("internal_error") == 1


# ------------------------------------------------------------------ robustness
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SEEDS = [
    invite("sip:+8613800138000@192.0.2.1"),
    invite("sip:+8613700137000@192.0.2.1;rbk"),
    request("OPTIONS"),
    request("CANCEL"),
    request("BYE"),
    request("PRACK", extra="RAck: 1 1 INVITE\r\n"),
    request("ACK", cseq="1 ACK"),
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup-line"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos : pos + draw(st.integers(1, 40))]
        elif op == "insert":
            data[pos:pos] = draw(
                st.sampled_from(
                    [
                        b"\r\n",
                        b":",
                        b";",
                        b",",
                        b"<",
                        b">",
                        b'"',
                        b" ",
                        b"\x00",
                        b"%",
                        b"@",
                        b"0" * 30,
                    ]
                )
            )
        else:
            lines = bytes(data).split(b"\r\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            data = bytearray(b"\r\n".join(lines))
    return bytes(data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated(), min_size=1, max_size=5), st.sampled_from(["udp", "tcp"]))
def test_nothing_a_peer_sends_crashes_the_controller(messages: list[bytes], transport: str) -> None:
    h = Harness()
    for data in messages:
        h.controller.receive(data, SRC, transport, h.now)  # must not raise
        for out, dest, via in h.controller.take_outgoing():
            assert out.startswith(b"SIP/2.0 ") and via == transport
            # back to the sender: its address; over UDP the port may come from its Via
            assert dest == SRC if transport == "tcp" else dest[0] == SRC[0]
        h.now += 0.3
        h.controller.poll(h.now)
        h.controller.take_outgoing()
    # ...and a well-formed call still gets its answer afterwards.
    [response] = h.send(invite("sip:+8613700137000@192.0.2.1", branch="z9hG4bK-after"))
    assert response.status == 302


class EarlyMediaStub:
    """An announcer that answers 183 at once and plays nothing (for SIP-level checks)."""

    def __init__(self) -> None:
        self.cancelled: list[object] = []

    def start(self, controller, invite, key, entry, source, now):  # type: ignore[no-untyped-def]
        controller.provisional(key, 183, now, body=b"v=0\r\n", content_type="application/sdp")
        return None

    def cancel(self, key) -> None:  # type: ignore[no-untyped-def]
        self.cancelled.append(key)


def test_183_opens_an_early_dialog_with_contact_and_record_route(h: Harness) -> None:
    stub = EarlyMediaStub()
    h.controller.announcer = stub
    h.controller.contacts = {"udp": "<sip:192.0.2.1:5060>"}
    extra = "Record-Route: <sip:p1.example;lr>\r\nRecord-Route: <sip:p2.example;lr>\r\n"
    [early] = h.send(invite("sip:+8613800138000@192.0.2.1", extra=extra))
    assert early.status == 183
    assert early.headers.get("Contact") == "<sip:192.0.2.1:5060>"
    assert early.headers.get_all("Record-Route") == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    key = next(iter(h.controller.pending))
    h.controller.finish_invite(key, h.now, played=True)
    [final] = h.take()
    assert final.status == 302 and final.to_tag == early.to_tag
    assert final.headers.get("X-Ringback-Warning") == "played"
    assert stub.cancelled == []
