"""asyncio shells around the sans-I/O `CallController`: SIP over UDP and TCP on one port.

Everything protocol-shaped happens in the controller; this module only moves bytes,
checks the source against `sip.trusted_sources`, frames TCP streams, hands the
controller's warning effects to the :class:`~ringback.net.warnings.WarningPlayer`, and
keeps one timer armed at the controller's next deadline (no timer object per
transaction), plus a once-a-second housekeeping timer (clock offset, idle TCP).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Iterable
from typing import Any, cast

from ringback.calls import CallController, SipMetrics
from ringback.calls.effects import Address
from ringback.net.reuseport import attach_uri_hash, reuseport_udp_socket
from ringback.net.warnings import WarningPlayer
from ringback.sip.errors import SipParseError
from ringback.sip.message import split_stream
from ringback.sip.transaction import TxKey

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 1.0
TIMER_RESOLUTION_S = 0.01  # RFC 3261 timers are 500 ms and up: 10 ms is plenty
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
        player: WarningPlayer | None = None,
        tcp_idle_s: float = 120.0,
        max_message_bytes: int = 65535,
        reuse_port_workers: int = 0,
    ) -> None:
        self.controller = controller
        # >0: one of that many workers sharing the port (SO_REUSEPORT, net/reuseport.py)
        self.reuse_port_workers = reuse_port_workers
        self.private_port = 0  # a worker's own port, in its Contact (in-dialog requests)
        self.player = player
        self.metrics = metrics
        self.trusted = trusted
        self.tcp_idle_s = tcp_idle_s
        self.max_message_bytes = max_message_bytes
        self.udp: list[asyncio.DatagramTransport] = []
        self._udp_v4: asyncio.DatagramTransport | None = None  # replies go out of these
        self._udp_v6: asyncio.DatagramTransport | None = None
        self.tcp_servers: list[asyncio.Server] = []
        self.tcp_connections: dict[Address, _TcpConnection] = {}
        self.port = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # the deadline `_timer` was armed for (our clock)
        self._housekeeping: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.clock = time.monotonic

    # -------------------------------------------------------------- lifecycle
    async def start(self, hosts: list[str], port: int) -> int:
        """Listen on UDP and TCP at `port` on every host (port 0: one free port for all)."""
        self._loop = asyncio.get_running_loop()
        for attempt in range(20):
            try:
                self.port = await self._bind_all(hosts, port)
                break
            except OSError:
                await self._close_sockets()
                if port != 0 or attempt == 19:
                    raise
        self._sync_clock()
        contact_port = self.port
        if self.reuse_port_workers:
            # In-dialog requests (PRACK, the lab's ACK and BYE) are sent to our Contact:
            # this worker's own port, so they reach the worker that holds the dialog.
            contact_port = self.private_port = await self._bind_private(hosts[0])
        for transport in ("udp", "tcp"):
            self.controller.listening(transport, hosts[0], contact_port)
        self._housekeeping = self._loop.call_later(HOUSEKEEPING_S, self._housekeep)
        return self.port

    async def _bind_private(self, host: str) -> int:
        """A UDP and TCP port of this worker alone (free port, same number for both)."""
        assert self._loop is not None
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for attempt in range(20):
            transport, _ = await self._loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, 0), family=family
            )
            port = int(transport.get_extra_info("sockname")[1])
            try:
                server = await self._loop.create_server(
                    lambda: _TcpConnection(self), host, port, family=family
                )
            except OSError:
                transport.close()
                if attempt == 19:
                    raise
                continue
            self.udp.append(transport)
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
                transport, _ = await self._loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self), sock=sock
                )
            else:
                transport, _ = await self._loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self), local_addr=(host, port), family=family
                )
            sock = transport.get_extra_info("socket")
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):  # the kernel caps these
                sock.setsockopt(socket.SOL_SOCKET, option, 4 * 1024 * 1024)
            self.udp.append(transport)
            if family == socket.AF_INET6:
                self._udp_v6 = self._udp_v6 or transport
            else:
                self._udp_v4 = self._udp_v4 or transport
            port = transport.get_extra_info("sockname")[1]
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

    async def _close_sockets(self) -> None:
        for transport in self.udp:
            transport.close()
        for server in self.tcp_servers:
            server.close()
        self.udp, self.tcp_servers = [], []
        self._udp_v4 = self._udp_v6 = None

    async def stop(self) -> None:
        for timer in (self._timer, self._housekeeping):
            if timer is not None:
                timer.cancel()
        for connection in list(self.tcp_connections.values()):
            connection.close()
        await self._close_sockets()

    async def drain(self, limit_s: float) -> None:
        """Redirect new INVITEs at once, let warnings in progress play for up to
        ``limit_s``, then give every held INVITE its final response."""
        self.controller.drain()
        deadline = self.clock() + limit_s
        while self.controller.held and self.clock() < deadline:
            await asyncio.sleep(0.05)
        self.controller.end_warnings(self.clock())
        self._pump()
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
        try:
            self.controller.poll(self.clock())
        except Exception:  # never let one bad timer stop the timers
            log.exception("SIP timer processing failed")
        self._pump()

    def _arm(self) -> None:
        """Keep one timer armed at the controller's next deadline, at most one wake per
        TIMER_RESOLUTION_S: under load every call has its own deadline (Timers G, H, I),
        and waking for each would cost more than the calls themselves."""
        now = self.clock()
        if self._timer is not None and self._timer_at <= now + self.controller.t1:
            return  # nothing a message does can be due sooner than T1 from now
        deadline = self.controller.next_deadline()
        if deadline is None:
            return
        when = max(deadline, now + TIMER_RESOLUTION_S)
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        assert self._loop is not None
        self._timer_at = when
        self._timer = self._loop.call_later(when - now, self._on_timer)

    def receive(self, data: bytes, source: Address, transport: str) -> None:
        started = time.perf_counter()
        try:
            outcome = self.controller.receive(data, source, transport, self.clock())
        except Exception:  # the controller fails open itself; this is the last guard
            log.exception("SIP message handling failed")
            outcome = None
        self._pump()
        if outcome is not None:
            self.metrics.decision_latency.observe(time.perf_counter() - started)

    def _pump(self) -> None:
        """Send what the controller queued, carry out its effects, re-arm the timer."""
        self._send_out()
        effects = self.controller.take_effects()
        while effects:
            for effect in effects:
                if self.player is not None:
                    self.player.execute(effect, self)
            self._send_out()
            effects = self.controller.take_effects()
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

    def _send_out(self) -> None:
        for data, dest, transport in self.controller.take_outgoing():
            try:
                if transport == "udp":
                    self._send_udp(data, dest)
                else:
                    connection = self.tcp_connections.get(dest)
                    if connection is not None:
                        connection.write(data)
            except (OSError, ValueError, TypeError) as exc:  # one bad address: that send only
                log.info("SIP send to %s failed: %s", dest, exc)

    def _send_udp(self, data: bytes, dest: Address) -> None:
        transport = self._udp_v6 if ":" in dest[0] else self._udp_v4
        if transport is not None:
            transport.sendto(data, dest)

    def _reap_idle_tcp(self, now: float) -> None:
        for connection in list(self.tcp_connections.values()):
            if now - connection.last_active > self.tcp_idle_s:
                connection.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr: Any) -> None:
        host, port = addr[0], addr[1]
        endpoint = self.endpoint
        if not endpoint.trusted(host):
            endpoint.metrics.untrusted.inc()
            return
        if len(data) < 4 or data.isspace():
            return  # keep-alive (CRLF) or noise
        endpoint.receive(data, (host, port), "udp")

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)  # ICMP unreachable from a gone peer: harmless


class _TcpConnection(asyncio.Protocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint
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
        self.endpoint.tcp_connections[self.peer] = self

    def data_received(self, data: bytes) -> None:
        self.last_active = self.endpoint.clock()
        self.buffer += data
        limit = self.endpoint.max_message_bytes
        while self.buffer:
            try:
                frame, used = split_stream(self.buffer)
            except SipParseError as exc:
                log.info("closing SIP/TCP connection from %s: %s", self.peer[0], exc.reason)
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
            self.endpoint.receive(frame, self.peer, "tcp")

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.endpoint.tcp_connections.get(self.peer) is self:
            del self.endpoint.tcp_connections[self.peer]
        self.transport = None
