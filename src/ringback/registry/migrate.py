"""Versioned plain-SQL migrations: `migrations/NNN_name.sql`, applied in order, once each."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 7_401_001  # advisory lock: two nodes starting together migrate one at a time


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    found = []
    for entry in resources.files("ringback.registry").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    return found


async def migrate(conn: asyncpg.Connection) -> list[Migration]:
    """Apply every migration not yet applied; return those applied now."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for migration in available():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            applied.append(migration)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def migrate_as_owner(owner_dsn: str, *, runtime_login: str | None = None) -> list[str]:
    """Apply migrations on a connection of the owner role (`database.owner_url`); with
    `runtime_login` also make sure that login exists as a member of the runtime role (the
    embedded database). Returns the migrations applied now, as NNN_name."""
    from ringback.registry.roles import ensure_runtime_login

    conn = await asyncpg.connect(owner_dsn)
    try:
        applied = await migrate(conn)
        if runtime_login is not None:
            await ensure_runtime_login(conn, runtime_login)
    finally:
        await conn.close()
    return [f"{m.version:03d}_{m.name}" for m in applied]
