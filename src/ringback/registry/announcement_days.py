"""The day partitions of `announcements` (migration 013): made ahead, dropped past retention.

Every node runs `AnnouncementDays` (at start, then every `interval_s`); the database
serialises them with an advisory lock. Partitions are made and dropped by two functions the
owner role defines (SECURITY DEFINER), since only a table's owner may change its
partitions: the runtime role may call them but cannot drop or delete proof of play any
other way, and the database refuses to keep less than `MIN_RETENTION_DAYS` whatever it is
asked. Each dropped day is written to the audit trail (`announcements.expire`) in the same
transaction, and logged.

Nothing here is on the call path: a write for a day with no partition lands in the default
partition (and moves into its day's partition when that is made), so a missed run costs
nothing but a larger default partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from ringback.registry.common import DATABASE_ERRORS

log = logging.getLogger(__name__)

MIN_RETENTION_DAYS = 30  # enforced again by announcements_expire_oldest()


@dataclass(frozen=True, slots=True)
class Expired:
    day: date | None  # None: rows that had waited in the default partition
    rows: int


async def create_days(pool: asyncpg.Pool, first: date, last: date) -> list[date]:
    """Make the partitions of `first`..`last` (UTC days) that do not exist yet; rows of
    those days waiting in the default partition move into them. Returns the days made."""
    made = []
    day = first
    while day <= last:
        if await pool.fetchval("SELECT announcements_create_day($1)", day):
            made.append(day)
        day += timedelta(days=1)
    return made


async def expire(pool: asyncpg.Pool, retention_days: int, *, limit: int = 1000) -> list[Expired]:
    """Drop every day older than `retention_days` (UTC days before today), oldest first,
    one per transaction, each audited; and delete default-partition rows that old."""
    gone: list[Expired] = []
    while len(gone) < limit:
        row = await pool.fetchrow("SELECT * FROM announcements_expire_oldest($1)", retention_days)
        if row is None:
            break
        gone.append(Expired(row["expired_day"], row["expired_rows"]))
    return gone


async def partition_days(pool: asyncpg.Pool) -> list[date]:
    """The days that have a partition, oldest first."""
    rows = await pool.fetch(
        "SELECT to_date(substr(c.relname, 15), 'YYYYMMDD') AS day "
        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'announcements'::regclass "
        "AND c.relname ~ '^announcements_[0-9]{8}$' ORDER BY 1"
    )
    return [r["day"] for r in rows]


class AnnouncementDays:
    """Keeps `announcements` partitioned: yesterday to `ahead_days` ahead exist, days past
    `retention_days` (0: keep for ever) are dropped."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        retention_days: int,
        ahead_days: int,
        interval_s: float = 3600.0,
    ) -> None:
        self.pool = pool
        self.retention_days = retention_days
        self.ahead_days = ahead_days
        self.interval_s = interval_s
        self.runs = 0  # completed rounds
        self._task: asyncio.Task[None] | None = None

    async def run_once(self, today: date | None = None) -> tuple[list[date], list[Expired]]:
        """One round: make the days ahead, then drop the expired ones."""
        today = today or datetime.now(UTC).date()
        made = await create_days(
            self.pool, today - timedelta(days=1), today + timedelta(days=self.ahead_days)
        )
        if made:
            log.info("proof of play: partitions made for %s", ", ".join(map(str, made)))
        gone = await expire(self.pool, self.retention_days) if self.retention_days else []
        for item in gone:
            log.warning(
                "proof of play: %s dropped after %d days of retention: %d rows (audited as "
                "announcements.expire; the counts stay in the rollups)",
                item.day or "default partition rows",
                self.retention_days,
                item.rows,
            )
        self.runs += 1
        return made, gone

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="announcement-days")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
                delay = self.interval_s
            except DATABASE_ERRORS as exc:  # away, not migrated yet, a lock timeout: retry
                log.warning(
                    "proof of play: partitions not maintained (%s); retrying",
                    str(exc).splitlines()[0][:160],
                )
                delay = min(self.interval_s, 30.0)
            await asyncio.sleep(delay)
