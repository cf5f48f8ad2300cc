"""The asyncio shell that puts RTP on the wire: one pacer for every stream in flight.

Timing: :class:`~ringback.media.pacing.PacerSchedule` (pure) says which packets are due;
this shell wakes once per grid tick with ``loop.call_at`` at the schedule's next deadline —
one timer for the whole process, no task or timer per stream or per packet — and sends
them.

Symmetric RTP. Each stream reads its socket during its first ``latch_timeout_s`` for an
RTP packet (not RTCP, not STUN) from one of its latch hosts — the offer's address or the
INVITE's source address, already checked against the destination policy by the call core
— and then sends to that packet's source port instead (softphones behind NAT; linphone
offering an unreachable IPv6 address). It latches once: packets from any other address,
from a port below 1024, after the first one or after the window are ignored, so a third
party can neither take a stream over nor aim it elsewhere. If no offered address can be
reached from the socket's address family, the stream runs silently on schedule and ends
``"failed"`` if nothing latched within ``latch_timeout_s``.

Outcomes passed to ``on_done``: ``"completed"`` (the last frame has been played out, i.e.
at ``start + count * 20 ms``), ``"cancelled"`` (:meth:`RtpPacer.stop`, called synchronously
before it returns), ``"failed"`` (a send error other than a full buffer, or no peer).

Use from the call controller::

    rtp = pool.allocate()                       # PortsExhausted -> fail open
    result = negotiate(offer, local_ip=pool.local_ip, local_port=rtp.port, session_id=sid)
    if isinstance(result, NoAnswer):
        rtp.close()                             # ... and 302 at once
    else:                                       # send the 183 with result.sdp, then:
        stream = RtpStream(prepared.frames(result.codec), result.payload_type)
        stream_id = pacer.start(stream, result.remote_addr, rtp, on_done=on_done,
                                fallback_host=invite_source_ip)
    ...
    pacer.stop(stream_id)                       # on CANCEL: on_done("cancelled") at once
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import secrets
import socket
from collections.abc import Callable
from typing import Any, Final, Literal, cast

from ringback.media.pacing import PacerSchedule, Slot
from ringback.media.rtp import RtpStream, StreamSchedule, is_rtcp

__all__ = [
    "Outcome",
    "PortsExhausted",
    "RtpPacer",
    "RtpPortPool",
    "RtpSocket",
]

log = logging.getLogger(__name__)

Outcome = Literal["completed", "cancelled", "failed"]
Address = tuple[Any, ...]  # (host, port) or (host, port, flowinfo, scope_id)
_DSCP_EF: Final = 46
_READS_PER_WAKE: Final = 16


class PortsExhausted(RuntimeError):
    """Every RTP port of the pool is in use (fail open: redirect without a warning)."""


class RtpSocket:
    """A bound, non-blocking UDP socket leased from an :class:`RtpPortPool`."""

    __slots__ = ("_pool", "closed", "port", "sock")

    def __init__(self, pool: RtpPortPool | None, port: int, sock: socket.socket) -> None:
        self._pool = pool
        self.port = port
        self.sock = sock
        self.closed = False

    @property
    def family(self) -> int:
        return int(self.sock.family)

    def close(self) -> None:
        """Close the socket and give its port back (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.sock.close()
        if self._pool is not None:
            self._pool._release(self.port)


class RtpPortPool:
    """Even UDP ports in ``[port_min, port_max]`` on ``local_ip``, one per stream.

    Only even ports are handed out, so the odd port above each (RTCP by convention) is
    never given to another stream. Each is drawn at random from the free ones, so an
    attacker cannot guess the next call's port. A port another process holds is skipped.
    """

    def __init__(
        self,
        local_ip: str,
        port_min: int = 20000,
        port_max: int = 29999,
        *,
        dscp: int | None = _DSCP_EF,
    ) -> None:
        if not 0 < port_min <= port_max <= 65535:
            raise ValueError(f"bad RTP port range {port_min}-{port_max}")
        ip = ipaddress.ip_address(local_ip)
        self.local_ip = local_ip
        self.family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        self._dscp = dscp
        first = port_min + (port_min & 1)
        self._free: list[int] = list(range(first, port_max + 1, 2))
        self._in_use: set[int] = set()

    @property
    def available(self) -> int:
        return len(self._free)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def allocate(self) -> RtpSocket:
        """A new socket bound to a free even port chosen at random (a port cannot be
        guessed from the last call's); :class:`PortsExhausted` if none."""
        free = self._free
        for _ in range(len(free)):
            i = secrets.randbelow(len(free))
            port = free[i]
            free[i] = free[-1]
            free.pop()
            sock = socket.socket(self.family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                self._set_dscp(sock)
                sock.bind((self.local_ip, port))
            except OSError as exc:
                sock.close()
                free.append(port)
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            self._in_use.add(port)
            return RtpSocket(self, port, sock)
        raise PortsExhausted(f"no free RTP port on {self.local_ip}")

    def _set_dscp(self, sock: socket.socket) -> None:
        if self._dscp is None:
            return
        try:
            if self.family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, self._dscp << 2)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, self._dscp << 2)
        except OSError:  # not fatal: some sandboxes refuse it
            pass

    def _release(self, port: int) -> None:
        if port in self._in_use:
            self._in_use.discard(port)
            self._free.append(port)


def _reachable(host: str, family: int) -> bool:
    """Can a socket of ``family`` send to the IP literal ``host``?"""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return (ip.version == 4) == (family == socket.AF_INET)


class _Playing(Slot):
    """A stream on the grid plus what the shell needs to send it."""

    __slots__ = (
        "dest",
        "latch_hosts",
        "on_done",
        "on_latch",
        "outcome",
        "owns_socket",
        "reading",
        "render",
        "rtp",
        "sendto",
    )

    dest: Address | None
    latch_hosts: frozenset[str]
    on_done: Callable[[Outcome], None]
    on_latch: Callable[[Address], None] | None
    render: Callable[[int], bytes | bytearray]
    rtp: RtpSocket
    sendto: Callable[[bytes | bytearray, Address], int]

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.reading = False
        self.owns_socket = True
        self.outcome: Outcome | None = None


class RtpPacer:
    """Sends every RTP stream of the process, woken by one timer on ``loop`` at the
    :class:`~ringback.media.pacing.PacerSchedule`'s next deadline."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        tick_s: float = 0.005,
        latch_timeout_s: float = 2.0,
    ) -> None:
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self.grid = PacerSchedule(self._loop.time(), tick_s=tick_s, latch_timeout_s=latch_timeout_s)
        self.tick_s = tick_s
        self._streams: dict[int, _Playing] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._when = 0.0  # grid time of the pending wake
        # Counters for /metrics (the timing counters live on the grid).
        self.packets_sent = 0
        self.packets_dropped = 0  # socket buffer full
        self.latch_refused = 0  # RTP from an address a stream may not latch to

    @property
    def late_wakes(self) -> int:
        return self.grid.late_wakes

    @property
    def max_catch_up(self) -> int:
        return self.grid.max_catch_up

    @property
    def max_lateness_s(self) -> float:
        return self.grid.max_lateness_s

    @property
    def wakes(self) -> int:
        return self.grid.wakes

    # --- public API ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._streams)

    def start(
        self,
        stream: RtpStream,
        dest: tuple[str, int],
        rtp: RtpSocket,
        *,
        on_done: Callable[[Outcome], None],
        start_at: float | None = None,
        symmetric: bool = True,
        fallback_host: str | None = None,
        on_latch: Callable[[Address], None] | None = None,
        owns_socket: bool = True,
    ) -> int:
        """Play ``stream`` to ``dest`` from ``rtp``; returns the stream id for :meth:`stop`.

        The pacer owns ``rtp`` from now on and closes it when the stream ends (unless
        ``owns_socket`` is False: a relay lends it for the warning). ``start_at``
        (loop time, default now) is rounded up to a grid tick, plus up to 3 ticks for
        phase balancing. If ``dest`` is of the other IP family than ``rtp`` (an IPv6 offer
        on an IPv4 socket), ``(fallback_host, dest port)`` is used instead — pass the
        source address of the INVITE.
        """
        st = _Playing(stream.count)
        st.render = stream.render
        st.rtp = rtp
        st.sendto = rtp.sock.sendto
        st.on_done = on_done
        st.on_latch = on_latch
        st.owns_socket = owns_socket
        host, port = dest[0], dest[1]
        st.latch_hosts = frozenset(h for h in (host, fallback_host) if h is not None)
        if _reachable(host, rtp.family):
            st.dest = (host, port)
        elif fallback_host is not None and _reachable(fallback_host, rtp.family):
            st.dest = (fallback_host, port)
        else:
            st.dest = None
        stream_id = self.grid.add(st, self._loop.time(), start_at)
        self._streams[stream_id] = st
        if symmetric:
            self._loop.add_reader(rtp.sock.fileno(), self._on_readable, st)
            st.reading = True
        if self._timer is None:
            self._schedule()
        return stream_id

    def stop(self, stream_id: int) -> bool:
        """Stop a stream now: no packet leaves after this returns. ``on_done("cancelled")``
        is called before it returns. False if the stream is unknown or already over."""
        st = self._streams.pop(stream_id, None)
        if st is None:
            return False
        self.grid.remove(st)
        self._finish(st, "cancelled")
        if not self._streams:
            self._idle()
        return True

    def shorten(self, stream_id: int, count: int) -> int | None:
        """End a stream after packet ``count - 1`` (or the next one due, if that has
        passed); returns the new length, None if the stream is over."""
        st = self._streams.get(stream_id)
        if st is None:
            return None
        st.count = max(min(count, st.count), st.i)
        st.schedule = StreamSchedule(st.schedule.start, st.count)
        return st.count

    def schedule_of(self, stream_id: int) -> StreamSchedule | None:
        """When the stream's packets are due (loop time), while it plays."""
        st = self._streams.get(stream_id)
        return None if st is None else st.schedule

    def destination_of(self, stream_id: int) -> Address | None:
        st = self._streams.get(stream_id)
        return None if st is None else st.dest

    def close(self) -> None:
        """Cancel every stream (shutdown)."""
        for stream_id in list(self._streams):
            self.stop(stream_id)
        self._idle()

    # --- timing -------------------------------------------------------------------------

    def _schedule(self) -> None:
        when = self.grid.next_deadline()
        if when is not None:
            self._when = when
            self._timer = self._loop.call_at(when, self._tick)

    def _idle(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        now = self._loop.time()
        due = self.grid.advance(now, self._when)
        if due:
            self._send_due(due, now)
        if self._streams and self._timer is None:  # start() from on_done may have set it
            self._schedule()

    def _send_due(self, due: list[Slot], now: float) -> None:
        """Send every packet the grid says is due: the hot loop."""
        done: list[_Playing] = []
        sent_total = 0
        dropped = 0
        for slot in due:
            st = cast(_Playing, slot)
            dest = st.dest
            if dest is None:
                if now >= st.latch_deadline:
                    log.info("RTP stream %d: no reachable peer, nothing latched", st.id)
                    st.outcome = "failed"
                    done.append(st)
                elif st.completed:  # over, and not one packet could be sent
                    st.outcome = "failed"
                    done.append(st)
                continue
            render = st.render
            sendto = st.sendto
            try:
                for i in range(st.send_from, st.i):
                    try:
                        sendto(render(i), dest)
                        sent_total += 1
                    except (BlockingIOError, InterruptedError):
                        dropped += 1
            except OSError as exc:
                log.warning("RTP stream %d to %s failed: %s", st.id, dest, exc)
                st.outcome = "failed"
                done.append(st)
                continue
            if st.completed:
                st.outcome = "completed"
                done.append(st)
        self.packets_sent += sent_total
        self.packets_dropped += dropped
        for st in done:
            if not st.completed:
                self.grid.remove(st)
            del self._streams[st.id]
        for st in done:
            assert st.outcome is not None
            self._finish(st, st.outcome)

    def _finish(self, st: _Playing, outcome: Outcome) -> None:
        st.outcome = outcome
        self._stop_reading(st)
        if st.owns_socket:
            st.rtp.close()
        try:
            st.on_done(outcome)
        except Exception:
            log.exception("on_done callback of RTP stream %d raised", st.id)

    # --- symmetric RTP ------------------------------------------------------------------

    def _on_readable(self, st: _Playing) -> None:
        sock = st.rtp.sock
        if self._loop.time() > st.latch_deadline:  # the window is over: stop listening
            self._stop_reading(st)
            return
        for _ in range(_READS_PER_WAKE):
            try:
                data, addr = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. an ICMP error queued on the socket
                continue
            if len(data) < 12 or data[0] >> 6 != 2 or is_rtcp(data):
                continue
            if addr[0] not in st.latch_hosts or addr[1] < 1024:
                self.latch_refused += 1  # counted, not logged: a flood must not fill logs
                continue
            source = (addr[0], addr[1])
            if source != st.dest:
                log.debug("RTP stream %d: latched to %s (was %s)", st.id, source, st.dest)
            st.dest = source
            self._stop_reading(st)
            if st.on_latch is not None:
                st.on_latch(source)
            return

    def _stop_reading(self, st: _Playing) -> None:
        if st.reading:
            st.reading = False
            self._loop.remove_reader(st.rtp.sock.fileno())
