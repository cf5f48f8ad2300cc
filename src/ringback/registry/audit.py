"""Independent check of the audit trail's hash chain.

The database computes each row's hash when the row is written (`audit_digest` in the
schema); this module recomputes every hash in Python from the stored fields, so a row
altered behind the database's back (or a tampered `audit_digest`) is found.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import asyncpg

GENESIS = bytes(32)


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


async def verify_chain(conn: asyncpg.Connection, batch: int = 10_000) -> VerifyResult:
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
            prev, expected_id = digest, expected_id + 1
        head = await conn.fetchrow("SELECT last_id, last_hash FROM audit_head")
        if head is not None and (
            head["last_id"] != expected_id - 1 or bytes(head["last_hash"]) != prev
        ):
            return VerifyResult(count, expected_id - 1, "audit_head does not match the last row")
    return VerifyResult(count, None)
