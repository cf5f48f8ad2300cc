"""Signed webhooks: the signature (outgoing events and the incoming payment hook use the
same), and the worker that delivers outgoing events.

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
import time
import uuid
from datetime import datetime

import aiohttp
import asyncpg

from ringback.config import EventsConfig
from ringback.event_destinations import (
    DestinationRefused,
    GuardedResolver,
    WebhookPolicy,
    url_refusal,
)
from ringback.registry.common import DATABASE_ERRORS
from ringback.registry.outbox import (
    claim_deliveries,
    emit_effective,
    emit_hourly,
    record_failure,
    record_success,
    release,
)

log = logging.getLogger(__name__)

__all__ = ["EventWorker", "sign"]

# Refused, unreachable, reset, silent or a broken answer: all told alike, so a subscription
# cannot be used to map which ports of a host are open.
FAILED_TO_CONNECT = "failed to connect"


def sign(secret: str, timestamp: str | int, body: bytes) -> str:
    """The `X-Ringback-Signature` value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class EventWorker:
    """Delivers due outbox deliveries; also emits listing.effective and hourly totals."""

    def __init__(self, pool: asyncpg.Pool, config: EventsConfig, node: str = "") -> None:
        self.pool = pool
        self.config = config
        self.policy = WebhookPolicy(config.allowed_destinations)
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
        connector = aiohttp.TCPConnector(
            limit=self.config.concurrency, resolver=GuardedResolver(self.policy)
        )
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            self._session = session
            while not self._stopping.is_set():
                busy = False
                try:
                    await self._housekeeping()
                    busy = await self.deliver_round()
                except DATABASE_ERRORS as exc:
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
            refused = url_refusal(self.policy, row["url"])
            if refused is not None:
                raise DestinationRefused(refused)
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
        except DestinationRefused as exc:
            error = f"destination not allowed: {exc.reason}"
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, DestinationRefused):
                error = f"destination not allowed: {exc.os_error.reason}"
            else:
                error = FAILED_TO_CONNECT
        except (TimeoutError, aiohttp.ClientError):
            error = FAILED_TO_CONNECT
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
