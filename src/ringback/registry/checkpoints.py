"""Checkpoints of the audit chain's head, exported outside the database.

A database superuser can rewrite the audit trail and recompute every hash; the chain then
verifies again. What it cannot rewrite is a head already exported: each checkpoint is an
`audit.checkpoint` event sent to every event subscriber (with the other events, signed),
a log line and a metric, as `HASH@SEQ`. `ringback audit verify --checkpoint HASH@SEQ`
fails on a chain that no longer hashes to it. Any node may export; the
`audit_checkpoints` row makes each head exported once.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from ringback.registry.outbox import enqueue_event


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: bytes

    def __str__(self) -> str:
        return f"{self.hash.hex()}@{self.seq}"


async def export_checkpoint(pool: asyncpg.Pool) -> tuple[Checkpoint | None, bool]:
    """Record the chain's current head as a checkpoint; (the head, whether it is new).
    None before the first audit event."""
    async with pool.acquire() as conn, conn.transaction():
        head = await conn.fetchrow("SELECT last_id, last_hash FROM audit_head")
        if head is None or head["last_id"] == 0:
            return None, False
        point = Checkpoint(int(head["last_id"]), bytes(head["last_hash"]))
        new = await conn.fetchval(
            "INSERT INTO audit_checkpoints (seq, hash) VALUES ($1, $2) "
            "ON CONFLICT (seq) DO NOTHING RETURNING true",
            point.seq,
            point.hash,
        )
        if new:
            await enqueue_event(
                conn,
                "audit.checkpoint",
                {"seq": point.seq, "hash": point.hash.hex(), "checkpoint": str(point)},
            )
    return point, bool(new)
