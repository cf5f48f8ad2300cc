"""Client transactions (RFC 3261 §17.1, RFC 6026) with a fake clock: Timers A, B, D, E, F,
K and M, the ACK of a non-2xx final, and 2xx retransmissions passed up to the TU."""

from __future__ import annotations

from ringback.sip.client import ClientTimeout, ClientTransactionLayer
from ringback.sip.headers import Headers
from ringback.sip.message import parse_message
from ringback.sip.model import Request, Response

DEST = ("192.0.2.50", 5060)


def request(method: str, branch: str = "z9hG4bK-t1") -> Request:
    h = Headers()
    h.add("Via", f"SIP/2.0/UDP 192.0.2.1:5060;branch={branch}")
    h.add("Max-Forwards", "70")
    h.add("From", "<sip:a@192.0.2.1>;tag=f1")
    h.add("To", "<sip:b@192.0.2.50>")
    h.add("Call-ID", "c1")
    h.add("CSeq", f"1 {method}")
    return Request(method, "sip:b@192.0.2.50", h)


def response(req: Request, status: int) -> Response:
    to = req.headers.get("To") or ""
    data = (
        f"SIP/2.0 {status} X\r\nVia: {req.headers.get('Via')}\r\nFrom: {req.headers.get('From')}"
        f"\r\nTo: {to}{';tag=t9' if status > 100 else ''}\r\nCall-ID: c1\r\n"
        f"CSeq: {req.headers.get('CSeq')}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(data)
    assert isinstance(message, Response)
    return message


def sent_at(layer: ClientTransactionLayer, times: list[float]) -> list[float]:
    """Poll at each deadline up to the last time; when something went out."""
    out: list[float] = []
    layer.take_outgoing()
    now = 0.0
    while True:
        deadline = layer.next_deadline()
        if deadline is None or deadline > times[-1]:
            return out
        now = deadline
        layer.poll(now)
        if layer.take_outgoing():
            out.append(round(now, 3))


def test_timer_a_doubles_and_timer_b_gives_up_after_64_t1() -> None:
    layer = ClientTransactionLayer(t1=0.5)
    invite = request("INVITE")
    key = layer.send(invite, DEST, reliable=False, now=0.0)
    assert sent_at(layer, [40.0]) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert layer.take_events() == [ClientTimeout(key, invite)]  # Timer B at 32 s
    assert len(layer) == 0


def test_a_provisional_stops_timer_a_and_timer_b() -> None:
    layer = ClientTransactionLayer(t1=0.5)
    invite = request("INVITE")
    layer.send(invite, DEST, reliable=False, now=0.0)
    assert layer.receive_response(response(invite, 180), 0.2) is not None
    assert sent_at(layer, [100.0]) == []
    assert layer.take_events() == []  # proceeding: it waits for the callee


def test_a_non_2xx_final_is_acked_here_and_again_until_timer_d() -> None:
    layer = ClientTransactionLayer(t1=0.5)
    invite = request("INVITE")
    layer.send(invite, DEST, reliable=False, now=0.0)
    layer.take_outgoing()
    busy = response(invite, 486)
    assert layer.receive_response(busy, 1.0) is busy
    [(ack, dest)] = layer.take_outgoing()
    assert dest == DEST and ack.startswith(b"ACK sip:b@192.0.2.50 SIP/2.0")
    assert b"branch=z9hG4bK-t1" in ack and b"CSeq: 1 ACK" in ack and b"tag=t9" in ack
    # A retransmitted 486: absorbed, ACKed again.
    assert layer.receive_response(busy, 2.0) is None
    assert layer.take_outgoing() == [(ack, DEST)]
    layer.poll(1.0 + 32.0)  # Timer D
    assert len(layer) == 0 and layer.take_events() == []


def test_2xx_and_its_retransmissions_go_to_the_tu_until_timer_m() -> None:
    layer = ClientTransactionLayer(t1=0.5)
    invite = request("INVITE")
    layer.send(invite, DEST, reliable=False, now=0.0)
    ok = response(invite, 200)
    assert layer.receive_response(ok, 1.0) is ok
    assert layer.receive_response(ok, 1.5) is ok  # the TU ACKs each one
    layer.poll(1.0 + 32.0)
    assert len(layer) == 0


def test_timer_e_caps_at_t2_and_timer_f_gives_up() -> None:
    layer = ClientTransactionLayer(t1=0.5, t2=4.0)
    bye = request("BYE")
    key = layer.send(bye, DEST, reliable=False, now=0.0)
    assert sent_at(layer, [33.0]) == [
        0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5
    ]  # fmt: skip
    assert layer.take_events() == [ClientTimeout(key, bye)]


def test_a_final_to_a_non_invite_waits_timer_k_and_absorbs_retransmissions() -> None:
    layer = ClientTransactionLayer(t1=0.5, t4=5.0)
    bye = request("BYE")
    layer.send(bye, DEST, reliable=False, now=0.0)
    ok = response(bye, 200)
    assert layer.receive_response(ok, 0.3) is ok
    assert layer.receive_response(ok, 0.8) is None  # Timer K: absorbed
    assert sent_at(layer, [10.0]) == []  # no more BYEs
    assert len(layer) == 0


def test_over_a_reliable_transport_nothing_is_retransmitted() -> None:
    layer = ClientTransactionLayer(t1=0.5)
    invite = request("INVITE")
    layer.send(invite, DEST, reliable=True, now=0.0, transport="tcp")
    [(_, _, transport)] = layer.take_outgoing_by_transport()
    assert transport == "tcp"
    assert sent_at(layer, [40.0]) == []
    assert len(layer.take_events()) == 1  # Timer B still bounds it
