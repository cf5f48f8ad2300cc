"""The built-in media relay (net/relay.py) on real UDP sockets over 127.0.0.1: packets pass
unchanged both ways, a third party is refused, a side latches once to a new port of its
latch host, and a side on hold receives nothing."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable

import pytest

from ringback.net.relay import MediaRelay
from ringback.net.rtp_pacer import RtpPortPool

KEY = ("call", "1")
Address = tuple[str, int]


def rtp(seq: int, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + b"\xff" * 160


def peer(host: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.settimeout(2.0)
    return s


def addr(s: socket.socket) -> Address:
    host, port = s.getsockname()
    return host, port


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait for a positive signal (the relay's counters), never a fixed sleep."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.002)


async def received(s: socket.socket) -> tuple[bytes, Address]:
    data, source = await asyncio.to_thread(s.recvfrom, 2048)
    return data, (source[0], source[1])


def nothing_waiting(s: socket.socket) -> bool:
    try:
        s.recv(2048, socket.MSG_DONTWAIT)
    except (BlockingIOError, TimeoutError):
        return True
    return False


@pytest.fixture
async def relay() -> AsyncIterator[MediaRelay]:
    loop = asyncio.get_running_loop()
    relay = MediaRelay({4: RtpPortPool("127.0.0.1", 36000, 36999)}, loop, latch_timeout_s=2.0)
    yield relay
    relay.close_all()


async def test_packets_pass_unchanged_both_ways(relay: MediaRelay) -> None:
    caller, callee = peer(), peer()
    caller_side, callee_side = relay.open(KEY, 4, 4)
    assert relay.bridge(KEY, (addr(caller),), None, (addr(callee),))
    for seq in range(5):
        caller.sendto(rtp(seq), caller_side)
        data, source = await received(callee)
        assert data == rtp(seq) and source == callee_side
        callee.sendto(rtp(seq, 0x9999), callee_side)
        data, source = await received(caller)
        assert data == rtp(seq, 0x9999) and source == caller_side
    assert relay.packets_relayed == 10 and relay.packets_refused == 0
    assert relay.close(KEY) == (5, 5)


async def test_a_third_party_is_refused_and_counted(relay: MediaRelay) -> None:
    caller, callee, intruder = peer(), peer(), peer("127.0.0.2")
    caller_side, _ = relay.open(KEY, 4, 4)
    relay.bridge(KEY, (addr(caller),), None, (addr(callee),))
    intruder.sendto(rtp(1, 0x6666), caller_side)
    await until(lambda: relay.packets_refused == 1)
    assert nothing_waiting(callee)
    caller.sendto(rtp(2), caller_side)  # the real caller still gets through
    assert (await received(callee))[0] == rtp(2)


async def test_a_side_latches_once_to_a_new_port_of_its_host(relay: MediaRelay) -> None:
    offered, actual, later, callee = peer(), peer(), peer(), peer()
    caller_side, callee_side = relay.open(KEY, 4, 4)
    relay.bridge(KEY, (addr(offered),), None, (addr(callee),))
    actual.sendto(rtp(1), caller_side)  # the caller sends from another port than its SDP's
    assert (await received(callee))[0] == rtp(1)
    callee.sendto(rtp(1, 0x9999), callee_side)
    data, _ = await received(actual)  # latched: the callee's audio goes where it came from
    assert data == rtp(1, 0x9999)
    later.sendto(rtp(2), caller_side)  # a second move is not taken
    await until(lambda: relay.packets_refused == 1)
    assert nothing_waiting(callee)
    assert nothing_waiting(offered)


async def test_rtcp_does_not_latch(relay: MediaRelay) -> None:
    offered, other, callee = peer(), peer(), peer()
    caller_side, _ = relay.open(KEY, 4, 4)
    relay.bridge(KEY, (addr(offered),), None, (addr(callee),))
    rtcp = struct.pack("!BBHI", 0x80, 200, 6, 0x1234) + bytes(20)  # a sender report
    other.sendto(rtcp, caller_side)
    await until(lambda: relay.packets_refused == 1)
    offered.sendto(rtp(1), caller_side)
    assert (await received(callee))[0] == rtp(1)


async def test_a_side_on_hold_receives_nothing(relay: MediaRelay) -> None:
    caller, callee = peer(), peer()
    caller_side, callee_side = relay.open(KEY, 4, 4)
    relay.bridge(KEY, (addr(caller),), None, (addr(callee),))
    caller.sendto(rtp(1), caller_side)
    assert (await received(callee))[0] == rtp(1)
    relay.move(KEY, "callee", None)
    caller.sendto(rtp(2), caller_side)
    session = relay.sessions[KEY]
    await until(lambda: session.caller.packets_in == 2)
    assert nothing_waiting(callee)  # taken from the caller, sent nowhere
    relay.move(KEY, "callee", addr(callee))  # taken off hold
    caller.sendto(rtp(3), caller_side)
    assert (await received(callee))[0] == rtp(3)
    callee.sendto(rtp(1, 0x9999), callee_side)
    assert (await received(caller))[0] == rtp(1, 0x9999)
