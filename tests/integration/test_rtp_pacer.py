"""The RTP pacer on real UDP sockets over 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ringback.media.rtp import RtpStream, parse_rtp_header
from ringback.net.rtp_pacer import Outcome, RtpPacer, RtpPortPool

FRAME = b"\xff" * 160


class Receiver:
    """A UDP socket on the test's loop that timestamps every datagram it reads."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.packets: list[tuple[float, bytes]] = []
        loop.add_reader(self.sock.fileno(), self.drain)

    @property
    def addr(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()
        return host, port

    def drain(self) -> None:
        while True:
            try:
                data, _ = self.sock.recvfrom(2048)
            except BlockingIOError:
                return
            self.packets.append((time.monotonic(), data))

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


@pytest.fixture
async def env() -> AsyncIterator[tuple[RtpPacer, RtpPortPool, Callable[[], Receiver]]]:
    loop = asyncio.get_running_loop()
    pacer = RtpPacer(loop)
    pool = RtpPortPool("127.0.0.1", 31000, 31999)
    receivers: list[Receiver] = []

    def receiver() -> Receiver:
        r = Receiver(loop)
        receivers.append(r)
        return r

    yield pacer, pool, receiver
    pacer.close()
    for r in receivers:
        r.close()
    assert pool.in_use == 0


def start(
    pacer: RtpPacer,
    pool: RtpPortPool,
    frames: int,
    dest: tuple[str, int],
) -> tuple[int, asyncio.Future[tuple[Outcome, float]], int]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[Outcome, float]] = loop.create_future()
    rtp = pool.allocate()
    port = rtp.port
    sid = pacer.start(
        RtpStream([FRAME] * frames, 0),
        dest,
        rtp,
        on_done=lambda o: done.set_result((o, time.monotonic())),
    )
    return sid, done, port


def check_stream(packets: list[tuple[float, bytes]], frames: int) -> None:
    headers = [parse_rtp_header(d) for _, d in packets]
    assert len(headers) == frames
    seq0 = headers[0].sequence
    assert [h.sequence for h in headers] == [(seq0 + i) & 0xFFFF for i in range(frames)]
    assert [h.marker for h in headers] == [True] + [False] * (frames - 1)
    assert len({h.ssrc for h in headers}) == 1


async def test_three_second_stream_arrives_complete_in_order_on_time(env: Any) -> None:
    pacer, pool, receiver = env
    r = receiver()
    _, done, _ = start(pacer, pool, 150, r.addr)
    outcome, finished = await asyncio.wait_for(done, 5)
    r.drain()
    assert outcome == "completed"
    check_stream(r.packets, 150)
    first = r.packets[0][0]
    assert r.packets[-1][0] - first == pytest.approx(2.98, abs=0.02)
    assert finished - first == pytest.approx(3.0, abs=0.02)  # last frame played out


async def test_stop_mid_stream_means_silence(env: Any) -> None:
    pacer, pool, receiver = env
    r = receiver()
    sid, done, _ = start(pacer, pool, 250, r.addr)
    await asyncio.sleep(0.5)
    assert pacer.stop(sid) is True
    r.drain()  # loopback delivery is synchronous: everything sent so far is readable now
    heard = len(r.packets)
    assert done.done() and done.result()[0] == "cancelled"
    assert 15 <= heard <= 35
    await asyncio.sleep(0.1)
    r.drain()
    assert len(r.packets) == heard
    assert pool.in_use == 0


async def test_symmetric_rtp_moves_the_stream_to_the_source(env: Any) -> None:
    pacer, pool, receiver = env
    offered, real = receiver(), receiver()
    sid, done, port = start(pacer, pool, 100, offered.addr)
    await asyncio.sleep(0.2)
    assert offered.packets
    real.sock.sendto(bytes([0x80, 201]) + b"\x00" * 6, ("127.0.0.1", port))  # RTCP: ignored
    await asyncio.sleep(0.1)
    assert pacer.destination_of(sid) == offered.addr
    real.sock.sendto(RtpStream([FRAME], 0).packet(0), ("127.0.0.1", port))
    await asyncio.sleep(0.1)
    assert pacer.destination_of(sid) == real.addr
    moved_at = len(offered.packets)
    outcome, _ = await asyncio.wait_for(done, 5)
    assert outcome == "completed"
    offered.drain()
    real.drain()
    assert len(offered.packets) == moved_at
    assert real.packets
    check_stream(offered.packets + real.packets, 100)  # nothing lost in the move


async def test_fifty_concurrent_streams_all_complete(env: Any) -> None:
    pacer, pool, receiver = env
    r = receiver()
    starts = [start(pacer, pool, 50, r.addr) for _ in range(50)]
    assert pool.in_use == 50
    results = await asyncio.wait_for(asyncio.gather(*(d for _, d, _ in starts)), 5)
    r.drain()
    assert [o for o, _ in results] == ["completed"] * 50
    by_ssrc: dict[int, list[tuple[float, bytes]]] = defaultdict(list)
    for t, data in r.packets:
        by_ssrc[parse_rtp_header(data).ssrc].append((t, data))
    assert len(by_ssrc) == 50
    for packets in by_ssrc.values():
        check_stream(packets, 50)


def test_three_second_stream_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pacer = RtpPacer(loop)
        pool = RtpPortPool("127.0.0.1", 31000, 31999)
        r = Receiver(loop)
        try:
            _, done, _ = start(pacer, pool, 150, r.addr)
            outcome, _ = await asyncio.wait_for(done, 5)
            r.drain()
        finally:
            r.close()
        assert outcome == "completed"
        check_stream(r.packets, 150)
        assert r.packets[-1][0] - r.packets[0][0] == pytest.approx(2.98, abs=0.02)

    run: Callable[[Awaitable[None]], None] = uvloop.run
    run(main())


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this host")
async def test_ipv6_stream() -> None:
    loop = asyncio.get_running_loop()
    pacer = RtpPacer(loop)
    pool = RtpPortPool("::1", 31000, 31999)
    rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    rx.bind(("::1", 0))
    rx.setblocking(False)
    try:
        _, done, _ = start(pacer, pool, 10, rx.getsockname()[:2])
        outcome, _ = await asyncio.wait_for(done, 2)
        assert outcome == "completed"
        got = []
        while True:
            try:
                got.append(rx.recvfrom(2048)[0])
            except BlockingIOError:
                break
        check_stream([(0.0, d) for d in got], 10)
    finally:
        rx.close()
        pacer.close()
    assert pool.in_use == 0
