"""Slow clients: a connection whose request arrives too slowly is closed.

aiohttp has no read timeout of its own: a client that sends a request a byte a second holds
a connection (and, once the head is in, a handler) for as long as it likes. `GuardedSite`
wraps each connection's protocol in `ReceiveGuard`, which closes the connection when

- the request head (request line and headers) is not complete `head_timeout_s` after its
  first byte (or after the connection opened), or
- the body is not complete `body_timeout_s` after the head, extended by one second per
  `body_min_rate` bytes received (Apache's mod_reqtimeout rule: a slow but steady upload
  keeps going; a trickle does not).

Time while the server itself has paused reading (flow control: a handler not reading yet)
does not count. Idle keep-alive connections between requests are aiohttp's own business
(its keep-alive timeout).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("ringback.api")


@dataclass(frozen=True)
class ReceiveLimits:
    head_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    body_min_rate: float = 1000.0  # bytes per second that earn one more second


class ReceiveGuard(asyncio.Protocol):
    """Delegates to aiohttp's `RequestHandler`, closing the connection on a slow request."""

    def __init__(self, inner: RequestHandler, limits: ReceiveLimits, on_close: Any = None) -> None:
        self.inner = inner
        self.limits = limits
        self.on_close = on_close
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._phase = "idle"  # idle | head | body
        self._started = 0.0
        self._body_bytes = 0
        self._payload: Any = None
        self._timer: asyncio.TimerHandle | None = None

    # -------------------------------------------------------------- the protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they behave as one.
        self._transport = cast(asyncio.Transport, transport)
        self.inner.connection_made(transport)
        self._begin("head")

    def data_received(self, data: bytes) -> None:
        if self._phase == "idle":
            self._begin("head")
        seen = self.inner._request_count
        self.inner.data_received(data)
        if self.inner._request_count != seen and self.inner._messages:
            self._payload = self.inner._messages[-1][1]
            self._begin("body")
        elif self._phase == "body":
            self._body_bytes += len(data)
        if self._phase == "body" and self._payload.is_eof():
            self._begin("idle")
        self._arm()

    def eof_received(self) -> None:
        self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # ------------------------------------------------------------------- timing
    def _begin(self, phase: str) -> None:
        self._phase = phase
        self._started = self._loop.time()
        self._body_bytes = 0
        if phase != "body":
            self._payload = None
        self._arm()

    def _deadline(self) -> float | None:
        if self._phase == "head":
            return self._started + self.limits.head_timeout_s
        if self._phase == "body":
            earned = self._body_bytes / self.limits.body_min_rate
            return self._started + self.limits.body_timeout_s + earned
        return None

    def _arm(self) -> None:
        self._cancel()
        deadline = self._deadline()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._expired)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._phase == "body" and (self._payload.is_eof() or not transport.is_reading()):
            # The body is in, or we paused reading it: the slowness is ours, not the client's.
            self._begin("idle" if self._payload.is_eof() else "body")
            return
        peer = transport.get_extra_info("peername")
        waited = self._loop.time() - self._started
        log.info(
            "closed a slow HTTP client %s: request %s incomplete after %.1f s",
            peer[0] if isinstance(peer, tuple) else peer,
            self._phase,
            waited,
        )
        if self.on_close is not None:
            self.on_close(self._phase)
        transport.abort()


class GuardedSite(web.TCPSite):
    """`web.TCPSite` whose connections are wrapped in `ReceiveGuard`."""

    def __init__(
        self,
        runner: web.BaseRunner,
        *args: Any,
        limits: ReceiveLimits,
        on_close: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(runner, *args, **kwargs)
        self.limits = limits
        self.on_close = on_close

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        limits, on_close = self.limits, self.on_close

        def factory() -> ReceiveGuard:
            return ReceiveGuard(server(), limits, on_close)

        self._server = await asyncio.get_running_loop().create_server(
            factory,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
