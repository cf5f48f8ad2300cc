"""Warning announcements against the real ringback, seen by sipp (and Kamailio as a switch).

The listed number (`redirect_target.held`) plays the court's 2.0 s recording (a rising chirp,
fixture `court_reference`). Where RTP matters the test offers ITS OWN UDP socket in the SDP
(sipp scenarios take it as `-key rtp_port N`) and timestamps every packet as it arrives.

- 100rel with PRACK: reliable 183 (RSeq, Require: 100rel), PRACK with the right RAck gets 200,
  the 302 comes after the warning.
- 100rel without PRACK: the same 183 comes again on Timer T1 (0.5 s, then 1 s) until the 302.
- CANCEL 1 s into the warning: 200 + 487, and no RTP packet later than one frame after it.
- Through Kamailio: the caller gets the 183 and the court's audio, then the switch follows the
  302 to the callee and the call completes (INVITE;rbk, 200, ACK, BYE).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import datetime

import numpy as np
import pytest
from harness import (
    KamailioProcess,
    RtpPacket,
    RtpReceiver,
    SippResult,
    SippServer,
    SipTarget,
    TraceMessage,
    match_reference,
    rtp_audio,
    rtp_stream_problems,
)

pytestmark = pytest.mark.interop

Uac = Callable[..., SippResult]

FRAME_S = 0.020
# Scheduling slack on top of one frame: ringback's pacer tick and this process's receiving
# thread (sipp writes its trace timestamp with gettimeofday right when it sends).
SLACK_S = 0.008


def received(result: SippResult, status: int | None = None) -> list[TraceMessage]:
    return [
        m
        for m in result.messages
        if m.direction == "received" and (status is None or m.status == status)
    ]


def sent(result: SippResult, method: str) -> list[TraceMessage]:
    return [
        m
        for m in result.messages
        if m.direction == "sent" and not m.is_response and m.method == method
    ]


def epoch(when: datetime) -> float:
    """A sipp trace time (local, naive) as time.time() seconds."""
    return when.timestamp()


def sdp_lines(msg: TraceMessage) -> list[str]:
    return [line.strip() for line in msg.body.splitlines() if line.strip()]


def assert_sendonly_answer(msg: TraceMessage, payload_type: int) -> None:
    assert (msg.header("Content-Type") or "").startswith("application/sdp"), msg.text
    lines = sdp_lines(msg)
    (media,) = [line for line in lines if line.startswith("m=audio ")]
    # the codec, and the offer's telephone-event answered back (RFC 4733)
    assert media.split()[3:] == [str(payload_type), "101"], f"answer codec: {media}"
    assert "a=rtpmap:101 telephone-event/8000" in lines, lines
    assert "a=sendonly" in lines, lines
    assert "a=ptime:20" in lines, lines


def describe_rtp(packets: list[RtpPacket], t0: float) -> str:
    return ", ".join(f"{p.sequence}@{(p.arrival - t0) * 1000:.1f}ms" for p in packets[-5:])


# --------------------------------------------------------------------------- 100rel


def test_100rel_reliable_183_is_pracked_then_302_after_the_warning(
    uac: Uac, redirect_target: SipTarget, court_reference: np.ndarray
) -> None:
    t = redirect_target
    with RtpReceiver() as rtp:
        result = uac(
            "invite_100rel_prack",
            t.addr,
            service=t.held,
            extra_args=["-key", "rtp_port", str(rtp.port)],
            timeout=t.hold_seconds + 8,
        )
    result.assert_all_ok(1)

    (early,) = received(result, 183)  # PRACKed at once: never retransmitted
    rseq = early.header("RSeq") or ""
    assert rseq.isdigit() and 1 <= int(rseq) <= 2**31 - 1, f"RSeq: {rseq!r}"
    assert "100rel" in (early.header("Require") or ""), early.text
    assert ";tag=" in (early.header("To") or "")
    assert_sendonly_answer(early, 0)

    (prack,) = sent(result, "PRACK")
    assert prack.header("RAck") == f"{rseq} 1 INVITE"
    assert prack.header("To") == early.header("To"), "PRACK belongs to the 183's early dialog"
    (prack_ok,) = [m for m in received(result, 200) if m.method == "PRACK"]
    assert prack_ok.header("CSeq") == "2 PRACK"

    (redirect,) = received(result, 302)
    assert redirect.header("X-Ringback-Warning") == "played"
    (invite,) = sent(result, "INVITE")
    assert redirect.header("Contact") == f"<{invite.request_uri};rbk>"
    assert redirect.header("To") == early.header("To"), "one To-tag for 183 and 302"
    warning = (redirect.time - early.time).total_seconds()
    assert 1.9 <= warning <= 2.6, f"302 came {warning:.3f} s after the 183, expected ~2.0 s"

    packets = rtp.packets
    assert rtp_stream_problems(packets, 0) == []
    assert len(packets) == 100, f"{len(packets)} packets for a 2.0 s recording"
    assert packets[-1].arrival <= epoch(redirect.time) + 0.005, "302 before the warning ended"
    heard = match_reference(rtp_audio(packets), court_reference)
    assert heard.correlation > 0.99, heard.describe()


def test_100rel_without_prack_183_is_retransmitted_until_the_302(
    uac: Uac, redirect_target: SipTarget
) -> None:
    t = redirect_target
    with RtpReceiver() as rtp:
        result = uac(
            "invite_100rel_no_prack",
            t.addr,
            service=t.held,
            extra_args=["-key", "rtp_port", str(rtp.port)],
            timeout=t.hold_seconds + 8,
        )
    result.assert_all_ok(1)

    early = received(result, 183)
    (redirect,) = received(result, 302)
    # RFC 3262 section 3: retransmitted at T1 (0.5 s), doubling; the warning lasts 2.0 s, so
    # the copies are due at 0, 0.5 and 1.5 s and the 302 (at ~2.0 s) ends them
    assert len(early) == 3, f"{len(early)} copies of the 183\n{result.describe()}"
    assert {m.text for m in early} == {early[0].text}, "a retransmission is the same 183"
    assert (early[0].header("RSeq") or "").isdigit()
    gaps = [(b.time - a.time).total_seconds() for a, b in itertools.pairwise(early)]
    assert 0.4 <= gaps[0] <= 0.65 and 0.9 <= gaps[1] <= 1.15, f"183 retransmitted after {gaps}"
    assert all(m.time < redirect.time for m in early), "183 retransmitted after the 302"
    assert result.step_count("_183_Retrans") == 2, result.counts
    assert redirect.header("X-Ringback-Warning") == "played"
    warning = (redirect.time - early[0].time).total_seconds()
    assert 1.9 <= warning <= 2.6, f"302 came {warning:.3f} s after the 183"
    assert len(rtp.packets) == 100, "the warning plays although the caller never PRACKs"


# --------------------------------------------------------------------------- CANCEL


def test_cancel_mid_warning_stops_rtp_within_one_frame(
    uac: Uac, redirect_target: SipTarget, court_reference: np.ndarray
) -> None:
    t = redirect_target
    with RtpReceiver() as rtp:
        result = uac(
            "cancel_rtp",
            t.addr,
            service=t.held,
            extra_args=["-key", "rtp_port", str(rtp.port)],  # CANCEL 1000 ms after the 183
            timeout=t.hold_seconds + 8,
        )
        # keep listening well past the rest of the warning (it would have run to ~2.0 s)
        time.sleep(1.2)
    result.assert_all_ok(1)

    statuses = [(m.status, m.method) for m in received(result) if m.status != 100]
    assert statuses == [(183, "INVITE"), (200, "CANCEL"), (487, "INVITE")], result.describe()
    (early,) = received(result, 183)
    assert_sendonly_answer(early, 8)  # the offer preferred PCMA (8 before 0)
    (cancel,) = sent(result, "CANCEL")
    cancelled_at = epoch(cancel.time)

    packets = rtp.packets
    assert packets, "no RTP at all"
    t0 = packets[0].arrival
    assert rtp_stream_problems(packets, 8) == [], describe_rtp(packets, t0)
    late = packets[-1].arrival - cancelled_at
    assert late <= FRAME_S + SLACK_S, (
        f"RTP went on {late * 1000:.1f} ms after the CANCEL (allowed one 20 ms frame + "
        f"{SLACK_S * 1000:.0f} ms): last packets {describe_rtp(packets, cancelled_at)}"
    )
    # about one second of the warning was played (50 frames), and it was the recording's start
    assert 45 <= len(packets) <= 56, f"{len(packets)} packets before the CANCEL"
    heard = rtp_audio(packets)
    played = match_reference(heard, court_reference[: len(heard)])
    assert played.correlation > 0.99 and abs(played.lag_s) < 0.001, played.describe()


# --------------------------------------------------------------------------- Kamailio


def test_early_media_through_kamailio_then_302_to_callee_completes(
    uac: Uac,
    redirect_target: SipTarget,
    sipp_uas: Callable[..., SippServer],
    kamailio_switch: Callable[[str, str], KamailioProcess],
    court_reference: np.ndarray,
) -> None:
    t = redirect_target
    callee = sipp_uas("uas_answer")
    switch = kamailio_switch(t.hostport, callee.addr)
    with RtpReceiver() as rtp:
        result = uac(
            "uac_switch_rtp",
            (switch.host, switch.port),
            service=t.held,
            extra_args=["-key", "rtp_port", str(rtp.port)],
            timeout=t.hold_seconds + 10,
        )
    result.assert_all_ok(1)

    # caller: ringback's 183 relayed with its SDP answer, never the 302, then the callee's 200
    (early,) = received(result, 183)
    assert_sendonly_answer(early, 0)
    assert not received(result, 302), "the switch must follow the 302, not pass it on"
    (answer,) = [m for m in received(result, 200) if m.method == "INVITE"]

    # the caller's RTP socket got the court's recording, in full, before the callee answered
    packets = rtp.packets
    assert rtp_stream_problems(packets, 0) == [], describe_rtp(packets, packets[0].arrival)
    assert len(packets) == 100
    heard = match_reference(rtp_audio(packets), court_reference)
    assert heard.correlation > 0.8 and heard.matched_fraction > 0.95, heard.describe()
    assert abs(heard.chirp_seconds - 2.0) <= 0.1, heard.describe()
    span = packets[-1].arrival - packets[0].arrival
    assert 1.95 <= span <= 2.05, f"100 packets over {span:.3f} s (20 ms pacing)"
    assert epoch(early.time) - 0.01 <= packets[0].arrival
    assert packets[-1].arrival <= epoch(answer.time)

    # callee: the loop-marked INVITE after the warning, then ACK and BYE through the switch
    callee_in = [m for m in callee.messages if m.direction == "received" and not m.is_response]
    assert [m.method for m in callee_in] == ["INVITE", "ACK", "BYE"], callee_in
    invite = callee_in[0]
    assert invite.request_uri == f"sip:{t.held}@{switch.host}:{switch.port};rbk"
    assert epoch(invite.time) >= packets[-1].arrival - 0.005, "callee reached before the warning"
