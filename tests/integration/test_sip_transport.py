"""SIP over real sockets: UDP and TCP on one port, IPv4 and IPv6, trusted sources."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest

from ringback.calls import CallController, SipMetrics
from ringback.metrics import Registry
from ringback.net.sip_transport import SipEndpoint, TrustedSources
from ringback.registry.listing_index import ListingIndex
from ringback.registry.numbers import NumberingPlan
from ringback.sip.transaction import POLL_BUDGET


def invite(
    port: int,
    local_port: int,
    *,
    transport: str = "UDP",
    host: str = "127.0.0.1",
    branch: str = "z9hG4bK-t1",
    call_id: str = "call-1",
) -> bytes:
    ruri = (
        f"sip:+8613700137000@{host}:{port}"
        if ":" not in host
        else f"sip:+8613700137000@[{host}]:{port}"
    )
    via_host = host if ":" not in host else f"[{host}]"
    return (
        f"INVITE {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {via_host}:{local_port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:caller@{via_host}>;tag=abc\r\n"
        f"To: <{ruri}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def endpoint(
    trusted: list[str], hosts: list[str], *, max_receive_age_s: float = 0.0
) -> tuple[SipEndpoint, SipMetrics]:
    metrics = SipMetrics(Registry())
    controller = CallController(ListingIndex(), NumberingPlan(), metrics, index_ready=lambda: True)
    sip = SipEndpoint(
        controller, metrics, TrustedSources(trusted), max_receive_age_s=max_receive_age_s
    )
    await sip.start(hosts, 0)
    return sip, metrics


@pytest.fixture
async def sip() -> AsyncIterator[tuple[SipEndpoint, SipMetrics]]:
    pair = await endpoint(["127.0.0.0/8", "::1/128"], ["127.0.0.1", "::1"])
    yield pair
    await pair[0].stop()


async def udp_exchange(
    family: int, host: str, port: int, payload_for: object, timeout: float = 2.0
) -> bytes | None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    try:
        local_port = sock.getsockname()[1]
        payload = payload_for(local_port)  # type: ignore[operator]
        await loop.sock_sendto(sock, payload, (host, port))
        try:
            return await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout)
        except TimeoutError:
            return None
    finally:
        sock.close()


async def test_udp_ipv4_invite_gets_302(sip: tuple[SipEndpoint, SipMetrics]) -> None:
    endpoint_, _ = sip
    data = await udp_exchange(
        socket.AF_INET, "127.0.0.1", endpoint_.port, lambda lp: invite(endpoint_.port, lp)
    )
    assert data is not None
    assert data.startswith(b"SIP/2.0 302 ")
    assert f"Contact: <sip:+8613700137000@127.0.0.1:{endpoint_.port};rbk>".encode() in data


async def test_each_decided_udp_invite_is_one_decision_time_sample(
    sip: tuple[SipEndpoint, SipMetrics],
) -> None:
    """`ringback_sip_decision_seconds` counts every INVITE decided over UDP once, read in
    batches or not, and nothing else: a retransmission answered again is no decision."""
    endpoint_, metrics = sip
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        local = sock.getsockname()[1]
        sent = [
            invite(endpoint_.port, local, branch=f"z9hG4bK-d{i}", call_id=f"d{i}")
            for i in range(40)
        ]
        for data in [*sent, sent[0]]:  # sent together: read in batches of UDP_READ_BUDGET
            sock.sendto(data, ("127.0.0.1", endpoint_.port))
        answers = [await asyncio.wait_for(loop.sock_recv(sock, 65535), 2) for _ in range(41)]
    finally:
        sock.close()
    assert all(a.startswith(b"SIP/2.0 302 ") for a in answers)
    assert metrics.decision_latency.count == 40
    assert 0 < metrics.decision_latency.sum < 40 * 0.5


async def test_udp_ipv6_invite_gets_302(sip: tuple[SipEndpoint, SipMetrics]) -> None:
    endpoint_, _ = sip
    data = await udp_exchange(
        socket.AF_INET6, "::1", endpoint_.port, lambda lp: invite(endpoint_.port, lp, host="::1")
    )
    assert data is not None and data.startswith(b"SIP/2.0 302 ")
    assert f"<sip:+8613700137000@[::1]:{endpoint_.port};rbk>".encode() in data


async def test_tcp_framing_two_messages_in_one_write_and_one_split(
    sip: tuple[SipEndpoint, SipMetrics],
) -> None:
    endpoint_, _ = sip
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint_.port)
    local_port = writer.get_extra_info("sockname")[1]
    one = invite(endpoint_.port, local_port, transport="TCP", branch="z9hG4bK-1", call_id="a")
    two = invite(endpoint_.port, local_port, transport="TCP", branch="z9hG4bK-2", call_id="b")
    three = invite(endpoint_.port, local_port, transport="TCP", branch="z9hG4bK-3", call_id="c")
    writer.write(b"\r\n\r\n" + one + two + three[:50])  # keep-alive CRLFs, then 2.5 messages
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(three[50:])
    await writer.drain()
    seen = b""
    while seen.count(b"SIP/2.0 302") < 3:
        seen += await asyncio.wait_for(reader.read(65535), 2)
    for call_id in (b"a", b"b", b"c"):
        assert b"Call-ID: " + call_id + b"\r\n" in seen
    writer.close()


async def test_tcp_garbage_closes_only_that_connection(sip: tuple[SipEndpoint, SipMetrics]) -> None:
    endpoint_, _ = sip
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint_.port)
    writer.write(b"INVITE sip:x SIP/2.0\r\nContent-Length: banana\r\n\r\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 2) == b""  # closed by the server
    # ...and everyone else is still served
    data = await udp_exchange(
        socket.AF_INET, "127.0.0.1", endpoint_.port, lambda lp: invite(endpoint_.port, lp)
    )
    assert data is not None and data.startswith(b"SIP/2.0 302 ")


async def test_untrusted_source_gets_no_answer_at_all() -> None:
    endpoint_, metrics = await endpoint(["10.0.0.0/8"], ["127.0.0.1"])
    try:
        data = await udp_exchange(
            socket.AF_INET,
            "127.0.0.1",
            endpoint_.port,
            lambda lp: invite(endpoint_.port, lp),
            timeout=0.5,
        )
        assert data is None
        reader, writer = await asyncio.open_connection("127.0.0.1", endpoint_.port)
        writer.write(invite(endpoint_.port, 1, transport="TCP"))
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        assert metrics.untrusted.get() == 2
        assert metrics.requests.get("INVITE") == 0
        series = [line for line in metrics.requests.render() if line[0] != "#"]
        assert all(line.endswith(" 0") for line in series), series  # nothing counted
    finally:
        await endpoint_.stop()


@pytest.mark.parametrize("maddr", ["127.0.0.9", "victim.invalid"])  # outside; a name
async def test_via_maddr_cannot_reflect_responses_nor_disturb_other_calls(maddr: str) -> None:
    """maddr is obeyed only for an IP inside the trusted networks; a name or an outside
    address is ignored, and the other call's retransmissions keep coming."""
    loop = asyncio.get_running_loop()
    metrics = SipMetrics(Registry())
    trusted = TrustedSources(["127.0.0.1/32"])
    controller = CallController(
        ListingIndex(), NumberingPlan(), metrics, index_ready=lambda: True, trusted=trusted
    )
    sip = SipEndpoint(controller, metrics, trusted)
    port = await sip.start(["127.0.0.1"], 0)
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for s in (a, b):
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
        # Call B first: a 302 that is never ACKed, so it is retransmitted (T1 = 0.5 s).
        b.sendto(
            invite(port, b.getsockname()[1], branch="z9hG4bK-b", call_id="b"), ("127.0.0.1", port)
        )
        assert b"302" in await asyncio.wait_for(loop.sock_recv(b, 65535), 2)
        # Call A asks for its responses to go elsewhere.
        data = invite(port, a.getsockname()[1], branch="z9hG4bK-a", call_id="a").replace(
            b";rport\r\n", f";maddr={maddr}\r\n".encode()
        )
        a.sendto(data, ("127.0.0.1", port))
        response = await asyncio.wait_for(loop.sock_recv(a, 65535), 2)
        assert response.startswith(b"SIP/2.0 302")  # to the source, not to maddr
        retransmitted = await asyncio.wait_for(loop.sock_recv(b, 65535), 2)
        assert retransmitted.startswith(b"SIP/2.0 302")  # call B is undisturbed
    finally:
        a.close()
        b.close()
        await sip.stop()


async def test_via_maddr_inside_the_trusted_networks_is_obeyed() -> None:
    loop = asyncio.get_running_loop()
    metrics = SipMetrics(Registry())
    trusted = TrustedSources(["127.0.0.0/8"])
    controller = CallController(
        ListingIndex(), NumberingPlan(), metrics, index_ready=lambda: True, trusted=trusted
    )
    sip = SipEndpoint(controller, metrics, trusted)
    port = await sip.start(["127.0.0.1"], 0)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sender.bind(("127.0.0.1", 0))
        target.bind(("127.0.0.2", 0))
        target.setblocking(False)
        data = (
            invite(port, target.getsockname()[1], branch="z9hG4bK-m")
            .replace(
                b"127.0.0.1:" + str(target.getsockname()[1]).encode() + b";branch",
                b"127.0.0.2:" + str(target.getsockname()[1]).encode() + b";branch",
            )
            .replace(b";rport\r\n", b";maddr=127.0.0.2\r\n")
        )
        sender.sendto(data, ("127.0.0.1", port))
        response = await asyncio.wait_for(loop.sock_recv(target, 65535), 2)
        assert response.startswith(b"SIP/2.0 302")
    finally:
        sender.close()
        target.close()
        await sip.stop()


async def test_timers_falling_due_together_are_fired_in_slices_back_to_back() -> None:
    """Thousands of unacknowledged 302s whose Timers H fall due at the same instant: the
    node fires them a slice (POLL_BUDGET) per poll, so that calls are answered in between,
    and polls again as soon as the sockets were served, not one timer resolution (10 ms)
    later: 20 slices end within tens of milliseconds, not 200."""
    metrics = SipMetrics(Registry())
    controller = CallController(ListingIndex(), NumberingPlan(), metrics, index_ready=lambda: True)
    sip = SipEndpoint(controller, metrics, TrustedSources(["127.0.0.0/8"]))
    frozen = time.monotonic()
    sip.clock = lambda: frozen  # every 302 sent at one instant: their Timers H coincide
    await sip.start(["127.0.0.1"], 0)
    calls = 20 * POLL_BUDGET
    reader, writer = await asyncio.open_connection("127.0.0.1", sip.port)
    local = writer.get_extra_info("sockname")[1]
    answered = 0

    async def read_answers() -> None:  # TCP: no Timer G, only H
        nonlocal answered
        while line := await reader.readline():
            answered += line.startswith(b"SIP/2.0 302 ")

    reading = asyncio.create_task(read_answers())
    try:
        for i in range(calls):
            writer.write(
                invite(sip.port, local, transport="TCP", branch=f"z9hG4bK-b{i}", call_id=f"b{i}")
            )
        await writer.drain()
        give_up = time.monotonic() + 20
        while answered < calls:
            assert time.monotonic() < give_up, f"{answered} of {calls} answered"
            await asyncio.sleep(0.005)
        assert controller.transactions() == calls
        # Time moves on to 10 ms before Timer H (64 x T1 = 32 s).
        shift = frozen + 64 * controller.t1 - 0.01 - time.monotonic()
        sip.clock = lambda: time.monotonic() + shift
        assert sip._timer is not None  # armed for Timer H by the frozen clock: 32 s away
        sip._timer.cancel()
        sip._timer = None
        sip._arm()  # as the new clock sees it: 10 ms away
        while controller.transactions() == calls:
            assert time.monotonic() < give_up, "Timer H never fired"
            await asyncio.sleep(0)
        first_gone = time.monotonic()
        while controller.transactions():
            assert time.monotonic() - first_gone < 2.0, controller.transactions()
            await asyncio.sleep(0)
        took = time.monotonic() - first_gone
    finally:
        reading.cancel()
        writer.close()
        await sip.stop()
    assert took < 0.1, f"{calls} Timers H took {took * 1000:.0f} ms to fire"
