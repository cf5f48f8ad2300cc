"""The audit trail: writing an event, reading it page by page, checking its hash chain.

Every mutation calls `record` on its own connection inside its own transaction, so a
change is never without its record and a record never without its change.

The database computes each row's hash when the row is written (`audit_digest` in the
schema); `verify_chain` recomputes every hash in Python from the stored fields, so a row
altered behind the database's back (or a tampered `audit_digest`) is found.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from ringback.registry.common import Principal, jsonable

GENESIS = bytes(32)


async def record(
    conn: asyncpg.Connection,
    who: Principal,
    action: str,
    entity: str,
    *,
    court_id: uuid.UUID | None,
    before: Any = None,
    after: Any = None,
) -> None:
    """Write an audit event in the caller's transaction; rows become JSON (`jsonable`)."""
    await conn.execute(
        "INSERT INTO audit_events (actor, court_id, action, entity, before, after, "
        "prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, '', '')",
        who.actor,
        court_id,
        action,
        entity,
        jsonable(before) if isinstance(before, asyncpg.Record) else before,
        jsonable(after) if isinstance(after, asyncpg.Record) else after,
    )


EVENT_COLUMNS = "id, at, actor, court_id, action, entity, before, after, prev_hash, hash"


class AuditTrail:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def page(
        self,
        *,
        court_id: uuid.UUID | None,
        entity: str | None,
        action: str | None,
        after_id: int,
        limit: int,
    ) -> list[asyncpg.Record]:
        """Events oldest first after `after_id` (keyset paging); one court's if given."""
        return list(
            await self.pool.fetch(
                f"SELECT {EVENT_COLUMNS} "
                "FROM audit_events WHERE id > $1 AND ($2::uuid IS NULL OR court_id = $2) "
                "AND ($3::text IS NULL OR entity = $3) AND ($4::text IS NULL OR action = $4) "
                "ORDER BY id LIMIT $5",
                after_id,
                court_id,
                entity,
                action,
                limit,
            )
        )

    async def listing_history(self, listing_ids: list[int]) -> list[asyncpg.Record]:
        """Every audit event about these listings, oldest first: their own events and
        those of the bulk imports that wrote them."""
        return list(
            await self.pool.fetch(
                f"SELECT {EVENT_COLUMNS} FROM audit_events WHERE entity = ANY($1::text[]) "
                f"UNION SELECT {EVENT_COLUMNS} FROM audit_events WHERE entity = ANY("
                "  SELECT DISTINCT 'import:' || import_id FROM import_listings "
                "  WHERE listing_id = ANY($2::int8[])) "
                "ORDER BY id LIMIT 10000",
                [f"listing:{i}" for i in listing_ids],
                listing_ids,
            )
        )


@dataclass(frozen=True)
class VerifyResult:
    rows: int
    first_bad_id: int | None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.first_bad_id is None


def row_digest(prev: bytes, row: asyncpg.Record) -> bytes:
    fields = [
        prev.hex(),
        str(row["id"]),
        row["at_text"],
        row["actor"],
        row["court_text"],
        row["action"],
        row["entity"],
        row["before_text"],
        row["after_text"],
    ]
    return hashlib.sha256("|".join(fields).encode()).digest()


async def verify_chain(
    conn: asyncpg.Connection,
    batch: int = 10_000,
    checkpoints: Sequence[tuple[int, bytes]] = (),
) -> VerifyResult:
    """Recompute the chain from the first event; each (seq, hash) of `checkpoints` (an
    exported head) must be the hash the chain computes for event seq. Without checkpoints,
    a chain rewritten with every hash recomputed (by a database superuser) still verifies."""
    wanted = dict(checkpoints)
    prev, expected_id, count = GENESIS, 1, 0
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = conn.cursor(
            "SELECT id, actor, action, entity, prev_hash, hash, "
            "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS at_text, "
            "coalesce(court_id::text, '') AS court_text, "
            "coalesce(before::text, 'null') AS before_text, "
            "coalesce(after::text, 'null') AS after_text "
            "FROM audit_events ORDER BY id",
            prefetch=batch,
        )
        async for row in cursor:
            count += 1
            if row["id"] != expected_id:
                return VerifyResult(count, row["id"], f"gap: expected id {expected_id}")
            if bytes(row["prev_hash"]) != prev:
                return VerifyResult(count, row["id"], "prev_hash does not match previous row")
            digest = row_digest(prev, row)
            if bytes(row["hash"]) != digest:
                return VerifyResult(count, row["id"], "hash does not match row contents")
            expected = wanted.pop(row["id"], None)
            if expected is not None and expected != digest:
                return VerifyResult(
                    count,
                    row["id"],
                    f"checkpoint {expected.hex()}@{row['id']} does not match: the chain up to "
                    f"event {row['id']} was rewritten (it hashes to {digest.hex()})",
                )
            prev, expected_id = digest, expected_id + 1
        head = await conn.fetchrow("SELECT last_id, last_hash FROM audit_head")
        if head is not None and (
            head["last_id"] != expected_id - 1 or bytes(head["last_hash"]) != prev
        ):
            return VerifyResult(count, expected_id - 1, "audit_head does not match the last row")
    if wanted:
        seq = min(wanted)
        return VerifyResult(
            count, seq, f"the chain ends at event {count}, before checkpoint @{seq}: rows removed"
        )
    return VerifyResult(count, None)
