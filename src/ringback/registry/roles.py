"""The database roles the service runs as (migration 009): the owner runs migrations;
the service's login is a member of `ringback_runtime`, which may read and write data but
cannot alter the audit trail's triggers or rewrite its rows.

The embedded database is set up the same way: migrations run as its bootstrap superuser
(the owner), and the service connects as `RUNTIME_LOGIN`, created here.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg

RUNTIME_ROLE = "ringback_runtime"
RUNTIME_LOGIN = "ringback_app"


async def ensure_runtime_login(conn: asyncpg.Connection, login: str = RUNTIME_LOGIN) -> None:
    """A login role that is a member of the runtime role (embedded database only: it
    trusts local socket connections, so the role needs no password)."""
    exists = await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", login)
    if not exists:
        await conn.execute(f'CREATE ROLE "{login}" LOGIN IN ROLE {RUNTIME_ROLE}')


def as_user(dsn: str, user: str) -> str:
    """`dsn` with its user replaced (no password: local trust authentication)."""
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))
