"""Warning recordings: 16-bit mono PCM (16 kHz; 8 kHz for rows stored before migration 011)
with what is known of the uploaded original.

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
    "duration_ms, loudness_lufs, sample_rate, created_at"
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
        sample_rate: int = 8000,
    ) -> asyncpg.Record:
        """Store a recording (mono s16le at `sample_rate`); `original` may give filename,
        format, bytes and sha256."""
        original = original or {}
        duration_ms = len(pcm) * 500 // sample_rate  # 2 bytes a sample
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "INSERT INTO recordings (court_id, name, original_filename, original_format, "
                "original_bytes, original_sha256, duration_ms, pcm, loudness_lufs, sample_rate) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id, court_id, name, "
                "original_filename, original_format, original_bytes, duration_ms, "
                "loudness_lufs, sample_rate, created_at",
                court_id,
                name,
                original.get("filename"),
                original.get("format"),
                original.get("bytes"),
                original.get("sha256"),
                duration_ms,
                pcm,
                loudness_lufs,
                sample_rate,
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

    async def pcm(self, recording_id: int) -> tuple[bytes, int] | None:
        """(PCM, sample rate) of a recording, or None."""
        row = await self.pool.fetchrow(
            "SELECT pcm, sample_rate FROM recordings WHERE id = $1", recording_id
        )
        return None if row is None else (bytes(row["pcm"]), int(row["sample_rate"]))

    async def get(self, recording_id: int) -> asyncpg.Record | None:
        """A recording's metadata (`COLUMNS`), without its audio."""
        return await self.pool.fetchrow(
            f"SELECT {COLUMNS} FROM recordings WHERE id = $1", recording_id
        )

    async def audio(self, recording_id: int) -> asyncpg.Record | None:
        """id, court_id, pcm and sample_rate of a recording."""
        return await self.pool.fetchrow(
            "SELECT id, court_id, pcm, sample_rate FROM recordings WHERE id = $1", recording_id
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
