"""Proof of play: one row per announcement, written off the call path in batches.

The call path only appends a record to a bounded in-memory queue; a background task
writes the queue every `flush_s`, one INSERT of up to `batch_rows` rows per statement.
Preparing a statement's rows runs on the event loop (about 1.5 µs a row, as one JSON text),
so batches are small (250 rows: well under 1 ms) and the loop serves calls between them
while the database works.
While the database is away records wait (up to `max_pending`; beyond that the oldest are
dropped and counted, because a call must never wait for the database).

`announcements` is partitioned by day (migration 013); a trigger keeps the hourly and
per-court rollups in the same transaction as each INSERT, and `PlayStats` reads those.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from ringback.registry.common import DATABASE_ERRORS

log = logging.getLogger(__name__)

# One statement per batch (the rollup trigger then runs once per batch, not per row); the
# rows keep the queue's order, so ids follow it. The batch goes as one JSON text, times in
# integer microseconds: building it costs about 1.5 µs a row on the event loop, where
# asyncpg's encoding of one array per column cost about 10.
_INSERT = """
INSERT INTO announcements (listing_id, court_id, recording_id, node, codec, caller,
                           started_at, finished_at, outcome, media_destination,
                           mode, stop_reason, answered)
SELECT l.id, l.court_id, r.id, $1, p.v->>2, p.v->>3,
       timestamptz 'epoch' + (p.v->>4)::int8 * interval '1 microsecond',
       timestamptz 'epoch' + (p.v->>5)::int8 * interval '1 microsecond',
       p.v->>6, p.v->>7, p.v->>8, p.v->>9, (p.v->>10)::bool
FROM json_array_elements($2::text::json) WITH ORDINALITY AS p(v, i)
LEFT JOIN listings l ON l.id = (p.v->>0)::int8
LEFT JOIN recordings r ON r.id = (p.v->>1)::int8
ORDER BY p.i
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
        batch_rows: int = 250,
        node: str | None = None,
    ) -> None:
        self.pool = pool
        self.flush_s = flush_s
        self.batch_rows = batch_rows
        self.node = node or socket.gethostname()
        self.queue: deque[PlayRecord] = deque()
        self.max_pending = max_pending
        self.written = 0
        self.dropped = 0
        self.batches = 0
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
        """Write what is queued now, `batch_rows` per statement; returns the rows written.
        A batch that fails stays queued (and the error is raised)."""
        total = 0
        todo = len(self.queue)
        while todo > 0:
            n = min(todo, self.batch_rows)
            batch = list(itertools.islice(self.queue, n))
            await self.pool.execute(_INSERT, self.node, _rows_json(batch))
            for _ in range(n):  # only now: a failed write keeps them queued
                self.queue.popleft()
            self.written += n
            self.batches += 1
            total += n
            todo -= n
        return total


def _rows_json(batch: list[PlayRecord]) -> str:
    """The batch as the JSON array of arrays `_INSERT` reads ($2)."""
    return json.dumps(
        [
            (
                r.listing_id or None,
                r.recording_id or None,
                r.codec,
                r.caller,
                round(r.started_at * 1_000_000),
                round(r.finished_at * 1_000_000),
                r.outcome,
                r.destination,
                r.mode,
                r.stop_reason,
                r.answered,
            )
            for r in batch
        ],
        separators=(",", ":"),
    )


@dataclass(frozen=True, slots=True)
class DayCount:
    day: date
    completed: int
    cancelled: int
    failed: int


class PlayStats:
    """Proof of play read back: announcements per day, for a court's statistics.

    Read from the hourly rollup (which outlives the raw rows dropped for retention)
    whenever every local midnight of the period falls on a whole UTC hour, as in every
    time zone whose offset is whole hours; otherwise (India, Nepal, ...) from the raw rows.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def per_day(
        self, court_id: uuid.UUID | None, first: date, last: date, timezone: str
    ) -> list[DayCount]:
        """Announcements started on each day from `first` to `last` (inclusive, days of
        `timezone`, an IANA name), by outcome; every day is present, 0 if none. One
        court's if given."""
        query = _PER_DAY_HOURLY if days_align_with_hours(first, last, timezone) else _PER_DAY_RAW
        rows = await self.pool.fetch(query, court_id, first, last, timezone)
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


def days_align_with_hours(first: date, last: date, timezone: str) -> bool:
    """Whether every local midnight from `first` to the day after `last` is a whole UTC
    hour, so each hourly rollup bucket lies inside one local day."""
    zone = ZoneInfo(timezone)
    for n in range((last - first).days + 2):
        day = first + timedelta(days=n)
        for fold in (0, 1):
            midnight = datetime(day.year, day.month, day.day, tzinfo=zone, fold=fold)
            offset = midnight.utcoffset()
            if offset is None or offset.total_seconds() % 3600:
                return False
    return True


_PER_DAY_HOURLY = """
SELECT (hour AT TIME ZONE $4)::date AS day,
       coalesce(sum(n) FILTER (WHERE outcome = 'completed'), 0)::int8 AS completed,
       coalesce(sum(n) FILTER (WHERE outcome = 'cancelled'), 0)::int8 AS cancelled,
       coalesce(sum(n) FILTER (WHERE outcome = 'failed'), 0)::int8 AS failed
FROM announcement_hourly WHERE ($1::uuid IS NULL OR court_id = $1)
  AND hour >= ($2::date)::timestamp AT TIME ZONE $4
  AND hour < ($3::date + 1)::timestamp AT TIME ZONE $4
GROUP BY 1 ORDER BY 1
"""

_PER_DAY_RAW = """
SELECT (started_at AT TIME ZONE $4)::date AS day,
       count(*) FILTER (WHERE outcome = 'completed') AS completed,
       count(*) FILTER (WHERE outcome = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE outcome = 'failed') AS failed
FROM announcements WHERE ($1::uuid IS NULL OR court_id = $1)
  AND started_at >= ($2::date)::timestamp AT TIME ZONE $4
  AND started_at < ($3::date + 1)::timestamp AT TIME ZONE $4
GROUP BY 1 ORDER BY 1
"""


async def totals(
    conn: asyncpg.Connection | asyncpg.Pool, court_id: uuid.UUID | None
) -> dict[str, int]:
    """Announcements by outcome, all time (one court's if given), from the rollup."""
    rows = await conn.fetch(
        "SELECT outcome, sum(n)::int8 AS n FROM announcement_totals "
        "WHERE ($1::uuid IS NULL OR court_id = $1) GROUP BY 1",
        court_id,
    )
    counts = {o: 0 for o in ("completed", "cancelled", "failed")}
    for row in rows:
        counts[row["outcome"]] = row["n"]
    return counts
