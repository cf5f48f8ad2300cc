"""Event webhooks cannot reach internal addresses (SSRF) unless
`events.allowed_destinations` lists them: checked at subscription and again at delivery,
after resolution; delivery errors do not tell port states apart."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from court_api_support import SETUP, Api, make_config

from ringback.server import Service

INTERNAL = [
    ("http://127.0.0.1:{port}/hook", "127.0.0.1 is a loopback address"),
    ("http://localhost:{port}/hook", "is a loopback address"),
    ("http://[::1]:{port}/hook", "::1 is a loopback address"),
    ("http://[::ffff:127.0.0.1]:{port}/hook", "127.0.0.1 is a loopback address"),
    ("http://127.1:{port}/hook", "127.0.0.1 is a loopback address"),
    ("http://2130706433:{port}/hook", "127.0.0.1 is a loopback address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("http://[fe80::1]/hook", "fe80::1 is a link-local address"),
    ("http://10.1.2.3/hook", "10.1.2.3 is a private address"),
    ("http://192.168.0.1/hook", "192.168.0.1 is a private address"),
    ("http://172.16.5.5/hook", "172.16.5.5 is a private address"),
    ("http://100.64.0.1/hook", "100.64.0.1 is a non-public address"),
    ("http://0.0.0.0:{port}/hook", "0.0.0.0 is a unspecified address"),
    ("http://224.0.0.1/hook", "224.0.0.1 is a multicast address"),
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    def __init__(self) -> None:
        self.port = _port()
        self.hits = 0
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.hits += 1
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@contextlib.asynccontextmanager
async def node(database: str, allowed: list[str]) -> AsyncIterator[tuple[Service, Api, str]]:
    config = make_config(database)
    e = config.events
    e.allowed_destinations = allowed
    e.poll_interval_s = 0.05
    e.backoff_initial_s = 0.1
    e.backoff_max_s = 0.2
    e.timeout_s = 1.0
    e.max_attempts = 1
    service = Service(config)
    await service.start()
    try:
        _, token = await service.store.tokens.issue("operator", None, "op", SETUP)
        async with aiohttp.ClientSession() as http:
            yield service, Api(service, http), token
    finally:
        await service.stop()


async def _event(service: Service) -> None:
    from ringback.registry.outbox import enqueue_event

    async with service.pool.acquire() as conn, conn.transaction():
        await enqueue_event(conn, "listing.created", {"number": "+8613800138000"})


async def _deliveries(api: Api, token: str, event_type: str) -> list[dict[str, Any]]:
    """Deliveries of one event type (audit.checkpoint and hourly totals come too)."""
    r = await api.get("/v1/events/deliveries", token)
    assert r.status == 200, r.body
    return [d for d in r.body["deliveries"] if d["event_type"] == event_type]


async def _listing_deliveries_once(
    api: Api, token: str, status: str, count: int
) -> list[dict[str, Any]]:
    """The `listing.created` deliveries once `count` of them have `status` (at most 15 s)."""
    for _ in range(300):
        rows = await _deliveries(api, token, "listing.created")
        if sum(d["status"] == status for d in rows) == count:
            break
        await asyncio.sleep(0.05)
    return rows


async def test_internal_urls_are_refused_at_subscription(database: str, receiver: Receiver) -> None:
    async with node(database, []) as (service, api, op):
        for template, why in INTERNAL:
            url = template.format(port=receiver.port)
            r = await api.post("/v1/events/subscriptions", op, {"url": url})
            assert (r.status, r.code) == (422, "invalid"), (url, r.body)
            assert why in r.body["error"]["message"], (url, r.body)
            assert "events.allowed_destinations" in r.body["error"]["message"]
        assert await service.pool.fetchval("SELECT count(*) FROM event_subscriptions") == 0
        r = await api.post(
            "/v1/events/subscriptions", op, {"url": "http://no-such-host.invalid/hook"}
        )
        assert (r.status, r.code) == (422, "invalid") and "cannot resolve" in r.body["error"][
            "message"
        ]
        # a public address is fine (not contacted until there is an event)
        r = await api.post("/v1/events/subscriptions", op, {"url": "https://192.0.32.10/hook"})
        assert r.status == 201, r.body


async def test_listed_networks_are_allowed_and_checked_again_at_delivery(
    database: str, receiver: Receiver
) -> None:
    """A subscription made while loopback was allowed stops reaching it the moment the
    node runs without that permission: the check at delivery, on the resolved address."""
    urls = [
        f"http://127.0.0.1:{receiver.port}/hook",  # an address: aiohttp does not resolve it
        f"http://localhost:{receiver.port}/hook",  # a name: checked after resolution
    ]
    async with node(database, ["127.0.0.0/8", "::1/128"]) as (service, api, op):
        for url in urls:
            r = await api.post("/v1/events/subscriptions", op, {"url": url})
            assert r.status == 201, r.body
        await _event(service)
        # wait for this event's two deliveries, not for any two hits: an audit checkpoint
        # or hourly totals reach the receiver too, and may come first
        rows = await _listing_deliveries_once(api, op, "delivered", 2)
        assert [d["status"] for d in rows] == ["delivered"] * 2, rows
    reached = receiver.hits
    async with node(database, []) as (service, api, op):
        await _event(service)
        rows = await _listing_deliveries_once(api, op, "failed", 2)
        failed = [d for d in rows if d["status"] == "failed"]
        assert len(failed) == 2
        errors = sorted(d["last_error"] for d in failed)
        tail = " is a loopback address; allowed only if events.allowed_destinations lists it"
        assert errors[0] == "destination not allowed: 127.0.0.1" + tail, errors
        assert errors[1] in (  # whichever address of the name came first
            f"destination not allowed: localhost resolves to {ip}{tail}"
            for ip in ("127.0.0.1", "::1")
        ), errors
        assert receiver.hits == reached  # nothing more reached it


async def test_delivery_errors_do_not_tell_port_states_apart(database: str) -> None:
    """Closed port, a listener that never answers, one that hangs up at once: the same
    words for all three."""
    closed = _port()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    hangup_port = _port()

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    hangup = await asyncio.start_server(hang_up, "127.0.0.1", hangup_port)
    try:
        async with node(database, ["127.0.0.0/8"]) as (service, api, op):
            for port in (closed, silent.getsockname()[1], hangup_port):
                r = await api.post(
                    "/v1/events/subscriptions", op, {"url": f"http://127.0.0.1:{port}/hook"}
                )
                assert r.status == 201, r.body
            await _event(service)
            rows = await _listing_deliveries_once(api, op, "failed", 3)
            assert [d["last_error"] for d in rows] == ["failed to connect"] * 3, rows
            assert all(d["last_status"] is None for d in rows)
    finally:
        hangup.close()
        silent.close()
