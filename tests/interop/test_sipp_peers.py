"""The sipp peers of the switch chain survive a lost UDP reply, as any SIP phone must.

Under load the switch's socket can drop a datagram (tests/interop/test_overload.py: Kamailio's
receive buffer overflows during ringback's bursts). SIP repairs that by retransmission, and
the test's callers and callees must take part: a callee absorbs a retransmitted INVITE and
keeps retransmitting its 200 (RFC 3261 13.3.1.4, RFC 6026), a caller acknowledges every
retransmitted 200 (RFC 3261 13.2.2.4). sipp does neither by itself once a scenario has sent
more than one message after the request, so the scenarios say so explicitly. These tests
play the switch with a plain UDP socket and hold the real sipp to it: every call must
complete, and sipp must count it successful.
"""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path

import pytest
from harness import LOCALHOST, ProcessSet, SippResult, run_sipp, start_sipp_uas

pytestmark = pytest.mark.interop

WAIT = 10.0  # s for any one message: generous, the test never waits on a timer of its own


class Wire:
    """A UDP socket on loopback playing the switch; reads SIP messages with a deadline."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOCALHOST, 0))
        self.sock.settimeout(WAIT)
        self.port: int = self.sock.getsockname()[1]
        self.peer: tuple[str, int] | None = None

    def send(self, data: bytes, to: tuple[str, int] | None = None) -> None:
        target = to or self.peer
        assert target is not None
        self.sock.sendto(data, target)

    def expect(self, start: str, cseq: str | None = None) -> bytes:
        """The next message whose first line starts with `start` (and whose CSeq is `cseq`,
        if given); anything else, such as provisional responses and timer retransmissions of
        earlier answers, is skipped (up to 20 messages)."""
        seen: list[str] = []
        for _ in range(20):
            data, source = self.sock.recvfrom(65535)
            self.peer = source
            first = data.split(b"\r\n", 1)[0].decode()
            if first.startswith(start) and (cseq is None or header(data, "CSeq") == cseq):
                return data
            seen.append(first)
        raise AssertionError(f"no {start!r} (CSeq {cseq}) among {seen}")

    def close(self) -> None:
        self.sock.close()


def header(message: bytes, name: str) -> str:
    found = re.search(rf"^{name}:\s*(.*?)\r$", message.decode(), re.M | re.I)
    assert found, f"no {name} in {message!r}"
    return found.group(1)


def invite(wire: Wire, callee_port: int, call_id: str) -> bytes:
    """The INVITE a switch sends on after ringback's 302: loop-marked, Record-Routed."""
    sdp = (
        "v=0\r\no=switch 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    return (
        f"INVITE sip:+8613700000001@127.0.0.1:{callee_port};rbk SIP/2.0\r\n"
        f"Record-Route: <sip:127.0.0.1:{wire.port};lr>\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{wire.port};branch=z9hG4bK-{call_id}-1\r\n"
        f"From: <sip:+4930999000@127.0.0.1>;tag=caller-{call_id}\r\n"
        f"To: <sip:+8613700000001@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 69\r\n"
        f"Contact: <sip:+4930999000@127.0.0.1:{wire.port}>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


def in_dialog(wire: Wire, method: str, cseq: int, call_id: str, to: str) -> bytes:
    return (
        f"{method} sip:callee@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{wire.port};branch=z9hG4bK-{call_id}-{method}\r\n"
        f"From: <sip:+4930999000@127.0.0.1>;tag=caller-{call_id}\r\nTo: {to}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 69\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("scenario", ["uas_answer", "uas_answer_any"])
def test_callee_survives_a_retransmitted_invite_and_answers_it(
    scenario: str, processes: ProcessSet, interop_dir: Path
) -> None:
    """The switch lost the callee's 100, 180 and 200 and resends its INVITE: the callee's 200
    comes again (same To tag), and the call then ends normally."""
    callee = start_sipp_uas(processes, scenario, workdir=interop_dir, extra_args=["-m", "1"])
    wire = Wire()
    try:
        request = invite(wire, callee.port, "lost-replies")
        wire.send(request, (callee.host, callee.port))
        first = wire.expect("SIP/2.0 200")
        wire.send(request)  # byte for byte, as a switch's transaction layer resends it
        again = wire.expect("SIP/2.0 200")
        assert header(again, "To") == header(first, "To")
        assert header(again, "CSeq") == "1 INVITE"
        to = header(first, "To")
        wire.send(in_dialog(wire, "ACK", 1, "lost-replies", to))
        wire.send(in_dialog(wire, "BYE", 2, "lost-replies", to))
        wire.expect("SIP/2.0 200", "2 BYE")
        # sipp counts the call successful: exit code 0 after its one call
        assert callee.process.popen.wait(WAIT) == 0, callee.process.log()
    finally:
        wire.close()


@pytest.mark.parametrize("scenario", ["uas_answer", "uas_answer_any"])
def test_callee_takes_a_bye_that_overtook_the_lost_ack(
    scenario: str, processes: ProcessSet, interop_dir: Path
) -> None:
    """The caller's ACK never reached the callee; the BYE did: the call ends cleanly."""
    callee = start_sipp_uas(processes, scenario, workdir=interop_dir, extra_args=["-m", "1"])
    wire = Wire()
    try:
        wire.send(invite(wire, callee.port, "lost-ack"), (callee.host, callee.port))
        to = header(wire.expect("SIP/2.0 200"), "To")
        wire.send(in_dialog(wire, "BYE", 2, "lost-ack", to))
        wire.expect("SIP/2.0 200", "2 BYE")
        assert callee.process.popen.wait(WAIT) == 0, callee.process.log()
    finally:
        wire.close()


def answer(request: bytes, wire: Wire, *, sdp: bool) -> bytes:
    """A 200 for `request`, the callee's tag on To, Contact on the wire's socket."""
    body = (
        "v=0\r\no=callee 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 40002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        if sdp
        else ""
    )
    to = header(request, "To")
    if ";tag=" not in to:
        to += ";tag=callee-1"
    lines = [
        "SIP/2.0 200 OK",
        f"Via: {header(request, 'Via')}",
        f"From: {header(request, 'From')}",
        f"To: {to}",
        f"Call-ID: {header(request, 'Call-ID')}",
        f"CSeq: {header(request, 'CSeq')}",
        f"Contact: <sip:callee@127.0.0.1:{wire.port}>",
    ]
    if sdp:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


@pytest.mark.parametrize("scenario", ["uac_call_through_switch", "uac_call_through_switch_csv"])
def test_caller_acknowledges_every_retransmitted_200(scenario: str, interop_dir: Path) -> None:
    """The caller's ACK was lost twice, so the 200 comes again: once during the call and once
    while the caller waits for the answer to its BYE. Each time the caller sends an ACK again,
    and the call completes."""
    wire = Wire()
    numbers = interop_dir / "numbers.csv"
    numbers.write_text("SEQUENTIAL\n+8613700000001\n")
    csv = ["-inf", str(numbers)] if scenario.endswith("_csv") else []
    result: list[SippResult] = []
    caller = threading.Thread(
        target=lambda: result.append(
            run_sipp(
                scenario,
                (LOCALHOST, wire.port),
                service="+8613700000001",
                extra_args=csv,
                workdir=interop_dir,
                timeout=2 * WAIT,
            )
        )
    )
    caller.start()
    try:
        request = wire.expect("INVITE")
        ok = answer(request, wire, sdp=True)
        wire.send(ok)
        wire.expect("ACK", "1 ACK")
        wire.send(ok)  # the ACK was lost: the 200 again, during the call
        wire.expect("ACK", "1 ACK")
        bye = wire.expect("BYE", "2 BYE")
        wire.send(ok)  # and again, while the caller waits for the BYE's answer
        wire.expect("ACK", "1 ACK")
        wire.send(answer(bye, wire, sdp=False))
    finally:
        caller.join(3 * WAIT)
        wire.close()
    assert result, "sipp did not finish"
    result[0].assert_all_ok(1)
