"""Proof of play: one row per announcement, written off the call path in batches.

The call path only appends a record to a bounded in-memory queue; a background task
writes the queue every `flush_s` in one statement. While the database is away records
wait (up to `max_pending`; beyond that the oldest are dropped and counted, because a call
must never wait for the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg

from ringback.registry.common import DATABASE_ERRORS

log = logging.getLogger(__name__)

_INSERT = """
INSERT INTO announcements (listing_id, court_id, recording_id, node, codec, caller,
                           started_at, finished_at, outcome, media_destination,
                           mode, stop_reason, answered)
SELECT l.id, l.court_id, r.id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12
FROM (SELECT $1::int8 AS listing_id, $2::int8 AS recording_id) AS p
LEFT JOIN listings l ON l.id = p.listing_id
LEFT JOIN recordings r ON r.id = p.recording_id
"""


@dataclass(frozen=True, slots=True)
class PlayRecord:
    listing_id: int
    recording_id: int  # 0: the shipped default
    codec: str
    started_at: float  # unix time
    finished_at: float
    outcome: str  # completed | cancelled | failed
    caller: str | None = None
    destination: str | None = None  # host:port the RTP went to, after any latch
    mode: str = "redirect"  # or "ringback": the warning played while the callee rang
    # Ringback mode: why the warning stopped (answered, caller_gave_up, callee_refused,
    # no_answer, ...) and whether the call was answered. No call content is ever kept.
    stop_reason: str | None = None
    answered: bool | None = None


class ProofOfPlayWriter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        flush_s: float = 1.0,
        max_pending: int = 100_000,
        node: str | None = None,
    ) -> None:
        self.pool = pool
        self.flush_s = flush_s
        self.node = node or socket.gethostname()
        self.queue: deque[PlayRecord] = deque()
        self.max_pending = max_pending
        self.written = 0
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None

    def record(self, item: PlayRecord) -> None:
        """Called on the call path: O(1), never blocks, never raises."""
        if len(self.queue) >= self.max_pending:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(item)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="proof-of-play")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await asyncio.wait_for(self.flush(), timeout=3)
        except DATABASE_ERRORS:
            log.warning("proof of play: %d records not written at stop", len(self.queue))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                await self.flush()
            except DATABASE_ERRORS as exc:
                log.warning(
                    "proof of play: database unavailable (%s); %d waiting",
                    str(exc).splitlines()[0][:120],
                    len(self.queue),
                )

    async def flush(self) -> int:
        if not self.queue:
            return 0
        batch = list(self.queue)
        rows = [
            (
                r.listing_id or None,
                r.recording_id or None,
                self.node,
                r.codec,
                r.caller,
                datetime.fromtimestamp(r.started_at, UTC),
                datetime.fromtimestamp(r.finished_at, UTC),
                r.outcome,
                r.destination,
                r.mode,
                r.stop_reason,
                r.answered,
            )
            for r in batch
        ]
        async with self.pool.acquire() as conn:
            await conn.executemany(_INSERT, rows)
        for _ in batch:  # only now: a failed write keeps them queued
            self.queue.popleft()
        self.written += len(batch)
        return len(batch)


@dataclass(frozen=True, slots=True)
class DayCount:
    day: date
    completed: int
    cancelled: int
    failed: int


class PlayStats:
    """Proof of play read back: announcements per day, for a court's statistics."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def per_day(
        self, court_id: uuid.UUID | None, first: date, last: date, timezone: str
    ) -> list[DayCount]:
        """Announcements started on each day from `first` to `last` (inclusive, days of
        `timezone`, an IANA name), by outcome; every day is present, 0 if none. One
        court's if given."""
        rows = await self.pool.fetch(
            "SELECT (started_at AT TIME ZONE $4)::date AS day, "
            "count(*) FILTER (WHERE outcome = 'completed') AS completed, "
            "count(*) FILTER (WHERE outcome = 'cancelled') AS cancelled, "
            "count(*) FILTER (WHERE outcome = 'failed') AS failed "
            "FROM announcements WHERE ($1::uuid IS NULL OR court_id = $1) "
            "AND started_at >= ($2::date)::timestamp AT TIME ZONE $4 "
            "AND started_at < ($3::date + 1)::timestamp AT TIME ZONE $4 "
            "GROUP BY 1 ORDER BY 1",
            court_id,
            first,
            last,
            timezone,
        )
        found = {r["day"]: r for r in rows}
        out = []
        for n in range((last - first).days + 1):
            day = date.fromordinal(first.toordinal() + n)
            r = found.get(day)
            out.append(
                DayCount(day, r["completed"], r["cancelled"], r["failed"])
                if r is not None
                else DayCount(day, 0, 0, 0)
            )
        return out
