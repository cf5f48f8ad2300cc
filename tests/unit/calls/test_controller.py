"""The call policy played through with no network: bytes in, bytes out, a fake clock."""

from __future__ import annotations

import pytest

from ringback.calls import ALLOW, CallController, SipMetrics, StartWarning, StopWarning
from ringback.media.destinations import DestinationPolicy
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
    def __init__(self, *, ready: bool = True, warnings: bool = False) -> None:
        self.index = ListingIndex()
        self.index.upsert(LISTED, Entry(7, 3, 0, 2**32 - 1))
        self.registry = Registry()
        self.metrics = SipMetrics(self.registry)
        self.ready = ready
        self.controller = CallController(
            self.index,
            NumberingPlan(),
            self.metrics,
            index_ready=lambda: self.ready,
            warnings=warnings,
            destinations=DestinationPolicy(["192.0.2.0/24"]),
        )
        self.controller.sync_clock(1_700_000_000.0)
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
    assert response.headers.get("Supported") == "100rel, precondition"


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


OFFER = (
    "v=0\r\no=alice 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
)


def invite_with_offer(
    ruri: str, *, branch: str = "z9hG4bK-a1", extra: str = "", offer: str = OFFER
) -> bytes:
    head = invite(ruri, branch=branch, extra=extra + "Content-Type: application/sdp\r\n")
    return head.replace(
        b"Content-Length: 0\r\n\r\n", f"Content-Length: {len(offer)}\r\n\r\n{offer}".encode()
    )


@pytest.fixture
def w() -> Harness:
    """A controller that plays warnings: the test plays the shell's part."""
    return Harness(warnings=True)


def test_183_opens_an_early_dialog_with_contact_and_record_route(w: Harness) -> None:
    w.controller.listening("udp", "192.0.2.1", 5060)
    extra = "Record-Route: <sip:p1.example;lr>\r\nRecord-Route: <sip:p2.example;lr>\r\n"
    assert w.send(invite_with_offer("sip:+8613800138000@192.0.2.1", extra=extra)) == []
    [start] = w.controller.take_effects()
    assert isinstance(start, StartWarning)
    assert w.controller.warning_ready(start.key, b"v=0\r\n", w.now)
    [early] = w.take()
    assert early.status == 183
    assert early.headers.get("Contact") == "<sip:192.0.2.1:5060>"
    assert early.headers.get_all("Record-Route") == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    w.controller.warning_ended(start.key, "completed", w.now)
    [final] = w.take()
    assert final.status == 302 and final.to_tag == early.to_tag
    assert final.headers.get("X-Ringback-Warning") == "played"
    assert w.controller.take_effects() == []


def test_listed_call_asks_the_shell_for_the_warning_in_the_callers_codec(w: Harness) -> None:
    w.send(invite_with_offer("sip:+8613800138000@192.0.2.1"))
    [start] = w.controller.take_effects()
    assert isinstance(start, StartWarning)
    assert (start.media.codec, start.media.payload_type) == ("PCMA", 8)
    assert start.destinations == (("192.0.2.10", 40000),)
    assert start.entry.listing_id == 7


def test_cancel_during_the_warning_stops_it_and_answers_487(w: Harness) -> None:
    w.send(invite_with_offer("sip:+8613800138000@192.0.2.1"))
    [start] = w.controller.take_effects()
    w.controller.warning_ready(start.key, b"v=0\r\n", w.now)
    w.take()
    cancel = invite_with_offer("sip:+8613800138000@192.0.2.1").replace(b"INVITE", b"CANCEL")
    statuses = sorted(r.status for r in w.send(cancel))
    assert statuses == [200, 487]
    assert w.controller.take_effects() == [StopWarning(start.key)]
    w.controller.warning_ended(start.key, "cancelled", w.now)  # the shell's late report
    assert w.take() == []


@pytest.mark.parametrize("reason", ["capacity", "recording_missing", "start_failed"])
def test_a_warning_that_cannot_start_fails_open_with_its_reason(w: Harness, reason: str) -> None:
    w.send(invite_with_offer("sip:+8613800138000@192.0.2.1"))
    [start] = w.controller.take_effects()
    w.controller.warning_ended(start.key, reason, w.now)
    [final] = w.take()
    assert final.status == 302
    assert final.headers.get("X-Ringback-Warning") == f"skipped; reason=listed_{reason}"
    assert w.metrics.decisions.get(f"listed_{reason}") == 1
    assert w.metrics.decisions.get("announced") == 0


def test_warning_capacity_is_decided_by_the_core(w: Harness) -> None:
    w.controller.max_warnings = 1
    w.send(invite_with_offer("sip:+8613800138000@192.0.2.1", branch="z9hG4bK-c1"))
    [final] = w.send(invite_with_offer("sip:+8613800138000@192.0.2.1", branch="z9hG4bK-c2"))
    assert final.headers.get("X-Ringback-Warning") == "skipped; reason=listed_capacity"
    assert len(w.controller.take_effects()) == 1


def test_no_prack_stops_the_warning_and_redirects(w: Harness) -> None:
    w.send(invite_with_offer("sip:+8613800138000@192.0.2.1", extra="Require: 100rel\r\n"))
    [start] = w.controller.take_effects()
    w.controller.warning_ready(start.key, b"v=0\r\n", w.now)
    [early] = w.take()
    assert early.headers.get("RSeq") is not None
    responses = w.advance(32.5)  # 64*T1 with no PRACK
    assert responses[-1].status == 302
    assert responses[-1].headers.get("X-Ringback-Warning") == "skipped; reason=no_prack"
    assert w.controller.take_effects() == [StopWarning(start.key)]


def test_next_deadline_is_the_302_retransmission(h: Harness) -> None:
    assert h.controller.next_deadline() is None
    h.send(invite("sip:+8613700137000@192.0.2.1"))
    assert h.controller.next_deadline() == pytest.approx(h.now + 0.5)  # Timer G = T1


def test_sip_i_multipart_offer_gets_the_warning(w: Harness) -> None:
    isup = bytes.fromhex("0100600a0003020a08831013")
    body = (
        b"--b1\r\nContent-Type: application/sdp\r\n\r\n"
        + OFFER.encode()
        + b"\r\n--b1\r\nContent-Type: application/isup;version=itu-t92+\r\n\r\n"
        + isup
        + b"\r\n--b1--\r\n"
    )
    data = invite(
        "sip:+8613800138000@192.0.2.1", extra="Content-Type: multipart/mixed;boundary=b1\r\n"
    )
    data = (
        data.replace(b"Content-Length: 0\r\n\r\n", b"Content-Length: %d\r\n\r\n" % len(body)) + body
    )
    assert w.send(data) == []
    [start] = w.controller.take_effects()
    assert isinstance(start, StartWarning) and start.media.codec == "PCMA"


def test_reinvite_for_a_dialog_we_do_not_have_gets_481_and_no_warning(w: Harness) -> None:
    data = invite_with_offer("sip:+8613800138000@192.0.2.1").replace(
        b"To: <sip:+8613800138000@192.0.2.1>", b"To: <sip:+8613800138000@192.0.2.1>;tag=x9"
    )
    [response] = w.send(data)
    assert response.status == 481
    assert w.controller.take_effects() == []


def test_200_to_cancel_carries_the_invites_to_tag(w: Harness) -> None:
    w.send(invite_with_offer("sip:+8613800138000@192.0.2.1"))
    [start] = w.controller.take_effects()
    w.controller.warning_ready(start.key, b"v=0\r\n", w.now)
    [early] = w.take()
    cancel = invite_with_offer("sip:+8613800138000@192.0.2.1").replace(b"INVITE", b"CANCEL")
    responses = {r.status: r for r in w.send(cancel)}
    assert responses[200].to_tag == early.to_tag == responses[487].to_tag


def test_prack_for_another_early_dialog_is_refused_and_the_183_keeps_coming(w: Harness) -> None:
    w.send(invite_with_offer("sip:+8613800138000@192.0.2.1", extra="Require: 100rel\r\n"))
    [start] = w.controller.take_effects()
    w.controller.warning_ready(start.key, b"v=0\r\n", w.now)
    [early] = w.take()
    rseq = early.headers.get("RSeq")

    def prack(tag: str, branch: str) -> bytes:
        return (
            f"PRACK sip:192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch={branch}\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:alice@192.0.2.10>;tag=from1\r\n"
            f"To: <sip:+8613800138000@192.0.2.1>;tag={tag}\r\nCall-ID: c1\r\nCSeq: 2 PRACK\r\n"
            f"RAck: {rseq} 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    [wrong] = w.send(prack("not-ours", "z9hG4bK-p1"))
    assert wrong.status == 481
    assert [r.status for r in w.advance(0.5)] == [183]  # still unacknowledged: retransmitted
    [right] = w.send(prack(early.to_tag or "", "z9hG4bK-p2"))
    assert right.status == 200
    assert w.advance(1.0) == []


def test_invented_methods_are_counted_as_other(h: Harness) -> None:
    for method in ("FOO", "BAR", "X-ANYTHING"):
        h.send(request(method, branch=f"z9hG4bK-{method}"))
    h.send(request("OPTIONS", branch="z9hG4bK-o"))
    assert h.metrics.requests.get("other") == 3
    assert h.metrics.requests.get("OPTIONS") == 1
    assert h.metrics.requests.get("FOO") == 0


@pytest.mark.parametrize(
    "aim",
    ["8.8.8.8 40000", "169.254.169.254 40000", "255.255.255.255 40000", "192.0.2.10 53"],
)
def test_an_offer_aimed_outside_the_policy_plays_only_to_the_invites_source(
    w: Harness, aim: str
) -> None:
    host, port = aim.split()
    offer = OFFER.replace("c=IN IP4 192.0.2.10", f"c=IN IP4 {host}").replace("40000", port)
    responses = w.send(invite_with_offer("sip:+8613800138000@192.0.2.1", offer=offer))
    effects = w.controller.take_effects()
    if int(port) < 1024:  # the source with that port is refused too
        assert effects == []
        [final] = responses
        assert final.headers.get("X-Ringback-Warning") == (
            "skipped; reason=listed_media_destination_refused"
        )
        return
    [start] = effects
    assert isinstance(start, StartWarning)
    assert start.destinations == ((SRC[0], int(port)),)  # never the aimed address


def test_an_offer_and_source_both_outside_the_policy_fail_open_counted(w: Harness) -> None:
    offer = OFFER.replace("c=IN IP4 192.0.2.10", "c=IN IP4 8.8.8.8")
    data = invite_with_offer("sip:+8613800138000@192.0.2.1", offer=offer)
    [final] = w.send(data, source=("198.51.100.7", 5060))
    assert final.status == 302
    assert final.headers.get("X-Ringback-Warning") == (
        "skipped; reason=listed_media_destination_refused"
    )
    assert w.metrics.decisions.get("listed_media_destination_refused") == 1
    assert w.controller.take_effects() == []


def test_a_stale_index_stops_warning_after_the_bound(h: Harness) -> None:
    staleness = [0.0]
    controller = CallController(
        h.index,
        NumberingPlan(),
        h.metrics,
        index_ready=lambda: True,
        index_staleness=lambda: staleness[0],
        max_staleness_s=600.0,
        warnings=True,
        destinations=DestinationPolicy(["192.0.2.0/24"]),
    )
    controller.sync_clock(1_700_000_000.0)
    controller.receive(invite_with_offer("sip:+8613800138000@192.0.2.1"), SRC, "udp", h.now)
    assert len(controller.take_effects()) == 1  # fresh enough: warned
    staleness[0] = 600.5
    data = invite_with_offer("sip:+8613800138000@192.0.2.1", branch="z9hG4bK-stale")
    controller.receive(data, SRC, "udp", h.now)
    assert controller.take_effects() == []
    final = parse_message(controller.take_outgoing()[-1][0])
    assert isinstance(final, Response) and final.status == 302
    assert final.headers.get("X-Ringback-Warning") == "skipped; reason=index_stale"
    assert h.metrics.decisions.get("index_stale") == 1
    # OPTIONS keeps answering 200 meanwhile
    controller.receive(request("OPTIONS", branch="z9hG4bK-opt"), SRC, "udp", h.now)
    options = parse_message(controller.take_outgoing()[-1][0])
    assert isinstance(options, Response) and options.status == 200


def test_drain_redirects_new_calls_at_once_and_ends_held_ones(w: Harness) -> None:
    w.send(invite_with_offer("sip:+8613800138000@192.0.2.1", branch="z9hG4bK-d1"))
    [start] = w.controller.take_effects()
    w.controller.warning_ready(start.key, b"v=0\r\n", w.now)
    [early] = w.take()
    w.controller.drain()
    [new] = w.send(invite_with_offer("sip:+8613800138000@192.0.2.1", branch="z9hG4bK-d2"))
    assert new.status == 302
    assert new.headers.get("X-Ringback-Warning") == "skipped; reason=listed_draining"
    assert w.controller.take_effects() == []
    w.controller.end_warnings(w.now)
    [final] = w.take()
    assert final.status == 302 and final.to_tag == early.to_tag
    assert final.headers.get("X-Ringback-Warning") == "skipped; reason=shutdown"
    assert w.controller.take_effects() == [StopWarning(start.key)]
    assert not w.controller.held


@pytest.mark.parametrize(
    "ruri",
    [
        # number portability: the dialled number is looked up, never the routing number
        "sip:+8613800138000;npdi;rn=+8613911110000@switch.example.cn;user=phone",
        "sip:13800138000;npdi;rn=+8613911110000@192.0.2.1;user=phone",
        "sip:13800138000;phone-context=+86@192.0.2.1;user=phone",
        "sip:+86-138-0013-8000;isub=1234@192.0.2.1;user=phone",
        "tel:+86-138-0013-8000;isub=1234",
        "tel:13800138000;phone-context=+86",
        "sip:+86(0)13800138000@192.0.2.1",
        "sip:+86%2813800138000@192.0.2.1".replace("%28", ""),
    ],
)
def test_listed_number_in_the_forms_carriers_send_is_warned(w: Harness, ruri: str) -> None:
    data = invite_with_offer(ruri)
    assert w.send(data) == [], ruri
    [start] = w.controller.take_effects()
    assert isinstance(start, StartWarning) and start.entry.listing_id == 7


def test_the_routing_number_of_a_ported_call_is_not_looked_up(w: Harness) -> None:
    # The routing number is the listed one; the dialled number is not: no warning.
    ruri = "sip:+8613700137000;npdi;rn=+8613800138000@192.0.2.1;user=phone"
    [response] = w.send(invite_with_offer(ruri))
    assert response.status == 302 and response.headers.get("X-Ringback-Warning") is None
    assert w.metrics.decisions.get("not_listed") == 1


def test_a_local_number_without_area_code_is_refused_not_guessed(h: Harness) -> None:
    [response] = h.send(invite("sip:65529988@192.0.2.1;user=phone"))
    assert response.status == 302
    assert h.metrics.decisions.get("ambiguous_number") == 1


def limited(warnings: bool) -> Harness:
    from ringback.ratelimit import TokenBuckets

    harness = Harness(warnings=warnings)
    harness.controller.rate_limit = TokenBuckets(rate=1, burst=2)
    return harness


def test_an_invite_over_its_sources_limit_gets_its_302_at_once_unwarned() -> None:
    w = limited(warnings=True)
    for n in (1, 2):
        ruri = "sip:+8613800138000@192.0.2.1"
        assert w.send(invite_with_offer(ruri, branch=f"z9hG4bK-{n}")) == []
    assert len(w.controller.take_effects()) == 2  # within the burst: both warned
    [final] = w.send(invite_with_offer("sip:+8613800138000@192.0.2.1", branch="z9hG4bK-3"))
    assert final.status == 302
    assert final.headers.get("Contact") == "<sip:+8613800138000@192.0.2.1;rbk>"
    assert final.headers.get("X-Ringback-Warning") == "skipped; reason=listed_rate_limited"
    assert w.controller.take_effects() == []
    [unlisted] = w.send(invite("sip:+8613700137000@192.0.2.1", branch="z9hG4bK-4"))
    assert unlisted.status == 302 and unlisted.headers.get("X-Ringback-Warning") is None
    assert w.metrics.rate_limited.get("INVITE", "redirected") == 2
    assert w.metrics.decisions.get("listed_rate_limited") == 1
    # another source has its own bucket; time refills this one
    assert (
        w.send(
            invite_with_offer("sip:+8613800138000@192.0.2.1", branch="z9hG4bK-5"),
            source=("192.0.2.11", 5060),
        )
        == []
    )
    w.now += 1.0
    assert w.send(invite_with_offer("sip:+8613800138000@192.0.2.1", branch="z9hG4bK-6")) == []
    assert len(w.controller.take_effects()) == 2


def test_other_requests_over_the_limit_are_dropped_but_ack_and_cancel_never() -> None:
    h = limited(warnings=False)
    answers = [h.send(request("OPTIONS", branch=f"z9hG4bK-o{n}")) for n in range(5)]
    assert [len(a) for a in answers] == [1, 1, 0, 0, 0]
    assert h.metrics.rate_limited.get("OPTIONS", "dropped") == 3
    assert h.send(request("FOO", branch="z9hG4bK-x")) == []
    assert h.metrics.rate_limited.get("other", "dropped") == 1
    # CANCEL still answered (481: nothing to cancel); an ACK is still absorbed
    [cancel] = h.send(request("CANCEL", branch="z9hG4bK-c"))
    assert cancel.status == 481
    h.send(request("ACK", branch="z9hG4bK-a", cseq="1 ACK"))
    assert h.metrics.requests.get("ACK") == 1
    # responses sent to us are never counted against the limit
    h.send(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-r\r\n\r\n")
    assert h.metrics.rate_limited.get("other", "dropped") == 1


def test_tls_contact_is_a_sips_uri() -> None:
    h = Harness()
    h.controller.listening("tls", "192.0.2.1", 5061)
    h.controller.listening("tcp", "192.0.2.1", 5060)
    assert h.controller.contacts["tls"] == "<sips:192.0.2.1:5061>"
    assert h.controller.contacts["tcp"] == "<sip:192.0.2.1:5060;transport=tcp>"
    [response] = h.send(invite("sips:+8613700137000@192.0.2.1:5061"), transport="tls")
    assert response.headers.get("Contact") == "<sips:+8613700137000@192.0.2.1:5061;rbk>"


def test_in_dialog_requests_and_bye_are_never_rate_limited() -> None:
    h = limited(warnings=False)
    for n in range(2):  # the burst, spent
        h.send(request("OPTIONS", branch=f"z9hG4bK-s{n}"))
    [bye] = h.send(request("BYE", branch="z9hG4bK-bye"))
    assert bye.status == 481  # answered (no such dialog here), not dropped
    in_dialog = request("INFO", branch="z9hG4bK-info").replace(
        b"To: <sip:ringback@192.0.2.1>", b"To: <sip:ringback@192.0.2.1>;tag=t1"
    )
    assert [r.status for r in h.send(in_dialog)] == [405]
    assert h.metrics.rate_limited.get("BYE", "dropped") == 0
    assert h.metrics.rate_limited.get("INFO", "dropped") == 0
