"""The pacer driven by a fake loop and fake sockets: exact schedule, catch-up, stop, latching."""

from __future__ import annotations

import heapq
import itertools
import socket
from collections.abc import Callable
from typing import Any

import pytest

from ringback.media.rtp import RtpStream, parse_rtp_header
from ringback.net.rtp_pacer import RtpPacer, RtpSocket

TICK = 0.005


class FakeHandle:
    def __init__(self, when: float, cb: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.when, self.cb, self.args, self.cancelled = when, cb, args, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """time/call_at/add_reader/remove_reader; timers fire only when the test says so."""

    def __init__(self, t: float = 5000.0) -> None:
        self.t = t
        self._timers: list[tuple[float, int, FakeHandle]] = []
        self._seq = itertools.count()
        self.readers: dict[int, tuple[Callable[..., None], tuple[Any, ...]]] = {}

    def time(self) -> float:
        return self.t

    def call_at(self, when: float, cb: Callable[..., None], *args: Any) -> FakeHandle:
        h = FakeHandle(when, cb, args)
        heapq.heappush(self._timers, (when, next(self._seq), h))
        return h

    def add_reader(self, fd: int, cb: Callable[..., None], *args: Any) -> None:
        self.readers[fd] = (cb, args)

    def remove_reader(self, fd: int) -> bool:
        return self.readers.pop(fd, None) is not None

    def pending(self) -> int:
        return sum(1 for _, _, h in self._timers if not h.cancelled)

    def run_until(self, t: float, late: float = 0.0) -> None:
        """Fire timers in order up to ``t``, each ``late`` seconds after its due time."""
        while self._timers and self._timers[0][0] <= t:
            when, _, h = heapq.heappop(self._timers)
            if h.cancelled:
                continue
            self.t = max(self.t, when + late)
            h.cb(*h.args)
        self.t = max(self.t, t)

    def stall_then_wake(self, t: float) -> None:
        """The loop was blocked until ``t``: fire only the timers pending now, once, at t."""
        self.t = t
        due = []
        while self._timers and self._timers[0][0] <= t:
            due.append(heapq.heappop(self._timers)[2])
        for h in due:
            if not h.cancelled:
                h.cb(*h.args)


_fds = itertools.count(100)


class FakeSock:
    family = socket.AF_INET

    def __init__(self, loop: FakeLoop) -> None:
        self.loop = loop
        self.fd = next(_fds)
        self.sent: list[tuple[float, bytes, tuple[Any, ...]]] = []
        self.inbox: list[tuple[bytes, tuple[Any, ...]]] = []
        self.closed = False
        self.error: OSError | None = None

    def fileno(self) -> int:
        return self.fd

    def sendto(self, data: bytes | bytearray, addr: tuple[Any, ...]) -> int:
        assert not self.closed
        if self.error is not None:
            raise self.error
        self.sent.append((self.loop.t, bytes(data), addr))
        return len(data)

    def recvfrom(self, n: int) -> tuple[bytes, tuple[Any, ...]]:
        if not self.inbox:
            raise BlockingIOError
        return self.inbox.pop(0)

    def close(self) -> None:
        self.closed = True

    def deliver(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.inbox.append((data, addr))
        cb, args = self.loop.readers[self.fd]
        cb(*args)


def setup(count: int = 50) -> tuple[FakeLoop, RtpPacer, FakeSock, RtpStream, list[str]]:
    loop = FakeLoop()
    pacer = RtpPacer(loop, tick_s=TICK)  # type: ignore[arg-type]
    sock = FakeSock(loop)
    stream = RtpStream([bytes([i % 256]) * 160 for i in range(count)], 0, ssrc=1, seq0=0, ts0=0)
    return loop, pacer, sock, stream, []


def start(
    pacer: RtpPacer, stream: RtpStream, sock: FakeSock, outcomes: list[str], **kw: Any
) -> int:
    return pacer.start(
        stream,
        ("192.0.2.1", 4000),
        RtpSocket(None, 20000, sock),  # type: ignore[arg-type]
        on_done=outcomes.append,
        **kw,
    )


def test_thirty_second_recording_is_sent_exactly_on_schedule() -> None:
    loop, pacer, sock, stream, outcomes = setup(1500)
    sid = start(pacer, stream, sock, outcomes)
    sched = pacer.schedule_of(sid)
    assert sched is not None
    assert sched.last_due - sched.start == pytest.approx(29.98)
    assert sched.start - loop.t < 4 * TICK  # grid + phase balancing delay at most 15-20 ms
    loop.run_until(loop.t + 31.0, late=0.0007)  # every wake 0.7 ms late, like a real loop
    assert outcomes == ["completed"]
    assert len(sock.sent) == 1500
    for i, (t, data, addr) in enumerate(sock.sent):
        assert addr == ("192.0.2.1", 4000)
        assert parse_rtp_header(data).sequence == i
        assert abs(t - sched.due(i)) <= 0.001, i  # no drift after 30 s
    assert sock.closed and loop.readers == {}
    assert loop.pending() == 0  # idle pacer: no timer


def test_completion_waits_for_last_frame_to_play_out() -> None:
    loop, pacer, sock, stream, outcomes = setup(5)
    sid = start(pacer, stream, sock, outcomes)
    sched = pacer.schedule_of(sid)
    assert sched is not None
    loop.run_until(sched.last_due + 0.001)
    assert len(sock.sent) == 5 and outcomes == []
    loop.run_until(sched.end + 0.001)
    assert outcomes == ["completed"]


def test_late_wake_sends_every_due_packet_and_then_stays_on_schedule() -> None:
    loop, pacer, sock, stream, outcomes = setup(100)
    sid = start(pacer, stream, sock, outcomes)
    sched = pacer.schedule_of(sid)
    assert sched is not None
    loop.run_until(sched.start + 0.1)
    before = len(sock.sent)
    assert before == sched.due_count(loop.t)
    stall_end = sched.start + 0.337  # blocked for ~237 ms
    loop.stall_then_wake(stall_end)
    assert len(sock.sent) == sched.due_count(stall_end)  # all of them, in one wake
    assert len({t for t, _, _ in sock.sent[before:]}) == 1
    loop.run_until(loop.t + 3.0)
    assert outcomes == ["completed"]
    seqs = [parse_rtp_header(d).sequence for _, d, _ in sock.sent]
    assert seqs == list(range(100))  # nothing dropped, nothing repeated
    for i, (t, _, _) in enumerate(sock.sent):
        if sched.due(i) > stall_end + TICK:
            assert abs(t - sched.due(i)) <= TICK / 2 + 1e-9  # back on the original grid


def test_stop_is_immediate_and_reports_cancelled_once() -> None:
    loop, pacer, sock, stream, outcomes = setup(100)
    sid = start(pacer, stream, sock, outcomes)
    loop.run_until(loop.t + 0.5)
    n = len(sock.sent)
    assert 0 < n < 100
    assert pacer.stop(sid) is True
    assert outcomes == ["cancelled"]
    assert sock.closed and loop.readers == {}
    loop.run_until(loop.t + 5.0)
    assert len(sock.sent) == n
    assert pacer.stop(sid) is False
    assert outcomes == ["cancelled"]
    assert len(pacer) == 0 and loop.pending() == 0


def test_stop_from_on_done_of_another_stream_is_safe() -> None:
    loop, pacer, sock_a, short, outcomes = setup(3)
    sock_b, sock_c = FakeSock(loop), FakeSock(loop)
    other: list[str] = []
    sid_b = start(pacer, RtpStream([b"\x00" * 160] * 100, 0), sock_b, other)

    def on_a_done(outcome: str) -> None:
        outcomes.append(outcome)
        assert pacer.stop(sid_b) is True
        start(pacer, RtpStream([b"\x00" * 160] * 5, 0), sock_c, outcomes)  # and start anew

    pacer.start(
        short,
        ("192.0.2.1", 4000),
        RtpSocket(None, 1, sock_a),  # type: ignore[arg-type]
        on_done=on_a_done,
    )
    loop.run_until(loop.t + 1.0)
    assert other == ["cancelled"]
    assert outcomes == ["completed", "completed"]
    assert len(sock_c.sent) == 5 and len(pacer) == 0


def test_one_timer_whatever_the_callbacks_do() -> None:
    loop, pacer, sock, stream, outcomes = setup(3)
    restarted: list[str] = []

    def on_done(outcome: str) -> None:
        outcomes.append(outcome)
        start(pacer, RtpStream([b"\x00" * 160] * 50, 0), FakeSock(loop), restarted)

    pacer.start(
        stream,
        ("192.0.2.1", 4000),
        RtpSocket(None, 1, sock),  # type: ignore[arg-type]
        on_done=on_done,
    )
    for _ in range(40):
        loop.run_until(loop.t + 0.01)
        assert loop.pending() == 1
    assert outcomes == ["completed"]
    loop.run_until(loop.t + 2.0)
    assert restarted == ["completed"] and loop.pending() == 0


def test_symmetric_rtp_latches_once_to_the_offered_host_and_ignores_rtcp() -> None:
    loop, pacer, sock, stream, outcomes = setup(100)
    sid = start(pacer, stream, sock, outcomes)
    loop.run_until(loop.t + 0.1)
    rtcp = bytes([0x80, 200]) + b"\x00" * 26
    sock.deliver(rtcp, ("192.0.2.1", 5001))
    sock.deliver(b"\x00\x01\x00\x08" + b"\x00" * 16, ("192.0.2.1", 3478))  # STUN, not RTP
    assert pacer.destination_of(sid) == ("192.0.2.1", 4000)
    rtp = RtpStream([b"\xff" * 160], 0).packet(0)
    sock.deliver(rtp, ("192.0.2.1", 5000))  # the offered host, another port (NAT)
    assert pacer.destination_of(sid) == ("192.0.2.1", 5000)
    assert sock.fd not in loop.readers  # latched: no more reading, so never a second time
    n = len(sock.sent)
    loop.run_until(loop.t + 0.1)
    assert len(sock.sent) > n
    assert {a for _, _, a in sock.sent[n:]} == {("192.0.2.1", 5000)}


def test_rtp_from_another_address_cannot_take_the_stream_over() -> None:
    loop, pacer, sock, stream, outcomes = setup(100)
    sid = start(pacer, stream, sock, outcomes)
    loop.run_until(loop.t + 0.1)
    rtp = RtpStream([b"\xff" * 160], 0).packet(0)
    sock.deliver(rtp, ("10.0.0.9", 5000))  # any third party
    sock.deliver(rtp, ("192.0.2.1", 53))  # the offered host, but a well-known port
    assert pacer.destination_of(sid) == ("192.0.2.1", 4000)
    assert pacer.latch_refused == 2
    assert sock.fd in loop.readers  # the real peer may still latch
    n = len(sock.sent)
    loop.run_until(loop.t + 0.1)
    assert {a for _, _, a in sock.sent[n:]} == {("192.0.2.1", 4000)}


def test_no_latch_after_the_first_seconds() -> None:
    loop, pacer, sock, stream, outcomes = setup(200)  # 4 s
    sid = start(pacer, stream, sock, outcomes)
    loop.run_until(loop.t + 2.5)  # past the 2 s window
    sock.deliver(RtpStream([b"\xff" * 160], 0).packet(0), ("192.0.2.1", 5000))
    assert pacer.destination_of(sid) == ("192.0.2.1", 4000)
    assert sock.fd not in loop.readers


def test_ipv6_offer_on_ipv4_socket_uses_fallback_host() -> None:
    _, pacer, sock, stream, outcomes = setup(10)
    sid = pacer.start(
        stream,
        ("2001:db8::1", 7078),
        RtpSocket(None, 20000, sock),  # type: ignore[arg-type]
        on_done=outcomes.append,
        fallback_host="192.0.2.77",
    )
    assert pacer.destination_of(sid) == ("192.0.2.77", 7078)


def test_unreachable_offer_without_peer_fails_after_latch_timeout() -> None:
    loop = FakeLoop()
    pacer = RtpPacer(loop, tick_s=TICK, latch_timeout_s=0.5)  # type: ignore[arg-type]
    sock = FakeSock(loop)
    outcomes: list[str] = []
    stream = RtpStream([b"\x00" * 160] * 500, 0)
    pacer.start(
        stream,
        ("2001:db8::1", 7078),
        RtpSocket(None, 20000, sock),  # type: ignore[arg-type]
        on_done=outcomes.append,
    )
    loop.run_until(loop.t + 0.4)
    assert outcomes == [] and sock.sent == []
    loop.run_until(loop.t + 0.2)
    assert outcomes == ["failed"]


def test_unreachable_offer_plays_to_the_invites_source_which_may_latch() -> None:
    loop, pacer, sock, stream, outcomes = setup(50)
    sid = pacer.start(
        stream,
        ("2001:db8::1", 7078),
        RtpSocket(None, 20000, sock),  # type: ignore[arg-type]
        on_done=outcomes.append,
        fallback_host="127.0.0.5",  # the INVITE's source: of the socket's family, may latch
    )
    loop.run_until(loop.t + 0.3)
    assert {a for _, _, a in sock.sent} == {("127.0.0.5", 7078)}
    sock.deliver(RtpStream([b"\xff" * 160], 0).packet(0), ("127.0.0.6", 7078))  # not allowed
    sock.deliver(RtpStream([b"\xff" * 160], 0).packet(0), ("127.0.0.5", 7090))
    assert pacer.destination_of(sid) == ("127.0.0.5", 7090)
    loop.run_until(loop.t + 1.0)
    assert outcomes == ["completed"]
    assert [parse_rtp_header(p).sequence for _, p, _ in sock.sent] == list(range(50))


def test_hard_send_error_fails_stream() -> None:
    loop, pacer, sock, stream, outcomes = setup(50)
    start(pacer, stream, sock, outcomes)
    loop.run_until(loop.t + 0.1)
    sock.error = OSError(101, "Network is unreachable")
    loop.run_until(loop.t + 0.1)
    assert outcomes == ["failed"] and sock.closed


def test_full_send_buffer_drops_the_packet_and_goes_on() -> None:
    loop, pacer, sock, stream, outcomes = setup(20)
    start(pacer, stream, sock, outcomes)
    loop.run_until(loop.t + 0.1)
    sock.error = BlockingIOError()
    loop.run_until(loop.t + 0.04)
    sock.error = None
    loop.run_until(loop.t + 1.0)
    assert outcomes == ["completed"]
    assert pacer.packets_dropped >= 1
    assert len(sock.sent) + pacer.packets_dropped == 20


def test_simultaneous_starts_are_spread_over_phases() -> None:
    loop = FakeLoop()
    pacer = RtpPacer(loop, tick_s=TICK)  # type: ignore[arg-type]
    starts = []
    for _ in range(8):
        sid = pacer.start(
            RtpStream([b"\x00" * 160] * 10, 0),
            ("192.0.2.1", 4000),
            RtpSocket(None, 0, FakeSock(loop)),  # type: ignore[arg-type]
            on_done=lambda _o: None,
        )
        sched = pacer.schedule_of(sid)
        assert sched is not None
        starts.append(round((sched.start - loop.t) / TICK))
    assert sorted(starts) == [1, 1, 2, 2, 3, 3, 4, 4]


def test_tick_must_divide_packet_interval() -> None:
    with pytest.raises(ValueError):
        RtpPacer(FakeLoop(), tick_s=0.003)  # type: ignore[arg-type]
