"""Lab mode played through with no network: registrar, lab callee, loop refusal, test numbers."""

from __future__ import annotations

import pytest

from ringback.calls import CallController, SipMetrics, StartWarning, StopWarning
from ringback.calls.decision import Decider
from ringback.calls.effects import LAB_TONE, OpenRelay
from ringback.calls.registrar import Registrar
from ringback.media.destinations import DestinationPolicy
from ringback.metrics import Registry
from ringback.registry.listing_index import ListingIndex
from ringback.registry.numbers import NumberingPlan
from ringback.sip.digest import parse_digest, response_for
from ringback.sip.message import parse_message
from ringback.sip.model import Request, Response

SRC = ("192.0.2.10", 5070)
PHONE = ("192.0.2.20", 5062)
OFFER = (
    "v=0\r\no=a 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
Sent = list[tuple[Request | Response, tuple[str, int]]]


class Lab:
    def __init__(self, *, callee: bool = True, test_numbers: dict[int, int] | None = None):
        self.index = ListingIndex()
        self.metrics = SipMetrics(Registry())
        plan = NumberingPlan()
        registrar = Registrar(
            {8613900139000: "s3cret"},
            Decider(self.index, plan, index_ready=lambda: True).number_of,
        )
        self.c = CallController(
            self.index,
            plan,
            self.metrics,
            index_ready=lambda: True,
            warnings=True,
            destinations=DestinationPolicy(["192.0.2.0/24"]),
            registrar=registrar,
            lab_callee=callee,
            test_numbers=test_numbers,
        )
        self.c.listening("udp", "192.0.2.1", 5060)
        self.now = 10.0

    def send(self, data: bytes, source: tuple[str, int] = SRC) -> Sent:
        self.c.receive(data, source, "udp", self.now)
        return self.take()

    def take(self) -> Sent:
        return [(parse_message(data), dest) for data, dest, _ in self.c.take_outgoing()]


def status(sent: Sent) -> list[int]:
    return [m.status for m, _ in sent if isinstance(m, Response)]


def invite(ruri: str, *, call_id: str = "call-1", branch: str = "z9hG4bK-i1") -> bytes:
    return (
        f"INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:alice@192.0.2.10>;tag=a1\r\n"
        f"To: <{ruri.split(';')[0]}>\r\nCall-ID: {call_id}\r\nCSeq: 2 INVITE\r\n"
        "Contact: <sip:alice@192.0.2.10:5070>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(OFFER)}\r\n\r\n{OFFER}"
    ).encode()


def in_dialog(method: str, to_tag: str, branch: str, cseq: int) -> bytes:
    return (
        f"{method} sip:192.0.2.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5070;branch={branch}\r\nMax-Forwards: 70\r\n"
        f"From: <sip:alice@192.0.2.10>;tag=a1\r\nTo: <sip:x@192.0.2.1>;tag={to_tag}\r\n"
        f"Call-ID: call-1\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def register(authorization: str = "", *, branch: str = "z9hG4bK-r1") -> bytes:
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    return (
        "REGISTER sip:192.0.2.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.20:5062;branch={branch};rport\r\nMax-Forwards: 70\r\n"
        "From: <sip:+8613900139000@192.0.2.1>;tag=r\r\nTo: <sip:+8613900139000@192.0.2.1>\r\n"
        "Call-ID: reg-1\r\nCSeq: 1 REGISTER\r\n"
        f"Contact: <sip:bob@192.0.2.20:5062>;expires=600\r\n{auth}Content-Length: 0\r\n\r\n"
    ).encode()


def registered(lab: Lab) -> None:
    [(challenge, _)] = lab.send(register(), PHONE)
    assert isinstance(challenge, Response) and challenge.status == 401
    params = parse_digest(challenge.headers.get("WWW-Authenticate") or "")
    assert params is not None
    params.update(nc="00000001", cnonce="c0ffee")
    response = response_for(
        params,
        username="+8613900139000",
        password="s3cret",
        method="REGISTER",
        uri="sip:192.0.2.1",
    )
    auth = (
        f'Digest username="+8613900139000", realm="{params["realm"]}", '
        f'nonce="{params["nonce"]}", uri="sip:192.0.2.1", response="{response}", qop=auth, '
        'nc=00000001, cnonce="c0ffee"'
    )
    [(ok, dest)] = lab.send(register(auth, branch="z9hG4bK-r2"), PHONE)
    assert isinstance(ok, Response) and ok.status == 200 and dest == PHONE
    assert ok.headers.get("Contact") == "<sip:bob@192.0.2.20:5062>;expires=600"


def test_register_needs_the_password() -> None:
    lab = Lab()
    assert status(lab.send(register(), PHONE)) == [401]
    forged = (
        'Digest username="+8613900139000", realm="ringback-lab", nonce="x", '
        'uri="sip:192.0.2.1", response="00"'
    )
    assert status(lab.send(register(forged, branch="z9hG4bK-r3"), PHONE)) == [401]
    assert lab.c.registrar is not None and lab.c.registrar.bindings == {}


def test_the_call_after_the_warning_is_bridged_to_the_registered_softphone() -> None:
    lab = Lab()
    registered(lab)
    [(response, _)] = lab.send(invite("sip:+8613900139000@192.0.2.1;rbk"))
    assert isinstance(response, Response) and response.status == 100
    [opening] = lab.c.take_effects()
    assert isinstance(opening, OpenRelay)
    lab.c.relay_opened(opening.key, ("192.0.2.1", 20000), ("192.0.2.1", 20002), lab.now)
    [(leg, dest)] = lab.take()
    # A B2BUA leg to where the softphone registered from, to its Contact, with the relay.
    assert isinstance(leg, Request) and leg.method == "INVITE" and dest == PHONE
    assert leg.uri == "sip:bob@192.0.2.20:5062"
    assert b"m=audio 20002 " in leg.body
    assert not [e for e in lab.c.take_effects() if isinstance(e, StartWarning)]  # no warning
    ringing = (
        f"SIP/2.0 180 Ringing\r\nVia: {leg.headers.get('Via')}\r\nFrom: {leg.headers.get('From')}"
        f"\r\nTo: {leg.headers.get('To')};tag=bob\r\nCall-ID: {leg.call_id}\r\n"
        f"CSeq: {leg.headers.get('CSeq')}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    # The softphone rings: the caller hears ringing (a 180, no SDP).
    assert status(lab.send(ringing, PHONE)) == [180]
    assert lab.metrics.decisions.get("lab_registered") == 1


def test_our_own_callee_leg_is_redirected_to_the_registered_softphone() -> None:
    lab = Lab()
    registered(lab)
    own = ("192.0.2.1", 5060)  # ringback mode in the lab: the callee leg comes back to us
    [(response, _)] = lab.send(invite("sip:+8613900139000@192.0.2.1;rbk"), own)
    assert isinstance(response, Response) and response.status == 302
    assert response.headers.get("Contact") == "<sip:bob@192.0.2.20:5062>"


def test_a_second_loop_marked_invite_of_one_call_is_refused_482() -> None:
    lab = Lab()
    registered(lab)
    lab.send(invite("sip:+8613900139000@192.0.2.1;rbk"))
    again = invite("sip:+8613900139000@192.0.2.1;rbk", branch="z9hG4bK-i2")
    assert status(lab.send(again)) == [482]
    assert lab.metrics.decisions.get("loop_refused") == 1
    other = invite("sip:+8613900139000@192.0.2.1;rbk", call_id="call-2", branch="z9hG4bK-i3")
    assert status(lab.send(other)) == [100]  # another call is fine: bridged


def test_the_lab_callee_answers_plays_its_tone_and_hangs_up_with_bye() -> None:
    lab = Lab()
    assert lab.send(invite("sip:+8613700137000@192.0.2.1;rbk")) == []
    [start] = lab.c.take_effects()
    assert isinstance(start, StartWarning) and start.purpose == LAB_TONE
    assert start.entry.listing_id == 0  # never a court's listing
    assert lab.c.warning_ready(start.key, b"v=0\r\n", lab.now)
    [(ok, _)] = lab.take()
    assert isinstance(ok, Response) and ok.status == 200 and ok.body == b"v=0\r\n"
    assert ok.to_tag
    lab.now += 0.5
    lab.c.poll(lab.now)
    assert status(lab.take()) == [200]  # retransmitted until the ACK (RFC 3261 §13.3.1.4)
    assert lab.send(in_dialog("ACK", ok.to_tag, "z9hG4bK-a9", 2)) == []
    lab.now += 5
    lab.c.poll(lab.now)
    assert lab.take() == []  # ACKed: no more 200s
    lab.c.warning_ended(start.key, "completed", lab.now)  # the tone is over: hang up
    [(bye, dest)] = lab.take()
    assert isinstance(bye, Request) and bye.method == "BYE"
    assert bye.uri == "sip:alice@192.0.2.10:5070" and dest == ("192.0.2.10", 5070)
    assert bye.to_tag == "a1" and bye.call_id == "call-1"
    assert (bye.headers.get("From") or "").endswith(f";tag={ok.to_tag}")


def test_bye_from_the_caller_ends_the_lab_call() -> None:
    lab = Lab()
    lab.send(invite("sip:+8613700137000@192.0.2.1;rbk"))
    [start] = lab.c.take_effects()
    lab.c.warning_ready(start.key, b"v=0\r\n", lab.now)
    [(ok, _)] = lab.take()
    assert isinstance(ok, Response) and ok.to_tag
    assert status(lab.send(in_dialog("BYE", "wrong", "z9hG4bK-b0", 3))) == [481]
    assert status(lab.send(in_dialog("BYE", ok.to_tag, "z9hG4bK-b1", 3))) == [200]
    assert lab.c.take_effects() == [StopWarning(start.key)]
    lab.c.warning_ended(start.key, "cancelled", lab.now)
    assert lab.take() == []  # no BYE of ours: the caller hung up


def test_without_the_lab_callee_an_unregistered_number_gets_404() -> None:
    lab = Lab(callee=False)
    assert status(lab.send(invite("sip:+8613700137000@192.0.2.1;rbk"))) == [404]


@pytest.mark.parametrize("recording", [0, 42])
def test_operator_test_numbers_are_always_warned_and_never_a_listing(recording: int) -> None:
    lab = Lab(test_numbers={8613000000001: recording})
    assert lab.send(invite("sip:+8613000000001@192.0.2.1")) == []
    [start] = lab.c.take_effects()
    assert isinstance(start, StartWarning)
    assert start.entry.listing_id == 0 and start.entry.recording_id == recording
