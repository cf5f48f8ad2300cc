"""asyncio shells around the sans-I/O `CallController`: SIP over UDP and TCP on one port,
and over TLS (RFC 3261 §26) on a second port when a certificate is configured.

Everything protocol-shaped happens in the controller; this module only moves bytes,
checks the source against `sip.trusted_sources`, frames TCP and TLS streams (the same
Content-Length framing: TLS is TCP with a handshake in front), hands the
controller's media effects to :class:`~ringback.net.call_media.CallMedia`, and
keeps one timer armed at the controller's next deadline (no timer object per
transaction), plus a once-a-second housekeeping timer (clock offset, idle TCP).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import math
import os
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterable
from typing import cast

from ringback.calls import CallController, SipMetrics
from ringback.calls.effects import Address
from ringback.net.call_media import CallMedia
from ringback.net.reuseport import attach_uri_hash, reuseport_udp_socket
from ringback.sip.errors import SipParseError
from ringback.sip.message import split_stream
from ringback.sip.transaction import TxKey

RecvBatch = Callable[[int, int, bool], list[tuple[bytes, str, int, float]]]
SendBatch = Callable[[int, int, list[tuple[bytes, Address]]], list[tuple[int, int]] | None]
RECV_BATCH: RecvBatch | None
SEND_BATCH: SendBatch | None
try:  # recvmmsg/sendmmsg (src/ringback/_udpio.c): one system call per batch
    from ringback._udpio import recv_batch as RECV_BATCH
    from ringback._udpio import send_batch as SEND_BATCH
except ImportError:  # pragma: no cover - built by `pip install`; socket's methods then
    RECV_BATCH = SEND_BATCH = None

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 1.0
TIMER_RESOLUTION_S = 0.01  # RFC 3261 timers are 500 ms and up: 10 ms is plenty
TLS_HANDSHAKE_S = 10.0  # a peer that does not finish its handshake in this time is dropped
# UDP: datagrams read per wake-up of the socket before the loop gets a turn (timers, TCP,
# HTTP, the RTP pacer): the read-side budget that keeps the rest of the node responsive
# under a flood, while amortising one wake-up over many datagrams.
UDP_READ_BUDGET = 16
# Kernel receive timestamps (Linux SO_TIMESTAMPNS, a struct timespec of two longs): how
# long each datagram waited in the socket queue (`sip.max_receive_age_ms`).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")
_unpack_timespec = _TIMESPEC.unpack_from
_ANC_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)
_CACHE_LIMIT = 65536


class TrustedSources:
    """Source-address filter with a per-address cache (the hot path does one dict get)."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(c, strict=False) for c in cidrs]
        self._cache: dict[str, bool] = {}

    def __call__(self, host: str) -> bool:
        known = self._cache.get(host)
        if known is not None:
            return known
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        allowed = any(address in network for network in self.networks)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[host] = allowed
        return allowed


class SipEndpoint:
    """Owns the sockets of one node's SIP service and pumps the controller."""

    def __init__(
        self,
        controller: CallController,
        metrics: SipMetrics,
        trusted: TrustedSources,
        *,
        player: CallMedia | None = None,
        tcp_idle_s: float = 120.0,
        max_message_bytes: int = 65535,
        tls: ssl.SSLContext | None = None,
        max_receive_age_s: float = 0.0,
        reuse_port_workers: int = 0,
    ) -> None:
        self.controller = controller
        self.tls = tls
        # Overload shedding: an INVITE that waited longer than this in the UDP socket's
        # queue is dropped unread (0: never); the switch has routed it on already.
        self.max_receive_age_s = max_receive_age_s
        # >0: one of that many workers sharing the port (SO_REUSEPORT, net/reuseport.py)
        self.reuse_port_workers = reuse_port_workers
        self.private_port = 0  # a worker's own port, in its Contact (in-dialog requests)
        self.player = player
        self._pumping = False  # carrying out the controller's effects (see _after_report)
        self.metrics = metrics
        self.trusted = trusted
        self.tcp_idle_s = tcp_idle_s
        self.max_message_bytes = max_message_bytes
        self.udp: list[_UdpSocket] = []
        self._udp_v4: _UdpSocket | None = None  # replies go out of these
        self._udp_v6: _UdpSocket | None = None
        self.tcp_servers: list[asyncio.Server] = []
        # Stream connections by transport ("tcp", "tls"), then by peer: a response goes
        # back on the connection its request came in on (RFC 3261 §18.2.2).
        self.tcp_connections: dict[Address, _TcpConnection] = {}
        self.tls_connections: dict[Address, _TcpConnection] = {}
        self.port = 0
        self.tls_port = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # the deadline `_timer` was armed for (our clock)
        self._polled_at = -math.inf  # while in `_on_timer`: the time it polled for
        self._housekeeping: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.clock = time.monotonic

    # -------------------------------------------------------------- lifecycle
    async def start(self, hosts: list[str], port: int, tls_port: int | None = None) -> int:
        """Listen on UDP and TCP at `port` on every host (port 0: one free port for all),
        and on TLS at `tls_port` when the endpoint has a TLS context (0: a free port)."""
        self._loop = asyncio.get_running_loop()
        for attempt in range(20):
            try:
                self.port = await self._bind_all(hosts, port)
                break
            except OSError:
                await self._close_sockets()
                if port != 0 or attempt == 19:
                    raise
        if self.tls is not None:
            self.tls_port = await self._bind_tls(hosts, 5061 if tls_port is None else tls_port)
        self._sync_clock()
        contact_port = self.port
        if self.reuse_port_workers:
            # In-dialog requests (PRACK, the lab's ACK and BYE) are sent to our Contact:
            # this worker's own port, so they reach the worker that holds the dialog.
            contact_port = self.private_port = await self._bind_private(hosts[0])
        for transport in ("udp", "tcp"):
            self.controller.listening(transport, hosts[0], contact_port)
        if self.tls is not None:
            self.controller.listening("tls", hosts[0], self.tls_port)
        self._housekeeping = self._loop.call_later(HOUSEKEEPING_S, self._housekeep)
        return self.port

    async def _bind_private(self, host: str) -> int:
        """A UDP and TCP port of this worker alone (free port, same number for both)."""
        assert self._loop is not None
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for attempt in range(20):
            udp = _UdpSocket(self, udp_socket(host, 0, family))
            port = udp.port
            try:
                server = await self._loop.create_server(
                    lambda: _TcpConnection(self), host, port, family=family
                )
            except OSError:
                udp.close()
                if attempt == 19:
                    raise
                continue
            self.udp.append(udp)
            self.tcp_servers.append(server)
            return port
        raise OSError("no private port")  # not reached

    async def _bind_all(self, hosts: list[str], port: int) -> int:
        assert self._loop is not None
        for host in hosts:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            if self.reuse_port_workers:
                sock = reuseport_udp_socket(host, port)
                attach_uri_hash(sock, self.reuse_port_workers)
            else:
                sock = udp_socket(host, port, family)
            udp = _UdpSocket(self, sock)
            self.udp.append(udp)
            if family == socket.AF_INET6:
                self._udp_v6 = self._udp_v6 or udp
            else:
                self._udp_v4 = self._udp_v4 or udp
            port = udp.port
            server = await self._loop.create_server(
                lambda: _TcpConnection(self),
                host,
                port,
                family=family,
                reuse_address=True,
                reuse_port=bool(self.reuse_port_workers) or None,
            )
            self.tcp_servers.append(server)
        return port

    async def _bind_tls(self, hosts: list[str], port: int) -> int:
        """The TLS listeners: the TCP path behind a handshake (TLS 1.2+, see net/sip_tls)."""
        assert self._loop is not None and self.tls is not None
        for host in hosts:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            server = await self._loop.create_server(
                lambda: _TcpConnection(self, "tls"),
                host,
                port,
                family=family,
                reuse_address=True,
                ssl=self.tls,
                ssl_handshake_timeout=TLS_HANDSHAKE_S,
            )
            self.tcp_servers.append(server)
            port = server.sockets[0].getsockname()[1]
        return port

    async def _close_sockets(self) -> None:
        for udp in self.udp:
            udp.close()
        for server in self.tcp_servers:
            server.close()
        self.udp, self.tcp_servers = [], []
        self._udp_v4 = self._udp_v6 = None

    async def stop(self) -> None:
        for timer in (self._timer, self._housekeeping):
            if timer is not None:
                timer.cancel()
        for connection in [*self.tcp_connections.values(), *self.tls_connections.values()]:
            connection.close()
        await self._close_sockets()

    async def drain(self, limit_s: float) -> None:
        """Redirect new INVITEs at once, let warnings in progress play and bridged calls
        (ringback mode) go on for up to ``limit_s``, then give every held INVITE its final
        response and hang bridged calls up both ways."""
        self.controller.drain()
        deadline = self.clock() + limit_s
        busy = self.controller.busy
        while busy() and self.clock() < deadline:
            await asyncio.sleep(0.05)
        self.controller.end_warnings(self.clock())
        self.pump()
        await asyncio.sleep(0)  # let TCP transports write what was just queued

    # -------------------------------------------------------------- pumping
    def _sync_clock(self) -> None:
        self.controller.sync_clock(time.time() - self.clock())

    def _housekeep(self) -> None:
        assert self._loop is not None
        self._sync_clock()
        self._reap_idle_tcp(self.clock())
        self._housekeeping = self._loop.call_later(HOUSEKEEPING_S, self._housekeep)

    def _on_timer(self) -> None:
        self._timer = None
        now = self.clock()
        try:
            self.controller.poll(now)
            self._polled_at = now
        except Exception:  # never let one bad timer stop the timers
            log.exception("SIP timer processing failed")
        self.pump()
        self._polled_at = -math.inf

    def _arm(self) -> None:
        """Keep one timer armed at the controller's next deadline, at most one wake per
        TIMER_RESOLUTION_S: under load every call has its own deadlines (Timers G, I),
        and waking for each would cost more than the calls themselves."""
        now = self.clock()
        if self._timer is not None and self._timer_at <= now + self.controller.t1:
            return  # nothing a message does can be due sooner than T1 from now
        deadline = self.controller.next_deadline()
        if deadline is None:
            return
        # A poll just made that left due timers behind (its slice ran out): poll again as
        # soon as the loop has served the sockets, not TIMER_RESOLUTION_S later. (Not for
        # timers that fell due during it: a loaded loop is always a little late, and
        # polling on every turn of it cost more than the timers themselves.)
        backlog = deadline <= self._polled_at
        when = now if backlog else max(deadline, now + TIMER_RESOLUTION_S)
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        assert self._loop is not None
        self._timer_at = when
        self._timer = self._loop.call_later(when - now, self._on_timer)

    def receive(self, data: bytes, source: Address, transport: str) -> None:
        """Handle one message (a stream's; the UDP reader handles a batch itself) and send
        what it queued."""
        started = time.perf_counter()
        try:
            outcome = self.controller.receive(data, source, transport, self.clock())
        except Exception:  # the controller fails open itself; this is the last guard
            log.exception("SIP message handling failed")
            outcome = None
        self.pump()
        if outcome is not None:
            self.metrics.decision_latency.observe(time.perf_counter() - started)

    def pump(self) -> None:
        """Send what the controller queued, carry out its effects, re-arm the timer."""
        was_pumping, self._pumping = self._pumping, True
        try:
            self._send_out()
            effects = self.controller.take_effects()
            while effects:
                for effect in effects:
                    if self.player is not None:
                        self.player.execute(effect, self)
                self._send_out()
                effects = self.controller.take_effects()
        finally:
            self._pumping = was_pumping
        self._arm()

    # ----------------------------------------- the player's reports (WarningReports)
    def warning_trying(self, key: TxKey) -> None:
        self.controller.warning_trying(key, self.clock())
        self._send_out()

    def warning_ready(self, key: TxKey, sdp: bytes) -> bool:
        ready = self.controller.warning_ready(key, sdp, self.clock())
        self._send_out()
        self._arm()
        return ready

    def warning_ended(self, key: TxKey, outcome: str) -> None:
        self.controller.warning_ended(key, outcome, self.clock())
        self._send_out()
        self._arm()

    # ----------------------------------------------- the relay's reports (MediaReports)
    def relay_opened(self, key: TxKey, caller_side: Address, callee_side: Address) -> None:
        self.controller.relay_opened(key, caller_side, callee_side, self.clock())
        self._after_report()

    def relay_failed(self, key: TxKey, reason: str) -> None:
        self.controller.relay_failed(key, reason, self.clock())
        self._after_report()

    def _after_report(self) -> None:
        """A report made while effects are being carried out leaves its effects to that
        loop; one that comes later (rtpengine answered) carries them out itself."""
        if self._pumping:
            self._send_out()
            self._arm()
        else:
            self.pump()

    def _send_out(self) -> None:
        outgoing = self.controller.take_outgoing()
        if not outgoing:
            return
        udp_v4: list[tuple[bytes, Address]] = []
        udp_v6: list[tuple[bytes, Address]] = []
        for data, dest, transport in outgoing:
            try:
                if transport == "udp":
                    (udp_v6 if ":" in dest[0] else udp_v4).append((data, dest))
                else:
                    tls = transport == "tls"
                    connection = (self.tls_connections if tls else self.tcp_connections).get(dest)
                    if connection is not None:
                        connection.write(data)
            except (OSError, ValueError, TypeError) as exc:  # one bad address: that send only
                log.info("SIP send to %s failed: %s", dest, exc)
        if udp_v4 and self._udp_v4 is not None:
            self._udp_v4.send_all(udp_v4)
        if udp_v6 and self._udp_v6 is not None:
            self._udp_v6.send_all(udp_v6)

    def _reap_idle_tcp(self, now: float) -> None:
        for connection in [*self.tcp_connections.values(), *self.tls_connections.values()]:
            if now - connection.last_active > self.tcp_idle_s:
                connection.close()


def udp_socket(host: str, port: int, family: int) -> socket.socket:
    """A UDP socket bound to (host, port) (port 0: a free one)."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class _UdpSocket:
    """One UDP socket, read straight from the event loop's reader callback.

    Not an asyncio datagram transport, for two things it cannot do: read a batch of
    datagrams per wake-up (`UDP_READ_BUDGET`, their answers sent together after it), and
    see each datagram's kernel receive timestamp, so that an INVITE that queued longer than
    `max_receive_age_s` while the node was overloaded is shed unread (counted) instead of
    answered seconds late.
    """

    def __init__(self, endpoint: SipEndpoint, sock: socket.socket) -> None:
        """Takes over `sock` (bound; see `udp_socket`)."""
        self.endpoint = endpoint
        self.sock = sock
        try:
            sock.setblocking(False)
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):  # the kernel caps these
                sock.setsockopt(socket.SOL_SOCKET, option, 4 * 1024 * 1024)
            self.timestamps = endpoint.max_receive_age_s > 0
            if self.timestamps:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            sock.close()
            raise
        self.port: int = sock.getsockname()[1]
        self.fd = sock.fileno()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.fd, self._readable)
        self.closed = False

    def _readable(self) -> None:
        endpoint = self.endpoint
        # The queue is in arrival order: once one datagram is fresh, all after it are, and
        # recvfrom (no ancillary data) is cheaper than recvmsg. So ages are read from the
        # head of the queue only until the first fresh datagram, on every wake-up. One
        # clock reading per batch: a batch is handled within milliseconds.
        looking = self.timestamps
        oldest = time.time() - endpoint.max_receive_age_s if looking else 0.0
        started = time.perf_counter()
        first, count, decisions = 0.0, 0, 0
        try:
            first, count, decisions = self._read_batch(looking, oldest)
        finally:
            endpoint.pump()  # the batch's answers, sent together
        metrics = endpoint.metrics
        if decisions:  # each INVITE: from its batch's read to the answers handed to the kernel
            metrics.decision_latency.observe(time.perf_counter() - started, decisions)
        if first > 0.0:
            metrics.udp_turnaround.observe(time.time() - first, count)

    def _read_batch(self, looking: bool, oldest: float) -> tuple[float, int, int]:
        """Read and handle up to UDP_READ_BUDGET datagrams: (the kernel's receive time of
        the first, 0.0 if unknown; how many were read; how many INVITEs were decided).

        The per-datagram work of `SipEndpoint.receive` without its per-message clock
        readings and latency sample: one clock reading for the batch (handled within a
        millisecond), and `_readable` times the batch."""
        try:
            if RECV_BATCH is None:  # _udpio did not build
                batch = self._recv_with_socket(looking)
            else:
                batch = RECV_BATCH(self.fd, UDP_READ_BUDGET, looking)
        except OSError as exc:  # e.g. an ICMP error queued on the socket: harmless
            log.debug("UDP receive error: %s", exc)
            return 0.0, 0, 0  # the loop calls again while datagrams wait
        if not batch:
            return 0.0, 0, 0
        endpoint = self.endpoint
        trusted, metrics = endpoint.trusted, endpoint.metrics
        receive, now, decisions = endpoint.controller.receive, endpoint.clock(), 0
        checked, allowed = "", False  # one switch sends most datagrams: its verdict, kept
        for data, host, port, stamp in batch:
            stale = False
            if looking:
                stale = 0.0 < stamp < oldest
                looking = stale
            if host is not checked:  # the same str object for the same source (_udpio)
                checked, allowed = host, trusted(host)
            if not allowed:
                metrics.untrusted.inc()
                continue
            if len(data) < 4 or data.isspace():
                continue  # keep-alive (CRLF) or noise
            if stale and data.startswith(b"INVITE "):
                metrics.shed.inc()
                continue
            try:
                if receive(data, (host, port), "udp", now) is not None:
                    decisions += 1
            except Exception:  # the controller fails open itself; this is the last guard
                log.exception("SIP message handling failed")
        return batch[0][3], len(batch), decisions

    def _recv_with_socket(self, timestamps: bool) -> list[tuple[bytes, str, int, float]]:
        """What `RECV_BATCH` returns, read with the socket module where _udpio did not
        build: recvmsg with the receive timestamps when asked, else recvfrom."""
        sock = self.sock
        batch: list[tuple[bytes, str, int, float]] = []
        while len(batch) < UDP_READ_BUDGET:
            stamp = 0.0
            try:
                if timestamps:
                    data, ancillary, _flags, addr = sock.recvmsg(65535, _ANC_SIZE)
                    for level, kind, raw in ancillary:
                        if kind == SO_TIMESTAMPNS and level == socket.SOL_SOCKET:
                            seconds, nanoseconds = _unpack_timespec(raw)
                            stamp = seconds + nanoseconds * 1e-9
                else:
                    data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                if batch:
                    break  # the error comes again on the next read
                raise
            batch.append((data, addr[0], addr[1], stamp))
        return batch

    def sendto(self, data: bytes, dest: Address) -> None:
        try:
            self.sock.sendto(data, dest)
        except (BlockingIOError, InterruptedError):
            self.endpoint.metrics.send_dropped.inc()  # a full send buffer: UDP may lose it

    def send_all(self, messages: list[tuple[bytes, Address]]) -> None:
        """Send `messages` ((data, destination)), in one system call where _udpio built;
        a failure loses that datagram only (logged, or counted for a full send buffer)."""
        failures: Iterable[tuple[int, int]]
        if SEND_BATCH is None:  # _udpio did not build
            failures = [(i, 0) for i in range(len(messages))]
        else:
            failures = SEND_BATCH(self.fd, self.sock.family, messages) or ()
        for index, error in failures:
            data, dest = messages[index]
            if error in (errno.EAGAIN, errno.EWOULDBLOCK):
                self.endpoint.metrics.send_dropped.inc()
            elif error:
                log.info("SIP send to %s failed: %s", dest, os.strerror(error))
            else:  # not a numeric address of this family: the socket module
                try:
                    self.sendto(data, dest)
                except (OSError, ValueError, TypeError) as exc:
                    log.info("SIP send to %s failed: %s", dest, exc)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._loop.remove_reader(self.fd)
            self.sock.close()


class _TcpConnection(asyncio.Protocol):
    """One TCP or TLS connection (for TLS, asyncio calls `connection_made` only after the
    handshake succeeded: a peer without an acceptable certificate never gets here)."""

    def __init__(self, endpoint: SipEndpoint, kind: str = "tcp") -> None:
        self.endpoint = endpoint
        self.kind = kind
        self.connections = endpoint.tls_connections if kind == "tls" else endpoint.tcp_connections
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.peer: Address = ("", 0)
        self.last_active = endpoint.clock()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1])
        if not self.endpoint.trusted(self.peer[0]):
            self.endpoint.metrics.untrusted.inc()
            transport.abort()
            return
        self.transport = transport
        self.connections[self.peer] = self
        self.endpoint.metrics.connections.inc(self.kind)

    def data_received(self, data: bytes) -> None:
        self.last_active = self.endpoint.clock()
        self.buffer += data
        limit = self.endpoint.max_message_bytes
        while self.buffer:
            try:
                frame, used = split_stream(self.buffer)
            except SipParseError as exc:
                log.info(
                    "closing SIP/%s connection from %s: %s",
                    self.kind.upper(),
                    self.peer[0],
                    exc.reason,
                )
                self.endpoint.metrics.parse_errors.inc("no")
                self.close()
                return
            if frame is None:
                if len(self.buffer) > limit:
                    self.endpoint.metrics.parse_errors.inc("no")
                    self.close()  # a message larger than we accept, or no end in sight
                self.buffer = self.buffer[used:]
                return
            self.buffer = self.buffer[used:]
            self.endpoint.receive(frame, self.peer, self.kind)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.connections.get(self.peer) is self:
            del self.connections[self.peer]
        self.transport = None
