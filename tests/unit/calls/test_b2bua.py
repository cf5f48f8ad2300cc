"""Ringback mode played through with no sockets: the caller's leg, the callee's leg, the
relay effects, and every way a call ends — answered then hung up by either side, busy,
cancelled, re-INVITEd, never answered, next hop silent."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from ringback.calls import CallController, SipMetrics
from ringback.calls import b2bua as b2bua_module
from ringback.calls.b2bua import RingbackOptions
from ringback.calls.effects import (
    RINGBACK,
    Bridge,
    CloseRelay,
    Effect,
    FinishWarning,
    OpenRelay,
    RelayTo,
    StartWarning,
)
from ringback.media.destinations import DestinationPolicy
from ringback.media.relay_sdp import peer_media
from ringback.metrics import Registry
from ringback.registry.listing_index import Entry, ListingIndex
from ringback.registry.numbers import NumberingPlan
from ringback.sip.message import parse_message
from ringback.sip.model import Request, Response
from ringback.sip.sdp import parse_sdp

LISTED = 8613800138000
CALLER = ("192.0.2.10", 5070)  # the switch, sending the caller's INVITE
NEXT_HOP = ("192.0.2.50", 5060)  # where callee legs go
CALLEE_MEDIA = ("192.0.2.60", 30000)
CALLER_RELAY = ("192.0.2.1", 20000)
CALLEE_RELAY = ("192.0.2.1", 20002)
OFFER = (
    "v=0\r\no=a 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
)


def answer_sdp(addr: tuple[str, int], direction: str = "sendrecv") -> str:
    return (
        f"v=0\r\no=b 5 5 IN IP4 {addr[0]}\r\ns=-\r\nc=IN IP4 {addr[0]}\r\nt=0 0\r\n"
        f"m=audio {addr[1]} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
    )


@dataclass
class Harness:
    """The controller plus a shell that opens relays at once and records every effect."""

    answer_after: str = "answer"
    now: float = 100.0
    effects: list[Effect] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.index = ListingIndex()
        self.index.upsert(LISTED, Entry(7, 3, 0, 2**32 - 1))
        self.metrics = SipMetrics(Registry())
        self.c = CallController(
            self.index,
            NumberingPlan(),
            self.metrics,
            index_ready=lambda: True,
            warnings=True,
            destinations=DestinationPolicy(["192.0.2.0/24"]),
            mode="ringback",
            ringback=RingbackOptions(
                next_hop=NEXT_HOP, answer_after=self.answer_after, max_ring_s=60.0
            ),
        )
        self.c.listening("udp", "192.0.2.1", 5060)

    def send(self, data: bytes | str, source: tuple[str, int] = CALLER) -> list[Sent]:
        raw = data.encode() if isinstance(data, str) else data
        self.c.receive(raw, source, "udp", self.now)
        return self.pump()

    def pump(self) -> list[Sent]:
        """Carry out effects as a shell would (relays open at once), return what went out."""
        out = [Sent(parse_message(d), dest) for d, dest, _ in self.c.take_outgoing()]
        for effect in self.c.take_effects():
            self.effects.append(effect)
            if isinstance(effect, OpenRelay):
                self.c.relay_opened(effect.key, CALLER_RELAY, CALLEE_RELAY, self.now)
                out += self.pump()
        return out

    def advance(self, seconds: float) -> list[Sent]:
        end = self.now + seconds
        while True:
            deadline = self.c.next_deadline()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            self.c.poll(self.now)
        self.now = end
        self.c.poll(self.now)
        return self.pump()

    def warning(self) -> StartWarning:
        [start] = [e for e in self.effects if isinstance(e, StartWarning)]
        return start

    def report_ready(self) -> list[Sent]:
        self.c.warning_ready(self.warning().key, b"", self.now)
        return self.pump()

    def report_ended(self, outcome: str = "completed") -> list[Sent]:
        self.c.warning_ended(self.warning().key, outcome, self.now)
        return self.pump()


@dataclass
class Sent:
    message: Request | Response
    dest: tuple[str, int]

    @property
    def status(self) -> int | None:
        return self.message.status if isinstance(self.message, Response) else None

    @property
    def method(self) -> str | None:
        return self.message.method if isinstance(self.message, Request) else None


def invite(*, call_id: str = "caller-1", extra: str = "") -> str:
    return (
        "INVITE sip:+8613800138000@192.0.2.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-c1;rport\r\nMax-Forwards: 70\r\n"
        'From: "Alice" <sip:+8613900000001@192.0.2.10>;tag=a1\r\n'
        "To: <sip:+8613800138000@192.0.2.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 2 INVITE\r\nContact: <sip:alice@192.0.2.10:5070>\r\n"
        "P-Asserted-Identity: <sip:+8613900000001@carrier.example>\r\n"
        f"{extra}Content-Type: application/sdp\r\nContent-Length: {len(OFFER)}\r\n\r\n{OFFER}"
    )


def response_to(request: Request, status: int, *, tag: str = "b1", sdp: str = "") -> str:
    """The callee's (the next hop's) response to one of our requests."""
    h = request.headers
    to = h.get("To") or ""
    if "tag=" not in to and status > 100:
        to += f";tag={tag}"
    body = f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
    return (
        f"SIP/2.0 {status} X\r\nVia: {h.get('Via')}\r\nFrom: {h.get('From')}\r\nTo: {to}\r\n"
        f"Call-ID: {h.get('Call-ID')}\r\nCSeq: {h.get('CSeq')}\r\n"
        "Contact: <sip:bob@192.0.2.60:5062>\r\n" + (body if sdp else "Content-Length: 0\r\n\r\n")
    )


def callee_invite(sent: list[Sent]) -> Request:
    [leg] = [s.message for s in sent if s.method == "INVITE"]
    assert isinstance(leg, Request)
    return leg


def in_dialog_from_caller(method: str, to_tag: str, cseq: int, body: str = "") -> str:
    ctype = "Content-Type: application/sdp\r\n" if body else ""
    return (
        f"{method} sip:192.0.2.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-{method}{cseq}\r\nMax-Forwards: 70\r\n"
        'From: "Alice" <sip:+8613900000001@192.0.2.10>;tag=a1\r\n'
        f"To: <sip:+8613800138000@192.0.2.1>;tag={to_tag}\r\n"
        f"Call-ID: caller-1\r\nCSeq: {cseq} {method}\r\n{ctype}"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    )


def ringing_call(h: Harness) -> tuple[list[Sent], Request]:
    sent = h.send(invite())
    leg = callee_invite(sent)
    return sent, leg


def test_a_listed_call_rings_the_callee_at_once_and_plays_the_warning() -> None:
    h = Harness()
    sent = h.send(invite())
    assert [s.status for s in sent if s.status] == [100]
    leg = callee_invite(sent)
    [to_callee] = [s for s in sent if s.method == "INVITE"]
    assert to_callee.dest == NEXT_HOP
    # The callee leg: loop-marked Request-URI, a new Call-ID and tag, the caller's From
    # and identity, an offer of the relay's callee side with the caller's chosen codec.
    assert leg.uri == "sip:+8613800138000@192.0.2.1;rbk"
    assert leg.call_id != "caller-1"
    assert "sip:+8613900000001@192.0.2.10" in (leg.headers.get("From") or "")
    assert leg.from_tag not in (None, "a1")
    assert leg.headers.get("P-Asserted-Identity") == "<sip:+8613900000001@carrier.example>"
    assert leg.headers.get("Max-Forwards") == "69"
    offer = parse_sdp(leg.body)
    assert offer.connection is not None and offer.connection.host == CALLEE_RELAY[0]
    assert offer.media[0].port == CALLEE_RELAY[1]
    assert offer.media[0].formats == ["8", "101"]  # PCMA (the caller's first) + DTMF
    # The warning is asked for on the relay's caller side, to fill the ringing time.
    start = h.warning()
    assert start.purpose == RINGBACK and start.fill_s == 60.0
    # The callee's 180 is absorbed; the warning's 183 carries the relay's caller side.
    assert h.send(response_to(leg, 180), NEXT_HOP) == []
    [progress] = h.report_ready()
    assert progress.status == 183 and progress.dest == CALLER
    early = parse_sdp(progress.message.body)
    assert early.media[0].port == CALLER_RELAY[1] and early.media[0].direction == "sendrecv"
    assert h.metrics.decisions.get("announced") == 1


def test_answer_connects_with_the_same_sdp_then_bye_from_the_caller_ends_both_legs() -> None:
    h = Harness()
    _, leg = ringing_call(h)
    h.send(response_to(leg, 180), NEXT_HOP)
    [progress] = h.report_ready()
    sent = h.send(response_to(leg, 200, sdp=answer_sdp(CALLEE_MEDIA)), NEXT_HOP)
    [ack] = [s for s in sent if s.method == "ACK"]
    assert ack.dest == ("192.0.2.60", 5062)  # the callee's Contact: no Record-Route
    assert ack.message.headers.get("Call-ID") == leg.call_id
    [ok] = [s for s in sent if s.status == 200]
    assert ok.dest == CALLER and ok.message.body == progress.message.body
    bridge = next(e for e in h.effects if isinstance(e, Bridge))
    assert bridge.callee[0] == CALLEE_MEDIA
    to_tag = ok.message.to_tag
    assert to_tag == progress.message.to_tag
    # The caller's ACK stops the 200's retransmissions.
    h.send(in_dialog_from_caller("ACK", to_tag or "", 2))
    assert [s for s in h.advance(5.0) if s.status == 200] == []
    # BYE from the caller: 200 to it, BYE on the callee leg, relay closed as answered.
    sent = h.send(in_dialog_from_caller("BYE", to_tag or "", 3))
    assert [s.status for s in sent if s.status] == [200]
    [bye] = [s for s in sent if s.method == "BYE"]
    assert bye.dest == ("192.0.2.60", 5062)
    assert bye.message.headers.get("Call-ID") == leg.call_id
    assert bye.message.to_tag == "b1"
    close = next(e for e in h.effects if isinstance(e, CloseRelay))
    assert (close.stop_reason, close.answered) == ("answered", True)
    assert h.metrics.b2bua.get("answered") == 1 and h.metrics.b2bua.get("bye_from_caller") == 1


def test_the_200_is_resent_until_the_caller_acks_it() -> None:
    h = Harness()
    _, leg = ringing_call(h)
    h.report_ready()
    h.send(response_to(leg, 200, sdp=answer_sdp(CALLEE_MEDIA)), NEXT_HOP)
    resent = [s for s in h.advance(1.6) if s.status == 200]
    assert len(resent) == 2  # at T1 and 2*T1 after the first
    # Never ACKed: after 64*T1 both legs are hung up.
    sent = h.advance(40.0)  # (each BYE is retransmitted: nobody answers it here)
    assert {s.dest for s in sent if s.method == "BYE"} == {("192.0.2.60", 5062), CALLER}


def test_bye_from_the_callee_ends_the_caller_leg() -> None:
    h = Harness()
    _, leg = ringing_call(h)
    h.report_ready()
    sent = h.send(response_to(leg, 200, sdp=answer_sdp(CALLEE_MEDIA)), NEXT_HOP)
    [ok] = [s for s in sent if s.status == 200]
    local_tag = leg.from_tag
    bye = (
        f"BYE sip:192.0.2.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.60:5062;branch=z9hG4bK-cb\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:+8613800138000@192.0.2.1>;tag=b1\r\n"
        f"To: {leg.headers.get('From')}\r\nCall-ID: {leg.call_id}\r\nCSeq: 1 BYE\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    assert local_tag is not None
    sent = h.send(bye, ("192.0.2.60", 5062))
    assert [(s.status, s.dest) for s in sent if s.status] == [(200, ("192.0.2.60", 5062))]
    [to_caller] = [s for s in sent if s.method == "BYE"]
    assert to_caller.dest == ("192.0.2.10", 5070)  # the caller's Contact
    assert to_caller.message.headers.get("Call-ID") == "caller-1"
    assert to_caller.message.from_tag == ok.message.to_tag
    assert to_caller.message.to_tag == "a1"


def test_a_busy_callee_reaches_the_caller_when_the_current_play_ends() -> None:
    h = Harness()
    _, leg = ringing_call(h)
    h.report_ready()
    sent = h.send(response_to(leg, 486), NEXT_HOP)
    assert [s.method for s in sent] == ["ACK"]  # the client transaction ACKs the 486
    assert not any(s.status == 486 for s in sent)  # not yet: the warning plays on
    finish = [e for e in h.effects if isinstance(e, FinishWarning)]
    assert finish and not finish[0].first_only
    [busy] = h.report_ended("completed")
    assert busy.status == 486 and busy.dest == CALLER
    close = next(e for e in h.effects if isinstance(e, CloseRelay))
    assert (close.stop_reason, close.answered) == ("callee_refused", False)


def test_cancel_from_the_caller_cancels_the_callee_leg() -> None:
    h = Harness()
    _, leg = ringing_call(h)
    h.send(response_to(leg, 180), NEXT_HOP)
    h.report_ready()
    cancel = (
        "CANCEL sip:+8613800138000@192.0.2.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-c1;rport\r\nMax-Forwards: 70\r\n"
        'From: "Alice" <sip:+8613900000001@192.0.2.10>;tag=a1\r\n'
        "To: <sip:+8613800138000@192.0.2.1>\r\nCall-ID: caller-1\r\nCSeq: 2 CANCEL\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    sent = h.send(cancel)
    assert sorted(s.status for s in sent if s.status) == [200, 487]
    [to_callee] = [s for s in sent if s.method == "CANCEL"]
    assert to_callee.dest == NEXT_HOP
    assert to_callee.message.top_via.branch == leg.top_via.branch
    assert isinstance(to_callee.message, Request) and to_callee.message.uri == leg.uri
    # The callee's 487 is ACKed; nothing reaches the caller twice.
    sent = h.send(response_to(leg, 487), NEXT_HOP)
    assert [s.method for s in sent] == ["ACK"]
    close = next(e for e in h.effects if isinstance(e, CloseRelay))
    assert close.stop_reason == "caller_gave_up"


def test_a_cancel_before_any_callee_response_waits_for_one() -> None:
    h = Harness()
    _, leg = ringing_call(h)
    cancel = invite().replace("INVITE sip", "CANCEL sip", 1).replace("2 INVITE", "2 CANCEL")
    cancel = cancel.split("Content-Type")[0] + "Content-Length: 0\r\n\r\n"
    sent = h.send(cancel)
    assert not any(s.method == "CANCEL" for s in sent)  # RFC 3261 §9.1: after a 1xx
    sent = h.send(response_to(leg, 100), NEXT_HOP)
    assert [s.method for s in sent] == ["CANCEL"]


def test_answer_after_first_play_waits_for_the_play_to_end() -> None:
    h = Harness(answer_after="first_play")
    _, leg = ringing_call(h)
    h.report_ready()
    sent = h.send(response_to(leg, 200, sdp=answer_sdp(CALLEE_MEDIA)), NEXT_HOP)
    assert [s.method for s in sent] == ["ACK"]  # the callee leg is up; the caller waits
    assert [e.first_only for e in h.effects if isinstance(e, FinishWarning)] == [True]
    assert not any(isinstance(e, Bridge) for e in h.effects)
    [ok] = h.report_ended("completed")
    assert ok.status == 200
    assert any(isinstance(e, Bridge) for e in h.effects)


def test_reinvite_for_hold_is_relayed_with_the_relay_address() -> None:
    h = Harness()
    _, leg = ringing_call(h)
    h.report_ready()
    sent = h.send(response_to(leg, 200, sdp=answer_sdp(CALLEE_MEDIA)), NEXT_HOP)
    [ok] = [s for s in sent if s.status == 200]
    tag = ok.message.to_tag or ""
    h.send(in_dialog_from_caller("ACK", tag, 2))
    hold = OFFER.replace("a=fmtp:101 0-15\r\n", "a=fmtp:101 0-15\r\na=sendonly\r\n")
    sent = h.send(in_dialog_from_caller("INVITE", tag, 3, hold))
    [reinvite] = [s for s in sent if s.method == "INVITE"]
    assert reinvite.dest == ("192.0.2.60", 5062)
    relayed = parse_sdp(reinvite.message.body)
    assert relayed.media[0].port == CALLEE_RELAY[1]
    assert relayed.media[0].direction == "sendonly"
    assert relayed.origin.sess_version == "2"  # one more than the first offer
    # The callee answers recvonly; the caller gets it on the relay's caller side.
    assert isinstance(reinvite.message, Request)
    sent = h.send(
        response_to(reinvite.message, 200, sdp=answer_sdp(CALLEE_MEDIA, "recvonly")), NEXT_HOP
    )
    [ack] = [s for s in sent if s.method == "ACK"]
    assert ack.message.cseq == (reinvite.message.cseq[0], "ACK")
    [reply] = [s for s in sent if s.status == 200]
    assert reply.dest == CALLER
    answer = peer_media(reply.message.body)
    assert answer.address == CALLER_RELAY and answer.direction == "recvonly"
    moves = [e for e in h.effects if isinstance(e, RelayTo)]
    assert [(m.side, m.dest) for m in moves] == [
        ("caller", ("192.0.2.10", 40000)),
        ("callee", CALLEE_MEDIA),
    ]


def test_linphonecs_hold_through_a_switch_is_relayed_and_answered() -> None:
    """Found with linphonec behind Kamailio (test_ringback_mode.py): (1) its hold re-INVITE
    names a host IPv6 address outside the media policy and got 488; like the first offer, the
    media now goes to the request's source address with the SDP's port (488 only when that is
    refused too); (2) the switch's 100 to the relayed re-INVITE ended our wait, so the
    callee's 200 was never ACKed nor relayed and the switch answered the caller 408; (3) the
    caller now gets 100 at once, so the switch neither retransmits nor times out on us;
    (4) a retransmitted 2xx of the relayed re-INVITE was never ACKed again."""
    h = Harness()
    _, leg = ringing_call(h)
    h.report_ready()
    sent = h.send(response_to(leg, 200, sdp=answer_sdp(CALLEE_MEDIA)), NEXT_HOP)
    [ok] = [s for s in sent if s.status == 200]
    tag = ok.message.to_tag or ""
    h.send(in_dialog_from_caller("ACK", tag, 2))
    hold = (
        OFFER.replace("IN IP4 192.0.2.10", "IN IP6 fd00::2")
        .replace("m=audio 40000", "m=audio 45925")
        .replace("a=fmtp:101 0-15\r\n", "a=fmtp:101 0-15\r\na=sendonly\r\n")
    )
    sent = h.send(in_dialog_from_caller("INVITE", tag, 3, hold))
    assert not [s for s in sent if s.status == 488]
    [reinvite] = [s for s in sent if s.method == "INVITE"]
    assert parse_sdp(reinvite.message.body).media[0].direction == "sendonly"
    [move] = [e for e in h.effects if isinstance(e, RelayTo)]
    assert (move.side, move.dest) == ("caller", ("192.0.2.10", 45925))
    # the caller hears 100 at once; the callee's 100 (a switch's) does not end the wait for
    # its final answer, which is ACKed and relayed to the caller
    assert [s.status for s in sent if s.status] == [100]
    assert isinstance(reinvite.message, Request)
    assert h.send(response_to(reinvite.message, 100), NEXT_HOP) == []
    sent = h.send(
        response_to(reinvite.message, 200, sdp=answer_sdp(CALLEE_MEDIA, "recvonly")), NEXT_HOP
    )
    [ack] = [s for s in sent if s.method]
    assert ack.method == "ACK"
    assert [(s.status, s.dest) for s in sent if s.status] == [(200, CALLER)]
    # (4) the callee's 200 again (our ACK lost): the same ACK again, nothing to the caller
    again = h.send(
        response_to(reinvite.message, 200, sdp=answer_sdp(CALLEE_MEDIA, "recvonly")), NEXT_HOP
    )
    assert [(s.message.to_bytes(), s.dest) for s in again] == [(ack.message.to_bytes(), ack.dest)]
    # from a source outside the policy as well: refused
    outside = in_dialog_from_caller("INVITE", tag, 4, hold)
    sent = h.send(outside, ("198.51.100.7", 5070))
    assert [s.status for s in sent if s.status and s.status >= 200] == [488]


def test_refer_is_refused_and_unknown_dialogs_get_481() -> None:
    h = Harness()
    _, leg = ringing_call(h)
    h.report_ready()
    sent = h.send(response_to(leg, 200, sdp=answer_sdp(CALLEE_MEDIA)), NEXT_HOP)
    tag = next(s for s in sent if s.status == 200).message.to_tag or ""
    assert [s.status for s in h.send(in_dialog_from_caller("REFER", tag, 3))] == [603]
    assert [s.status for s in h.send(in_dialog_from_caller("BYE", "not-ours", 4))] == [481]


def test_no_answer_within_max_ring_gives_480_and_cancels_the_callee() -> None:
    h = Harness()
    _, leg = ringing_call(h)
    h.send(response_to(leg, 180), NEXT_HOP)
    h.report_ready()
    sent = h.advance(61.0)
    assert any(s.method == "CANCEL" for s in sent)
    assert {s.status for s in sent if s.status} == {480}  # (resent until ACKed)


def test_a_silent_next_hop_fails_open_with_the_302() -> None:
    h = Harness()
    ringing_call(h)
    h.report_ready()
    sent = h.advance(4.5)
    redirect = next(s for s in sent if s.status == 302)
    assert redirect.message.headers.get("Contact") == "<sip:+8613800138000@192.0.2.1;rbk>"
    assert "next_hop_silent" in (redirect.message.headers.get("X-Ringback-Warning") or "")


def test_a_relay_that_cannot_open_fails_open_at_once() -> None:
    h = Harness()
    h.c.receive(invite().encode(), CALLER, "udp", h.now)
    out = h.c.take_outgoing()
    [opening] = [e for e in h.c.take_effects() if isinstance(e, OpenRelay)]
    h.c.relay_failed(opening.key, "capacity", h.now)
    statuses = [parse_message(d) for d, _, _ in out + h.c.take_outgoing()]
    assert [m.status for m in statuses if isinstance(m, Response)] == [100, 302]
    assert h.metrics.decisions.get("listed_capacity") == 1


def test_a_warning_that_cannot_start_leaves_the_caller_hearing_ringing() -> None:
    h = Harness()
    _, leg = ringing_call(h)
    [ringing] = h.report_ended("recording_missing")
    assert ringing.status == 180 and not ringing.message.body
    sent = h.send(response_to(leg, 200, sdp=answer_sdp(CALLEE_MEDIA)), NEXT_HOP)
    [ok] = [s for s in sent if s.status == 200]
    assert peer_media(ok.message.body).address == CALLER_RELAY


def test_unlisted_numbers_get_the_302_at_once_in_ringback_mode() -> None:
    h = Harness()
    sent = h.send(invite().replace("+8613800138000", "+8613800138999"))
    assert [s.status for s in sent] == [302]
    assert not h.effects


def test_a_bye_crossing_ours_is_answered_and_not_passed_on_again() -> None:
    h = Harness()
    _, leg = ringing_call(h)
    h.report_ready()
    sent = h.send(response_to(leg, 200, sdp=answer_sdp(CALLEE_MEDIA)), NEXT_HOP)
    tag = next(s for s in sent if s.status == 200).message.to_tag or ""
    h.send(in_dialog_from_caller("ACK", tag, 2))
    h.c.end_warnings(h.now)  # the drain is over: BYE both ways
    assert sorted(s.method or "" for s in h.pump()) == ["BYE", "BYE"]
    # The callee's own BYE crosses ours: 200, and nothing more goes to the caller.
    bye = (
        "BYE sip:192.0.2.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.60:5062;branch=z9hG4bK-x\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:+8613800138000@192.0.2.1>;tag=b1\r\n"
        f"To: {leg.headers.get('From')}\r\nCall-ID: {leg.call_id}\r\nCSeq: 1 BYE\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    sent = h.send(bye, ("192.0.2.60", 5062))
    assert [(s.status, s.method) for s in sent] == [(200, None)]
    assert h.metrics.b2bua.get("bye_from_callee") == 0


def test_timer_entries_of_ended_calls_are_dropped_not_kept_for_hours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An answered call leaves a timer entry at its max_call_s deadline (2 hours). While
    an older call is still up, its entry heads the heap and the entries of every call that
    ended after it stayed behind it: at 200 calls/s, 1.4 M of them, and when the older call
    ended a run of them was popped at once (a 212 ms hold). The heap is rebuilt without
    them once it holds TIMER_SLACK more than twice what it held after the last rebuild."""
    monkeypatch.setattr(b2bua_module, "TIMER_SLACK", 40)
    h = Harness()
    b2bua = h.c.b2bua

    def answered(i: int) -> str:
        call_id = f"caller-{i}"
        leg = callee_invite(h.send(invite(call_id=call_id).replace("-c1;", f"-c1x{i};")))
        start = [e for e in h.effects if isinstance(e, StartWarning)][-1]
        h.c.warning_ready(start.key, b"", h.now)
        h.pump()
        sent = h.send(response_to(leg, 200, sdp=answer_sdp(CALLEE_MEDIA)), NEXT_HOP)
        [ok] = [s for s in sent if s.status == 200]
        tag = ok.message.to_tag or ""
        h.send(in_dialog_from_caller("ACK", tag, 2).replace("caller-1", call_id))
        return tag

    answered(0)  # a long call, up the whole time
    most = 0
    for i in range(1, 301):
        tag = answered(i)
        h.advance(0.5)
        bye = in_dialog_from_caller("BYE", tag, 3).replace("caller-1", f"caller-{i}")
        sent = h.send(bye.replace("-BYE3", f"-BYE3x{i}"))
        [to_callee] = [s for s in sent if s.method == "BYE"]
        assert isinstance(to_callee.message, Request)
        h.send(response_to(to_callee.message, 200), to_callee.dest)
        h.advance(0.5)
        most = max(most, len(b2bua._timers))
    assert h.metrics.b2bua.get("answered") == 301
    live = len(b2bua.calls)  # the long call (ended calls are in `_ended`, not here)
    assert 1 <= live < 40
    assert most <= 2 * (2 * live + 40) + 40, (most, live)  # not one per call ever made
