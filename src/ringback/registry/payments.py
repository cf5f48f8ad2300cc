"""Payments confirmed by a court's payment system (the payment hook).

A confirmed payment clears every open listing of its case. Payments are idempotent by
(court, payment_id): the first answer is stored and given again to every replay.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from ringback.registry import audit
from ringback.registry.common import Principal, jsonable
from ringback.registry.listings import COLUMNS as LISTING_COLUMNS
from ringback.registry.listings import listing_event
from ringback.registry.outbox import enqueue_event


class Payments:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def confirm(
        self,
        court_id: uuid.UUID,
        payment_id: str,
        case_ref: str,
        paid_at: datetime,
        amount: Any,
        currency: str | None,
    ) -> tuple[dict[str, Any], bool]:
        """Record a payment and clear every open listing of its case, in one transaction.

        Idempotent by (court, payment_id): a second call returns the first call's result
        and changes nothing. Returns (result, replayed).
        """
        who = Principal(f"payment:{payment_id}", "system", court_id)
        async with self.pool.acquire() as conn, conn.transaction():
            # Claim the payment id first: a concurrent duplicate waits here for our commit.
            claimed = await conn.fetchval(
                "INSERT INTO payment_events (court_id, payment_id, case_ref, paid_at, amount, "
                "currency, result) VALUES ($1, $2, $3, $4, $5, $6, '{}'::jsonb) "
                "ON CONFLICT (court_id, payment_id) DO NOTHING RETURNING true",
                court_id,
                payment_id,
                case_ref,
                paid_at,
                amount,
                currency,
            )
            if not claimed:
                first: dict[str, Any] = await conn.fetchval(
                    "SELECT result FROM payment_events WHERE court_id = $1 AND payment_id = $2",
                    court_id,
                    payment_id,
                )
                return first, True
            befores = await conn.fetch(
                f"SELECT {LISTING_COLUMNS} FROM listings WHERE court_id = $1 AND case_ref = $2 "
                "AND status IN ('active', 'suspended') ORDER BY id FOR UPDATE",
                court_id,
                case_ref,
            )
            reason = f"payment {payment_id} confirmed"
            afters = await conn.fetch(
                "UPDATE listings SET status = 'cleared', cleared_at = now(), updated_at = now(), "
                f"clear_reason = $2 WHERE id = ANY($1::int8[]) RETURNING {LISTING_COLUMNS}",
                [b["id"] for b in befores],
                reason,
            )
            by_id = {a["id"]: a for a in afters}
            for before in befores:
                after = by_id[before["id"]]
                await audit.record(
                    conn,
                    who,
                    "listing.clear",
                    f"listing:{before['id']}",
                    court_id=court_id,
                    before=before,
                    after={**(jsonable(after) or {}), "reason": reason},
                )
                await enqueue_event(
                    conn, "listing.cleared", listing_event(after, who, reason=reason)
                )
            received_at = await conn.fetchval(
                "SELECT received_at FROM payment_events WHERE court_id = $1 AND payment_id = $2",
                court_id,
                payment_id,
            )
            result: dict[str, Any] = {
                "court_id": str(court_id),
                "payment_id": payment_id,
                "case_ref": case_ref,
                "paid_at": paid_at.isoformat(),
                "received_at": received_at.isoformat(),
                "cleared": [f"+{b['number']}" for b in befores],
                "cleared_listing_ids": [b["id"] for b in befores],
            }
            await conn.execute(
                "UPDATE payment_events SET result = $3 WHERE court_id = $1 AND payment_id = $2",
                court_id,
                payment_id,
                result,
            )
            await audit.record(
                conn,
                who,
                "payment.confirmed",
                f"payment:{payment_id}",
                court_id=court_id,
                after={
                    **result,
                    "amount": None if amount is None else str(amount),
                    "currency": currency,
                },
            )
        return result, False
