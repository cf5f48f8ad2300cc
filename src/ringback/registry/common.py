"""What every registry store shares: who acts, the errors stores raise, and which
exceptions mean the database is away."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class Principal:
    """Who is acting: the audit trail's `actor`, with the court it may act for."""

    actor: str
    role: str  # operator | court | switch | system
    court_id: uuid.UUID | None = None


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


class Ambiguous(Conflict):
    """A request names several records where it must name one; `choices` tells them apart."""

    def __init__(self, message: str, choices: list[str]) -> None:
        super().__init__(message)
        self.choices = choices


# The database cannot be reached: refused or lost connection, closed pool, timeout. A
# request that meets one of these is answered 503 (retry), never 500.
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    # The server is going away under the request (shut down, crashed, postmaster killed).
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # asyncpg's own state machine tripping over a connection that died mid-operation
    # (seen when releasing it to the pool as the postmaster is killed).
    asyncpg.InternalClientError,
)

# Any failed database call: what a background loop catches to keep running.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    # A connection that died with an error half read (postmaster killed): asyncpg's
    # state machine refuses the next query on it. The loop reconnects as for any loss.
    asyncpg.InternalClientError,
)


def jsonable(row: asyncpg.Record | dict[str, Any] | None) -> dict[str, Any] | None:
    """A row as audit material: times ISO 8601, UUIDs as text, binary columns left out."""
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
