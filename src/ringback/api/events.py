"""Outgoing event webhooks: subscriptions API, deliveries API and the delivery worker.

Events are written to the transactional outbox (`ringback.registry.outbox`) in the same
transaction as the change, with one delivery row per (event, subscription). The worker on
every node claims due deliveries with `FOR UPDATE SKIP LOCKED`, POSTs them signed like the
payment hook, and records the outcome; failures are retried with exponential backoff and
jitter up to `events.max_attempts`, then marked failed (visible at
`GET /v1/events/deliveries?status=failed`, retryable with `POST .../retry`). State lives in
PostgreSQL, so deliveries survive restarts; delivery is at least once, and the
`X-Ringback-Delivery` id lets receivers drop duplicates.

Request to the receiver::

    POST <url>
    Content-Type: application/json
    X-Ringback-Event: listing.created
    X-Ringback-Delivery: <uuid, the same on every retry>
    X-Ringback-Timestamp: <unix seconds>
    X-Ringback-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>

    {"id": <event id>, "type": "...", "created_at": "...", "delivery_id": "...", "data": {...}}
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
import uuid
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from yarl import URL

from ringback.api.auth import ApiError, authenticate
from ringback.api.common import api_handler
from ringback.registry.outbox import (
    EVENT_TYPES,
    claim_deliveries,
    emit_effective,
    emit_hourly,
    record_failure,
    record_success,
    release,
)

log = logging.getLogger(__name__)

__all__ = ["EventWorker", "setup", "sign"]

_SUBSCRIPTION_COLUMNS = "id, url, event_types, description, active, created_at, disabled_at"
_DELIVERY_STATUSES = ("pending", "retrying", "delivered", "failed")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


# ------------------------------------------------------------------------------ worker
class EventWorker:
    """Delivers due outbox deliveries; also emits listing.effective and hourly totals."""

    def __init__(self, pool: asyncpg.Pool, config: Any, node: str = "") -> None:
        self.pool = pool
        self.config = config
        self.node = node
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._claimed: set[uuid.UUID] = set()
        self._next_housekeeping = 0.0
        self.delivered = 0
        self.failed_attempts = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ringback-event-worker")

    async def stop(self) -> None:
        """Stop claiming; let in-flight POSTs finish (up to the timeout); give back the rest."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.config.timeout_s + 2)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._claimed:
            with contextlib.suppress(Exception):
                await release(self.pool, list(self._claimed))
            self._claimed.clear()

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        connector = aiohttp.TCPConnector(limit=self.config.concurrency)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            self._session = session
            while not self._stopping.is_set():
                busy = False
                try:
                    await self._housekeeping()
                    busy = await self.deliver_round()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("event worker: database unavailable (%s)", exc)
                except Exception:  # never let the worker die
                    log.exception("event worker round failed")
                if not busy:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), self.config.poll_interval_s)

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if now < self._next_housekeeping:
            return
        self._next_housekeeping = now + max(self.config.poll_interval_s, 5.0)
        await emit_effective(self.pool)
        await emit_hourly(self.pool, self.config.hourly_delay_s)

    async def deliver_round(self) -> bool:
        """Claim and send one batch; True if there was anything to send."""
        lease = self.config.timeout_s + 30.0
        rows = await claim_deliveries(self.pool, self.config.batch_size, lease)
        if not rows:
            return False
        self._claimed.update(r["id"] for r in rows)
        limit = asyncio.Semaphore(self.config.concurrency)

        async def one(row: asyncpg.Record) -> None:
            async with limit:
                await self._deliver(row)
            self._claimed.discard(row["id"])

        await asyncio.gather(*(one(r) for r in rows))
        return True

    def backoff_s(self, attempts: int, retry_after: float | None = None) -> float:
        """Exponential backoff with equal jitter, capped; `attempts` counts this failure."""
        c = self.config
        delay = min(c.backoff_max_s, c.backoff_initial_s * 2 ** min(attempts - 1, 30))
        delay = delay / 2 + random.uniform(0, delay / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, c.backoff_max_s))
        return float(delay)

    async def _deliver(self, row: asyncpg.Record) -> None:
        delivery_id: uuid.UUID = row["id"]
        attempts = row["attempts"] + 1
        if not row["active"]:
            await record_failure(
                self.pool,
                delivery_id,
                status=None,
                error="subscription disabled",
                retry_in_s=0,
                max_attempts=1,
            )
            return
        created: datetime = row["created_at"]
        body = (
            f'{{"id":{int(row["event_id"])},"type":{json.dumps(row["event_type"])},'
            f'"created_at":"{created.isoformat()}","delivery_id":"{delivery_id}",'
            f'"data":{row["payload"]}}}'
        ).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "ringback-webhooks/1",
            "X-Ringback-Event": row["event_type"],
            "X-Ringback-Delivery": str(delivery_id),
            "X-Ringback-Attempt": str(attempts),
            "X-Ringback-Timestamp": str(timestamp),
            "X-Ringback-Signature": sign(row["secret"], timestamp, body),
        }
        status: int | None = None
        retry_after: float | None = None
        assert self._session is not None
        try:
            async with self._session.post(
                row["url"], data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                with contextlib.suppress(ValueError):
                    retry_after = float(response.headers.get("Retry-After", ""))
                await response.read()
            if 200 <= status < 300:
                await record_success(self.pool, delivery_id, status)
                self.delivered += 1
                return
            error = f"HTTP {status} from receiver"
        except TimeoutError:
            error = f"no response within {self.config.timeout_s:g} s"
        except aiohttp.ClientConnectorError as exc:
            error = f"cannot connect: {exc.os_error.strerror or exc.os_error}"
        except aiohttp.ClientError as exc:
            error = f"request failed: {type(exc).__name__}: {exc}"
        self.failed_attempts += 1
        outcome = await record_failure(
            self.pool,
            delivery_id,
            status=status,
            error=error,
            retry_in_s=self.backoff_s(attempts, retry_after),
            max_attempts=self.config.max_attempts,
        )
        if outcome == "failed":
            log.warning(
                "event delivery %s to %s failed after %d attempts: %s",
                delivery_id,
                row["url"],
                attempts,
                error,
            )


# ------------------------------------------------------------------------------ API
def _service(request: web.Request) -> Any:
    from ringback.api.app import SERVICE

    return request.app[SERVICE]


def _subscription_json(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "url": row["url"],
        "event_types": row["event_types"],
        "description": row["description"],
        "active": row["active"],
        "created_at": row["created_at"].isoformat(),
        "disabled_at": row["disabled_at"].isoformat() if row["disabled_at"] else None,
    }


async def create_subscription(request: web.Request) -> web.Response:
    who = await authenticate(request, "operator")
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "bad_request", "body must be JSON") from None
    if not isinstance(body, dict):
        raise ApiError(422, "invalid", "body must be a JSON object")
    unknown = set(body) - {"url", "event_types", "description", "secret"}
    if unknown:
        raise ApiError(422, "invalid", f"unknown field(s): {', '.join(sorted(unknown))}")
    url = body.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 2000:
        raise ApiError(422, "invalid", "url must be an http:// or https:// URL")
    try:
        parsed = URL(url)
    except ValueError:
        raise ApiError(422, "invalid", "url is not a valid URL") from None
    if not parsed.host:
        raise ApiError(422, "invalid", "url has no host")
    types = body.get("event_types")
    if types is not None:
        if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
            raise ApiError(422, "invalid", "event_types must be a non-empty list of strings")
        bad = [t for t in types if t not in EVENT_TYPES]
        if bad:
            raise ApiError(
                422,
                "invalid",
                f"unknown event type(s) {', '.join(bad)}; known: {', '.join(EVENT_TYPES)}",
            )
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > 500:
        raise ApiError(422, "invalid", "description must be a string of at most 500 characters")
    secret = body.get("secret")
    if secret is None:
        secret = "whsec_" + secrets.token_urlsafe(32)
    elif not isinstance(secret, str) or not 16 <= len(secret) <= 200:
        raise ApiError(422, "invalid", "secret must be 16-200 characters")
    from ringback.registry.store import Store

    pool = _service(request).pool
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO event_subscriptions (url, secret, event_types, description) "
            f"VALUES ($1, $2, $3, $4) RETURNING {_SUBSCRIPTION_COLUMNS}",
            url,
            secret,
            types,
            description,
        )
        await Store.audit(
            conn,
            who,
            "event_subscription.create",
            f"event_subscription:{row['id']}",
            court_id=None,
            after=_subscription_json(row),
        )
    return web.json_response(
        {**_subscription_json(row), "secret": secret},
        status=201,
        headers={"Location": f"/v1/events/subscriptions/{row['id']}"},
    )


async def list_subscriptions(request: web.Request) -> web.Response:
    await authenticate(request, "operator")
    rows = await _service(request).pool.fetch(
        f"SELECT {_SUBSCRIPTION_COLUMNS} FROM event_subscriptions ORDER BY id"
    )
    return web.json_response({"subscriptions": [_subscription_json(r) for r in rows]})


def _int_id(request: web.Request, what: str) -> int:
    text = request.match_info["id"]
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise ApiError(404, "not_found", f"no such {what}")
    return int(text)


async def delete_subscription(request: web.Request) -> web.Response:
    who = await authenticate(request, "operator")
    sid = _int_id(request, "subscription")
    from ringback.registry.store import Store

    async with _service(request).pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE event_subscriptions SET active = false, disabled_at = coalesce(disabled_at, "
            f"now()) WHERE id = $1 RETURNING {_SUBSCRIPTION_COLUMNS}",
            sid,
        )
        if row is None:
            raise ApiError(404, "not_found", "no such subscription")
        await Store.audit(
            conn,
            who,
            "event_subscription.disable",
            f"event_subscription:{sid}",
            court_id=None,
            after=_subscription_json(row),
        )
    return web.json_response(_subscription_json(row))


_DELIVERY_SELECT = """
SELECT d.id, d.event_id, e.event_type, d.subscription_id, s.url, d.status, d.attempts,
       d.next_attempt_at, d.last_attempt_at, d.last_status, d.last_error, d.delivered_at,
       d.created_at
FROM event_deliveries d
JOIN event_outbox e ON e.id = d.event_id
JOIN event_subscriptions s ON s.id = d.subscription_id
"""


def _delivery_json(row: Any) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    pending = row["status"] in ("pending", "retrying")
    return {
        "id": str(row["id"]),
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "subscription_id": row["subscription_id"],
        "url": row["url"],
        "status": row["status"],
        "attempts": row["attempts"],
        "next_attempt_at": iso(row["next_attempt_at"]) if pending else None,
        "last_attempt_at": iso(row["last_attempt_at"]),
        "last_status": row["last_status"],
        "last_error": row["last_error"],
        "delivered_at": iso(row["delivered_at"]),
        "created_at": iso(row["created_at"]),
    }


async def list_deliveries(request: web.Request) -> web.Response:
    await authenticate(request, "operator")
    q = request.query
    conditions: list[str] = []
    args: list[Any] = []
    status = q.get("status")
    if status is not None:
        if status not in _DELIVERY_STATUSES:
            raise ApiError(
                400, "bad_request", f"status must be one of {', '.join(_DELIVERY_STATUSES)}"
            )
        args.append(status)
        conditions.append(f"d.status = ${len(args)}")
    if "subscription_id" in q:
        try:
            args.append(min(int(q["subscription_id"]), 2**63 - 1))
        except ValueError:
            raise ApiError(400, "bad_request", "subscription_id must be an integer") from None
        conditions.append(f"d.subscription_id = ${len(args)}")
    if "event_id" in q:
        try:
            args.append(min(int(q["event_id"]), 2**63 - 1))
        except ValueError:
            raise ApiError(400, "bad_request", "event_id must be an integer") from None
        conditions.append(f"d.event_id = ${len(args)}")
    if "after" in q:  # cursor: the id of the last delivery of the previous page
        try:
            cursor = uuid.UUID(q["after"])
        except ValueError:
            raise ApiError(400, "bad_request", "after must be a delivery id") from None
        args.append(cursor)
        conditions.append(
            f"(d.created_at, d.id) > (SELECT created_at, id FROM event_deliveries "
            f"WHERE id = ${len(args)})"
        )
    try:
        limit = min(max(int(q.get("limit", "100")), 1), 1000)
    except ValueError:
        raise ApiError(400, "bad_request", "limit must be an integer") from None
    args.append(limit + 1)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = await _service(request).pool.fetch(
        f"{_DELIVERY_SELECT} {where} ORDER BY d.created_at, d.id LIMIT ${len(args)}", *args
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return web.json_response(
        {
            "deliveries": [_delivery_json(r) for r in rows],
            "next_after": str(rows[-1]["id"]) if more else None,
        }
    )


def _delivery_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["id"])
    except ValueError:
        raise ApiError(404, "not_found", "no such delivery") from None


async def get_delivery(request: web.Request) -> web.Response:
    await authenticate(request, "operator")
    row = await _service(request).pool.fetchrow(
        f"{_DELIVERY_SELECT} WHERE d.id = $1", _delivery_id(request)
    )
    if row is None:
        raise ApiError(404, "not_found", "no such delivery")
    return web.json_response(_delivery_json(row))


async def retry_delivery(request: web.Request) -> web.Response:
    """Send a failed delivery again now (one more attempt beyond the limit)."""
    await authenticate(request, "operator")
    pool = _service(request).pool
    did = _delivery_id(request)
    updated = await pool.fetchval(
        "UPDATE event_deliveries SET status = 'retrying', next_attempt_at = now() "
        "WHERE id = $1 AND status IN ('failed', 'retrying') RETURNING id",
        did,
    )
    row = await pool.fetchrow(f"{_DELIVERY_SELECT} WHERE d.id = $1", did)
    if row is None:
        raise ApiError(404, "not_found", "no such delivery")
    if updated is None:
        raise ApiError(409, "conflict", f"the delivery is {row['status']}; nothing to retry")
    return web.json_response(_delivery_json(row), status=202)


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/events/subscriptions", api_handler(create_subscription))
    app.router.add_get("/v1/events/subscriptions", api_handler(list_subscriptions))
    app.router.add_delete("/v1/events/subscriptions/{id}", api_handler(delete_subscription))
    app.router.add_get("/v1/events/deliveries", api_handler(list_deliveries))
    app.router.add_get("/v1/events/deliveries/{id}", api_handler(get_delivery))
    app.router.add_post("/v1/events/deliveries/{id}/retry", api_handler(retry_delivery))
