"""Transactional outbox for outgoing event webhooks.

`enqueue_event` writes an event, and one delivery row per matching active subscription, on
the caller's connection inside the caller's transaction: the event exists if and only if
the change it describes was committed. A delivery worker (`ringback.webhooks`) sends the
deliveries later, with retries, from any node.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

__all__ = [
    "EVENT_TYPES",
    "claim_deliveries",
    "emit_effective",
    "emit_hourly",
    "enqueue_event",
    "event_json",
    "record_failure",
    "record_success",
    "release",
]

EVENT_TYPES = (
    "listing.created",
    "listing.effective",
    "listing.suspended",
    "listing.resumed",
    "listing.cleared",
    "warnings.played.hourly",
    "import.completed",
    "audit.checkpoint",
)


def _default(value: object) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def event_json(payload: dict[str, Any]) -> str:
    """The payload as JSON text (datetimes ISO 8601, UUIDs and Decimals as strings)."""
    return json.dumps(payload, default=_default, separators=(",", ":"), ensure_ascii=False)


_ENQUEUE = """
WITH ev AS (
    INSERT INTO event_outbox (event_type, payload) VALUES ($1, $2::text::jsonb)
    RETURNING id, event_type
)
INSERT INTO event_deliveries (event_id, subscription_id)
SELECT ev.id, s.id FROM ev JOIN event_subscriptions s
  ON s.active AND (s.event_types IS NULL OR ev.event_type = ANY (s.event_types))
"""


async def enqueue_event(conn: asyncpg.Connection, event_type: str, payload: dict[str, Any]) -> None:
    """Write an outgoing event in the caller's transaction (call it inside one).

    `payload` is the event's `data`; it may hold datetimes, UUIDs and Decimals.
    """
    await conn.execute(_ENQUEUE, event_type, event_json(payload))


# ------------------------------------------------------------------ delivery worker SQL
_FANOUT = """
INSERT INTO event_deliveries (event_id, subscription_id)
SELECT ev.id, s.id FROM ev JOIN event_subscriptions s
  ON s.active AND (s.event_types IS NULL OR ev.event_type = ANY (s.event_types))
"""

_CLAIM = """
UPDATE event_deliveries d
SET next_attempt_at = now() + make_interval(secs => $2)
FROM event_outbox e, event_subscriptions s
WHERE d.id IN (
        SELECT id FROM event_deliveries
        WHERE status IN ('pending', 'retrying') AND next_attempt_at <= now()
        ORDER BY next_attempt_at
        LIMIT $1
        FOR UPDATE SKIP LOCKED)
  AND e.id = d.event_id AND s.id = d.subscription_id
RETURNING d.id, d.attempts, e.id AS event_id, e.event_type, e.payload::text AS payload,
          e.created_at, s.id AS subscription_id, s.url, s.secret, s.active
"""


async def claim_deliveries(pool: asyncpg.Pool, limit: int, lease_s: float) -> list[asyncpg.Record]:
    """Claim up to `limit` due deliveries for `lease_s` seconds (safe with several nodes)."""
    rows: list[asyncpg.Record] = await pool.fetch(_CLAIM, limit, lease_s)
    return rows


async def record_success(pool: asyncpg.Pool, delivery_id: uuid.UUID, status: int) -> None:
    await pool.execute(
        "UPDATE event_deliveries SET status = 'delivered', attempts = attempts + 1, "
        "delivered_at = now(), last_attempt_at = now(), last_status = $2, last_error = NULL "
        "WHERE id = $1",
        delivery_id,
        status,
    )


async def record_failure(
    pool: asyncpg.Pool,
    delivery_id: uuid.UUID,
    *,
    status: int | None,
    error: str,
    retry_in_s: float,
    max_attempts: int,
) -> str:
    """Count a failed attempt; 'retrying' (due again in `retry_in_s`) or 'failed'."""
    new_status: str = await pool.fetchval(
        "UPDATE event_deliveries SET attempts = attempts + 1, last_attempt_at = now(), "
        "last_status = $2, last_error = left($3, 500), "
        "status = CASE WHEN attempts + 1 >= $5 THEN 'failed' ELSE 'retrying' END, "
        "next_attempt_at = now() + make_interval(secs => $4) "
        "WHERE id = $1 RETURNING status",
        delivery_id,
        status,
        error,
        retry_in_s,
        max_attempts,
    )
    return new_status


async def release(pool: asyncpg.Pool, delivery_ids: list[uuid.UUID]) -> None:
    """Give claimed deliveries back at once (a node stopping mid-round)."""
    await pool.execute(
        "UPDATE event_deliveries SET next_attempt_at = now() "
        "WHERE id = ANY ($1::uuid[]) AND status IN ('pending', 'retrying')",
        delivery_ids,
    )


_EFFECTIVE_LOCK = 7_401_003
_EFFECTIVE = (
    """
WITH due AS (
    SELECT l.id, l.number, l.court_id, l.case_ref, l.status, l.effective_at, l.expires_at
    FROM listings l
    WHERE l.status = 'active' AND l.effective_at > l.listed_at
      AND l.effective_at > $1::timestamptz - interval '10 minutes'
      AND l.effective_at <= now() AND l.expires_at > now()
      AND NOT EXISTS (SELECT 1 FROM event_effective_sent s WHERE s.listing_id = l.id)
    ORDER BY l.effective_at
    LIMIT $2
), mark AS (
    INSERT INTO event_effective_sent (listing_id) SELECT id FROM due
), ev AS (
    INSERT INTO event_outbox (event_type, payload)
    SELECT 'listing.effective', jsonb_build_object(
        'listing_id', id, 'number', '+' || number, 'court_id', court_id::text,
        'case_ref', case_ref, 'status', status, 'effective_at', effective_at,
        'expires_at', expires_at, 'actor', 'system')
    FROM due ORDER BY effective_at
    RETURNING id, event_type
), fan AS (
"""
    + _FANOUT
    + """
)
SELECT count(*) FROM due
"""
)


async def emit_effective(pool: asyncpg.Pool, limit: int = 10_000) -> int:
    """Write listing.effective for listings whose deferred effective_at has passed.

    Each listing gets the event once (event_effective_sent), whichever node runs this.
    """
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _EFFECTIVE_LOCK):
            return 0
        scanned = await conn.fetchval("SELECT effective_scanned FROM event_worker_state FOR UPDATE")
        started = await conn.fetchval("SELECT now()")
        count: int = await conn.fetchval(_EFFECTIVE, scanned, limit)
        if count < limit:
            await conn.execute("UPDATE event_worker_state SET effective_scanned = $1", started)
    return count


# From the hourly rollup (migration 013), kept in the same transaction as each insert.
_HOURLY = """
SELECT court_id, sum(n)::int8 AS played,
       coalesce(sum(n) FILTER (WHERE outcome = 'completed'), 0)::int8 AS completed,
       coalesce(sum(n) FILTER (WHERE outcome = 'cancelled'), 0)::int8 AS cancelled,
       coalesce(sum(n) FILTER (WHERE outcome = 'failed'), 0)::int8 AS failed
FROM announcement_hourly
WHERE hour = $1
GROUP BY court_id ORDER BY court_id
"""


async def emit_hourly(pool: asyncpg.Pool, delay_s: float, max_hours: int = 48) -> int:
    """Write warnings.played.hourly for each finished hour not yet reported (catching up
    after downtime, at most `max_hours` back). An hour is reported `delay_s` after it ends."""
    emitted = 0
    async with pool.acquire() as conn:
        latest = await conn.fetchval(
            "SELECT date_trunc('hour', now() - make_interval(secs => $1) - interval '1 hour', "
            "'UTC')",  # UTC hours, as the rollup keeps them
            delay_s,
        )
        last_sent = await conn.fetchval("SELECT max(hour) FROM event_hours_sent")
        first = (
            latest
            if last_sent is None
            else max(last_sent + timedelta(hours=1), latest - timedelta(hours=max_hours - 1))
        )
        hour = first
        while hour <= latest:
            async with conn.transaction():
                fresh = await conn.fetchval(
                    "INSERT INTO event_hours_sent (hour) VALUES ($1) "
                    "ON CONFLICT DO NOTHING RETURNING true",
                    hour,
                )
                if fresh:
                    rows = await conn.fetch(_HOURLY, hour)
                    courts = [
                        {
                            "court_id": str(r["court_id"]) if r["court_id"] else None,
                            "played": r["played"],
                            "completed": r["completed"],
                            "cancelled": r["cancelled"],
                            "failed": r["failed"],
                        }
                        for r in rows
                    ]
                    totals = {
                        key: sum(int(c[key]) for c in courts)
                        for key in ("played", "completed", "cancelled", "failed")
                    }
                    await enqueue_event(
                        conn,
                        "warnings.played.hourly",
                        {
                            "hour_start": hour,
                            "hour_end": hour + timedelta(hours=1),
                            "totals": totals,
                            "courts": courts,
                        },
                    )
                    emitted += 1
            hour += timedelta(hours=1)
    return emitted
