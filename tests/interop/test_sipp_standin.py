"""SIP interop: sipp (and Kamailio as a switch) against the server under test.

The server under test is the `redirect_target` fixture (conftest.py): ringback itself, or
with RINGBACK_INTEROP_STANDIN=1 the sipp stand-in the harness was first validated against
(hence this file's name). Each test asserts what a switch relies on (DESIGN.md section 3).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from harness import (
    SCENARIOS,
    KamailioProcess,
    MissingBinary,
    SippResult,
    SippServer,
    SipTarget,
    TraceMessage,
    free_port,
    parse_trace,
    require_binary,
)

pytestmark = pytest.mark.interop

Uac = Callable[..., SippResult]
UDP_TCP = pytest.mark.parametrize("transport", ["u1", "t1"], ids=["udp", "tcp"])


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


def contact_uri(msg: TraceMessage) -> str:
    value = msg.header("Contact") or ""
    assert value.startswith("<") and value.endswith(">"), f"Contact not in <>: {value!r}"
    return value[1:-1]


# --------------------------------------------------------------------------- INVITE -> 302


@UDP_TCP
def test_invite_gets_302_with_request_uri_and_rbk(
    uac: Uac, redirect_target: SipTarget, transport: str
) -> None:
    t = redirect_target
    result = uac(
        "invite_302", t.addr, transport=transport, calls=3, rate=20, service=t.unlisted, timeout=10
    )
    result.assert_all_ok(3)

    invites = sent(result, "INVITE")
    redirects = received(result, 302)
    assert len(invites) == 3
    assert len(redirects) == 3, result.describe()
    by_call = {m.header("Call-ID"): m for m in invites}
    for r in redirects:
        invite = by_call[r.header("Call-ID")]
        # the scenario checked it already (ereg + strcmp); say it again in plain Python
        assert contact_uri(r) == f"{invite.request_uri};rbk"
        assert r.header("To") and ";tag=" in (r.header("To") or "")
        assert r.header("CSeq") == "1 INVITE"
    acks = sent(result, "ACK")
    assert len(acks) == 3
    # non-2xx ACK: same branch as the INVITE (same transaction)
    assert {a.header("Via") for a in acks} == {i.header("Via") for i in invites}
    assert all(m.transport == ("TCP" if transport == "t1" else "UDP") for m in result.messages)
    assert result.response_time_repartition, "no response-time repartition in -trace_stat"


# --------------------------------------------------------------------------- the checks bite


def _broken_standin(tmp_path: Path, contact: str) -> Path:
    text = (SCENARIOS / "uas_redirect_standin.xml").read_text()
    assert "Contact: <[$ruri];rbk>" in text
    path = tmp_path / "broken_standin.xml"
    path.write_text(text.replace("Contact: <[$ruri];rbk>", f"Contact: {contact}"))
    return path


@pytest.mark.parametrize(
    ("contact", "reason"),
    [
        ("<[$ruri]>", "FailedRegexpDoesntMatch"),  # marker missing
        ("<[$ruri];user=phone;rbk>", "FailedStrcmpDoesntMatch"),  # not the Request-URI
        ("<sip:+4930555111@[local_ip]:[local_port];rbk>", "FailedStrcmpDoesntMatch"),
    ],
    ids=["no-marker", "uri-changed", "other-number"],
)
def test_invite_302_scenario_rejects_a_wrong_contact(
    uac: Uac,
    sipp_uas: Callable[..., SippServer],
    tmp_path: Path,
    contact: str,
    reason: str,
) -> None:
    server = sipp_uas(_broken_standin(tmp_path, contact))
    result = uac("invite_302", (server.host, server.port), service="+4930555000", timeout=8)
    assert result.returncode == 1, result.describe()
    assert result.successful == 0 and result.failed == 1
    assert result.failure_reasons.get(reason) == 1, result.describe()


# --------------------------------------------------------------------------- OPTIONS


@UDP_TCP
def test_options_gets_200_with_allow(uac: Uac, redirect_target: SipTarget, transport: str) -> None:
    result = uac("options", redirect_target.addr, transport=transport, timeout=8)
    result.assert_all_ok(1)
    (ok,) = received(result, 200)
    allow = {a.strip() for a in (ok.header("Allow") or "").split(",")}
    assert {"INVITE", "ACK", "CANCEL", "OPTIONS"} <= allow


# --------------------------------------------------------------------------- lost ACK


def test_lost_ack_gets_302_retransmitted_after_t1(uac: Uac, redirect_target: SipTarget) -> None:
    t = redirect_target
    result = uac("lost_ack", t.addr, transport="u1", service=t.unlisted, timeout=10)
    result.assert_all_ok(1)

    redirects = received(result, 302)
    (ack,) = sent(result, "ACK")
    before_ack = [r for r in redirects if r.time < ack.time]
    after_ack = [r for r in redirects if r.time > ack.time]
    assert len(before_ack) == 2, f"expected the 302 and one retransmission\n{result.describe()}"
    first, again = before_ack
    assert again.text == first.text, "a retransmission must be the same response"
    gap = (again.time - first.time).total_seconds()
    # RFC 3261 17.2.1: Timer G = T1 = 500 ms for the first retransmission (sipp clock: 4 ms)
    assert 0.40 <= gap <= 0.70, f"302 retransmitted after {gap:.3f} s, expected ~0.5 s"
    # the ACK stops Timer G: nothing more in the 1.2 s after it (the next was due at 1.5 s)
    assert not after_ack, f"302 still retransmitted after the ACK\n{result.describe()}"
    # sipp counted the absorbed retransmission on its 302 step
    assert result.step_count("_302_Retrans") == 1, result.counts


# --------------------------------------------------------------------------- CANCEL


@UDP_TCP
def test_cancel_of_held_invite_gets_200_and_487(
    uac: Uac, redirect_target: SipTarget, transport: str
) -> None:
    t = redirect_target
    result = uac("cancel", t.addr, transport=transport, service=t.held, timeout=10)
    result.assert_all_ok(1)

    statuses = [(m.status, m.method) for m in received(result) if m.status != 100]
    assert statuses == [(183, "INVITE"), (200, "CANCEL"), (487, "INVITE")], result.describe()
    (cancel,) = sent(result, "CANCEL")
    (invite,) = sent(result, "INVITE")
    assert cancel.header("Via") == invite.header("Via")
    (ack,) = sent(result, "ACK")
    assert ack.header("Via") == invite.header("Via")


# --------------------------------------------------------------------------- through Kamailio


def _switch_setup(
    redirect_target: SipTarget,
    sipp_uas: Callable[..., SippServer],
    kamailio_switch: Callable[[str, str], KamailioProcess],
) -> tuple[SippServer, KamailioProcess]:
    callee = sipp_uas("uas_answer")
    switch = kamailio_switch(redirect_target.hostport, callee.addr)
    return callee, switch


def test_call_through_kamailio_follows_302_to_callee(
    uac: Uac,
    redirect_target: SipTarget,
    sipp_uas: Callable[..., SippServer],
    kamailio_switch: Callable[[str, str], KamailioProcess],
) -> None:
    callee, switch = _switch_setup(redirect_target, sipp_uas, kamailio_switch)
    result = uac(
        "uac_call_through_switch",
        (switch.host, switch.port),
        service=redirect_target.unlisted,
        timeout=12,
    )
    result.assert_all_ok(1)
    assert not received(result, 302), "the switch must follow the 302, not pass it on"

    # the callee got the loop-marked URI (uas_answer.xml checks it too), ACK and BYE
    callee_msgs = callee.messages
    (invite,) = [m for m in callee_msgs if m.direction == "received" and m.method == "INVITE"]
    assert invite.request_uri == (f"sip:{redirect_target.unlisted}@{switch.host}:{switch.port};rbk")
    methods = [m.method for m in callee_msgs if m.direction == "received" and not m.is_response]
    assert methods == ["INVITE", "ACK", "BYE"], methods
    # the BYE went through the switch (Record-Route honoured)
    (bye,) = sent(result, "BYE")
    assert "Route" in bye.text and f"{switch.host}:{switch.port}" in (bye.header("Route") or "")


def test_early_media_183_relayed_unchanged_through_kamailio(
    uac: Uac,
    redirect_target: SipTarget,
    sipp_uas: Callable[..., SippServer],
    kamailio_switch: Callable[[str, str], KamailioProcess],
) -> None:
    """A held (listed) number: the server's 183 + SDP reaches the caller unchanged, then its
    302 is followed and the callee answers."""
    callee, switch = _switch_setup(redirect_target, sipp_uas, kamailio_switch)
    result = uac(
        "uac_call_through_switch",
        (switch.host, switch.port),
        service=redirect_target.held,
        timeout=redirect_target.hold_seconds + 10,
    )
    result.assert_all_ok(1)
    early = received(result, 183)
    assert len(early) == 1, result.describe()
    assert (early[0].header("Content-Type") or "").startswith("application/sdp")
    ok = received(result, 200)
    assert early[0].time < ok[0].time
    if redirect_target.name == "sipp stand-in":
        # compare with what the stand-in sent
        standin_sdp = _standin_183_bodies(redirect_target, callee.workdir.parent)
        assert early[0].body.strip() in standin_sdp


def _standin_183_bodies(target: SipTarget, workdir: Path) -> set[str]:
    bodies: set[str] = set()
    for log in workdir.glob("uas_redirect_standin-*/messages.log"):
        for m in parse_trace(log.read_text(errors="replace")):
            if m.direction == "sent" and m.status == 183:
                bodies.add(m.body.strip())
    assert bodies, f"the stand-in at {target.hostport} sent no 183"
    return bodies


# --------------------------------------------------------------------------- harness


def test_missing_binary_fails_with_the_debian_package() -> None:
    with pytest.raises(MissingBinary, match="apt-get install -y sip-tester"):
        require_binary("sipp-not-installed-here", "sip-tester")


def test_free_port_is_bindable_and_not_handed_out_twice() -> None:
    ports = {free_port("both") for _ in range(20)}
    assert len(ports) == 20
