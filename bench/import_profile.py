"""Where a bulk import's load phase spends its time, statement by statement, at N rows.

On a throw-away embedded PostgreSQL (migrated, as superuser so the variants can drop
what they test), N staging rows are generated server-side, then the import's own
statements (`ringback.registry.imports`: update, insert, digest) run in a transaction
that is rolled back, once per variant: as shipped, and without one of the costs per row
(one trigger on listings, one of its indexes, the import_listings indexes; found in the
catalog), so each variant's difference is what that part costs.

    .venv/bin/python bench/import_profile.py [--rows 1000000] [--shuffle]
        [--variants shipped,no_trigger:listings_feed_insert,no_index:...]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from ringback.registry import import_digest, imports
from ringback.registry.embedded import EmbeddedPostgres
from ringback.registry.migrate import migrate

# Each variant drops one per-row cost, found in the catalog so the names stay current: a
# trigger on listings (e.g. the feed's, whose transition tables hold every new row), an
# index on listings (other than the primary key), or the import_listings rows' indexes.
_TRIGGERS = """
SELECT tgname FROM pg_trigger WHERE tgrelid = 'listings'::regclass AND NOT tgisinternal
ORDER BY tgname
"""
_INDEXES = """
SELECT indexrelid::regclass::text FROM pg_index
WHERE indrelid = 'listings'::regclass AND NOT indisprimary ORDER BY 1
"""


Variant = tuple[list[str], str]  # the DDL to drop a cost, the insert statement


async def variants(conn: asyncpg.Connection) -> dict[str, Variant]:
    found: dict[str, Variant] = {"shipped": ([], imports._INSERT)}
    for (name,) in await conn.fetch(_TRIGGERS):
        found[f"no_trigger:{name}"] = ([f"DROP TRIGGER {name} ON listings"], imports._INSERT)
    for (name,) in await conn.fetch(_INDEXES):
        found[f"no_index:{name}"] = ([f"DROP INDEX {name}"], imports._INSERT)
    found["no_import_listings_indexes"] = (
        [
            "ALTER TABLE import_listings DROP CONSTRAINT import_listings_pkey",
            "DROP INDEX import_listings_listing",
        ],
        imports._INSERT,
    )
    # The digest's lines: written by PostgreSQL per row (jsonb_build_array, to_char twice),
    # as before session 6, or not at all.
    found["digest_lines_in_postgres"] = (
        [],
        imports._INSERT.replace(import_digest.RAW_COLUMNS, import_digest.APPLIED_LINE),
    )
    found["no_digest_lines"] = (
        [],
        imports._INSERT.replace(import_digest.RAW_COLUMNS, "l.id::text"),
    )
    return found


_FILL = """
INSERT INTO import_staging (line, number, case_ref, effective_at, expires_at, effective_given)
SELECT g + 1, 8613000000000 + {number}, '(2026) Jing 0105 Zhi ' || g, NULL,
       now() + interval '180 days', false
FROM generate_series(1, $1) g
"""


async def run_variant(
    conn: asyncpg.Connection, variant: Variant, rows: int, shuffle: bool, court: uuid.UUID
) -> dict[str, float]:
    ddls, insert = variant
    laps: dict[str, float] = {}
    job = uuid.uuid4()
    tr = conn.transaction()
    await tr.start()
    try:
        for ddl in ddls:
            await conn.execute(ddl)
        await conn.execute(imports._STAGING)
        number = "((g::int8 * 7919) % $1)" if shuffle else "g"
        t = time.perf_counter()
        await conn.execute(_FILL.format(number=number), rows)
        await conn.execute("ANALYZE import_staging")
        laps["fill staging (not timed in imports)"] = time.perf_counter() - t
        await conn.execute(
            "SELECT set_config('ringback.bulk_import', $1, true), "
            "set_config('work_mem', '256MB', true)",
            str(job),
        )
        now = datetime.now(UTC)
        notice = now + timedelta(days=3)
        for label, sql, args in (
            ("update check", imports._UPDATE_CONFLICT, (court,)),
            ("update", imports._UPDATE, (court, notice, None, job)),
        ):
            t = time.perf_counter()
            await conn.execute(sql, *args)
            laps[label] = time.perf_counter() - t
        t = time.perf_counter()
        digest = import_digest.RowsDigest()
        if import_digest.RAW_COLUMNS in insert:  # as shipped: the lines written here
            inserted = import_digest.InsertedRows(digest)
            await conn.copy_from_query(insert, court, notice, None, job, output=inserted.feed)
            await inserted.finish()
        else:
            output = digest.feed_copy_text
            await conn.copy_from_query(insert, court, notice, None, job, output=output)
        assert digest.rows == rows, digest.rows
        laps["insert and digest"] = time.perf_counter() - t
    finally:
        await tr.rollback()
        # The rolled-back rows stay in the heap and its indexes until a vacuum: without
        # one, every variant ran on a bigger table than the last (37 s -> 47 s at 2 M).
        await conn.execute("VACUUM listings, import_listings")
        await conn.execute("CHECKPOINT")
    return laps


async def main(rows: int, shuffle: bool, names: list[str] | None) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ringback-bench-import-profile-"))
    pg = EmbeddedPostgres(tmp / "pg")
    dsn = await asyncio.to_thread(pg.start)
    try:
        conn = await asyncpg.connect(dsn)
        await migrate(conn)
        court = await conn.fetchval(
            "INSERT INTO courts (name, webhook_secret) VALUES ('Profile Court', 'x') RETURNING id"
        )
        print(f"{rows:,} rows{' (shuffled numbers)' if shuffle else ''}; seconds per statement")
        found = await variants(conn)
        for name in names or list(found):
            if name not in found:
                raise SystemExit(f"no variant {name!r}; there are {', '.join(found)}")
            laps = await run_variant(conn, found[name], rows, shuffle, court)
            timed = {k: v for k, v in laps.items() if not k.startswith("fill")}
            parts = ", ".join(f"{k} {v:.2f}" for k, v in timed.items())
            print(f"{name:28s} load {sum(timed.values()):6.2f} s  ({parts})")
        await conn.close()
    finally:
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shuffle", action="store_true")
    parser.add_argument("--variants", help="comma-separated; default: every one found")
    args = parser.parse_args()
    names = args.variants.split(",") if args.variants else None
    asyncio.run(main(args.rows, args.shuffle, names))
