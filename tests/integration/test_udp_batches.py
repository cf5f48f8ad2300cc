"""Batched UDP I/O (recvmmsg/sendmmsg, src/ringback/_udpio.c) on real sockets: what it
reads and sends is what socket.recvfrom and socket.sendto would have, and one bad
destination costs that datagram only."""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Iterator

import pytest
from test_sip_transport import endpoint, invite, udp_exchange

import ringback.net.sip_transport as sip_transport
from ringback._udpio import recv_batch, send_batch
from ringback.net.sip_transport import SO_TIMESTAMPNS, SipEndpoint


def pair(family: int, host: str) -> tuple[socket.socket, socket.socket]:
    receiver = socket.socket(family, socket.SOCK_DGRAM)
    receiver.bind((host, 0))
    receiver.setblocking(False)
    sender = socket.socket(family, socket.SOCK_DGRAM)
    sender.bind((host, 0))
    sender.settimeout(2)
    return receiver, sender


@pytest.fixture
def v4() -> Iterator[tuple[socket.socket, socket.socket]]:
    receiver, sender = pair(socket.AF_INET, "127.0.0.1")
    yield receiver, sender
    receiver.close()
    sender.close()


def wait_readable(sock: socket.socket) -> None:
    import select

    assert select.select([sock], [], [], 2)[0], "nothing arrived"


def test_nothing_waiting_is_an_empty_batch(v4: tuple[socket.socket, socket.socket]) -> None:
    receiver, _ = v4
    assert recv_batch(receiver.fileno(), 16, False) == []


def test_a_batch_is_the_datagrams_in_order_with_their_sources_up_to_max(
    v4: tuple[socket.socket, socket.socket],
) -> None:
    receiver, sender = v4
    for i in range(20):
        sender.sendto(b"datagram %d" % i, receiver.getsockname())
    wait_readable(receiver)
    first = recv_batch(receiver.fileno(), 16, False)
    rest = recv_batch(receiver.fileno(), 16, False)
    source = sender.getsockname()
    assert [(d, h, p) for d, h, p, _ in first] == [
        (b"datagram %d" % i, source[0], source[1]) for i in range(16)
    ]
    assert [d for d, *_ in rest] == [b"datagram %d" % i for i in range(16, 20)]
    assert {stamp for *_, stamp in first + rest} == {0.0}  # not asked for


def test_the_kernel_receive_time_when_asked(v4: tuple[socket.socket, socket.socket]) -> None:
    receiver, sender = v4
    receiver.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    # Linux turns stamping on arrival on a moment after the first socket asks (deferred
    # work); until then it stamps a datagram when it is read. Wait for arrival stamps.
    deadline = time.monotonic() + 10
    while True:
        sender.sendto(b"warm-up", receiver.getsockname())
        wait_readable(receiver)
        time.sleep(0.02)
        [(_, _, _, stamp)] = recv_batch(receiver.fileno(), 16, True)
        if stamp < time.time() - 0.015:
            break
        assert time.monotonic() < deadline, "no arrival stamps"
    before = time.time()
    sender.sendto(b"stamped", receiver.getsockname())
    wait_readable(receiver)
    time.sleep(0.05)  # it waits in the queue: its stamp is its arrival, not this read
    [(data, _, _, stamp)] = recv_batch(receiver.fileno(), 16, True)
    assert data == b"stamped"
    assert before - 0.001 <= stamp <= before + 0.04


def test_a_datagram_of_64_kb_is_read_whole(v4: tuple[socket.socket, socket.socket]) -> None:
    receiver, sender = v4
    big = bytes(range(256)) * 255  # 65,280 bytes
    sender.sendto(big, receiver.getsockname())
    wait_readable(receiver)
    [(data, *_)] = recv_batch(receiver.fileno(), 1, False)
    assert data == big


def test_ipv6_sources_read_as_recvfrom_renders_them() -> None:
    receiver, sender = pair(socket.AF_INET6, "::1")
    try:
        sender.sendto(b"six", receiver.getsockname()[:2])
        wait_readable(receiver)
        [(data, host, port, _)] = recv_batch(receiver.fileno(), 4, False)
        assert (data, host, port) == (b"six", *sender.getsockname()[:2])
        sent = send_batch(receiver.fileno(), socket.AF_INET6, [(b"back", ("::1", port))])
        assert sent is None
        assert sender.recvfrom(100) == (b"back", receiver.getsockname())
    finally:
        receiver.close()
        sender.close()


def test_send_batch_delivers_in_order_and_names_each_message_it_could_not_send(
    v4: tuple[socket.socket, socket.socket],
) -> None:
    receiver, sender = v4
    to = sender.getsockname()
    failures = send_batch(
        receiver.fileno(),
        socket.AF_INET,
        [
            (b"one", to),
            (b"a name, not an address", ("localhost", to[1])),
            (b"another family", ("::1", to[1])),
            (b"no such port", (to[0], 70000)),
            (b"broadcast without SO_BROADCAST", ("255.255.255.255", to[1])),
            (b"two", to),
        ],
    )
    assert failures == [(1, 0), (2, 0), (3, 0), (4, errno.EACCES)]
    assert [sender.recvfrom(100)[0] for _ in range(2)] == [b"one", b"two"]


def test_more_messages_than_one_system_call_takes(v4: tuple[socket.socket, socket.socket]) -> None:
    receiver, sender = v4
    to = sender.getsockname()
    messages = [(b"%d" % i, to) for i in range(150)]
    assert send_batch(receiver.fileno(), socket.AF_INET, messages) is None
    assert [sender.recvfrom(100)[0] for _ in range(150)] == [b"%d" % i for i in range(150)]


def test_malformed_arguments_are_type_and_value_errors(
    v4: tuple[socket.socket, socket.socket],
) -> None:
    receiver, _ = v4
    with pytest.raises(ValueError):
        recv_batch(receiver.fileno(), 0, False)
    with pytest.raises(TypeError):
        send_batch(receiver.fileno(), socket.AF_INET, [("text", ("127.0.0.1", 5))])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        send_batch(receiver.fileno(), socket.AF_INET, [(b"x", "127.0.0.1:5")])  # type: ignore[list-item]


async def test_the_endpoint_sends_what_the_batch_could_not_and_loses_only_the_bad_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sip, metrics = await endpoint(["127.0.0.0/8"], ["127.0.0.1"])
    receiver, _ = pair(socket.AF_INET, "127.0.0.1")
    receiver.settimeout(2)
    try:
        udp = sip._udp_v4
        assert isinstance(sip, SipEndpoint) and udp is not None
        to = receiver.getsockname()
        with caplog.at_level(logging.INFO, logger="ringback.net.sip_transport"):
            udp.send_all(
                [
                    (b"first", to),
                    (b"by name", ("localhost", to[1])),  # the socket module resolves it
                    (b"refused", ("255.255.255.255", to[1])),
                    (b"last", to),
                ]
            )
        got = [receiver.recvfrom(100)[0] for _ in range(3)]
        assert got == [b"first", b"last", b"by name"]
        assert "SIP send to ('255.255.255.255'" in caplog.text
        assert "Permission denied" in caplog.text
        assert metrics.send_dropped.get() == 0
    finally:
        receiver.close()
        await sip.stop()


async def test_without_the_compiled_module_the_socket_calls_answer_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where _udpio did not build: recvmsg/recvfrom and sendto, with the same answers."""
    monkeypatch.setattr(sip_transport, "RECV_BATCH", None)
    monkeypatch.setattr(sip_transport, "SEND_BATCH", None)
    for max_age in (0.0, 1.0):  # recvfrom, and recvmsg with receive timestamps
        sip, metrics = await endpoint(["127.0.0.0/8"], ["127.0.0.1"], max_receive_age_s=max_age)
        assert all(udp.timestamps == (max_age > 0) for udp in sip.udp)
        try:
            port = sip.port
            answer = await udp_exchange(
                socket.AF_INET, "127.0.0.1", port, lambda local, port=port: invite(port, local)
            )
            assert answer is not None and answer.startswith(b"SIP/2.0 302 "), answer
            assert metrics.requests.get("INVITE") == 1
        finally:
            await sip.stop()
