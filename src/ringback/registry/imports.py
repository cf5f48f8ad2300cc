"""Bulk import of listings from CSV: validate every row, then load in one transaction.

The rows are validated in a worker thread (`ringback.registry.import_csv`, vectorised for
plain files) and streamed, batch by batch, in one binary COPY into a temporary staging
table while the next batch is read. Then, in the same transaction: a number listed twice
under one case in the file is refused (numbers that repeat are found with numpy, so only
those are looked up), the court's open listings of the same numbers and cases are updated
(like ``PUT /v1/listings/{number}``: another case of a number is another listing), new
ones are inserted with one ``INSERT … SELECT``, every listing written names the import
(``import_id``, ``import_listings``), and one audit event summarises the import (counts,
the file's SHA-256 and ``rows_sha256``, the digest of the rows as applied, streamed out of
PostgreSQL and hashed here). One ``listing.created`` event announces the import's new
listings (not one per listing: a national list would be 15 M webhooks), then
``import.completed``. The change feed gets one marker row for the whole import, appended
just before the commit (migration 014): nodes reload the import's numbers, or their whole
index, instead of applying millions of feed rows. A bad row rolls all of it back and names
its line: the import changes nothing or everything.

Progress is written to the ``imports`` row (the job) on a separate connection while the
rows stream, so ``GET /v1/imports/{id}`` shows it while the import runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from ringback.registry import audit
from ringback.registry.common import DATABASE_ERRORS, Principal
from ringback.registry.import_csv import (
    ImportOptions,
    ImportRejected,
    ListingCsv,
    check_utf8_sample,
    file_sha256,
)
from ringback.registry.import_digest import APPLIED_LINE, RAW_COLUMNS, InsertedRows, RowsDigest
from ringback.registry.import_rows import COPY_HEADER, COPY_TRAILER, STAGING_COLUMNS
from ringback.registry.outbox import enqueue_event

log = logging.getLogger(__name__)

JOB_COLUMNS = (
    "id, court_id, actor, status, filename, bytes, sha256, rows_processed, rows_total, "
    "listed, updated, error_line, error_code, error_message, created_at, updated_at, finished_at"
)

Progress = Callable[[str, int, int, int], None]  # (stage, rows, bytes done, bytes total)


UNFINISHED = ("receiving", "validating", "loading")
PROGRESS_EVERY_S = 0.25  # the job's row is updated at most this often while rows stream
ABANDONED = "abandoned"


class Imports:
    """Import jobs: create one, run it, read it back (`JOB_COLUMNS`).

    A job holds a lease of `lease_s` (renewed every third of it while it runs) in the name
    of `node`. `fail_abandoned` marks failed the unfinished jobs whose lease ran out (their
    node died: the import's one transaction never committed, so nothing of it applied).
    """

    def __init__(
        self, pool: asyncpg.Pool, *, lease_s: float = 30.0, node: str | None = None
    ) -> None:
        self.pool = pool
        self.lease_s = lease_s
        self.node = node or socket.gethostname()

    async def create_job(
        self, court_id: uuid.UUID, who: Principal, filename: str | None
    ) -> uuid.UUID:
        job_id: uuid.UUID = await self.pool.fetchval(
            "INSERT INTO imports (court_id, actor, filename, node, lease_until) "
            "VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) RETURNING id",
            court_id,
            who.actor,
            filename,
            self.node,
            self.lease_s,
        )
        return job_id

    async def fail_abandoned(self, *, mine_too: bool = False) -> list[uuid.UUID]:
        """Mark failed every unfinished job whose lease has run out (and, with `mine_too`,
        every unfinished job of this node: called at start, none of them can be running).
        Returns their ids."""
        rows = await self.pool.fetch(
            "UPDATE imports SET status = 'failed', error_code = $3, "
            "error_message = 'the node running this import (' || coalesce(node, 'unknown') || "
            "') stopped before it finished; nothing from the file was applied: import it again', "
            "updated_at = now(), finished_at = now() "
            "WHERE status = ANY($1::text[]) AND (lease_until < now() "
            "OR (lease_until IS NULL AND updated_at < now() - interval '1 hour') "
            "OR ($4 AND node = $2)) RETURNING id, node",
            list(UNFINISHED),
            self.node,
            ABANDONED,
            mine_too,
        )
        for row in rows:
            log.warning("import %s: abandoned by node %s; marked failed", row["id"], row["node"])
        return [row["id"] for row in rows]

    async def _renew_lease(self, job_id: uuid.UUID) -> None:
        """While the job runs: push its lease forward every third of it."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.pool.execute(
                    "UPDATE imports SET lease_until = now() + make_interval(secs => $2) "
                    "WHERE id = $1 AND status = ANY($3::text[])",
                    job_id,
                    self.lease_s,
                    list(UNFINISHED),
                )
            except DATABASE_ERRORS as exc:
                log.warning("import %s: lease not renewed (%s)", job_id, exc)

    async def job(self, job_id: uuid.UUID) -> asyncpg.Record | None:
        return await self.pool.fetchrow(f"SELECT {JOB_COLUMNS} FROM imports WHERE id = $1", job_id)

    async def recent(self, court_id: uuid.UUID | None, limit: int) -> list[asyncpg.Record]:
        """The newest jobs first; one court's if given."""
        return list(
            await self.pool.fetch(
                f"SELECT {JOB_COLUMNS} FROM imports WHERE ($1::uuid IS NULL OR court_id = $1) "
                "ORDER BY created_at DESC LIMIT $2",
                court_id,
                limit,
            )
        )

    async def run(
        self,
        job_id: uuid.UUID,
        court_id: uuid.UUID,
        who: Principal,
        path: Path,
        options: ImportOptions,
        *,
        filename: str | None = None,
        sha256: bytes | None = None,
        progress: Progress | None = None,
    ) -> asyncpg.Record:
        """Import the CSV at `path` for the court; return the finished job.

        Raises ImportRejected (the job is marked failed and nothing changed).
        """
        pool = self.pool
        size = path.stat().st_size
        renewal = asyncio.create_task(self._renew_lease(job_id), name=f"import-lease-{job_id}")
        try:
            if sha256 is None:
                sha256 = await asyncio.to_thread(file_sha256, path)
            await pool.execute(
                "UPDATE imports SET status = 'validating', bytes = $2, sha256 = $3, "
                "updated_at = now() WHERE id = $1",
                job_id,
                size,
                sha256,
            )
            return await _load(
                pool, job_id, court_id, who, path, options, filename, sha256, progress
            )
        except ImportRejected as exc:
            await _fail(pool, job_id, exc)
            raise
        except BaseException:
            await asyncio.shield(
                _fail(pool, job_id, ImportRejected("interrupted", "the import was interrupted"))
            )
            raise
        finally:
            renewal.cancel()


async def _fail(pool: asyncpg.Pool, job_id: uuid.UUID, exc: ImportRejected) -> None:
    await pool.execute(
        "UPDATE imports SET status = 'failed', error_code = $2, error_message = $3, "
        "error_line = $4, updated_at = now(), finished_at = now() WHERE id = $1",
        job_id,
        exc.code,
        exc.message,
        exc.line,
    )


# ------------------------------------------------------------------ loading (database)
_STAGING = """
CREATE TEMP TABLE import_staging (
    line          bigint NOT NULL,
    number        bigint NOT NULL,
    case_ref      text NOT NULL,
    effective_at  timestamptz,
    expires_at    timestamptz NOT NULL,
    effective_given boolean NOT NULL
) ON COMMIT DROP
"""

_DUPLICATE = """
SELECT line, number, case_ref, first_line FROM (
    SELECT line, number, case_ref, min(line) OVER (PARTITION BY number, case_ref) AS first_line
    FROM import_staging WHERE number = ANY($1::int8[])
) t WHERE line > first_line ORDER BY line LIMIT 1
"""

_UPDATE = """
WITH up AS (
    UPDATE listings l
    SET expires_at = s.expires_at,
        effective_at = coalesce(s.effective_at, l.effective_at),
        effective_reason = CASE WHEN s.effective_given AND s.effective_at < $2
                                THEN $3 ELSE l.effective_reason END,
        import_id = $4,
        updated_at = now()
    FROM import_staging s
    WHERE l.court_id = $1 AND l.number = s.number AND l.case_ref = s.case_ref
      AND l.status IN ('active', 'suspended')
      AND s.expires_at > coalesce(s.effective_at, l.effective_at)
    RETURNING l.id
)
INSERT INTO import_listings (import_id, listing_id) SELECT $4, id FROM up
"""

_UPDATE_CONFLICT = """
SELECT s.line, s.number, l.effective_at FROM import_staging s
JOIN listings l ON l.court_id = $1 AND l.number = s.number AND l.case_ref = s.case_ref
                AND l.status IN ('active', 'suspended')
WHERE s.expires_at <= coalesce(s.effective_at, l.effective_at)
ORDER BY s.line LIMIT 1
"""

# The rows an import applied, as they stand after it: one line per listing (see
# `ringback.registry.import_digest`), in id order; `rows_sha256` in the import's audit row is
# the SHA-256 of them joined by newlines. Streamed out with COPY and hashed here (at 15 M
# rows the text is over 1 GB, more than one PostgreSQL value may hold): first the listings
# the import updated (all older than any it creates), in id order, then the new ones as
# the INSERT returns them, in id order.
_APPLIED = f"""
SELECT {APPLIED_LINE}
FROM import_listings il JOIN listings l ON l.id = il.listing_id
WHERE il.import_id = $1
ORDER BY l.id
"""

# The new listings, with their import_listings rows; returns their raw columns, from which
# `InsertedRows` writes their lines.
_INSERT = f"""
WITH ins AS (
    INSERT INTO listings (number, court_id, case_ref, effective_at, expires_at, effective_reason,
                          import_id)
    SELECT s.number, $1, s.case_ref, coalesce(s.effective_at, $2), s.expires_at,
           CASE WHEN s.effective_given AND s.effective_at < $2 THEN $3 END, $4
    FROM import_staging s
    WHERE NOT EXISTS (
        SELECT 1 FROM listings l
        WHERE l.court_id = $1 AND l.number = s.number AND l.case_ref = s.case_ref
          AND l.status IN ('active', 'suspended'))
    ORDER BY s.line
    RETURNING id, number, case_ref, effective_at, expires_at
), il AS (
    INSERT INTO import_listings (import_id, listing_id) SELECT $4, id FROM ins
)
SELECT {RAW_COLUMNS} FROM ins l
"""


async def applied_digest(conn: asyncpg.Connection, job_id: uuid.UUID) -> tuple[int, str]:
    """(how many listings the import wrote, the SHA-256 of them as applied; see _APPLIED),
    read back from the database (the import itself hashes them as it writes them)."""
    digest = RowsDigest()
    await conn.copy_from_query(_APPLIED, job_id, output=digest.feed_copy_text)
    return digest.rows, digest.hexdigest()


async def _set_progress(
    pool: asyncpg.Pool, job_id: uuid.UUID, status: str, rows: int, total: int | None = None
) -> None:
    await pool.execute(
        "UPDATE imports SET status = $2, rows_processed = $3, "
        "rows_total = coalesce($4, rows_total), updated_at = now() WHERE id = $1",
        job_id,
        status,
        rows,
        total,
    )


async def _load(
    pool: asyncpg.Pool,
    job_id: uuid.UUID,
    court_id: uuid.UUID,
    who: Principal,
    path: Path,
    options: ImportOptions,
    filename: str | None,
    sha256: bytes,
    progress: Progress | None,
) -> asyncpg.Record:
    await asyncio.to_thread(check_utf8_sample, path)
    now = datetime.now(UTC)
    reader = ListingCsv(path, options, now)
    next_batch: asyncio.Future[Any] | None = None
    numbers: list[np.ndarray] = []
    staged = 0
    timings: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now_ = time.perf_counter()
        timings[name] = round(now_ - mark, 3)
        mark = now_

    async def tuples() -> AsyncIterator[bytes]:
        """The COPY stream: each batch is sent while the thread reads the next."""
        nonlocal next_batch, staged
        yield COPY_HEADER
        next_batch = asyncio.ensure_future(asyncio.to_thread(reader.batch))
        reported = 0.0
        while True:
            batch = await next_batch
            if not batch.rows:
                break
            next_batch = asyncio.ensure_future(asyncio.to_thread(reader.batch))
            numbers.append(batch.numbers)
            yield batch.data
            staged += batch.rows
            if time.monotonic() - reported >= PROGRESS_EVERY_S:
                reported = time.monotonic()
                await _set_progress(pool, job_id, "validating", staged)
            if progress:
                progress("validating", staged, reader.bytes_done, reader.size)
        yield COPY_TRAILER

    try:
        await asyncio.to_thread(reader.header)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(_STAGING)
            await conn.copy_to_table(
                "import_staging", source=tuples(), columns=STAGING_COLUMNS, format="binary"
            )
            lap("validate_and_copy")
            if staged == 0:
                raise ImportRejected("empty_file", "the file has a header but no rows")
            await _set_progress(pool, job_id, "loading", staged, staged)
            if progress:
                progress("loading", staged, reader.size, reader.size)
            # The import's own statements leave the change feed alone; it gets one marker
            # for the whole import at the end (migration 014).
            await conn.execute(
                "SELECT set_config('ringback.bulk_import', $1, true), "
                "set_config('work_mem', '256MB', true)",
                str(job_id),
            )
            await conn.execute("ANALYZE import_staging")  # sizes for the joins' plans
            repeated = await asyncio.to_thread(_repeated_numbers, numbers)
            dup = None
            if len(repeated):
                dup = await conn.fetchrow(_DUPLICATE, repeated)
            lap("duplicates")
            if dup is not None:
                raise ImportRejected(
                    "duplicate_number",
                    f"number +{dup['number']} under case {dup['case_ref']!r} is already on "
                    f"line {dup['first_line']}",
                    dup["line"],
                    number=f"+{dup['number']}",
                    first_line=dup["first_line"],
                )
            bad = await conn.fetchrow(_UPDATE_CONFLICT, court_id)
            if bad is not None:
                raise ImportRejected(
                    "invalid_row",
                    f"+{bad['number']} is already listed by this court for this case "
                    f"effective from {bad['effective_at'].isoformat()}; expires_at must be "
                    "after it",
                    bad["line"],
                )
            lap("update_check")
            notice_end = now + timedelta(days=options.notice_period_days)
            status = await conn.execute(
                _UPDATE, court_id, notice_end, options.effective_reason, job_id
            )
            updated = int(status.split()[-1])
            lap("update")
            digest = RowsDigest()
            if updated:
                await conn.copy_from_query(_APPLIED, job_id, output=digest.feed_copy_text)
            lap("digest_of_updated")
            inserted = InsertedRows(digest)
            await conn.copy_from_query(
                _INSERT,
                court_id,
                notice_end,
                options.effective_reason,
                job_id,
                output=inserted.feed,
            )
            await inserted.finish()
            applied, rows_sha256 = digest.rows, digest.hexdigest()
            listed = applied - updated
            lap("insert_and_digest")
            summary = {
                "import_id": str(job_id),
                "filename": filename,
                "bytes": reader.size,
                "sha256": sha256.hex(),
                "rows": staged,
                "listed": listed,
                "updated": updated,
                "effective_reason": options.effective_reason,
                "rows_applied": applied,
                "rows_sha256": rows_sha256,
            }
            await audit.record(
                conn, who, "listing.import", f"import:{job_id}", court_id=court_id, after=summary
            )
            if listed:
                await enqueue_event(
                    conn,
                    "listing.created",
                    {
                        "import_id": str(job_id),
                        "court_id": str(court_id),
                        "listed": listed,
                        "actor": who.actor,
                        "listings": f"/v1/listings?import_id={job_id}",
                    },
                )
            await enqueue_event(
                conn, "import.completed", {**summary, "court_id": str(court_id), "actor": who.actor}
            )
            row = await conn.fetchrow(
                "UPDATE imports SET status = 'done', rows_processed = $2, rows_total = $2, "
                "listed = $3, updated = $4, updated_at = now(), finished_at = now() "
                f"WHERE id = $1 RETURNING {JOB_COLUMNS}",
                job_id,
                staged,
                listed,
                updated,
            )
            if listed or updated:
                await conn.fetchval("SELECT feed_append_import()")
            lap("audit_and_job")
        log.info("import %s: %d rows; load timings (s) %s", job_id, staged, timings)
    finally:
        if next_batch is not None and not next_batch.done():
            with contextlib.suppress(BaseException):
                await next_batch
        reader.close()
    if progress:
        progress("done", staged, reader.size, reader.size)
    assert row is not None
    return row


def _repeated_numbers(batches: list[np.ndarray]) -> list[int]:
    """The numbers that appear more than once in the file (one number may be listed under
    several cases; only those rows need the duplicate check in PostgreSQL)."""
    if not batches:
        return []
    numbers = np.concatenate(batches)
    batches.clear()  # 8 B a row: keep one copy, sorted in place
    numbers.sort()
    return np.unique(numbers[1:][numbers[1:] == numbers[:-1]]).tolist()  # type: ignore[no-any-return]
