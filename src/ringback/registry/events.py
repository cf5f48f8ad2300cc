"""Event subscriptions (where outgoing events go) and their deliveries, as operators see
and manage them. Writing events is `ringback.registry.outbox`; sending them is
`ringback.webhooks.EventWorker`."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from ringback.registry import audit
from ringback.registry.common import Conflict, NotFound, Principal

SUBSCRIPTION_COLUMNS = "id, url, event_types, description, active, created_at, disabled_at"
DELIVERY_STATUSES = ("pending", "retrying", "delivered", "failed")

_DELIVERY_SELECT = """
SELECT d.id, d.event_id, e.event_type, d.subscription_id, s.url, d.status, d.attempts,
       d.next_attempt_at, d.last_attempt_at, d.last_status, d.last_error, d.delivered_at,
       d.created_at
FROM event_deliveries d
JOIN event_outbox e ON e.id = d.event_id
JOIN event_subscriptions s ON s.id = d.subscription_id
"""


class Events:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def subscribe(
        self,
        url: str,
        secret: str,
        event_types: list[str] | None,
        description: str,
        who: Principal,
    ) -> asyncpg.Record:
        """A new subscription (`event_types` None: every type)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "INSERT INTO event_subscriptions (url, secret, event_types, description) "
                f"VALUES ($1, $2, $3, $4) RETURNING {SUBSCRIPTION_COLUMNS}",
                url,
                secret,
                event_types,
                description,
            )
            assert row is not None
            await audit.record(
                conn,
                who,
                "event_subscription.create",
                f"event_subscription:{row['id']}",
                court_id=None,
                after=row,
            )
        return row

    async def subscriptions(self) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                f"SELECT {SUBSCRIPTION_COLUMNS} FROM event_subscriptions ORDER BY id"
            )
        )

    async def rotate_secret(
        self, subscription_id: int, secret: str, who: Principal
    ) -> asyncpg.Record:
        """Sign the subscription's deliveries with `secret` from now on (every attempt
        after this, retries included). Audited without the secret."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE event_subscriptions SET secret = $2, secret_rotated_at = now() "
                f"WHERE id = $1 RETURNING {SUBSCRIPTION_COLUMNS}, secret_rotated_at",
                subscription_id,
                secret,
            )
            if row is None:
                raise NotFound("no such subscription")
            await audit.record(
                conn,
                who,
                "event_subscription.rotate_secret",
                f"event_subscription:{subscription_id}",
                court_id=None,
                after={
                    "id": subscription_id,
                    "secret_rotated_at": row["secret_rotated_at"].isoformat(),
                },
            )
        return row

    async def disable(self, subscription_id: int, who: Principal) -> asyncpg.Record:
        """Stop sending to a subscription (kept for its deliveries' history)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE event_subscriptions SET active = false, disabled_at = "
                f"coalesce(disabled_at, now()) WHERE id = $1 RETURNING {SUBSCRIPTION_COLUMNS}",
                subscription_id,
            )
            if row is None:
                raise NotFound("no such subscription")
            await audit.record(
                conn,
                who,
                "event_subscription.disable",
                f"event_subscription:{subscription_id}",
                court_id=None,
                after=row,
            )
        return row

    async def deliveries(
        self,
        *,
        status: str | None,
        subscription_id: int | None,
        event_id: int | None,
        after: uuid.UUID | None,
        limit: int,
    ) -> list[asyncpg.Record]:
        """Deliveries oldest first; `after` is the last delivery of the previous page."""
        conditions: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("d.status", status),
            ("d.subscription_id", subscription_id),
            ("d.event_id", event_id),
        ):
            if value is not None:
                args.append(value)
                conditions.append(f"{column} = ${len(args)}")
        if after is not None:
            args.append(after)
            conditions.append(
                f"(d.created_at, d.id) > (SELECT created_at, id FROM event_deliveries "
                f"WHERE id = ${len(args)})"
            )
        args.append(limit)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        return list(
            await self.pool.fetch(
                f"{_DELIVERY_SELECT} {where} ORDER BY d.created_at, d.id LIMIT ${len(args)}",
                *args,
            )
        )

    async def delivery_counts(self) -> dict[str, int]:
        """How many deliveries are in each status (every status present, 0 if none)."""
        rows = await self.pool.fetch(
            "SELECT status, count(*) AS n FROM event_deliveries GROUP BY status"
        )
        counts = dict.fromkeys(DELIVERY_STATUSES, 0)
        counts.update({r["status"]: r["n"] for r in rows})
        return counts

    async def delivery(self, delivery_id: uuid.UUID) -> asyncpg.Record | None:
        return await self.pool.fetchrow(f"{_DELIVERY_SELECT} WHERE d.id = $1", delivery_id)

    async def retry(self, delivery_id: uuid.UUID) -> asyncpg.Record:
        """Make a failed (or retrying) delivery due now, one attempt beyond the limit.

        `NotFound` for an unknown delivery, `Conflict` for one not failed or retrying.
        """
        updated = await self.pool.fetchval(
            "UPDATE event_deliveries SET status = 'retrying', next_attempt_at = now() "
            "WHERE id = $1 AND status IN ('failed', 'retrying') RETURNING id",
            delivery_id,
        )
        row = await self.delivery(delivery_id)
        if row is None:
            raise NotFound("no such delivery")
        if updated is None:
            raise Conflict(f"the delivery is {row['status']}; nothing to retry")
        return row
