"""The registry's PostgreSQL store: courts, tokens, recordings, listings and their audit trail.

Every mutation writes its audit event in the same transaction as the change, so a change
is never without its record and a record never without its change.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ringback.registry.migrate import migrate

TOKEN_PREFIX = "rbk_"


def new_token() -> str:
    """A bearer token: 256 random bits, URL-safe, recognisable by its prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def token_label(token: str) -> str:
    """What may be shown or logged of a token: its first characters only."""
    return token[: len(TOKEN_PREFIX) + 6] + "…"


@dataclass(frozen=True)
class Principal:
    """Who is acting: the audit trail's `actor`, with the court it may act for."""

    actor: str
    role: str  # operator | court | switch | system
    court_id: uuid.UUID | None = None


SYSTEM = Principal("system", "system")


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    async def init(conn: asyncpg.Connection) -> None:
        for kind in ("json", "jsonb"):
            await conn.set_type_codec(
                kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )

    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=init)
    assert pool is not None
    return pool


def _jsonable(row: asyncpg.Record | dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    out: dict[str, Any] = {}
    for key, value in dict(row).items():
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            continue  # hashes and audio are not audit material
        out[key] = value
    return out


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def migrate(self) -> list[str]:
        async with self.pool.acquire() as conn:
            return [f"{m.version:03d}_{m.name}" for m in await migrate(conn)]

    # ---------------------------------------------------------------- audit
    @staticmethod
    async def audit(
        conn: asyncpg.Connection,
        who: Principal,
        action: str,
        entity: str,
        *,
        court_id: uuid.UUID | None,
        before: Any = None,
        after: Any = None,
    ) -> None:
        await conn.execute(
            "INSERT INTO audit_events (actor, court_id, action, entity, before, after, "
            "prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, '', '')",
            who.actor,
            court_id,
            action,
            entity,
            _jsonable(before) if isinstance(before, asyncpg.Record) else before,
            _jsonable(after) if isinstance(after, asyncpg.Record) else after,
        )

    # --------------------------------------------------------- courts/tokens
    async def create_court(self, name: str, who: Principal) -> tuple[asyncpg.Record, str, str]:
        """Create a court with its first court token and its webhook secret.

        Returns (court row, token, webhook secret); neither secret is retrievable later.
        """
        secret = secrets.token_urlsafe(32)
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                court = await conn.fetchrow(
                    "INSERT INTO courts (name, webhook_secret) VALUES ($1, $2) "
                    "RETURNING id, name, default_recording_id, created_at",
                    name,
                    secret,
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(f"a court named {name!r} already exists") from None
            assert court is not None
            await self.audit(
                conn, who, "court.create", f"court:{court['id']}", court_id=court["id"], after=court
            )
            token = await self._create_token(conn, "court", court["id"], "first token", who)
        return court, token, secret

    async def create_token(
        self, role: str, court_id: uuid.UUID | None, label: str, who: Principal
    ) -> str:
        async with self.pool.acquire() as conn, conn.transaction():
            return await self._create_token(conn, role, court_id, label, who)

    async def _create_token(
        self,
        conn: asyncpg.Connection,
        role: str,
        court_id: uuid.UUID | None,
        label: str,
        who: Principal,
    ) -> str:
        token = new_token()
        row = await conn.fetchrow(
            "INSERT INTO api_tokens (token_hash, prefix, role, court_id, label) "
            "VALUES ($1, $2, $3, $4, $5) RETURNING id, prefix, role, court_id, label",
            hash_token(token),
            token_label(token),
            role,
            court_id,
            label,
        )
        await self.audit(
            conn, who, "token.create", f"token:{row['id']}", court_id=court_id, after=row
        )
        return token

    async def authenticate(self, token: str) -> Principal | None:
        row = await self.pool.fetchrow(
            "SELECT id, prefix, role, court_id FROM api_tokens "
            "WHERE token_hash = $1 AND revoked_at IS NULL",
            hash_token(token),
        )
        if row is None:
            return None
        return Principal(f"token:{row['id']}:{row['prefix']}", row["role"], row["court_id"])

    # ------------------------------------------------------------ recordings
    async def add_recording(
        self,
        court_id: uuid.UUID | None,
        name: str,
        pcm: bytes,
        who: Principal,
        *,
        original: dict[str, Any] | None = None,
        loudness_lufs: float | None = None,
    ) -> asyncpg.Record:
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
            await self.audit(
                conn,
                who,
                "recording.create",
                f"recording:{row['id']}",
                court_id=court_id,
                after=row,
            )
        return row

    async def recording_pcm(self, recording_id: int) -> bytes | None:
        pcm: bytes | None = await self.pool.fetchval(
            "SELECT pcm FROM recordings WHERE id = $1", recording_id
        )
        return pcm

    async def set_default_recording(
        self, court_id: uuid.UUID, recording_id: int | None, who: Principal
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            before = await conn.fetchrow(
                "SELECT id, default_recording_id FROM courts WHERE id = $1 FOR UPDATE", court_id
            )
            if before is None:
                raise NotFound("no such court")
            if recording_id is not None:
                owner = await conn.fetchval(
                    "SELECT court_id FROM recordings WHERE id = $1", recording_id
                )
                if owner != court_id:
                    raise NotFound("no such recording")
            after = await conn.fetchrow(
                "UPDATE courts SET default_recording_id = $2 WHERE id = $1 "
                "RETURNING id, default_recording_id",
                court_id,
                recording_id,
            )
            await self.audit(
                conn,
                who,
                "court.default_recording",
                f"court:{court_id}",
                court_id=court_id,
                before=before,
                after=after,
            )

    # -------------------------------------------------------------- listings
    _LISTING_COLUMNS = (
        "id, number, court_id, case_ref, recording_id, status, listed_at, effective_at, "
        "expires_at, cleared_at, clear_reason, updated_at"
    )

    async def put_listing(
        self,
        court_id: uuid.UUID,
        number: int,
        case_ref: str,
        expires_at: datetime,
        who: Principal,
        *,
        effective_at: datetime | None = None,
        recording_id: int | None = None,
    ) -> asyncpg.Record:
        """List `number` for the court, or update the court's open listing of it."""
        cols = self._LISTING_COLUMNS
        async with self.pool.acquire() as conn, conn.transaction():
            before = await conn.fetchrow(
                f"SELECT {cols} FROM listings WHERE court_id = $1 AND number = $2 "
                "AND status IN ('active', 'suspended') FOR UPDATE",
                court_id,
                number,
            )
            if before is None:
                after = await conn.fetchrow(
                    "INSERT INTO listings (number, court_id, case_ref, recording_id, "
                    "effective_at, expires_at) VALUES ($1, $2, $3, $4, coalesce($5, now()), $6) "
                    f"RETURNING {cols}",
                    number,
                    court_id,
                    case_ref,
                    recording_id,
                    effective_at,
                    expires_at,
                )
                action = "listing.create"
            else:
                after = await conn.fetchrow(
                    "UPDATE listings SET case_ref = $2, recording_id = $3, "
                    "effective_at = coalesce($4, effective_at), expires_at = $5, "
                    f"updated_at = now() WHERE id = $1 RETURNING {cols}",
                    before["id"],
                    case_ref,
                    recording_id,
                    effective_at,
                    expires_at,
                )
                action = "listing.update"
            assert after is not None
            await self.audit(
                conn,
                who,
                action,
                f"listing:{after['id']}",
                court_id=court_id,
                before=before,
                after=after,
            )
        return after

    async def change_status(
        self,
        court_id: uuid.UUID,
        number: int,
        new_status: str,
        who: Principal,
        *,
        reason: str = "",
    ) -> asyncpg.Record:
        """Clear, suspend or resume the court's open listing of `number`."""
        allowed_from = {
            "cleared": ("active", "suspended"),
            "suspended": ("active",),
            "active": ("suspended",),
        }[new_status]
        cols = self._LISTING_COLUMNS
        async with self.pool.acquire() as conn, conn.transaction():
            before = await conn.fetchrow(
                f"SELECT {cols} FROM listings WHERE court_id = $1 AND number = $2 "
                "AND status IN ('active', 'suspended') FOR UPDATE",
                court_id,
                number,
            )
            if before is None:
                raise NotFound("the court has no open listing of this number")
            if before["status"] not in allowed_from:
                raise Conflict(f"listing is {before['status']}; cannot become {new_status}")
            after = await conn.fetchrow(
                "UPDATE listings SET status = $2, updated_at = now(), "
                "cleared_at = CASE WHEN $2 = 'cleared' THEN now() ELSE cleared_at END, "
                "clear_reason = CASE WHEN $2 = 'cleared' THEN $3 ELSE clear_reason END "
                f"WHERE id = $1 RETURNING {cols}",
                before["id"],
                new_status,
                reason or None,
            )
            action = {
                "cleared": "listing.clear",
                "suspended": "listing.suspend",
                "active": "listing.resume",
            }[new_status]
            after_json = _jsonable(after) or {}
            if reason:
                after_json["reason"] = reason
            await self.audit(
                conn,
                who,
                action,
                f"listing:{before['id']}",
                court_id=court_id,
                before=before,
                after=after_json,
            )
        assert after is not None
        return after

    # ---------------------------------------------------------------- reads
    async def court_by_name(self, name: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT id, name, default_recording_id, created_at FROM courts WHERE name = $1", name
        )

    async def webhook_secret(self, court_id: uuid.UUID) -> str | None:
        secret: str | None = await self.pool.fetchval(
            "SELECT webhook_secret FROM courts WHERE id = $1", court_id
        )
        return secret
