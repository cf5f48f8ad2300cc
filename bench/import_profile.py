"""Where a bulk import's load phase spends its time, statement by statement, at N rows.

On a throw-away embedded PostgreSQL (migrated, as superuser so the variants can drop
what they test), N staging rows are generated server-side, then the import's own
statements (`ringback.registry.imports`: update, insert, digest) run in a transaction
that is rolled back, once per variant: as shipped, and without one of the costs per row
(the feed triggers' transition tables, the court foreign key, one of the listings
indexes), so each variant's difference is what that part costs.

    .venv/bin/python bench/import_profile.py [--rows 1000000] [--shuffle]
        [--variants shipped,no_feed_triggers,...]
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

from ringback.registry import imports
from ringback.registry.embedded import EmbeddedPostgres
from ringback.registry.migrate import migrate

VARIANTS: dict[str, list[str]] = {
    "shipped": [],
    "no_feed_triggers": [
        "DROP TRIGGER listings_feed_insert ON listings",
        "DROP TRIGGER listings_feed_update ON listings",
    ],
    "no_court_fk": ["ALTER TABLE listings DROP CONSTRAINT listings_court_id_fkey"],
    "no_number_index": ["DROP INDEX listings_number"],
    "no_deferred_effective_index": ["DROP INDEX listings_deferred_effective"],
    "no_import_listings_indexes": [
        "ALTER TABLE import_listings DROP CONSTRAINT import_listings_pkey",
        "DROP INDEX import_listings_listing",
    ],
}

_FILL = """
INSERT INTO import_staging (line, number, case_ref, effective_at, expires_at, effective_given)
SELECT g + 1, 8613000000000 + {number}, '(2026) Jing 0105 Zhi ' || g, NULL,
       now() + interval '180 days', false
FROM generate_series(1, $1) g
"""


async def run_variant(
    conn: asyncpg.Connection, name: str, rows: int, shuffle: bool, court: uuid.UUID
) -> dict[str, float]:
    laps: dict[str, float] = {}
    job = uuid.uuid4()
    tr = conn.transaction()
    await tr.start()
    try:
        for ddl in VARIANTS[name]:
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
        digest = imports._CopyTextDigest()
        await conn.copy_from_query(imports._INSERT, court, notice, None, job, output=digest.feed)
        assert digest.rows == rows, digest.rows
        laps["insert and digest"] = time.perf_counter() - t
    finally:
        await tr.rollback()
    return laps


async def main(rows: int, shuffle: bool, names: list[str]) -> None:
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
        for name in names:
            laps = await run_variant(conn, name, rows, shuffle, court)
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
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.shuffle, args.variants.split(",")))
