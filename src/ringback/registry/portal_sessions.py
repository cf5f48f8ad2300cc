"""Sessions of the court web portal.

A token is checked once, at sign-in, and exchanged for a session: 256 random bits kept by
the browser in an HttpOnly cookie; only their SHA-256 is stored here, with the session's
CSRF token and its expiry. Every request re-checks the token behind the session, so a
revoked token ends its sessions at once. Sessions end at `expires_at` (absolute) or after
`idle_s` without a request, whichever comes first.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from ringback.registry.common import Principal
from ringback.registry.courts import hash_token

# last_seen_at is written at most this often (not on every page view).
_TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class PortalSession:
    principal: Principal
    csrf: str
    token_id: int
    token_label: str


def hash_session(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


class PortalSessions:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def open(
        self, token: str, *, max_age_s: float, roles: tuple[str, ...] = ("court", "operator")
    ) -> tuple[str, PortalSession] | None:
        """A new session for the holder of `token` (None: unknown, revoked, or a role that
        may not sign in). Returns (session id for the cookie, the session)."""
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        row = await self.pool.fetchrow(
            "INSERT INTO portal_sessions (id_hash, token_id, csrf, expires_at) "
            "SELECT $1, t.id, $2, now() + make_interval(secs => $3) FROM api_tokens t "
            "WHERE t.token_hash = $4 AND t.revoked_at IS NULL AND t.role = ANY($5::text[]) "
            "RETURNING token_id",
            hash_session(session_id),
            csrf,
            max_age_s,
            hash_token(token),
            list(roles),
        )
        if row is None:
            return None
        session = await self.get(session_id, idle_s=max_age_s)
        assert session is not None
        return session_id, session

    async def get(self, session_id: str, *, idle_s: float) -> PortalSession | None:
        """The live session of `session_id`: not expired, not idle longer than `idle_s`,
        and its token not revoked."""
        row = await self.pool.fetchrow(
            "SELECT s.csrf, s.last_seen_at < now() - $3::interval AS stale, "
            "t.id, t.prefix, t.role, t.court_id, t.label "
            "FROM portal_sessions s JOIN api_tokens t ON t.id = s.token_id "
            "WHERE s.id_hash = $1 AND s.expires_at > now() AND t.revoked_at IS NULL "
            "AND s.last_seen_at > now() - make_interval(secs => $2)",
            hash_session(session_id),
            idle_s,
            _TOUCH_EVERY,
        )
        if row is None:
            return None
        if row["stale"]:
            await self.pool.execute(
                "UPDATE portal_sessions SET last_seen_at = now() WHERE id_hash = $1",
                hash_session(session_id),
            )
        principal = Principal(f"token:{row['id']}:{row['prefix']}", row["role"], row["court_id"])
        return PortalSession(principal, row["csrf"], row["id"], row["label"])

    async def close(self, session_id: str) -> None:
        await self.pool.execute(
            "DELETE FROM portal_sessions WHERE id_hash = $1", hash_session(session_id)
        )

    async def purge(self) -> int:
        """Delete expired sessions; how many."""
        status = await self.pool.execute("DELETE FROM portal_sessions WHERE expires_at <= now()")
        return int(status.split()[-1])
