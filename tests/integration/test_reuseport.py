"""The reuseport group's BPF program on real sockets: a transaction's requests land on one
socket, calls to different numbers spread over all of them."""

from __future__ import annotations

import socket
import time
from collections import Counter, defaultdict

from ringback.net.reuseport import attach_uri_hash, reuseport_udp_socket, uri_hash_program


def test_requests_of_one_transaction_reach_one_socket_and_calls_spread() -> None:
    first = reuseport_udp_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    group = [first] + [reuseport_udp_socket("127.0.0.1", port) for _ in range(2)]
    for sock in group:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    attach_uri_hash(first, len(group))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # one socket, as a switch
    calls = 150
    sent = 0
    try:
        for i in range(calls):
            for method in ("INVITE", "INVITE", "ACK", "CANCEL"):  # with a retransmission
                uri = f"sip:+49402{i:08d}@127.0.0.1:5060;user=phone"
                via = f"Via: SIP/2.0/UDP h;branch=z9hG4bK{i}"
                sender.sendto(
                    f"{method} {uri} SIP/2.0\r\n{via}\r\n\r\n".encode(), ("127.0.0.1", port)
                )
                sent += 1
        where: dict[bytes, set[int]] = defaultdict(set)
        per_socket: Counter[int] = Counter()
        deadline = time.monotonic() + 5
        while sum(per_socket.values()) < sent and time.monotonic() < deadline:
            for k, sock in enumerate(group):
                try:
                    data = sock.recv(2048, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                per_socket[k] += 1
                where[data.split(b" ")[1]].add(k)
        assert sum(per_socket.values()) == sent
        assert all(len(sockets) == 1 for sockets in where.values()), "a transaction split"
        assert len(where) == calls
        assert min(per_socket.values()) >= 0.2 * sent, per_socket  # about a third each
    finally:
        sender.close()
        for sock in group:
            sock.close()


def test_the_program_fits_classic_bpf() -> None:
    program = uri_hash_program(8)
    assert len(program) <= 4096  # BPF_MAXINSNS
    assert all(jt <= 255 and jf <= 255 for _, jt, jf, _ in program)
