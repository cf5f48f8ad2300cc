"""What every registry store shares: which exceptions mean the database is away."""

from __future__ import annotations

import asyncpg

# The database cannot be reached: refused or lost connection, closed pool, timeout. A
# request that meets one of these is answered 503 (retry), never 500.
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
)

# Any failed database call: what a background loop catches to keep running.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)
