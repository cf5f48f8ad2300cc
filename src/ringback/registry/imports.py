"""Bulk import of listings from CSV: validate every row, then load in one transaction.

The file (columns ``number,case_ref,expires_at[,effective_at]`` with a header row, UTF-8)
is read in batches in a worker thread; every row is validated (number normalised to
E.164, ISO 8601 times with an offset, the expiry cap and notice period of the config)
and copied with binary COPY into a temporary staging table. Then, in the same transaction:
duplicate numbers in the file are refused, open listings of the same numbers by the same
court are updated (like ``PUT /v1/listings/{number}``), new ones are inserted with one
``INSERT … SELECT``, a ``listing.created`` outbox event is written per new listing, and one
audit event summarises the import (counts and the file's SHA-256). A bad row rolls all of
it back and names its line: the import changes nothing or everything.

Progress is written to the ``imports`` row on a separate connection after each batch, so
``GET /v1/imports/{id}`` shows it while the import runs.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import csv
import functools
import hashlib
import io
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import asyncpg

from ringback.registry.numbers import NumberError, NumberingPlan, normalize
from ringback.registry.outbox import enqueue_event
from ringback.registry.store import Principal, Store

__all__ = [
    "ImportOptions",
    "ImportRejected",
    "create_job",
    "fail_job",
    "import_json",
    "run_import",
]

log = logging.getLogger(__name__)

COLUMNS = ("number", "case_ref", "expires_at", "effective_at")
REQUIRED = ("number", "case_ref", "expires_at")
PAST_TOLERANCE = timedelta(minutes=5)
JOB_COLUMNS = (
    "id, court_id, actor, status, filename, bytes, sha256, rows_processed, rows_total, "
    "listed, updated, error_line, error_code, error_message, created_at, updated_at, finished_at"
)

Progress = Callable[[str, int, int, int], None]  # (stage, rows, bytes done, bytes total)


class ImportRejected(Exception):
    """The file is refused; nothing was changed. `line` is 1-based (the header is line 1)."""

    def __init__(self, code: str, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.code = code
        self.line = line
        self.reason = message

    @property
    def message(self) -> str:
        return str(self)


@dataclass(frozen=True)
class ImportOptions:
    plan: NumberingPlan = field(default_factory=NumberingPlan)
    max_duration_days: float = 365
    notice_period_days: float = 3.0
    effective_reason: str | None = None  # allows effective_at inside the notice period
    batch_rows: int = 20_000


def import_json(row: Any) -> dict[str, Any]:
    sha = row["sha256"]
    error = None
    if row["error_code"] is not None:
        error = {
            "code": row["error_code"],
            "message": row["error_message"],
            "line": row["error_line"],
        }
    return {
        "id": str(row["id"]),
        "court_id": str(row["court_id"]),
        "status": row["status"],
        "filename": row["filename"],
        "bytes": row["bytes"],
        "sha256": bytes(sha).hex() if sha is not None else None,
        "rows_processed": row["rows_processed"],
        "rows_total": row["rows_total"],
        "listed": row["listed"],
        "updated": row["updated"],
        "error": error,
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
    }


async def create_job(
    pool: asyncpg.Pool, court_id: uuid.UUID, who: Principal, filename: str | None
) -> uuid.UUID:
    job_id: uuid.UUID = await pool.fetchval(
        "INSERT INTO imports (court_id, actor, filename) VALUES ($1, $2, $3) RETURNING id",
        court_id,
        who.actor,
        filename,
    )
    return job_id


async def fail_job(pool: asyncpg.Pool, job_id: uuid.UUID, exc: ImportRejected) -> None:
    await pool.execute(
        "UPDATE imports SET status = 'failed', error_code = $2, error_message = $3, "
        "error_line = $4, updated_at = now(), finished_at = now() WHERE id = $1",
        job_id,
        exc.code,
        exc.message,
        exc.line,
    )


# ------------------------------------------------------------------- parsing (thread)
@functools.lru_cache(maxsize=4096)
def _parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("needs a UTC offset, e.g. 2027-01-31T00:00:00+08:00 or ...Z")
    if not 2000 <= parsed.astimezone(UTC).year <= 2100:
        raise ValueError("year out of range 2000-2100")
    return parsed.astimezone(UTC)


class _Reader:
    """Rows of the CSV file as validated staging records, batch by batch (runs in a thread)."""

    def __init__(self, path: Path, options: ImportOptions, now: datetime) -> None:
        self._raw: IO[bytes] = path.open("rb")
        self.size = path.stat().st_size
        self._text = io.TextIOWrapper(self._raw, encoding="utf-8-sig", newline="", errors="strict")
        self._csv = csv.reader(self._text, strict=True)
        self.options = options
        self.now = now
        self.notice_end = now + timedelta(days=options.notice_period_days)
        self.max_expiry = now + timedelta(days=options.max_duration_days)
        self.columns: dict[str, int] = {}
        self.rows = 0
        self._rows: Iterator[list[str]] = self._safe_rows()

    @property
    def bytes_done(self) -> int:
        try:
            return min(self._raw.tell(), self.size)
        except (OSError, ValueError):
            return self.size

    def close(self) -> None:
        self._text.close()

    def _safe_rows(self) -> Iterator[list[str]]:
        while True:
            try:
                row = next(self._csv)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise ImportRejected(
                    "invalid_encoding", "not UTF-8 text", self._csv.line_num + 1
                ) from None
            except csv.Error as exc:
                raise ImportRejected(
                    "invalid_csv", f"not valid CSV ({exc})", self._csv.line_num
                ) from None
            yield row

    def header(self) -> None:
        for row in self._rows:
            if not row or all(not cell.strip() for cell in row):
                continue
            names = [cell.strip().lower() for cell in row]
            line = self._csv.line_num
            for name in names:
                if name not in COLUMNS:
                    raise ImportRejected(
                        "invalid_header",
                        f"unknown column {name!r}; the columns are {', '.join(COLUMNS)} "
                        "(effective_at optional), with a header row",
                        line,
                    )
            if len(set(names)) != len(names):
                raise ImportRejected("invalid_header", "a column appears twice", line)
            missing = [c for c in REQUIRED if c not in names]
            if missing:
                raise ImportRejected(
                    "invalid_header",
                    f"missing column(s) {', '.join(missing)}; the first row must be a header "
                    f"naming {', '.join(COLUMNS)} (effective_at optional)",
                    line,
                )
            self.columns = {name: i for i, name in enumerate(names)}
            return
        raise ImportRejected("empty_file", "the file is empty: no header row and no rows")

    def batch(self) -> list[tuple[int, int, str, datetime | None, datetime, bool]]:
        out: list[tuple[int, int, str, datetime | None, datetime, bool]] = []
        cols = self.columns
        i_number, i_case, i_exp = cols["number"], cols["case_ref"], cols["expires_at"]
        i_eff = cols.get("effective_at")
        width = len(cols)
        plan = self.options.plan
        reason = self.options.effective_reason
        now, notice_end, max_expiry = self.now, self.notice_end, self.max_expiry
        earliest = now - PAST_TOLERANCE
        for row in self._rows:
            line = self._csv.line_num
            if len(row) != width:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                raise ImportRejected(
                    "invalid_row", f"{len(row)} fields, the header has {width}", line
                )
            raw_number = row[i_number]
            try:
                number = normalize(raw_number, plan)
            except NumberError as exc:
                raise ImportRejected("invalid_row", f"number {raw_number!r}: {exc}", line) from None
            case_ref = row[i_case].strip()
            if not 1 <= len(case_ref) <= 200:
                raise ImportRejected("invalid_row", "case_ref must be 1-200 characters", line)
            text = row[i_exp].strip()
            try:
                expires_at = _parse_time(text)
            except ValueError as exc:
                raise ImportRejected(
                    "invalid_row", f"expires_at {text!r}: not an ISO 8601 time ({exc})", line
                ) from None
            effective_at: datetime | None = None
            if i_eff is not None and row[i_eff].strip():
                text = row[i_eff].strip()
                try:
                    effective_at = _parse_time(text)
                except ValueError as exc:
                    raise ImportRejected(
                        "invalid_row", f"effective_at {text!r}: not an ISO 8601 time ({exc})", line
                    ) from None
                if effective_at < earliest:
                    raise ImportRejected("invalid_row", f"effective_at {text} is in the past", line)
                if effective_at < notice_end and reason is None:
                    raise ImportRejected(
                        "invalid_row",
                        f"effective_at {text} is before the end of the "
                        f"{self.options.notice_period_days:g}-day notice period "
                        f"({notice_end.isoformat()}); an earlier start needs effective_reason",
                        line,
                    )
            if expires_at <= now:
                raise ImportRejected("invalid_row", f"expires_at {row[i_exp]} is in the past", line)
            if expires_at > max_expiry:
                raise ImportRejected(
                    "invalid_row",
                    f"expires_at {row[i_exp]} is more than {self.options.max_duration_days:g} "
                    f"days from now (latest {max_expiry.isoformat()})",
                    line,
                )
            if expires_at <= (effective_at or notice_end):
                raise ImportRejected(
                    "invalid_row",
                    f"expires_at {row[i_exp]} must be after effective_at "
                    f"({(effective_at or notice_end).isoformat()})",
                    line,
                )
            out.append((line, number, case_ref, effective_at, expires_at, effective_at is not None))
            if len(out) >= self.options.batch_rows:
                break
        self.rows += len(out)
        return out


def file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.digest()


def check_utf8_sample(path: Path) -> None:
    """Refuse a binary file early: the first KiB must decode as UTF-8 with no NUL."""
    with path.open("rb") as f:
        head = f.read(1024)
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(head, final=False)
    except UnicodeDecodeError:
        raise ImportRejected("invalid_encoding", "not a UTF-8 CSV text file", 1) from None
    if b"\x00" in head:
        raise ImportRejected("invalid_encoding", "not a CSV text file (binary data)", 1)


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
SELECT line, number, first_line FROM (
    SELECT line, number, min(line) OVER (PARTITION BY number) AS first_line
    FROM import_staging
) t WHERE line > first_line ORDER BY line LIMIT 1
"""

_UPDATE = """
UPDATE listings l
SET case_ref = s.case_ref,
    expires_at = s.expires_at,
    effective_at = coalesce(s.effective_at, l.effective_at),
    effective_reason = CASE WHEN s.effective_given AND s.effective_at < $2
                            THEN $3 ELSE l.effective_reason END,
    updated_at = now()
FROM import_staging s
WHERE l.court_id = $1 AND l.number = s.number AND l.status IN ('active', 'suspended')
  AND s.expires_at > coalesce(s.effective_at, l.effective_at)
"""

_UPDATE_CONFLICT = """
SELECT s.line, s.number, l.effective_at FROM import_staging s
JOIN listings l ON l.court_id = $1 AND l.number = s.number
                AND l.status IN ('active', 'suspended')
WHERE s.expires_at <= coalesce(s.effective_at, l.effective_at)
ORDER BY s.line LIMIT 1
"""

_INSERT = """
WITH ins AS (
    INSERT INTO listings (number, court_id, case_ref, effective_at, expires_at, effective_reason)
    SELECT s.number, $1, s.case_ref, coalesce(s.effective_at, $2), s.expires_at,
           CASE WHEN s.effective_given AND s.effective_at < $2 THEN $3 END
    FROM import_staging s
    WHERE NOT EXISTS (
        SELECT 1 FROM listings l
        WHERE l.court_id = $1 AND l.number = s.number AND l.status IN ('active', 'suspended'))
    ORDER BY s.line
    RETURNING id, number, court_id, case_ref, status, effective_at, expires_at
), ev AS (
    INSERT INTO event_outbox (event_type, payload)
    SELECT 'listing.created', jsonb_build_object(
        'listing_id', id, 'number', '+' || number, 'court_id', court_id::text,
        'case_ref', case_ref, 'status', status, 'effective_at', effective_at,
        'expires_at', expires_at, 'actor', $4::text, 'import_id', $5::text)
    FROM ins ORDER BY id
    RETURNING id, event_type
), dl AS (
    INSERT INTO event_deliveries (event_id, subscription_id)
    SELECT ev.id, sub.id FROM ev JOIN event_subscriptions sub
      ON sub.active AND (sub.event_types IS NULL OR ev.event_type = ANY (sub.event_types))
)
SELECT count(*) FROM ins
"""


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


async def run_import(
    pool: asyncpg.Pool,
    job_id: uuid.UUID,
    court_id: uuid.UUID,
    who: Principal,
    path: Path,
    options: ImportOptions,
    *,
    filename: str | None = None,
    sha256: bytes | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Import the CSV at `path` for the court; return the finished job (see import_json).

    Raises ImportRejected (the job is marked failed and nothing changed).
    """
    size = path.stat().st_size
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
        result = await _load(pool, job_id, court_id, who, path, options, filename, sha256, progress)
    except ImportRejected as exc:
        await fail_job(pool, job_id, exc)
        raise
    except BaseException:
        await asyncio.shield(
            fail_job(pool, job_id, ImportRejected("interrupted", "the import was interrupted"))
        )
        raise
    return result


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
) -> dict[str, Any]:
    await asyncio.to_thread(check_utf8_sample, path)
    now = datetime.now(UTC)
    reader = _Reader(path, options, now)
    next_batch: asyncio.Future[Any] | None = None
    try:
        await asyncio.to_thread(reader.header)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(_STAGING)
            staged = 0
            next_batch = asyncio.ensure_future(asyncio.to_thread(reader.batch))
            while True:
                batch = await next_batch
                if not batch:
                    break
                next_batch = asyncio.ensure_future(asyncio.to_thread(reader.batch))
                await conn.copy_records_to_table(
                    "import_staging",
                    records=batch,
                    columns=[
                        "line", "number", "case_ref", "effective_at", "expires_at",
                        "effective_given",
                    ],
                )  # fmt: skip
                staged += len(batch)
                await _set_progress(pool, job_id, "validating", staged)
                if progress:
                    progress("validating", staged, reader.bytes_done, reader.size)
            if staged == 0:
                raise ImportRejected("empty_file", "the file has a header but no rows")
            await _set_progress(pool, job_id, "loading", staged, staged)
            if progress:
                progress("loading", staged, reader.size, reader.size)
            await conn.execute("SET LOCAL work_mem = '256MB'")
            timings: dict[str, float] = {}
            mark = time.perf_counter()

            def lap(name: str) -> None:
                nonlocal mark
                now_ = time.perf_counter()
                timings[name] = round(now_ - mark, 3)
                mark = now_

            dup = await conn.fetchrow(_DUPLICATE)
            lap("duplicates")
            if dup is not None:
                raise ImportRejected(
                    "duplicate_number",
                    f"number +{dup['number']} is already on line {dup['first_line']}",
                    dup["line"],
                )
            bad = await conn.fetchrow(_UPDATE_CONFLICT, court_id)
            if bad is not None:
                raise ImportRejected(
                    "invalid_row",
                    f"+{bad['number']} is already listed by this court effective from "
                    f"{bad['effective_at'].isoformat()}; expires_at must be after it",
                    bad["line"],
                )
            lap("update_check")
            notice_end = now + timedelta(days=options.notice_period_days)
            status = await conn.execute(_UPDATE, court_id, notice_end, options.effective_reason)
            updated = int(status.split()[-1])
            lap("update")
            listed = await conn.fetchval(
                _INSERT, court_id, notice_end, options.effective_reason, who.actor, str(job_id)
            )
            lap("insert")
            summary = {
                "import_id": str(job_id),
                "filename": filename,
                "bytes": reader.size,
                "sha256": sha256.hex(),
                "rows": staged,
                "listed": listed,
                "updated": updated,
                "effective_reason": options.effective_reason,
            }
            await Store.audit(
                conn, who, "listing.import", f"import:{job_id}", court_id=court_id, after=summary
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
            lap("audit_and_job")
        log.info("import %s: %d rows; load timings (s) %s", job_id, staged, timings)
    finally:
        if next_batch is not None and not next_batch.done():
            with contextlib.suppress(BaseException):
                await next_batch
        reader.close()
    if progress:
        progress("done", staged, reader.size, reader.size)
    return import_json(row)
