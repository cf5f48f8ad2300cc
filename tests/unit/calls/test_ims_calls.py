"""IMS behaviour of the call core (issue 15), played through with no network: P-Early-Media
(RFC 5009), QoS preconditions (RFC 3312) with the UPDATE exchange (RFC 3311)."""

from __future__ import annotations

import pytest
from test_controller import OFFER, Harness, invite_with_offer

from ringback.calls import StartWarning, StopWarning
from ringback.calls.effects import ResumeWarning
from ringback.sip.sdp import parse_sdp

RURI = "sip:+8613800138000@192.0.2.1"
QOS = (
    "a=curr:qos local none\r\na=curr:qos remote none\r\n"
    "a=des:qos mandatory local sendrecv\r\na=des:qos mandatory remote sendrecv\r\n"
)
ANSWER = (
    "v=0\r\no=ringback 5 5 IN IP4 192.0.2.1\r\ns=ringback\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    "m=audio 20000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\n"
    "a=curr:qos local sendrecv\r\na=sendonly\r\n"
)


@pytest.fixture
def w() -> Harness:
    harness = Harness(warnings=True)
    harness.controller.listening("udp", "192.0.2.1", 5060)
    return harness


def update(
    to_tag: str, body: str = "", *, call_id: str = "c1", branch: str = "z9hG4bK-u1"
) -> bytes:
    head = (
        f"UPDATE sip:192.0.2.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5070;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@192.0.2.10>;tag=from1\r\n"
        f"To: <{RURI}>;tag={to_tag}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 3 UPDATE\r\n"
    )
    if body:
        head += "Content-Type: application/sdp\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n{body}".encode()


def test_p_early_media_support_gets_sendonly_on_the_183(w: Harness) -> None:
    for extra, expect in [
        ("P-Early-Media: supported\r\n", "sendonly"),
        ("Supported: 100rel, p-early-media\r\n", "sendonly"),
        ("", None),
    ]:
        w.send(invite_with_offer(RURI, extra=extra, branch=f"z9hG4bK-{len(extra)}"))
        [start] = w.controller.take_effects()
        assert isinstance(start, StartWarning)
        w.controller.warning_ready(start.key, ANSWER.encode(), w.now)
        [early] = w.take()
        assert early.status == 183 and early.headers.get("P-Early-Media") == expect, extra
        w.controller.warning_ended(start.key, "completed", w.now)
        w.take()


def test_precondition_183_then_update_then_the_warning(w: Harness) -> None:
    offer = OFFER + QOS
    w.send(
        invite_with_offer(RURI, extra="Require: precondition\r\nSupported: 100rel\r\n", offer=offer)
    )
    [start] = w.controller.take_effects()
    assert isinstance(start, StartWarning) and start.wait
    lines = [f"{a.name}:{a.value}" for a in start.sdp_attributes]
    assert lines == [
        "curr:qos local sendrecv",
        "curr:qos remote none",
        "des:qos mandatory local sendrecv",
        "des:qos mandatory remote sendrecv",
        "conf:qos remote sendrecv",
    ]
    assert w.controller.warning_ready(start.key, ANSWER.encode(), w.now)
    [early] = w.take()
    assert early.headers.get("RSeq") is not None  # reliable: Supported 100rel sufficed
    assert "precondition" in early.headers.get_all("Require")
    assert w.controller.take_effects() == []  # no audio yet

    # an UPDATE that still has nothing reserved: 200 with SDP, still waiting
    [ok] = w.send(update(early.to_tag or "", OFFER + QOS))
    assert ok.status == 200 and b"a=curr:qos remote none" in ok.body
    assert w.controller.take_effects() == []
    # the caller's resources are up: 200 with both sides met, and the warning starts
    met = OFFER + QOS.replace("curr:qos local none", "curr:qos local sendrecv")
    [ok] = w.send(update(early.to_tag or "", met, branch="z9hG4bK-u2"))
    assert ok.status == 200
    sdp = parse_sdp(ok.body)
    assert sdp.origin.sess_version == "7"  # two revisions of our o=ringback 5 5
    attrs = [f"{a.name}:{a.value}" for a in sdp.media[0].attributes if a.name in ("curr", "conf")]
    assert attrs == ["curr:qos local sendrecv", "curr:qos remote sendrecv"]
    assert w.controller.take_effects() == [ResumeWarning(start.key)]
    w.controller.warning_ended(start.key, "completed", w.now)
    [final] = w.take()
    assert final.status == 302 and final.headers.get("X-Ringback-Warning") == "played"


def test_precondition_never_met_fails_open_after_the_bound(w: Harness) -> None:
    w.send(invite_with_offer(RURI, extra="Require: precondition, 100rel\r\n", offer=OFFER + QOS))
    [start] = w.controller.take_effects()
    w.controller.warning_ready(start.key, ANSWER.encode(), w.now)
    w.take()
    deadline = w.controller.next_deadline()
    assert deadline is not None and deadline <= w.now + 10
    responses = w.advance(10.0)
    assert responses[-1].status == 302
    assert responses[-1].headers.get("X-Ringback-Warning") == "skipped; reason=preconditions_unmet"
    assert StopWarning(start.key) in w.controller.take_effects()


def test_precondition_already_met_in_the_offer_plays_at_once(w: Harness) -> None:
    met = OFFER + QOS.replace("curr:qos local none", "curr:qos local sendrecv")
    w.send(invite_with_offer(RURI, extra="Require: precondition, 100rel\r\n", offer=met))
    [start] = w.controller.take_effects()
    assert isinstance(start, StartWarning) and not start.wait
    assert "conf" not in [a.name for a in start.sdp_attributes]


def test_precondition_without_100rel_fails_open(w: Harness) -> None:
    [final] = w.send(invite_with_offer(RURI, extra="Require: precondition\r\n", offer=OFFER + QOS))
    assert final.status == 302
    assert final.headers.get("X-Ringback-Warning") == (
        "skipped; reason=listed_precondition_without_100rel"
    )


def test_update_outside_a_held_call_is_481(w: Harness) -> None:
    [reply] = w.send(update("nope", call_id="other"))
    assert reply.status == 481


def test_an_evs_only_volte_offer_passes_as_no_codec() -> None:
    """EVS has no free encoder: never prepared, so an EVS-only offer is let through (302)."""
    from ringback.media.codecs import ENCODINGS

    harness = Harness(warnings=True)
    harness.controller.codecs = frozenset(ENCODINGS)
    evs = OFFER.replace(
        "m=audio 40000 RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n",
        "m=audio 40000 RTP/AVP 116 100\r\na=rtpmap:116 EVS/16000\r\n"
        "a=rtpmap:100 telephone-event/16000\r\n",
    )
    assert "EVS" in evs
    [final] = harness.send(invite_with_offer(RURI, offer=evs))
    assert final.status == 302
    assert final.headers.get("X-Ringback-Warning") == "skipped; reason=listed_no_codec"
    assert harness.metrics.decisions.get("listed_no_codec") == 1
    # the same call offering AMR-WB after EVS gets the warning in AMR-WB
    both = evs.replace("RTP/AVP 116 100", "RTP/AVP 116 118 100") + "a=rtpmap:118 AMR-WB/16000\r\n"
    harness.send(invite_with_offer(RURI, offer=both, branch="z9hG4bK-2"))
    [start] = harness.controller.take_effects()
    assert isinstance(start, StartWarning)
    assert (start.media.codec, start.media.payload_type) == ("AMR-WB", 118)
