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


LISTING_COLUMNS = (
    "id, number, court_id, case_ref, recording_id, status, listed_at, effective_at, "
    "effective_reason, expires_at, cleared_at, clear_reason, suspend_reason, updated_at"
)
TOKEN_COLUMNS = "id, prefix, role, court_id, label, created_at, revoked_at"
COURT_COLUMNS = "id, name, default_recording_id, created_at"


def _with_created(row: asyncpg.Record, created: bool) -> Any:
    """The listing row as a dict, plus whether this call created it."""
    return {**dict(row), "created": created}


def listing_event(
    row: asyncpg.Record | dict[str, Any], who: Principal, *, reason: str | None = None
) -> dict[str, Any]:
    """The payload of a listing.* event: JSON-ready, numbers in E.164 with '+'."""
    payload: dict[str, Any] = {
        "listing_id": row["id"],
        "number": f"+{row['number']}",
        "court_id": str(row["court_id"]),
        "case_ref": row["case_ref"],
        "status": row["status"],
        "effective_at": row["effective_at"].isoformat(),
        "expires_at": row["expires_at"].isoformat(),
        "actor": who.actor,
    }
    if reason is not None:
        payload["reason"] = reason
    return payload


async def _enqueue(conn: asyncpg.Connection, event_type: str, payload: dict[str, Any]) -> None:
    """Put an outgoing event into the outbox, in the caller's transaction."""
    from ringback.registry.outbox import enqueue_event

    await enqueue_event(conn, event_type, payload)


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # token hash -> (principal, monotonic expiry); see authenticate_cached()
        self._auth_cache: dict[bytes, tuple[Principal, float]] = {}

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
    _LISTING_COLUMNS = LISTING_COLUMNS

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
        effective_reason: str | None = None,
        default_effective_at: datetime | None = None,
    ) -> asyncpg.Record:
        """List `number` for the court, or update the court's open listing of it.

        A new listing becomes effective at `effective_at` (default: `default_effective_at`,
        else now); an update keeps the listing's effective_at unless one is given.
        `recording_id` must be the court's own recording or a shipped one (court_id NULL):
        `NotFound` otherwise. Returns the row as a dict with an extra boolean `created`.
        """
        for attempt in range(2):
            try:
                return await self._put_listing(
                    court_id,
                    number,
                    case_ref,
                    expires_at,
                    who,
                    effective_at,
                    recording_id,
                    effective_reason,
                    default_effective_at,
                )
            except asyncpg.UniqueViolationError:
                # Two first listings of one number by one court raced; the loser updates.
                if attempt:
                    raise Conflict("the listing changed concurrently; try again") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _put_listing(
        self,
        court_id: uuid.UUID,
        number: int,
        case_ref: str,
        expires_at: datetime,
        who: Principal,
        effective_at: datetime | None,
        recording_id: int | None,
        effective_reason: str | None,
        default_effective_at: datetime | None,
    ) -> asyncpg.Record:
        cols = self._LISTING_COLUMNS
        async with self.pool.acquire() as conn, conn.transaction():
            if recording_id is not None:
                owner = await conn.fetchrow(
                    "SELECT court_id FROM recordings WHERE id = $1", recording_id
                )
                if owner is None or owner["court_id"] not in (None, court_id):
                    raise NotFound(f"no recording {recording_id} of this court")
            before = await conn.fetchrow(
                f"SELECT {cols} FROM listings WHERE court_id = $1 AND number = $2 "
                "AND status IN ('active', 'suspended') FOR UPDATE",
                court_id,
                number,
            )
            if before is None:
                after = await conn.fetchrow(
                    "INSERT INTO listings (number, court_id, case_ref, recording_id, "
                    "effective_at, expires_at, effective_reason) "
                    "VALUES ($1, $2, $3, $4, coalesce($5, $8, now()), $6, $7) "
                    f"RETURNING {cols}",
                    number,
                    court_id,
                    case_ref,
                    recording_id,
                    effective_at,
                    expires_at,
                    effective_reason,
                    default_effective_at,
                )
                action = "listing.create"
            else:
                after = await conn.fetchrow(
                    "UPDATE listings SET case_ref = $2, recording_id = $3, "
                    "effective_at = coalesce($4, effective_at), expires_at = $5, "
                    "effective_reason = CASE WHEN $4::timestamptz IS NULL THEN effective_reason "
                    "ELSE $6 END, "
                    f"updated_at = now() WHERE id = $1 RETURNING {cols}",
                    before["id"],
                    case_ref,
                    recording_id,
                    effective_at,
                    expires_at,
                    effective_reason,
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
            if before is None:
                await _enqueue(conn, "listing.created", listing_event(after, who))
        return _with_created(after, before is None)

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
                "clear_reason = CASE WHEN $2 = 'cleared' THEN $3 ELSE clear_reason END, "
                "suspend_reason = CASE WHEN $2 = 'suspended' THEN $3 "
                "WHEN $2 = 'active' THEN NULL ELSE suspend_reason END "
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
            event = {
                "cleared": "listing.cleared",
                "suspended": "listing.suspended",
                "active": "listing.resumed",
            }[new_status]
            await _enqueue(conn, event, listing_event(after, who, reason=reason or None))
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

    async def court(self, court_id: uuid.UUID) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            f"SELECT {COURT_COLUMNS} FROM courts WHERE id = $1", court_id
        )

    async def courts(self, after_id: uuid.UUID | None, limit: int) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                f"SELECT {COURT_COLUMNS} FROM courts WHERE ($1::uuid IS NULL OR id > $1) "
                "ORDER BY id LIMIT $2",
                after_id,
                limit,
            )
        )

    # ------------------------------------------------------------- tokens (API)
    async def issue_token(
        self, role: str, court_id: uuid.UUID | None, label: str, who: Principal
    ) -> tuple[asyncpg.Record, str]:
        """Create a token; returns (its row, the token itself: shown once, stored hashed)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if court_id is not None and not await conn.fetchval(
                "SELECT true FROM courts WHERE id = $1 FOR SHARE", court_id
            ):
                raise NotFound("no such court")
            token = await self._create_token(conn, role, court_id, label, who)
            row = await conn.fetchrow(
                f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1",
                hash_token(token),
            )
        assert row is not None
        return row, token

    async def tokens(self, court_id: uuid.UUID) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE court_id = $1 ORDER BY id",
                court_id,
            )
        )

    async def revoke_token(
        self, token_id: int, who: Principal, *, court_id: uuid.UUID | None = None
    ) -> asyncpg.Record:
        """Revoke a token (only one of `court_id`'s when given). Revoking twice changes nothing."""
        async with self.pool.acquire() as conn, conn.transaction():
            before = await conn.fetchrow(
                f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1 "
                "AND ($2::uuid IS NULL OR court_id = $2) FOR UPDATE",
                token_id,
                court_id,
            )
            if before is None:
                raise NotFound(f"no token {token_id}")
            if before["revoked_at"] is not None:
                return before
            after = await conn.fetchrow(
                f"UPDATE api_tokens SET revoked_at = now() WHERE id = $1 RETURNING {TOKEN_COLUMNS}",
                token_id,
            )
            await self.audit(
                conn,
                who,
                "token.revoke",
                f"token:{token_id}",
                court_id=before["court_id"],
                before=before,
                after=after,
            )
        self._auth_cache.clear()
        assert after is not None
        return after

    async def authenticate_cached(self, token: str, ttl_s: float = 5.0) -> Principal | None:
        """`authenticate`, remembered for `ttl_s` (hot paths such as the HTTP dip).

        A revocation through this node takes effect at once; through another node within
        `ttl_s`. Unknown tokens are not cached.
        """
        import time

        key = hash_token(token)
        now = time.monotonic()
        hit = self._auth_cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        principal = await self.authenticate(token)
        if principal is not None:
            if len(self._auth_cache) > 10_000:
                self._auth_cache.clear()
            self._auth_cache[key] = (principal, now + ttl_s)
        return principal

    # ---------------------------------------------------------- listings (API)
    async def open_listing_courts(self, number: int) -> list[uuid.UUID]:
        """Courts with an open (active or suspended) listing of `number`, first-listed first."""
        rows = await self.pool.fetch(
            "SELECT court_id FROM listings WHERE number = $1 AND status IN ('active', "
            "'suspended') ORDER BY listed_at, id",
            number,
        )
        return [r["court_id"] for r in rows]

    async def listings_of_number(
        self, number: int, court_id: uuid.UUID | None
    ) -> list[asyncpg.Record]:
        """Every listing of `number` (history included), newest first; one court's if given."""
        return list(
            await self.pool.fetch(
                f"SELECT {LISTING_COLUMNS} FROM listings WHERE number = $1 "
                "AND ($2::uuid IS NULL OR court_id = $2) ORDER BY id DESC LIMIT 1000",
                number,
                court_id,
            )
        )

    async def search_listings(
        self,
        *,
        court_id: uuid.UUID | None,
        status: str | None,
        case_ref: str | None,
        number: int | None,
        after_id: int,
        limit: int,
    ) -> list[asyncpg.Record]:
        """Listings by filters, ordered by id, after `after_id` (keyset paging)."""
        return list(
            await self.pool.fetch(
                f"SELECT {LISTING_COLUMNS} FROM listings "
                "WHERE id > $1 AND ($2::uuid IS NULL OR court_id = $2) "
                "AND ($3::text IS NULL OR case_ref = $3) "
                "AND ($4::int8 IS NULL OR number = $4) "
                "AND ($5::text IS NULL OR $5 = CASE WHEN status IN ('active', 'suspended') "
                "AND expires_at <= now() THEN 'expired' ELSE status END) "
                "ORDER BY id LIMIT $6",
                after_id,
                court_id,
                case_ref,
                number,
                status,
                limit,
            )
        )

    # ---------------------------------------------------------- payment hook
    async def payment_confirmed(
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
                await self.audit(
                    conn,
                    who,
                    "listing.clear",
                    f"listing:{before['id']}",
                    court_id=court_id,
                    before=before,
                    after={**(_jsonable(after) or {}), "reason": reason},
                )
                await _enqueue(conn, "listing.cleared", listing_event(after, who, reason=reason))
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
            await self.audit(
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

    # ---------------------------------------------------------------- audit/stats
    async def audit_page(
        self,
        *,
        court_id: uuid.UUID | None,
        entity: str | None,
        action: str | None,
        after_id: int,
        limit: int,
    ) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                "SELECT id, at, actor, court_id, action, entity, before, after, prev_hash, hash "
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

    async def stats(self, court_id: uuid.UUID | None) -> dict[str, Any]:
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            listing_rows = await conn.fetch(
                "SELECT CASE WHEN status IN ('active', 'suspended') AND expires_at <= now() "
                "THEN 'expired' ELSE status END AS s, count(*) AS n, "
                "count(*) FILTER (WHERE status = 'active' AND effective_at > now() "
                "AND expires_at > now()) AS pending "
                "FROM listings WHERE ($1::uuid IS NULL OR court_id = $1) GROUP BY 1",
                court_id,
            )
            announcement_rows = await conn.fetch(
                "SELECT outcome, count(*) AS n FROM announcements "
                "WHERE ($1::uuid IS NULL OR court_id = $1) GROUP BY 1",
                court_id,
            )
        listings = {s: 0 for s in ("active", "suspended", "cleared", "expired")}
        pending = 0
        for row in listing_rows:
            listings[row["s"]] = row["n"]
            pending += row["pending"]
        announcements = {o: 0 for o in ("completed", "cancelled", "failed")}
        for row in announcement_rows:
            announcements[row["outcome"]] = row["n"]
        return {
            "listings": {**listings, "in_notice_period": pending},
            "announcements": {**announcements, "total": sum(announcements.values())},
        }
