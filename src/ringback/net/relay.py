"""The built-in media relay of ringback mode: a port facing each leg, RTP copied across.

One :class:`MediaRelay` serves every bridged call of the process. Each call has two UDP
sockets from the RTP port pools: the caller side (which also carries the warning, played by
the pacer until the callee answers) and the callee side. After :meth:`MediaRelay.bridge`
both are read with ``loop.add_reader`` (no task or protocol object per call) and every
packet is sent on from the other socket, unchanged: both legs agreed on one codec, so
nothing is transcoded, and RFC 4733 telephone-events and RTCP-mux pass as they are.

Symmetric latching, as for warnings: each side may latch once, within ``latch_timeout_s``
of the bridge, to the source of an RTP packet from one of its latch hosts (the address its
SDP gave, or its signalling address) at a port of 1024 or more. Before that, packets go to
the SDP's address. Packets from any other source are dropped and counted, so a third party
can neither inject audio into a call nor turn the relay against someone else.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from ringback.media.rtp import is_rtcp
from ringback.net.rtp_pacer import PortsExhausted, RtpPortPool, RtpSocket

__all__ = ["MediaRelay", "PortsExhausted"]

log = logging.getLogger(__name__)

Address = tuple[str, int]


@dataclass(slots=True)
class _Side:
    rtp: RtpSocket
    dest: Address | None = None  # where this side's peer receives
    latch_hosts: frozenset[str] = frozenset()
    latched: bool = False
    packets_in: int = 0
    dropped: int = 0


@dataclass(slots=True)
class _Session:
    caller: _Side
    callee: _Side
    latch_deadline: float = 0.0
    bridged: bool = False
    readers: list[int] = field(default_factory=list)


class MediaRelay:
    def __init__(
        self,
        pools: dict[int, RtpPortPool],
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        latch_timeout_s: float = 2.0,
    ) -> None:
        self.pools = pools  # by IP version
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self.latch_timeout_s = latch_timeout_s
        self.sessions: dict[object, _Session] = {}
        self.packets_relayed = 0
        self.packets_refused = 0  # from a source the side may not take packets from

    def __len__(self) -> int:
        return len(self.sessions)

    def _pool(self, family: int) -> RtpPortPool:
        return self.pools.get(family) or next(iter(self.pools.values()))

    def open(self, key: object, caller_family: int, callee_family: int) -> tuple[Address, Address]:
        """Two sockets for ``key``; their local addresses (caller side, callee side).
        Raises :class:`PortsExhausted` when a pool is empty."""
        caller_pool, callee_pool = self._pool(caller_family), self._pool(callee_family)
        caller = caller_pool.allocate()
        try:
            callee = callee_pool.allocate()
        except BaseException:
            caller.close()
            raise
        self.sessions[key] = _Session(_Side(caller), _Side(callee))
        return (caller_pool.local_ip, caller.port), (callee_pool.local_ip, callee.port)

    def caller_socket(self, key: object) -> RtpSocket | None:
        session = self.sessions.get(key)
        return None if session is None else session.caller.rtp

    def warning_destinations(
        self, key: object, destinations: tuple[Address, ...]
    ) -> tuple[Address, ...]:
        """Where a ringback-mode warning goes: straight to the caller."""
        return destinations

    def bridge(
        self,
        key: object,
        caller: tuple[Address, ...],
        caller_latched: Address | None,
        callee: tuple[Address, ...],
    ) -> bool:
        """Start relaying. ``caller``/``callee``: allowed destinations, the SDP's first;
        ``caller_latched``: where the warning already latched, if it did."""
        session = self.sessions.get(key)
        if session is None or session.bridged:
            return False
        session.bridged = True
        session.latch_deadline = self._loop.time() + self.latch_timeout_s
        for side, allowed in ((session.caller, caller), (session.callee, callee)):
            side.dest = allowed[0] if allowed else None
            side.latch_hosts = frozenset(a[0] for a in allowed)
        if caller_latched is not None:
            session.caller.dest, session.caller.latched = caller_latched, True
        for side, other in ((session.caller, session.callee), (session.callee, session.caller)):
            fd = side.rtp.sock.fileno()
            self._loop.add_reader(fd, self._readable, session, side, other)
            session.readers.append(fd)
        return True

    def move(self, key: object, side: str, dest: Address | None) -> None:
        """A re-INVITE moved one side's media (None: on hold)."""
        session = self.sessions.get(key)
        if session is None:
            return
        target = session.caller if side == "caller" else session.callee
        target.dest = dest
        if dest is not None:
            target.latch_hosts = target.latch_hosts | {dest[0]}
            target.latched = False
            session.latch_deadline = self._loop.time() + self.latch_timeout_s

    def close(self, key: object) -> tuple[int, int] | None:
        """Close both sockets; packets relayed (from the caller, from the callee)."""
        session = self.sessions.pop(key, None)
        if session is None:
            return None
        for fd in session.readers:
            self._loop.remove_reader(fd)
        session.caller.rtp.close()
        session.callee.rtp.close()
        return session.caller.packets_in, session.callee.packets_in

    def close_all(self) -> None:
        for key in list(self.sessions):
            self.close(key)

    def _readable(self, session: _Session, side: _Side, other: _Side) -> None:
        """One packet from ``side``'s peer, sent on to ``other``'s.

        One per wake: each socket carries 50 packets/s, so a wake almost always finds one,
        and reading on until the socket is empty would cost a failed ``recvfrom`` (a
        syscall and an exception) per packet. A socket with more waiting stays readable
        and is served again on the next turn of the loop, after the other sockets'."""
        try:
            data, addr = side.rtp.sock.recvfrom(2048)
        except OSError:  # nothing after all, or an ICMP error queued on the socket
            return
        # from where this side sends (what _may_take would say, without its call)
        trusted = addr == side.dest and (side.latched or (len(data) >= 12 and data[0] >> 6 == 2))
        if not trusted and not self._may_take(session, side, (addr[0], addr[1]), data):
            side.dropped += 1
            self.packets_refused += 1
            return
        side.packets_in += 1
        dest = other.dest
        if dest is None:
            return  # the other side is on hold
        try:
            other.rtp.sock.sendto(data, dest)
        except (BlockingIOError, InterruptedError):
            other.dropped += 1
            return
        except OSError as exc:
            log.debug("relay send to %s failed: %s", dest, exc)
            return
        self.packets_relayed += 1

    def _may_take(self, session: _Session, side: _Side, source: Address, data: bytes) -> bool:
        if side.latched:
            return source == side.dest
        if len(data) < 12 or data[0] >> 6 != 2:
            return False
        if source == side.dest:
            return True
        if (
            source[0] in side.latch_hosts
            and source[1] >= 1024
            and not is_rtcp(data)
            and self._loop.time() <= session.latch_deadline
        ):
            side.dest, side.latched = source, True
            return True
        return False
