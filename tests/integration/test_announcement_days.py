"""Proof of play by day (migration 013): the migration keeps every row, day partitions are
made ahead, a write for a day with no partition is still stored, days past retention are
dropped (audited) while the rollups keep counting them, and the rollups match the raw rows.
Real PostgreSQL throughout; the runtime role does all of it without owning the table."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from ringback.registry.announcement_days import (
    AnnouncementDays,
    create_days,
    expire,
    partition_days,
)
from ringback.registry.audit import verify_chain
from ringback.registry.common import Principal
from ringback.registry.migrate import available, migrate, migrate_as_owner
from ringback.registry.outbox import emit_hourly
from ringback.registry.proof_of_play import (
    _PER_DAY_HOURLY,
    _PER_DAY_RAW,
    PlayRecord,
    PlayStats,
    ProofOfPlayWriter,
)
from ringback.registry.roles import as_user
from ringback.registry.store import Store, create_pool

WHO = Principal("test", "operator")
OUTCOMES = ("completed", "cancelled", "failed")


def today() -> date:
    return datetime.now(UTC).date()


def at(day: date, hour: int = 12, minute: int = 0) -> float:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC).timestamp()


async def where(pool: asyncpg.Pool, ids: list[int]) -> dict[int, str]:
    """Which partition holds each row."""
    rows = await pool.fetch(
        "SELECT id, tableoid::regclass::text AS part FROM announcements WHERE id = ANY($1)", ids
    )
    return {r["id"]: r["part"] for r in rows}


async def rollup_matches_raw(pool: asyncpg.Pool) -> None:
    raw = {
        (r["hour"], r["court_id"], r["outcome"]): r["n"]
        for r in await pool.fetch(
            "SELECT date_trunc('hour', started_at, 'UTC') AS hour, court_id, outcome, "
            "count(*) AS n FROM announcements GROUP BY 1, 2, 3"
        )
    }
    hourly = {
        (r["hour"], r["court_id"], r["outcome"]): r["n"]
        for r in await pool.fetch("SELECT hour, court_id, outcome, n FROM announcement_hourly")
    }
    assert hourly == raw
    totals = {
        (r["court_id"], r["outcome"]): r["n"]
        for r in await pool.fetch("SELECT court_id, outcome, n FROM announcement_totals")
    }
    by_court: Counter[tuple[uuid.UUID | None, str]] = Counter()
    for (_, court, outcome), n in raw.items():
        by_court[court, outcome] += n
    assert totals == dict(by_court)


# ------------------------------------------------------------------ the migration


async def test_migration_013_keeps_every_row_of_a_populated_table(database: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for m in available():
            if m.version < 13:
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    m.version,
                    m.name,
                )
        court = await conn.fetchval(
            "INSERT INTO courts (name, webhook_secret) VALUES ('Old Court', 's') RETURNING id"
        )
        listing = await conn.fetchval(
            "INSERT INTO listings (number, court_id, case_ref, expires_at) "
            "VALUES (8613800138000, $1, 'OLD-1', now() + interval '30 days') RETURNING id",
            court,
        )
        # 10 days of history at 5-hour steps, every outcome, both modes, a court-less row
        await conn.execute(
            "INSERT INTO announcements (listing_id, court_id, node, codec, caller, started_at, "
            "finished_at, outcome, media_destination, mode, stop_reason, answered) "
            "SELECT $1, $2, 'old-node', 'PCMA', '+861300000' || i, "
            "now() - make_interval(hours => 5 * i), now() - make_interval(hours => 5 * i) "
            "+ interval '20 s', (ARRAY['completed','cancelled','failed'])[1 + i % 3], "
            "'127.0.0.1:' || (20000 + i), CASE WHEN i % 2 = 0 THEN 'ringback' "
            "ELSE 'redirect' END, CASE WHEN i % 2 = 0 THEN 'answered' END, "
            "CASE WHEN i % 2 = 0 THEN true END FROM generate_series(0, 47) i",
            listing,
            court,
        )
        await conn.execute(
            "INSERT INTO announcements (node, codec, started_at, outcome) "
            "VALUES ('old-node', 'PCMU', now() - interval '3 days', 'failed')"
        )
        before = [tuple(r) for r in await conn.fetch("SELECT * FROM announcements ORDER BY id")]
        assert len(before) == 49

        assert [m.version for m in await migrate(conn)] == [
            m.version for m in available() if m.version >= 13
        ]

        after = [tuple(r) for r in await conn.fetch("SELECT * FROM announcements ORDER BY id")]
        assert after == before  # every row, every column, the same ids
        kind = "SELECT relkind::text FROM pg_class WHERE relname = 'announcements'"
        assert await conn.fetchval(kind) == "p"  # partitioned
        parts = dict(
            await conn.fetch(
                "SELECT tableoid::regclass::text, count(*) FROM announcements GROUP BY 1"
            )
        )
        days = {r[7].astimezone(UTC).date() for r in before}
        assert set(parts) == {f"announcements_{d:%Y%m%d}" for d in days}  # none in default
        assert sum(parts.values()) == 49
        # the rollups were built from the old rows
        totals = dict(
            await conn.fetch("SELECT outcome, sum(n)::int8 FROM announcement_totals GROUP BY 1")
        )
        assert totals == {"completed": 16, "cancelled": 16, "failed": 17}
        # new rows get new ids
        new_id = await conn.fetchval(
            "INSERT INTO announcements (node, codec, started_at, outcome) "
            "VALUES ('n', 'PCMU', now(), 'completed') RETURNING id"
        )
        assert new_id > max(r[0] for r in before)
    finally:
        await conn.close()


# ------------------------------------------------------------------ as the runtime role


@pytest.fixture
async def runtime(database: str) -> AsyncIterator[Store]:
    """A store on a login that is only a member of ringback_runtime (as the service runs);
    migrations ran as the owner."""
    await migrate_as_owner(database)
    login = "rt_" + uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(database)
    await admin.execute(f"CREATE ROLE {login} LOGIN IN ROLE ringback_runtime")
    pool = await create_pool(as_user(database, login), min_size=1, max_size=4)
    try:
        assert await pool.fetchval("SELECT current_user") == login
        yield Store(pool)
    finally:
        await pool.close()
        await admin.execute(f"DROP OWNED BY {login}")
        await admin.execute(f"DROP ROLE {login}")
        await admin.close()


async def _listing(store: Store, number: int) -> tuple[uuid.UUID, int]:
    court, _, _ = await store.courts.create(f"Court {number}", WHO)
    row = await store.listings.put(
        court["id"], number, "C-1", datetime.now(UTC) + timedelta(days=30), WHO
    )
    return court["id"], row["id"]


def _play(listing_id: int, started: float, outcome: str = "completed") -> PlayRecord:
    return PlayRecord(listing_id, 0, "PCMU", started, started + 20, outcome)


async def test_days_are_made_ahead_and_a_write_with_no_partition_is_still_stored(
    runtime: Store,
) -> None:
    pool = runtime.pool
    _, listing_id = await _listing(runtime, 8613800138001)
    keeper = AnnouncementDays(pool, retention_days=400, ahead_days=7)
    made, gone = await keeper.run_once()
    assert made == [today() + timedelta(days=n) for n in range(-1, 8)] and gone == []
    assert await partition_days(pool) == made
    assert (await keeper.run_once())[0] == []  # already there

    writer = ProofOfPlayWriter(pool, node="t")
    far = today() + timedelta(days=40)  # no partition for that day
    for t in (time.time(), at(far, 3), at(far, 23, 59)):
        writer.record(_play(listing_id, t))
    assert await writer.flush() == 3
    ids = [r[0] for r in await pool.fetch("SELECT id FROM announcements ORDER BY id")]
    assert list((await where(pool, ids)).values()) == [
        f"announcements_{today():%Y%m%d}",
        "announcements_default",
        "announcements_default",
    ]
    # the day's partition made later takes its rows out of the default partition
    assert await create_days(pool, far, far) == [far]
    assert set((await where(pool, ids[1:])).values()) == {f"announcements_{far:%Y%m%d}"}
    assert await pool.fetchval("SELECT count(*) FROM announcements") == 3
    await rollup_matches_raw(pool)
    # ... and what the runtime role may not do to proof of play
    async with pool.acquire() as conn:
        for sql in (
            "DELETE FROM announcements",
            "UPDATE announcements SET outcome = 'failed'",
            "TRUNCATE announcements",
            f"DELETE FROM announcements_{far:%Y%m%d}",
            f"DROP TABLE announcements_{far:%Y%m%d}",
            "ALTER TABLE announcements DETACH PARTITION announcements_default",
            "UPDATE announcement_totals SET n = 0",
            "DELETE FROM announcement_hourly",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(sql)
        with pytest.raises(asyncpg.InvalidParameterValueError, match="at least 30"):
            await conn.fetch("SELECT * FROM announcements_expire_oldest(7)")
    assert await pool.fetchval("SELECT count(*) FROM announcements") == 3


async def test_retention_drops_old_days_audited_and_the_counts_stay(runtime: Store) -> None:
    pool = runtime.pool
    court_id, listing_id = await _listing(runtime, 8613800138002)
    old, older, kept = (today() - timedelta(days=n) for n in (401, 500, 399))
    await create_days(pool, older, older)
    await create_days(pool, old, old)
    await create_days(pool, kept, kept)
    stray = today() - timedelta(days=450)  # no partition: in the default partition
    writer = ProofOfPlayWriter(pool, node="t")
    plays = [
        (older, "completed"),
        (older, "cancelled"),
        (old, "completed"),
        (stray, "failed"),
        (kept, "completed"),
        (today(), "cancelled"),
    ]
    for day, outcome in plays:
        writer.record(_play(listing_id, at(day), outcome))
    await writer.flush()
    before = await runtime.listings.stats(court_id)
    assert before["announcements"] == {"completed": 3, "cancelled": 2, "failed": 1, "total": 6}
    stats = PlayStats(pool)
    older_day = await stats.per_day(court_id, older, older, "Asia/Shanghai")

    gone = await expire(pool, 400)

    assert [(g.day, g.rows) for g in gone] == [(older, 2), (old, 1), (None, 1)]
    assert older not in await partition_days(pool) and old not in await partition_days(pool)
    assert kept in await partition_days(pool)
    remaining = await pool.fetch("SELECT started_at FROM announcements ORDER BY started_at")
    assert [r[0].date() for r in remaining] == [kept, today()]
    assert await expire(pool, 400) == []  # nothing more is due
    # the counts courts see are unchanged: the rollups outlive the raw rows
    assert await runtime.listings.stats(court_id) == before
    assert await stats.per_day(court_id, older, older, "Asia/Shanghai") == older_day
    assert older_day[0].completed + older_day[0].cancelled == 2
    # every drop is in the audit trail, and the chain still verifies
    events = await pool.fetch(
        "SELECT actor, action, entity, before, after FROM audit_events "
        "WHERE action = 'announcements.expire' ORDER BY id"
    )
    assert [(e["entity"], e["before"]["rows"]) for e in events] == [
        (f"announcements:{older}", 2),
        (f"announcements:{old}", 1),
        ("announcements:default", 1),
    ]
    assert all(e["actor"] == "system" and e["after"]["retention_days"] == 400 for e in events)
    async with pool.acquire() as conn:
        assert (await verify_chain(conn)).ok


async def test_rollups_match_the_raw_rows_and_feed_the_hourly_event(store: Store) -> None:
    pool = store.pool
    listings = [await _listing(store, 8613800138010 + i) for i in range(3)]
    await create_days(pool, today() - timedelta(days=2), today())
    rng = random.Random(14)
    writer = ProofOfPlayWriter(pool, node="t", batch_rows=97)  # several statements
    now = time.time()
    for _ in range(1000):
        _, listing_id = rng.choice(listings)
        listing_id = listing_id if rng.random() > 0.05 else 999_999  # listing gone: no court
        writer.record(_play(listing_id, now - rng.uniform(0, 2 * 86400), rng.choice(OUTCOMES)))
    assert await writer.flush() == 1000 and writer.batches == 11
    await rollup_matches_raw(pool)
    assert await pool.fetchval("SELECT count(*) FROM announcements WHERE court_id IS NULL") > 0
    # the hourly event of the last full hour: the raw rows' counts, per court
    assert await emit_hourly(pool, delay_s=0) == 1
    payload = await pool.fetchval(
        "SELECT payload FROM event_outbox WHERE event_type = 'warnings.played.hourly'"
    )
    hour = datetime.fromisoformat(payload["hour_start"])
    raw = await pool.fetch(
        "SELECT court_id, outcome, count(*) AS n FROM announcements "
        "WHERE started_at >= $1 AND started_at < $1 + interval '1 hour' GROUP BY 1, 2",
        hour,
    )
    expected: dict[str | None, Counter[str]] = {}
    for r in raw:
        key = str(r["court_id"]) if r["court_id"] else None
        expected.setdefault(key, Counter())[r["outcome"]] += r["n"]
    got = {c["court_id"]: c for c in payload["courts"]}
    assert set(got) == set(expected) and expected
    for key, counts in expected.items():
        assert got[key]["played"] == sum(counts.values())
        assert all(got[key][o] == counts[o] for o in OUTCOMES)
    assert payload["totals"]["played"] == sum(r["n"] for r in raw)
    # the portal's per-day counts: the rollup's answer is the raw rows' answer
    court_id = listings[0][0]
    first, last = today() - timedelta(days=3), today() + timedelta(days=1)
    for zone in ("Asia/Shanghai", "America/New_York"):
        args = (court_id, first, last, zone)
        assert [tuple(r) for r in await pool.fetch(_PER_DAY_HOURLY, *args)] == [
            tuple(r) for r in await pool.fetch(_PER_DAY_RAW, *args)
        ]
    days = await PlayStats(pool).per_day(court_id, first, last, "Asia/Kolkata")  # raw rows
    assert sum(d.completed + d.cancelled + d.failed for d in days) == await pool.fetchval(
        "SELECT count(*) FROM announcements WHERE court_id = $1", court_id
    )


async def test_the_writer_keeps_every_field_to_the_microsecond(store: Store) -> None:
    pool = store.pool
    court_id, listing_id = await _listing(store, 8613800138020)
    started = datetime(2026, 11, 30, 6, 7, 8, 123457, tzinfo=UTC)
    record = PlayRecord(
        listing_id, 0, "AMR-WB/16000", started.timestamp(), started.timestamp() + 20.5,
        "cancelled", caller='+86 "138"\t\\ 呼叫', destination="[2001:db8::1]:40000",
        mode="ringback", stop_reason="caller_gave_up", answered=False,
    )  # fmt: skip
    writer = ProofOfPlayWriter(pool, node="node-7")
    writer.record(record)
    writer.record(PlayRecord(123_456_789, 42, "PCMU", started.timestamp(), 0.0, "failed"))
    assert await writer.flush() == 2
    rows = await pool.fetch("SELECT * FROM announcements ORDER BY id")
    assert dict(rows[0]) | {"id": 0} == {
        "id": 0,
        "listing_id": listing_id,
        "court_id": court_id,
        "recording_id": None,
        "node": "node-7",
        "codec": "AMR-WB/16000",
        "caller": '+86 "138"\t\\ 呼叫',
        "started_at": started,
        "finished_at": started + timedelta(seconds=20.5),
        "outcome": "cancelled",
        "media_destination": "[2001:db8::1]:40000",
        "mode": "ringback",
        "stop_reason": "caller_gave_up",
        "answered": False,
    }
    # a listing or recording that is gone: the row is kept without them
    assert (rows[1]["listing_id"], rows[1]["court_id"], rows[1]["recording_id"]) == (
        None, None, None
    )  # fmt: skip
    assert rows[1]["finished_at"] == datetime.fromtimestamp(0, UTC)
