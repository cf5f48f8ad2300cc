"""Warning recordings: 8 kHz 16-bit mono PCM with what is known of the uploaded original.

A recording belongs to a court, or to nobody (court_id NULL: shipped with ringback).
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from ringback.registry import audit
from ringback.registry.common import Principal

COLUMNS = (
    "id, court_id, name, original_filename, original_format, original_bytes, original_sha256, "
    "duration_ms, loudness_lufs, created_at"
)


class Recordings:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add(
        self,
        court_id: uuid.UUID | None,
        name: str,
        pcm: bytes,
        who: Principal,
        *,
        original: dict[str, Any] | None = None,
        loudness_lufs: float | None = None,
    ) -> asyncpg.Record:
        """Store a recording; `original` may give filename, format, bytes and sha256."""
        original = original or {}
        duration_ms = len(pcm) // 16  # 8 kHz, 2 bytes a sample
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "INSERT INTO recordings (court_id, name, original_filename, original_format, "
                "original_bytes, original_sha256, duration_ms, pcm, loudness_lufs) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id, court_id, name, "
                "original_filename, original_format, original_bytes, duration_ms, "
                "loudness_lufs, created_at",
                court_id,
                name,
                original.get("filename"),
                original.get("format"),
                original.get("bytes"),
                original.get("sha256"),
                duration_ms,
                pcm,
                loudness_lufs,
            )
            assert row is not None
            await audit.record(
                conn,
                who,
                "recording.create",
                f"recording:{row['id']}",
                court_id=court_id,
                after=row,
            )
        return row

    async def pcm(self, recording_id: int) -> bytes | None:
        pcm: bytes | None = await self.pool.fetchval(
            "SELECT pcm FROM recordings WHERE id = $1", recording_id
        )
        return pcm

    async def get(self, recording_id: int) -> asyncpg.Record | None:
        """A recording's metadata (`COLUMNS`), without its audio."""
        return await self.pool.fetchrow(
            f"SELECT {COLUMNS} FROM recordings WHERE id = $1", recording_id
        )

    async def audio(self, recording_id: int) -> asyncpg.Record | None:
        """id, court_id and pcm of a recording."""
        return await self.pool.fetchrow(
            "SELECT id, court_id, pcm FROM recordings WHERE id = $1", recording_id
        )

    async def page(
        self, after_id: int, limit: int, *, court_id: uuid.UUID | None, with_shipped: bool
    ) -> list[asyncpg.Record]:
        """Recordings ordered by id after `after_id`: every one when `court_id` is None,
        else the court's own (and the shipped ones too if `with_shipped`)."""
        return list(
            await self.pool.fetch(
                f"SELECT {COLUMNS} FROM recordings WHERE id > $1 AND ($3::uuid IS NULL "
                "OR court_id = $3 OR ($4 AND court_id IS NULL)) ORDER BY id LIMIT $2",
                after_id,
                limit,
                court_id,
                with_shipped,
            )
        )
