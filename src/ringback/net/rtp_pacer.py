"""The asyncio shell that puts RTP on the wire: one pacer for every stream in flight.

Timing model. The pacer owns a grid of ticks ``epoch + k * tick_s`` (5 ms by default; a
packet interval of 20 ms is 4 ticks) and wakes once per tick with ``loop.call_at`` —
one timer for the whole process, no task or timer per stream or per packet. Every stream
starts on a grid tick, so packet ``i`` of a stream is due at grid tick
``start_k + 4 * i``: integer arithmetic, computed from the start, so there is no drift.
A wake handles every grid tick up to the nearest one (``round``), which tolerates the
millisecond granularity of uvloop/epoll timers (a packet may leave up to half a tick
early), and a late wake sends every packet that has fallen due (catch-up: nothing is
dropped or shifted). New streams are put on the least-loaded of the next four phases
(delaying a start by at most 15 ms), so a burst of calls does not make one heavy tick.

Symmetric RTP. Each stream reads its socket until the first RTP packet (not RTCP, not
STUN) arrives and then sends to that packet's source instead of the offered address
(softphones behind NAT; linphone offering an unreachable IPv6 address). The stream latches
once: later packets from other sources are ignored, so a third party cannot redirect a
stream that already has a peer (RTP bleed). If the offered address cannot be reached from
the socket's address family and no fallback host is known, the stream runs silently on
schedule and ends ``"failed"`` if nothing latched within ``latch_timeout_s``.

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
import math
import socket
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Literal

from ringback.media.rtp import PTIME_S, RtpStream, StreamSchedule, is_rtcp

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
    never given to another stream. Released ports go to the back of the queue, which
    delays their reuse as long as possible (late packets of an old call do not reach a
    new one). A port another process holds is skipped.
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
        self._free: deque[int] = deque(range(first, port_max + 1, 2))
        self._in_use: set[int] = set()

    @property
    def available(self) -> int:
        return len(self._free)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def allocate(self) -> RtpSocket:
        """A new socket bound to the next free even port; :class:`PortsExhausted` if none."""
        for _ in range(len(self._free)):
            port = self._free.popleft()
            sock = socket.socket(self.family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                self._set_dscp(sock)
                sock.bind((self.local_ip, port))
            except OSError as exc:
                sock.close()
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    self._free.append(port)
                    continue
                self._free.appendleft(port)
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


class _Playing:
    """Per-stream state, read by the hot loop (slots: attribute access is a fixed offset)."""

    __slots__ = (
        "count",
        "dest",
        "i",
        "id",
        "latch_deadline_k",
        "latched",
        "next_k",
        "on_done",
        "outcome",
        "phase",
        "reading",
        "render",
        "rtp",
        "schedule",
        "sendto",
    )

    id: int
    count: int
    dest: Address | None
    latch_deadline_k: int
    next_k: int
    on_done: Callable[[Outcome], None]
    phase: int
    render: Callable[[int], bytearray]
    rtp: RtpSocket
    schedule: StreamSchedule
    sendto: Callable[[bytearray, Address], int]

    def __init__(self) -> None:
        self.i = 0
        self.latched = False
        self.reading = False
        self.outcome: Outcome | None = None


class RtpPacer:
    """Paces every RTP stream of the process from one timer on ``loop``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        tick_s: float = 0.005,
        latch_timeout_s: float = 2.0,
    ) -> None:
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        ticks = PTIME_S / tick_s
        if tick_s <= 0 or abs(ticks - round(ticks)) > 1e-9:
            raise ValueError(f"tick_s must divide {PTIME_S} s, got {tick_s}")
        self.tick_s = tick_s
        self._tpp = round(ticks)  # ticks per packet
        self._latch_ticks = math.ceil(latch_timeout_s / tick_s)
        self._epoch = self._loop.time()
        self._last_k = 0  # the last grid tick handled
        self._buckets: list[list[_Playing]] = [[] for _ in range(self._tpp)]
        self._streams: dict[int, _Playing] = {}
        self._next_id = 1
        self._timer: asyncio.TimerHandle | None = None
        # Counters for /metrics.
        self.packets_sent = 0
        self.packets_dropped = 0  # socket buffer full
        self.max_catch_up = 0  # most grid ticks handled by one wake (1 = on time)
        self.wakes = 0
        self.late_wakes = 0  # wakes more than half a tick after their grid time
        self.max_lateness_s = 0.0  # the latest wake seen, after its grid time
        self._when = 0.0  # grid time of the pending wake

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
    ) -> int:
        """Play ``stream`` to ``dest`` from ``rtp``; returns the stream id for :meth:`stop`.

        The pacer owns ``rtp`` from now on and closes it when the stream ends. ``start_at``
        (loop time, default now) is rounded up to a grid tick, plus up to 3 ticks for
        phase balancing. If ``dest`` is of the other IP family than ``rtp`` (an IPv6 offer
        on an IPv4 socket), ``(fallback_host, dest port)`` is used instead — pass the
        source address of the INVITE.
        """
        st = _Playing()
        st.id = self._next_id
        self._next_id += 1
        st.render = stream.render
        st.count = stream.count
        st.rtp = rtp
        st.sendto = rtp.sock.sendto
        st.on_done = on_done
        host, port = dest[0], dest[1]
        if _reachable(host, rtp.family):
            st.dest = (host, port)
        elif fallback_host is not None and _reachable(fallback_host, rtp.family):
            st.dest = (fallback_host, port)
        else:
            st.dest = None

        now = self._loop.time()
        if self._timer is None:  # idle: move the grid's "handled" mark up to now
            self._last_k = max(self._last_k, self._k_at(now))
        when = now if start_at is None else max(start_at, now)
        k0 = max(self._last_k + 1, math.ceil((when - self._epoch) / self.tick_s - 1e-9))
        start_k = min(range(k0, k0 + self._tpp), key=lambda k: len(self._buckets[k % self._tpp]))
        st.next_k = start_k
        st.phase = start_k % self._tpp
        st.latch_deadline_k = start_k + self._latch_ticks
        st.schedule = StreamSchedule(self._epoch + start_k * self.tick_s, stream.count)

        self._buckets[st.phase].append(st)
        self._streams[st.id] = st
        if symmetric:
            self._loop.add_reader(rtp.sock.fileno(), self._on_readable, st)
            st.reading = True
        if self._timer is None:
            self._schedule()
        return st.id

    def stop(self, stream_id: int) -> bool:
        """Stop a stream now: no packet leaves after this returns. ``on_done("cancelled")``
        is called before it returns. False if the stream is unknown or already over."""
        st = self._streams.pop(stream_id, None)
        if st is None:
            return False
        self._buckets[st.phase].remove(st)
        self._finish(st, "cancelled")
        if not self._streams:
            self._idle()
        return True

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

    def _k_at(self, t: float) -> int:
        """The grid tick nearest to loop time ``t``."""
        return math.floor((t - self._epoch) / self.tick_s + 0.5)

    def _schedule(self) -> None:
        self._when = when = self._epoch + (self._last_k + 1) * self.tick_s
        self._timer = self._loop.call_at(when, self._tick)

    def _idle(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        now = self._loop.time()
        k_now = self._k_at(now)
        lateness = now - self._when
        self.wakes += 1
        if lateness > self.max_lateness_s:
            self.max_lateness_s = lateness
        if lateness > self.tick_s / 2:
            self.late_wakes += 1
        last = self._last_k
        if k_now > last:
            self._last_k = k_now
            tpp = self._tpp
            if k_now - last >= tpp:
                buckets = self._buckets
            else:
                buckets = [self._buckets[k % tpp] for k in range(last + 1, k_now + 1)]
            if k_now - last > self.max_catch_up:
                self.max_catch_up = k_now - last
            done = self._send_due(buckets, k_now)
            if done:
                self._reap(done)
        if self._streams and self._timer is None:  # start() from on_done may have set it
            self._schedule()

    def _send_due(self, buckets: list[list[_Playing]], k_now: int) -> list[_Playing]:
        """Send every packet due by grid tick ``k_now``: the hot loop."""
        tpp = self._tpp
        done: list[_Playing] = []
        sent_total = 0
        dropped = 0
        for bucket in buckets:
            for st in bucket:
                k = st.next_k
                if k > k_now:
                    continue
                i = st.i
                count = st.count
                dest = st.dest
                render = st.render
                sendto = st.sendto
                while k <= k_now:
                    if i >= count:  # the last frame has played out
                        st.outcome = "completed"
                        done.append(st)
                        break
                    if dest is not None:
                        try:
                            sendto(render(i), dest)
                            sent_total += 1
                        except (BlockingIOError, InterruptedError):
                            dropped += 1
                        except OSError as exc:
                            log.warning("RTP stream %d to %s failed: %s", st.id, dest, exc)
                            st.outcome = "failed"
                            done.append(st)
                            break
                    elif k >= st.latch_deadline_k:
                        log.info("RTP stream %d: no reachable peer, nothing latched", st.id)
                        st.outcome = "failed"
                        done.append(st)
                        break
                    i += 1
                    k += tpp
                st.i = i
                st.next_k = k
        self.packets_sent += sent_total
        self.packets_dropped += dropped
        return done

    def _reap(self, done: list[_Playing]) -> None:
        for phase in {st.phase for st in done}:
            self._buckets[phase] = [s for s in self._buckets[phase] if s.outcome is None]
        for st in done:
            del self._streams[st.id]
        for st in done:
            assert st.outcome is not None
            self._finish(st, st.outcome)

    def _finish(self, st: _Playing, outcome: Outcome) -> None:
        st.outcome = outcome
        if st.reading:
            st.reading = False
            self._loop.remove_reader(st.rtp.sock.fileno())
        st.rtp.close()
        try:
            st.on_done(outcome)
        except Exception:
            log.exception("on_done callback of RTP stream %d raised", st.id)

    # --- symmetric RTP ------------------------------------------------------------------

    def _on_readable(self, st: _Playing) -> None:
        sock = st.rtp.sock
        for _ in range(_READS_PER_WAKE):
            try:
                data, addr = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. an ICMP error queued on the socket
                continue
            if len(data) >= 12 and data[0] >> 6 == 2 and not is_rtcp(data):
                if addr != st.dest:
                    log.debug("RTP stream %d: latched to %s (was %s)", st.id, addr, st.dest)
                st.dest = addr
                st.latched = True
                st.reading = False
                self._loop.remove_reader(sock.fileno())
                return
