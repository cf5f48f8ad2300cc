"""Courts and their API tokens.

A token is 256 random bits shown once when it is issued; only its SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Callable

import asyncpg

from ringback.registry import audit
from ringback.registry.common import Conflict, NotFound, Principal

TOKEN_PREFIX = "rbk_"
COURT_COLUMNS = "id, name, default_recording_id, call_mode, answer_after, created_at"
TOKEN_COLUMNS = "id, prefix, role, court_id, label, created_at, revoked_at"


def new_token() -> str:
    """A bearer token: 256 random bits, URL-safe, recognisable by its prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def token_label(token: str) -> str:
    """What may be shown or logged of a token: its first characters only."""
    return token[: len(TOKEN_PREFIX) + 6] + "…"


async def _insert_token(
    conn: asyncpg.Connection,
    role: str,
    court_id: uuid.UUID | None,
    label: str,
    who: Principal,
) -> tuple[int, str]:
    """Create a token in the caller's transaction; (its id, the token itself)."""
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
    assert row is not None
    await audit.record(
        conn, who, "token.create", f"token:{row['id']}", court_id=court_id, after=row
    )
    return row["id"], token


class Courts:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, name: str, who: Principal) -> tuple[asyncpg.Record, str, str]:
        """Create a court with its first court token and its webhook secret.

        Returns (court row, token, webhook secret); neither secret is retrievable later.
        """
        secret = secrets.token_urlsafe(32)
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                court = await conn.fetchrow(
                    "INSERT INTO courts (name, webhook_secret) VALUES ($1, $2) "
                    f"RETURNING {COURT_COLUMNS}",
                    name,
                    secret,
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(f"a court named {name!r} already exists") from None
            assert court is not None
            await audit.record(
                conn, who, "court.create", f"court:{court['id']}", court_id=court["id"], after=court
            )
            _, token = await _insert_token(conn, "court", court["id"], "first token", who)
        return court, token, secret

    async def get(self, court_id: uuid.UUID) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            f"SELECT {COURT_COLUMNS} FROM courts WHERE id = $1", court_id
        )

    async def exists(self, court_id: uuid.UUID) -> bool:
        return bool(await self.pool.fetchval("SELECT true FROM courts WHERE id = $1", court_id))

    async def by_name(self, name: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(f"SELECT {COURT_COLUMNS} FROM courts WHERE name = $1", name)

    async def page(self, after_id: uuid.UUID | None, limit: int) -> list[asyncpg.Record]:
        """Courts ordered by id, after `after_id` (keyset paging)."""
        return list(
            await self.pool.fetch(
                f"SELECT {COURT_COLUMNS} FROM courts WHERE ($1::uuid IS NULL OR id > $1) "
                "ORDER BY id LIMIT $2",
                after_id,
                limit,
            )
        )

    async def webhook_secret(self, court_id: uuid.UUID) -> str | None:
        secret: str | None = await self.pool.fetchval(
            "SELECT webhook_secret FROM courts WHERE id = $1", court_id
        )
        return secret

    async def webhook_secrets(self, court_id: uuid.UUID) -> list[str]:
        """The secrets a payment hook of the court may be signed with now: the current one,
        and the previous one while its overlap lasts (none for an unknown court)."""
        row = await self.pool.fetchrow(
            "SELECT webhook_secret, CASE WHEN webhook_secret_previous_until > now() "
            "THEN webhook_secret_previous END AS previous FROM courts WHERE id = $1",
            court_id,
        )
        if row is None:
            return []
        return [row["webhook_secret"]] + ([row["previous"]] if row["previous"] else [])

    async def rotate_webhook_secret(
        self, court_id: uuid.UUID, overlap_s: float, who: Principal
    ) -> tuple[str, asyncpg.Record]:
        """A new payment-hook secret; the current one keeps verifying for `overlap_s`.
        Returns (the new secret, shown once; the row with the overlap's end). Audited
        (without the secrets). `NotFound` for an unknown court."""
        secret = secrets.token_urlsafe(32)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE courts SET webhook_secret_previous = webhook_secret, "
                "webhook_secret = $2, webhook_secret_rotated_at = now(), "
                "webhook_secret_previous_until = now() + make_interval(secs => $3) "
                "WHERE id = $1 RETURNING id, webhook_secret_rotated_at AS rotated_at, "
                "webhook_secret_previous_until AS previous_valid_until",
                court_id,
                secret,
                float(overlap_s),
            )
            if row is None:
                raise NotFound("no such court")
            await audit.record(
                conn,
                who,
                "court.webhook_secret.rotate",
                f"court:{court_id}",
                court_id=court_id,
                after={
                    "rotated_at": row["rotated_at"].isoformat(),
                    "previous_valid_until": row["previous_valid_until"].isoformat(),
                },
            )
        return secret, row

    async def set_default_recording(
        self, court_id: uuid.UUID, recording_id: int | None, who: Principal
    ) -> None:
        """The recording the court's listings play when they name none (None: the shipped
        one). It must be the court's own recording: `NotFound` otherwise."""
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
            await audit.record(
                conn,
                who,
                "court.default_recording",
                f"court:{court_id}",
                court_id=court_id,
                before=before,
                after=after,
            )

    async def set_call_mode(
        self,
        court_id: uuid.UUID,
        call_mode: str | None,
        answer_after: str | None,
        who: Principal,
    ) -> asyncpg.Record:
        """The court's own way of playing its warnings (None: the deployment's), audited."""
        async with self.pool.acquire() as conn, conn.transaction():
            before = await conn.fetchrow(
                "SELECT id, call_mode, answer_after FROM courts WHERE id = $1 FOR UPDATE",
                court_id,
            )
            if before is None:
                raise NotFound("no such court")
            after = await conn.fetchrow(
                "UPDATE courts SET call_mode = $2, answer_after = $3 WHERE id = $1 "
                "RETURNING id, call_mode, answer_after",
                court_id,
                call_mode,
                answer_after,
            )
            await audit.record(
                conn,
                who,
                "court.call_mode",
                f"court:{court_id}",
                court_id=court_id,
                before=before,
                after=after,
            )
        assert after is not None
        return after

    async def call_modes(self) -> dict[int, tuple[str | None, str | None]]:
        """recording id -> (call_mode, answer_after) of its court, for courts with either."""
        rows = await self.pool.fetch(
            "SELECT r.id, c.call_mode, c.answer_after FROM recordings r "
            "JOIN courts c ON c.id = r.court_id "
            "WHERE c.call_mode IS NOT NULL OR c.answer_after IS NOT NULL"
        )
        return {r["id"]: (r["call_mode"], r["answer_after"]) for r in rows}


class Tokens:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # token hash -> (principal, monotonic expiry); see authenticate_cached()
        self._auth_cache: dict[bytes, tuple[Principal, float]] = {}
        # Whether revocations reach this node (the change feed's connection is up); while
        # they cannot, no token is taken from the cache.
        self.revocations_heard: Callable[[], bool] = lambda: False
        self.cache_drops = 0

    def forget_cached(self) -> None:
        """Drop every cached token (a token was revoked somewhere, or may have been)."""
        self._auth_cache.clear()
        self.cache_drops += 1

    async def issue(
        self, role: str, court_id: uuid.UUID | None, label: str, who: Principal
    ) -> tuple[asyncpg.Record, str]:
        """Create a token; returns (its row, the token itself: shown once, stored hashed).

        A court token needs an existing court (`NotFound` otherwise).
        """
        async with self.pool.acquire() as conn, conn.transaction():
            if court_id is not None and not await conn.fetchval(
                "SELECT true FROM courts WHERE id = $1 FOR SHARE", court_id
            ):
                raise NotFound("no such court")
            token_id, token = await _insert_token(conn, role, court_id, label, who)
            row = await conn.fetchrow(
                f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1", token_id
            )
        assert row is not None
        return row, token

    async def of_court(self, court_id: uuid.UUID) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE court_id = $1 ORDER BY id",
                court_id,
            )
        )

    async def every(self, limit: int = 1000) -> list[asyncpg.Record]:
        """Every token (court, operator and switch), oldest first."""
        return list(
            await self.pool.fetch(
                f"SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id LIMIT $1", limit
            )
        )

    async def labels(self, token_ids: list[int]) -> dict[int, tuple[str, str]]:
        """id -> (prefix, label) of tokens: what names the actors of an audit trail."""
        rows = await self.pool.fetch(
            "SELECT id, prefix, label FROM api_tokens WHERE id = ANY($1::int8[])", token_ids
        )
        return {r["id"]: (r["prefix"], r["label"]) for r in rows}

    async def revoke(
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
            await audit.record(
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

    async def authenticate(self, token: str) -> Principal | None:
        """Who holds `token`, or None for an unknown or revoked one."""
        row = await self.pool.fetchrow(
            "SELECT id, prefix, role, court_id FROM api_tokens "
            "WHERE token_hash = $1 AND revoked_at IS NULL",
            hash_token(token),
        )
        if row is None:
            return None
        return Principal(f"token:{row['id']}:{row['prefix']}", row["role"], row["court_id"])

    async def authenticate_cached(self, token: str, ttl_s: float = 5.0) -> Principal | None:
        """`authenticate`, remembered for `ttl_s` (hot paths such as the HTTP dip).

        A revocation through any node takes effect here as soon as the change feed's
        connection hears its NOTIFY (`forget_cached`); while that connection is down the
        cache is not used. Unknown tokens are not cached.
        """
        key = hash_token(token)
        now = time.monotonic()
        hit = self._auth_cache.get(key)
        if hit is not None and hit[1] > now and self.revocations_heard():
            return hit[0]
        principal = await self.authenticate(token)
        if principal is not None:
            if len(self._auth_cache) > 10_000:
                self._auth_cache.clear()
            self._auth_cache[key] = (principal, now + ttl_s)
        return principal
