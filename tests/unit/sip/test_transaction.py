"""Server transaction layer with a fake clock (RFC 3261 §17.2, RFC 3581, RFC 3262)."""

from __future__ import annotations

import pytest

from ringback.sip.message import parse_message
from ringback.sip.model import Request, Response
from ringback.sip.responses import make_response
from ringback.sip.transaction import (
    POLL_BUDGET,
    STALE_BUDGET,
    AckTimeout,
    PrackTimeout,
    ServerTransactionLayer,
    TxState,
)

SRC = ("192.0.2.10", 5062)


def invite(
    branch: str = "z9hG4bKabc1",
    via_extra: str = ";rport",
    method: str = "INVITE",
    cseq: str = "1 INVITE",
    to: str = "<sip:+4930123@rb.example.net>",
    extra: str = "",
) -> Request:
    raw = (
        f"{method} sip:+4930123@rb.example.net SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 198.51.100.1:5060;branch={branch}{via_extra}\r\n"
        "From: <sip:alice@example.com>;tag=ft1\r\n"
        f"To: {to}\r\n"
        "Call-ID: call-1@example.com\r\n"
        f"CSeq: {cseq}\r\n"
        f"Max-Forwards: 70\r\n{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    msg = parse_message(raw)
    assert isinstance(msg, Request)
    return msg


def ack(
    branch: str = "z9hG4bKabc1",
    to: str = "<sip:+4930123@rb.example.net>;tag=rt1",
    via_extra: str = ";rport",
) -> Request:
    return invite(branch, via_extra, method="ACK", cseq="1 ACK", to=to)


def statuses(out: list[tuple[bytes, tuple[str, int]]]) -> list[int]:
    res = []
    for data, _ in out:
        m = parse_message(data)
        assert isinstance(m, Response)
        res.append(m.status)
    return res


def test_invite_302_udp_retransmit_schedule_and_ack() -> None:
    layer = ServerTransactionLayer()
    req = invite()
    assert layer.receive_request(req, SRC, False, 0.0) is req
    layer.send_response(req, make_response(req, 302, to_tag="rt1"), 0.0)
    out = layer.take_outgoing()
    assert statuses(out) == [302]
    assert out[0][1] == SRC  # rport: reply to source address and port
    times = []
    now = 0.0
    while True:
        d = layer.next_deadline()
        assert d is not None
        if d > 20:
            break
        now = d
        layer.poll(now)
        if layer.take_outgoing():
            times.append(now)
    gaps = [round(b - a, 3) for a, b in zip([0.0, *times], times, strict=False)]
    assert gaps[:6] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    key = layer.key_of(req)
    assert layer.invite_state(key) is TxState.COMPLETED
    assert layer.receive_request(ack(), SRC, False, now) is None
    assert layer.invite_state(key) is TxState.CONFIRMED
    # retransmitted ACK and INVITE during Timer I are absorbed, no retransmissions
    assert layer.receive_request(ack(), SRC, False, now + 1) is None
    layer.poll(now + 4.9)
    assert layer.take_outgoing() == []
    layer.poll(now + 5.0)  # Timer I = T4
    assert layer.invite_state(key) is None
    assert len(layer) == 0


def test_invite_retransmission_absorbed_and_last_response_resent() -> None:
    layer = ServerTransactionLayer()
    req = invite()
    assert layer.receive_request(req, SRC, False, 0.0) is req
    assert layer.receive_request(invite(), SRC, False, 0.1) is None  # nothing sent yet
    assert layer.take_outgoing() == []
    layer.send_response(req, make_response(req, 183, to_tag="rt1"), 0.2)
    assert statuses(layer.take_outgoing()) == [183]
    assert layer.receive_request(invite(), SRC, False, 0.3) is None
    assert statuses(layer.take_outgoing()) == [183]
    layer.send_response(req, make_response(req, 302, to_tag="rt1"), 0.4)
    layer.take_outgoing()
    assert layer.receive_request(invite(), SRC, False, 0.5) is None
    assert statuses(layer.take_outgoing()) == [302]


def test_timer_h_ack_timeout_after_32s() -> None:
    layer = ServerTransactionLayer()
    req = invite()
    layer.receive_request(req, SRC, False, 100.0)
    layer.send_response(req, make_response(req, 302), 100.0)
    layer.poll(131.9)
    assert layer.take_events() == []
    layer.poll(132.0)
    assert layer.take_events() == [AckTimeout(layer.key_of(req))]
    assert len(layer) == 0 and layer.next_deadline() is None


def test_tcp_no_retransmissions() -> None:
    layer = ServerTransactionLayer()
    req = invite(via_extra="")
    layer.receive_request(req, ("192.0.2.10", 40000), True, 0.0)
    layer.send_response(req, make_response(req, 302), 0.0)
    out = layer.take_outgoing()
    assert [d for _, d in out] == [("192.0.2.10", 40000)]  # same connection
    for t in (0.5, 1.5, 3.5, 7.5, 20.0):
        layer.poll(t)
        assert layer.take_outgoing() == []
    layer.receive_request(ack(), ("192.0.2.10", 40000), True, 1.0)
    assert len(layer) == 0  # Timer I = 0 on reliable transports


def test_non_invite_timer_j() -> None:
    layer = ServerTransactionLayer()
    req = invite(method="OPTIONS", cseq="5 OPTIONS", branch="z9hG4bKopt")
    assert layer.receive_request(req, SRC, False, 0.0) is req
    layer.send_response(req, make_response(req, 200), 0.0)
    layer.take_outgoing()
    assert (
        layer.receive_request(
            invite(method="OPTIONS", cseq="5 OPTIONS", branch="z9hG4bKopt"), SRC, False, 1.0
        )
        is None
    )
    assert statuses(layer.take_outgoing()) == [200]
    layer.poll(31.9)
    assert len(layer) == 1
    layer.poll(32.0)
    assert len(layer) == 0
    # reliable: Timer J = 0
    req2 = invite(method="OPTIONS", cseq="6 OPTIONS", branch="z9hG4bKopt2")
    layer.receive_request(req2, SRC, True, 0.0)
    layer.send_response(req2, make_response(req2, 200), 0.0)
    assert len(layer) == 0


def test_cancel_matches_invite() -> None:
    layer = ServerTransactionLayer()
    req = invite()
    layer.receive_request(req, SRC, False, 0.0)
    layer.send_response(req, make_response(req, 183, to_tag="rt1"), 0.0)
    cancel = invite(method="CANCEL", cseq="1 CANCEL")
    assert layer.receive_request(cancel, SRC, False, 0.1) is cancel
    key = layer.find_invite_for(cancel)
    assert key == layer.key_of(req)
    assert layer.invite_state(key) is TxState.PROCEEDING
    layer.send_response(cancel, make_response(cancel, 200, to_tag="rt1"), 0.1)
    layer.send_response(req, make_response(req, 487, to_tag="rt1"), 0.1)
    assert statuses(layer.take_outgoing()) == [183, 200, 487]
    unknown = invite(method="CANCEL", cseq="1 CANCEL", branch="z9hG4bKother")
    assert layer.receive_request(unknown, SRC, False, 0.2) is unknown
    assert layer.find_invite_for(unknown) is None  # TU answers 481


def test_ack_without_transaction_goes_to_tu() -> None:
    layer = ServerTransactionLayer()
    a = ack(branch="z9hG4bKnone")
    assert layer.receive_request(a, SRC, False, 0.0) is a


def test_rfc2543_fallback_matching() -> None:
    layer = ServerTransactionLayer()
    req = invite(branch="abc2543", via_extra="")
    layer.receive_request(req, SRC, False, 0.0)
    layer.send_response(req, make_response(req, 302, to_tag="rt1"), 0.0)
    layer.take_outgoing()
    assert layer.receive_request(invite(branch="abc2543", via_extra=""), SRC, False, 0.1) is None
    assert statuses(layer.take_outgoing()) == [302]
    cancel = invite(branch="abc2543", via_extra="", method="CANCEL", cseq="1 CANCEL")
    assert layer.find_invite_for(cancel) == layer.key_of(req)
    wrong = ack(branch="abc2543", to="<sip:+4930123@rb.example.net>;tag=other", via_extra="")
    assert layer.receive_request(wrong, SRC, False, 0.2) is wrong  # To tag mismatch
    right = ack(branch="abc2543", via_extra="")
    assert layer.receive_request(right, SRC, False, 0.3) is None
    assert layer.invite_state(layer.key_of(req)) is TxState.CONFIRMED


def test_received_and_rport() -> None:
    layer = ServerTransactionLayer()
    req = invite()  # Via 198.51.100.1:5060;rport, arrives from 192.0.2.10:5062
    layer.receive_request(req, SRC, False, 0.0)
    layer.send_response(req, make_response(req, 302), 0.0)
    data, dest = layer.take_outgoing()[0]
    assert dest == SRC
    resp = parse_message(data)
    via = resp.top_via
    assert via.received == "192.0.2.10" and via.rport == 5062
    # no rport: reply to the source IP and the Via port
    req2 = invite(branch="z9hG4bKnorport", via_extra="")
    layer.receive_request(req2, SRC, False, 0.0)
    layer.send_response(req2, make_response(req2, 302), 0.0)
    data, dest = layer.take_outgoing()[0]
    assert dest == ("192.0.2.10", 5060)
    assert parse_message(data).top_via.received == "192.0.2.10"
    # source equals sent-by: no received added
    req3 = invite(branch="z9hG4bKsame", via_extra="")
    layer.receive_request(req3, ("198.51.100.1", 5060), False, 0.0)
    layer.send_response(req3, make_response(req3, 302), 0.0)
    data, dest = layer.take_outgoing()[0]
    assert dest == ("198.51.100.1", 5060)
    assert parse_message(data).top_via.received is None


def test_reliable_provisional_prack() -> None:
    layer = ServerTransactionLayer()
    req = invite(extra="Require: 100rel\r\n")
    layer.receive_request(req, SRC, False, 0.0)
    rseq = layer.send_reliable_provisional(req, make_response(req, 183, to_tag="rt1"), 0.0)
    first = parse_message(layer.take_outgoing()[0][0])
    assert first.headers.get("RSeq") == str(rseq) and "100rel" in first.headers.get_all("Require")
    layer.poll(0.5)
    layer.poll(1.5)  # T1, then 2*T1
    assert statuses(layer.take_outgoing()) == [183, 183]
    with pytest.raises(ValueError):
        layer.send_reliable_provisional(req, make_response(req, 183, to_tag="rt1"), 1.6)
    prack = invite(
        method="PRACK",
        cseq="2 PRACK",
        branch="z9hG4bKprack",
        to="<sip:+4930123@rb.example.net>;tag=rt1",
        extra=f"RAck: {rseq} 1 INVITE\r\n",
    )
    assert layer.receive_request(prack, SRC, False, 2.0) is prack
    assert layer.prack_match(prack) == layer.key_of(req)
    layer.poll(10.0)
    assert layer.take_outgoing() == []  # retransmissions stopped
    bad = invite(
        method="PRACK",
        cseq="3 PRACK",
        branch="z9hG4bKprack2",
        extra=f"RAck: {rseq + 7} 1 INVITE\r\n",
    )
    layer.receive_request(bad, SRC, False, 3.0)
    assert layer.prack_match(bad) is None  # TU answers 481


def test_reliable_provisional_gives_up() -> None:
    layer = ServerTransactionLayer()
    req = invite()
    layer.receive_request(req, SRC, False, 0.0)
    rseq = layer.send_reliable_provisional(req, make_response(req, 183), 0.0)
    layer.poll(31.9)
    assert layer.take_events() == []
    layer.poll(32.0)
    assert layer.take_events() == [PrackTimeout(layer.key_of(req), rseq)]
    assert layer.invite_state(layer.key_of(req)) is TxState.PROCEEDING


def test_2xx_accepted_state() -> None:
    layer = ServerTransactionLayer()
    req = invite()
    layer.receive_request(req, SRC, False, 0.0)
    layer.send_response(req, make_response(req, 200), 0.0)
    layer.take_outgoing()
    assert layer.receive_request(invite(), SRC, False, 1.0) is None
    assert layer.take_outgoing() == []
    a = ack()
    assert layer.receive_request(a, SRC, False, 1.0) is a  # ACK for 2xx goes to the TU
    layer.poll(32.0)
    assert len(layer) == 0


@pytest.mark.parametrize(
    ("top_via", "absorbed"),
    [
        ("SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKabc1;rport", True),
        ("SIP/2.0/UDP 198.51.100.1:5060;BRANCH=z9hG4bKabc1", True),
        ("SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKabc1", True),  # default port
        ("SIP/2.0/UDP  198.51.100.1:5060 ;branch=z9hG4bKabc1", True),  # full parser
        ("SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKother", False),
        ("SIP/2.0/UDP 198.51.100.1:5061;branch=z9hG4bKabc1", False),
        ("SIP/2.0/TLS 198.51.100.1;branch=z9hG4bKabc1", False),  # 5061 by default
        ("SIP/2.0/UDP 198.51.100.1:5060;branch=abc1", False),  # RFC 2543
        ("SIP/2.0/UDP 198.51.100.1:5060;rport", False),
        ("SIP/2.0/UDP 198.51.100.1:99999;branch=z9hG4bKabc1", False),
        ("nonsense", False),
    ],
)
def test_absorb_ack_by_top_via(top_via: str, absorbed: bool) -> None:
    layer = ServerTransactionLayer()
    req = invite()
    layer.receive_request(req, SRC, False, 0.0)
    layer.send_response(req, make_response(req, 302, to_tag="rt1"), 0.0)
    layer.take_outgoing()
    assert layer.absorb_ack(top_via, False, 1.0) is absorbed
    assert layer.invite_state(layer.key_of(req)) is (
        TxState.CONFIRMED if absorbed else TxState.COMPLETED
    )
    if absorbed:  # a retransmitted ACK is absorbed too
        assert layer.absorb_ack(top_via, False, 1.1)


def test_absorb_ack_leaves_acks_for_2xx_to_the_tu() -> None:
    layer = ServerTransactionLayer()
    req = invite()
    layer.receive_request(req, SRC, False, 0.0)
    layer.send_response(req, make_response(req, 200, to_tag="rt1"), 0.0)
    assert not layer.absorb_ack("SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKabc1", False, 1.0)


def test_a_burst_of_timers_fires_in_slices_of_the_poll_budget() -> None:
    """Unacknowledged 302s sent at once: their Timers H fall due together, and each poll
    fires at most POLL_BUDGET of them; the rest stay due until the next polls."""
    layer = ServerTransactionLayer()
    calls = 2 * POLL_BUDGET + POLL_BUDGET // 3
    for i in range(calls):
        key = (f"z9hG4bK-burst{i}", "198.51.100.1", "5060", "INVITE")
        layer.answer_invite(key, SRC, True, b"SIP/2.0 302 Moved Temporarily\r\n\r\n", 0.0)
    assert layer.take_outgoing() and len(layer) == calls
    at = 64 * layer.t1
    fired: list[int] = []
    while len(layer):
        deadline = layer.next_deadline()
        assert deadline is not None and deadline <= at  # still due: poll again
        layer.poll(at)
        events = layer.take_events()
        assert all(isinstance(e, AckTimeout) for e in events)
        fired.append(len(events))
    assert fired == [POLL_BUDGET, POLL_BUDGET, POLL_BUDGET // 3]
    assert layer.next_deadline() is None


def test_stale_timers_behind_an_unacknowledged_call_are_dropped_a_slice_at_a_time() -> None:
    """One 302 never ACKed keeps its live Timer H at the head of the queue while the
    cancelled Timers H of every call ACKed after it pile up behind. When it fires, each
    `next_deadline` drops at most STALE_BUDGET of them (not all at once: that held the
    loop for 300 ms) and never names a time later than the earliest live timer."""
    layer = ServerTransactionLayer()
    src = ("198.51.100.1", 5060)
    lost = ("z9hG4bK-lost", "198.51.100.1", "5060", "INVITE")
    layer.answer_invite(lost, src, True, b"SIP/2.0 302 Moved Temporarily\r\n\r\n", 0.0)
    calls = 5 * STALE_BUDGET
    for i in range(calls):
        key = (f"z9hG4bK-acked{i}", "198.51.100.1", "5060", "INVITE")
        layer.answer_invite(key, src, True, b"SIP/2.0 302 Moved Temporarily\r\n\r\n", 0.001)
        assert layer.absorb_ack_key(key[0], key[1], key[2], True, 0.002)  # TCP: gone at once
    assert len(layer) == 1
    h = 64 * layer.t1
    assert layer.next_deadline() == h  # the lost call's Timer H: live, at the head
    queue = layer._timers[h]
    assert len(queue) == calls + 1
    layer.poll(h)
    assert [type(e) for e in layer.take_events()] == [AckTimeout] and len(layer) == 0
    left = [len(queue)]
    while queue:
        deadline = layer.next_deadline()
        assert deadline is None or deadline == h + 0.001  # a stale entry's: early, not late
        left.append(len(queue))
    assert left == [calls, *range(calls - STALE_BUDGET, -1, -STALE_BUDGET)]
    assert layer.next_deadline() is None


def test_a_udp_302_acked_in_time_costs_one_timer_entry_and_its_key() -> None:
    """Timer H is started by Timer G's first firing, not with the 302, and the ACK leaves
    only the key for Timer I: a call ACKed within T1 (nearly every call) queues Timer G
    alone, and still ends T4 after its ACK; one never ACKed still times out 64*T1 after its
    302 (the test above)."""
    layer = ServerTransactionLayer()
    calls = 100
    for i in range(calls):
        key = (f"z9hG4bK-quick{i}", "198.51.100.1", "5060", "INVITE")
        layer.answer_invite(key, SRC, False, b"SIP/2.0 302 Moved Temporarily\r\n\r\n", 0.0)
        assert layer.absorb_ack_key(key[0], key[1], key[2], False, 0.01)
        assert layer.invite_state(key) is TxState.CONFIRMED
    assert len(layer.take_outgoing()) == calls  # the 302s
    assert sum(map(len, layer._timers.values())) == calls  # Timers G
    assert not layer._txs and len(layer) == calls  # Confirmed: the keys alone
    layer.poll(0.5)  # the Timers G: nothing to resend, nothing started
    assert layer.take_outgoing() == [] and sum(map(len, layer._timers.values())) == 0
    assert layer.next_deadline() == 5.01
    layer.poll(5.0)
    assert len(layer) == calls  # Timer I runs T4 from the ACK
    layer.poll(5.01)
    assert len(layer) == 0 and layer.next_deadline() is None


def test_a_confirmed_302_absorbs_retransmissions_and_matches_a_cancel_until_timer_i() -> None:
    """Once ACKed, a UDP 302's transaction keeps only its key, and still does what the
    Confirmed state does (RFC 3261 §17.2.1): retransmitted ACKs and INVITEs are absorbed,
    nothing is sent, a CANCEL finds it; after Timer I the same branch starts afresh."""
    layer = ServerTransactionLayer()
    req = invite()
    assert layer.receive_request(req, SRC, False, 0.0) is req
    layer.send_response(req, make_response(req, 302, to_tag="rt1"), 0.0)
    assert statuses(layer.take_outgoing()) == [302]
    key = layer.key_of(req)
    assert layer.receive_request(ack(), SRC, False, 0.1) is None
    assert layer.invite_state(key) is TxState.CONFIRMED and key not in layer._txs
    # the full path and the lean path's shortcuts, each absorbing without a word
    assert layer.receive_request(ack(), SRC, False, 0.2) is None
    assert layer.absorb_ack_key(key[0], key[1], key[2], False, 0.3)
    assert layer.receive_request(invite(), SRC, False, 0.4) is None
    assert layer.resend_last(key)
    assert layer.take_outgoing() == []
    cancel = invite(method="CANCEL", cseq="1 CANCEL")
    assert layer.find_invite_for(cancel) == key
    layer.poll(0.1 + layer.t4)  # Timer I
    assert layer.invite_state(key) is None and len(layer) == 0
    assert layer.find_invite_for(cancel) is None
    assert not layer.resend_last(key)  # a new INVITE with that branch: a new transaction
    again = invite()
    assert layer.receive_request(again, SRC, False, 6.0) is again
    # an ACK matching nothing still goes to the TU
    assert layer.receive_request(ack(branch="z9hG4bKother"), SRC, False, 6.1) is not None


def test_a_new_transaction_never_sees_the_timers_of_a_dropped_one_with_its_key() -> None:
    """A 302 ACKed late (after a retransmission started its Timer H), ended by Timer I; then
    an INVITE with the same branch starts a new transaction. The old Timer H entry must not
    time the new one out 10 s early."""
    layer = ServerTransactionLayer()
    key = ("z9hG4bK-again", "198.51.100.1", "5060", "INVITE")
    layer.answer_invite(key, SRC, False, b"SIP/2.0 302 Moved Temporarily\r\n\r\n", 0.0)
    layer.poll(0.5)  # no ACK yet: retransmitted, Timer H started (due at 32 s)
    assert len(layer.take_outgoing()) == 2
    assert layer.absorb_ack_key(key[0], key[1], key[2], False, 0.6)
    layer.poll(5.6)
    assert len(layer) == 0  # Timer I
    layer.answer_invite(key, SRC, False, b"SIP/2.0 302 Moved Temporarily\r\n\r\n", 10.0)
    now = 10.0
    while (deadline := layer.next_deadline()) is not None and deadline < 42.0:
        now = deadline
        layer.poll(now)
        assert layer.take_events() == [], now
    assert layer.invite_state(key) is TxState.COMPLETED
    layer.poll(42.0)
    assert layer.take_events() == [AckTimeout(key)] and len(layer) == 0
