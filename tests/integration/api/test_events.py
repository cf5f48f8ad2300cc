"""Outgoing event webhooks: outbox, subscriptions, signed deliveries with retries, restarts."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import json
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ringback.config import load_config
from ringback.registry.common import Principal
from ringback.registry.outbox import emit_effective, emit_hourly, enqueue_event
from ringback.server import Service

WHO = Principal("test", "operator")
SECRET = "test-secret-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """A webhook receiver on 127.0.0.1 that can be down, failing (500) or up (200)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.mode = "down"
        self.runner: web.AppRunner | None = None
        self.accepted: Counter[str] = Counter()  # delivery id -> 2xx answers
        self.bodies: dict[str, dict[str, Any]] = {}
        self.failures = 0
        self.bad_signatures = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ts = request.headers["X-Ringback-Timestamp"]
        expected = (
            "sha256="
            + hmac.new(SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        )
        if not hmac.compare_digest(expected, request.headers["X-Ringback-Signature"]):
            self.bad_signatures += 1
            return web.Response(status=401)
        assert abs(int(ts) - time.time()) < 300
        if self.mode == "500":
            self.failures += 1
            return web.Response(status=500, text="receiver broken")
        delivery = request.headers["X-Ringback-Delivery"]
        event = json.loads(body)
        assert event["delivery_id"] == delivery
        assert event["type"] == request.headers["X-Ringback-Event"]
        self.accepted[delivery] += 1
        self.bodies[delivery] = event
        return web.Response(status=200 if len(self.accepted) % 2 else 204)

    async def up(self, mode: str = "200") -> None:
        self.mode = mode
        if self.runner is None:
            app = web.Application()
            app.router.add_post("/hook", self.handle)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def down(self) -> None:
        self.mode = "down"
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver(_free_port())
    yield r
    await r.down()


def _config(database: str, **events: Any) -> Any:
    config = load_config(None, env={})
    config.database.url = database
    config.http.port = 0
    config.http.check_answers = True
    config.sip.port = 0
    config.index.heartbeat_s = 0.2
    e = config.events
    e.poll_interval_s = 0.05
    e.backoff_initial_s = 0.1
    e.backoff_max_s = 0.4
    e.timeout_s = 2.0
    e.max_attempts = 1000
    e.allowed_destinations = ["127.0.0.0/8"]  # the receiver is on loopback
    e.hourly_delay_s = 10 * 3600.0
    for key, value in events.items():
        setattr(e, key, value)
    return config


async def _start(config: Any) -> Service:
    service = Service(config)
    await service.start()
    return service


async def _until(check: Callable[[], Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def _api(service: Service, token: str, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method,
            f"http://127.0.0.1:{service.http_port}{path}",
            headers={"Authorization": f"Bearer {token}"},
            **kw,
        ) as r,
    ):
        return r.status, await r.json()


async def _enqueue(service: Service, n: int, tag: str) -> None:
    for i in range(n):
        async with service.pool.acquire() as conn, conn.transaction():
            await enqueue_event(
                conn,
                "listing.created",
                {"number": f"+86139{i:08d}", "tag": tag, "at": datetime.now(UTC)},
            )


async def test_receiver_down_then_up_gets_every_event_once_across_restart_and_two_nodes(
    database: str, receiver: Receiver
) -> None:
    a = await _start(_config(database))
    b: Service | None = None
    try:
        _, operator = await a.store.tokens.issue("operator", None, "ops", WHO)
        status, sub = await _api(
            a, operator, "POST", "/v1/events/subscriptions",
            json={"url": receiver.url, "secret": SECRET, "description": "sms gateway"},
        )  # fmt: skip
        assert status == 201, sub
        assert sub["secret"] == SECRET and sub["event_types"] is None
        status, listed = await _api(a, operator, "GET", "/v1/events/subscriptions")
        assert [s["id"] for s in listed["subscriptions"]] == [sub["id"]]
        assert "secret" not in listed["subscriptions"][0]

        # A rolled-back transaction leaves no event and no delivery.
        with pytest.raises(RuntimeError):
            async with a.pool.acquire() as conn, conn.transaction():
                await enqueue_event(conn, "listing.cleared", {"number": "+8613900000000"})
                raise RuntimeError("rollback")
        assert (
            await a.pool.fetchval(
                "SELECT count(*) FROM event_outbox WHERE event_type <> 'warnings.played.hourly'"
            )
            == 0
        )
        assert (
            await a.pool.fetchval(
                "SELECT count(*) FROM event_deliveries d JOIN event_outbox e ON e.id = d.event_id "
                "WHERE e.event_type <> 'warnings.played.hourly'"
            )
            == 0
        )

        # Receiver down (connection refused): attempts pile up, visible through the API.
        await _enqueue(a, 10, "while-down")

        async def retried() -> bool:
            n = await a.pool.fetchval(
                "SELECT count(*) FROM event_deliveries d JOIN event_outbox e ON e.id = d.event_id "
                "WHERE status = 'retrying' AND attempts >= 2 AND e.event_type = 'listing.created'"
            )
            return bool(n == 10)

        await _until(retried)
        status, page = await _api(a, operator, "GET", "/v1/events/deliveries?status=retrying")
        assert status == 200 and len(page["deliveries"]) >= 10
        assert all(d["last_error"] == "failed to connect" for d in page["deliveries"])

        # Receiver answers 500 for a while.
        await receiver.up("500")
        await _until(lambda: receiver.failures >= 10)
        status, page = await _api(a, operator, "GET", "/v1/events/deliveries?status=retrying")
        assert any(d["last_status"] == 500 for d in page["deliveries"])

        # A second node joins; then the first stops (a restart) while events keep coming.
        b = await _start(_config(database))
        await _enqueue(b, 10, "two-nodes")
        await a.stop()
        a = None  # type: ignore[assignment]
        await _enqueue(b, 5, "after-restart")
        await b.stop()
        b = await _start(_config(database))  # restarted: state is all in PostgreSQL
        await receiver.up("200")

        async def all_delivered() -> bool:
            assert b is not None
            n = await b.pool.fetchval(
                "SELECT count(*) FROM event_deliveries WHERE status <> 'delivered'"
            )
            return bool(n == 0)

        await _until(all_delivered)
        await asyncio.sleep(0.3)  # nothing more should arrive
        rows = await b.pool.fetch(
            "SELECT d.id, d.event_id, d.attempts FROM event_deliveries d JOIN event_outbox e "
            "ON e.id = d.event_id WHERE e.event_type = 'listing.created' ORDER BY d.event_id"
        )
        events = await b.pool.fetch(
            "SELECT id FROM event_outbox WHERE event_type = 'listing.created' ORDER BY id"
        )
        assert len(rows) == len(events) == 25  # one delivery per (event, subscription)
        assert [r["event_id"] for r in rows] == [e["id"] for e in events]
        delivered = {k for k, v in receiver.bodies.items() if v["type"] == "listing.created"}
        assert delivered == {str(r["id"]) for r in rows}  # no event lost
        assert all(count == 1 for count in receiver.accepted.values()), receiver.accepted
        assert receiver.bad_signatures == 0
        assert all(r["attempts"] >= 1 for r in rows)
        tags = Counter(b["data"]["tag"] for b in receiver.bodies.values() if "tag" in b["data"])
        assert tags == {"while-down": 10, "two-nodes": 10, "after-restart": 5}
        status, page = await _api(b, operator, "GET", "/v1/events/deliveries?status=delivered")
        assert len(page["deliveries"]) >= 25
        status, page = await _api(b, operator, "GET", "/v1/events/deliveries?status=failed")
        assert page["deliveries"] == []
    finally:
        for service in (a, b):
            if service is not None:
                await service.stop()


async def test_failed_deliveries_are_listed_and_can_be_retried(
    database: str, receiver: Receiver
) -> None:
    service = await _start(_config(database, max_attempts=3))
    try:
        _, operator = await service.store.tokens.issue("operator", None, "ops", WHO)
        status, sub = await _api(
            service, operator, "POST", "/v1/events/subscriptions",
            json={"url": receiver.url, "secret": SECRET, "event_types": ["listing.cleared"]},
        )  # fmt: skip
        assert status == 201
        async with service.pool.acquire() as conn, conn.transaction():
            await enqueue_event(conn, "listing.cleared", {"number": "+8613900000001"})
            await enqueue_event(conn, "listing.created", {"number": "+8613900000001"})

        async def failed() -> bool:
            _s, page = await _api(service, operator, "GET", "/v1/events/deliveries?status=failed")
            return len(page["deliveries"]) == 1

        await _until(failed)
        _, page = await _api(service, operator, "GET", "/v1/events/deliveries?status=failed")
        delivery = page["deliveries"][0]
        # Only the subscribed type got a delivery.
        assert delivery["event_type"] == "listing.cleared" and delivery["attempts"] == 3
        assert delivery["next_attempt_at"] is None and delivery["last_error"] == "failed to connect"
        await receiver.up()
        status, body = await _api(
            service, operator, "POST", f"/v1/events/deliveries/{delivery['id']}/retry"
        )
        assert status == 202
        await _until(lambda: receiver.accepted[delivery["id"]] == 1)
        status, got = await _api(
            service, operator, "GET", f"/v1/events/deliveries/{delivery['id']}"
        )
        assert got["status"] == "delivered" and got["last_status"] in (200, 204)
        status, _ = await _api(
            service, operator, "POST", f"/v1/events/deliveries/{delivery['id']}/retry"
        )
        assert status == 409
        # Validation and roles.
        _court, court_token, _ = await service.store.courts.create("Court", WHO)
        status, _ = await _api(service, court_token, "GET", "/v1/events/deliveries")
        assert status == 403
        for bad in (
            {"url": "ftp://x"},
            {"url": receiver.url, "event_types": ["listing.exploded"]},
            {"url": receiver.url, "secret": "short"},
            {"url": receiver.url, "colour": "red"},
        ):
            status, body = await _api(
                service, operator, "POST", "/v1/events/subscriptions", json=bad
            )
            assert status == 422, (bad, body)
        status, _ = await _api(service, operator, "GET", "/v1/events/deliveries?status=lost")
        assert status == 400
        status, body = await _api(
            service, operator, "DELETE", f"/v1/events/subscriptions/{sub['id']}"
        )
        assert status == 200 and body["active"] is False
        async with service.pool.acquire() as conn, conn.transaction():
            await enqueue_event(conn, "listing.cleared", {"number": "+8613900000002"})
        assert await service.pool.fetchval("SELECT count(*) FROM event_deliveries") == 1
    finally:
        await service.stop()


async def test_listing_effective_is_emitted_once_when_effective_at_passes(
    database: str,
) -> None:
    service = await _start(_config(database, enabled=False))
    try:
        pool = service.pool
        court, _, _ = await service.store.courts.create("Court E", WHO)
        await pool.execute(
            "INSERT INTO event_subscriptions (url, secret) VALUES ('http://127.0.0.1:9/', $1)",
            SECRET,
        )
        soon = datetime.now(UTC) + timedelta(seconds=1)
        expires = datetime.now(UTC) + timedelta(days=30)
        await pool.execute(
            "INSERT INTO listings (number, court_id, case_ref, effective_at, expires_at) VALUES "
            "(8613900000007, $1, 'E-1', $2, $3), (8613900000008, $1, 'E-2', $4, $3), "
            "(8613900000009, $1, 'E-3', now(), $3)",
            court["id"],
            soon,
            expires,
            datetime.now(UTC) + timedelta(days=3),
        )
        assert await emit_effective(pool) == 0  # not yet
        await asyncio.sleep(1.2)
        assert await emit_effective(pool) == 1
        assert await emit_effective(pool) == 0  # once only
        rows = await pool.fetch(
            "SELECT event_type, payload FROM event_outbox WHERE event_type = 'listing.effective'"
        )
        assert len(rows) == 1
        assert rows[0]["payload"]["number"] == "+8613900000007"
        assert rows[0]["payload"]["case_ref"] == "E-1"
        assert await pool.fetchval("SELECT count(*) FROM event_deliveries") == 1
    finally:
        await service.stop()


async def test_hourly_warnings_played_totals(database: str) -> None:
    service = await _start(_config(database, enabled=False))
    try:
        pool = service.pool
        court, _, _ = await service.store.courts.create("Court H", WHO)
        last_hour = await pool.fetchval("SELECT date_trunc('hour', now() - interval '1 hour')")
        for minute, outcome in ((1, "completed"), (2, "completed"), (59, "cancelled")):
            await pool.execute(
                "INSERT INTO announcements (court_id, node, codec, started_at, outcome) "
                "VALUES ($1, 'n1', 'PCMU', $2, $3)",
                court["id"],
                last_hour + timedelta(minutes=minute),
                outcome,
            )
        await pool.execute(  # this hour: not in last hour's totals
            "INSERT INTO announcements (court_id, node, codec, started_at, outcome) "
            "VALUES ($1, 'n1', 'PCMA', $2, 'completed')",
            court["id"],
            last_hour + timedelta(hours=1, minutes=1),
        )
        assert await emit_hourly(pool, delay_s=0) == 1
        assert await emit_hourly(pool, delay_s=0) == 0
        payload = await pool.fetchval(
            "SELECT payload FROM event_outbox WHERE event_type = 'warnings.played.hourly'"
        )
        assert payload["totals"] == {"played": 3, "completed": 2, "cancelled": 1, "failed": 0}
        assert payload["courts"][0]["court_id"] == str(court["id"])
        assert datetime.fromisoformat(payload["hour_start"]) == last_hour
    finally:
        await service.stop()
