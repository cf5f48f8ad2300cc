"""The registry on PostgreSQL: the connection pool and one store per aggregate.

All SQL of the registry lives in `ringback.registry`, one module per aggregate: courts
and tokens (`courts`), listings (`listings`), recordings, payments, imports, event
subscriptions and deliveries (`events`), the outbox, the audit trail, proof of play and
the portal's sessions.
"""

from __future__ import annotations

import json

import asyncpg

from ringback.registry.audit import AuditTrail
from ringback.registry.courts import Courts, Tokens
from ringback.registry.events import Events
from ringback.registry.imports import Imports
from ringback.registry.listings import Listings
from ringback.registry.migrate import migrate
from ringback.registry.payments import Payments
from ringback.registry.portal_sessions import PortalSessions
from ringback.registry.proof_of_play import PlayStats
from ringback.registry.recordings import Recordings


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    async def init(conn: asyncpg.Connection) -> None:
        for kind in ("json", "jsonb"):
            await conn.set_type_codec(
                kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )

    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=init)
    assert pool is not None
    return pool


class Store:
    """Every registry store on one pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.courts = Courts(pool)
        self.tokens = Tokens(pool)
        self.listings = Listings(pool)
        self.recordings = Recordings(pool)
        self.payments = Payments(pool)
        self.imports = Imports(pool)
        self.events = Events(pool)
        self.audit = AuditTrail(pool)
        self.sessions = PortalSessions(pool)
        self.plays = PlayStats(pool)

    async def migrate(self) -> list[str]:
        async with self.pool.acquire() as conn:
            return [f"{m.version:03d}_{m.name}" for m in await migrate(conn)]
