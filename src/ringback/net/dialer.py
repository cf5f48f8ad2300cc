"""The asyncio shell of ``ringback dial``: sockets and one timer around the sans-I/O
:class:`~ringback.calls.uac.Uac`.

It opens the RTP socket and the SIP socket (UDP, or a TCP connection per destination the
core asks for), feeds the core what arrives with the loop's monotonic time, sends what it
queues, and keeps one timer armed at its next deadline. The call is over when the core
says so; SIGINT hangs up (CANCEL or BYE) instead of killing the call mid-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from dataclasses import replace
from typing import Any, cast

from ringback.calls.uac import Address, Connect, Uac, UacOptions
from ringback.sip.errors import SipParseError
from ringback.sip.message import split_stream

__all__ = ["Dialer", "local_ip_towards", "resolve"]


async def resolve(host: str, port: int) -> Address:
    """``host`` (a name or an IP literal) → an address to send to (IPv4 first)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host.strip("[]"), port, type=socket.SOCK_DGRAM
    )
    if not infos:
        raise OSError(f"cannot resolve {host}")
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    address = infos[0][4]
    return (str(address[0]), int(address[1]))


def local_ip_towards(dest: Address) -> str:
    """The address this host would send from to reach ``dest`` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in dest[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(dest)
        return str(probe.getsockname()[0])


class Dialer:
    """One test call: ``await Dialer(options).run()`` returns the finished core."""

    def __init__(self, options: UacOptions) -> None:
        self.options = options
        self.uac: Uac | None = None
        self.interrupted = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self._tcp: dict[Address, _TcpConnection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._done: asyncio.Future[None] | None = None

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    async def run(self) -> Uac:
        loop = self._loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        options = self.options
        family = socket.AF_INET6 if ":" in options.rtp[0] else socket.AF_INET
        rtp, _ = await loop.create_datagram_endpoint(
            lambda: _RtpProtocol(self), local_addr=options.rtp, family=family
        )
        self._rtp = rtp
        rtp_address = rtp.get_extra_info("sockname")
        options = replace(options, rtp=(options.rtp[0], int(rtp_address[1])))
        if options.transport == "udp":
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=options.local, family=family
            )
            self._udp = udp
            options = replace(options, local=(options.local[0], udp.get_extra_info("sockname")[1]))
        self.uac = Uac(options)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, self._interrupt)
        try:
            self.uac.start(self.now())
            self._pump()
            await self._done
            await asyncio.sleep(0)  # let stream transports write what the end queued
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
            self._close()
        return self.uac

    def _interrupt(self) -> None:
        assert self.uac is not None
        self.interrupted = True
        self.uac.hang_up(self.now())  # a second Ctrl-C leaves without waiting
        self._pump()

    def _close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in self._tasks:
            task.cancel()
        for connection in list(self._tcp.values()):
            connection.close()
        for transport in (self._udp, self._rtp):
            if transport is not None:
                transport.close()

    # ------------------------------------------------------------- pumping
    def _pump(self) -> None:
        uac = self.uac
        assert uac is not None and self._loop is not None
        for data, dest in uac.take_outgoing():
            self._send(data, dest)
        for event in uac.take_events():
            task = self._loop.create_task(self._connect(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if uac.done:
            if self._done is not None and not self._done.done():
                self._done.set_result(None)
            return
        deadline = uac.next_deadline()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        assert self.uac is not None
        self.uac.poll(self.now())
        self._pump()

    def _send(self, data: bytes, dest: Address) -> None:
        if self.options.transport == "udp":
            if self._udp is not None:
                self._udp.sendto(data, dest)
            return
        connection = self._tcp.get(dest)
        if connection is not None:
            connection.write(data)

    async def _connect(self, event: Connect) -> None:
        assert self._loop is not None and self.uac is not None
        host, port = event.dest
        try:
            async with asyncio.timeout(self.options.timeout_s):
                transport, protocol = await self._loop.create_connection(
                    lambda: _TcpConnection(self, event.dest), host, port
                )
        except (OSError, TimeoutError) as exc:
            self.uac.connection_failed(event.dest, str(exc) or type(exc).__name__, self.now())
            self._pump()
            return
        self._tcp[event.dest] = protocol
        local = transport.get_extra_info("sockname")
        self.uac.connected(event.dest, (str(local[0]), int(local[1])), self.now())
        self._pump()

    # -------------------------------------------------------------- inputs
    def sip_received(self, data: bytes, source: Address) -> None:
        assert self.uac is not None
        if self.uac.done:
            return
        self.uac.receive(data, source, self.now())
        self._pump()

    def rtp_received(self, data: bytes) -> None:
        if self.uac is not None:
            self.uac.receive_rtp(data, self.now())

    def unreachable(self, exc: Exception) -> None:
        assert self.uac is not None
        self.uac.unreachable(str(exc) or type(exc).__name__, self.now())
        self._pump()

    def connection_lost(self, dest: Address) -> None:
        self._tcp.pop(dest, None)
        if self.uac is not None and not self.uac.done:
            self.uac.connection_failed(dest, "the connection was closed", self.now())
            self._pump()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, dialer: Dialer) -> None:
        self.dialer = dialer

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) >= 4 and not data.isspace():
            self.dialer.sip_received(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):
            self.dialer.unreachable(exc)


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, dialer: Dialer) -> None:
        self.dialer = dialer

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.dialer.rtp_received(data)


class _TcpConnection(asyncio.Protocol):
    def __init__(self, dialer: Dialer, dest: Address) -> None:
        self.dialer = dialer
        self.dest = dest
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.buffer:
            try:
                frame, used = split_stream(self.buffer)
            except SipParseError:
                self.close()  # no framing to recover: the connection is useless
                return
            self.buffer = self.buffer[used:]
            if frame is None:
                return
            self.dialer.sip_received(frame, self.dest)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.dialer.connection_lost(self.dest)
