"""Migrations, the append-only hash-chained audit trail, listing status by time."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from ringback.registry.audit import verify_chain
from ringback.registry.common import Principal
from ringback.registry.feed import IndexSync
from ringback.registry.listing_index import ListingIndex
from ringback.registry.migrate import available, migrate
from ringback.registry.store import Store

COURT_ADMIN = Principal("test", "operator")


async def test_migrations_up_from_empty(database: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname='public'") == 0
        applied = await migrate(conn)
        assert [m.version for m in applied] == [m.version for m in available()]
        tables = {
            r[0]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        assert {
            "courts",
            "api_tokens",
            "recordings",
            "listings",
            "payment_events",
            "announcements",
            "audit_events",
            "change_feed",
        } <= tables
        assert await migrate(conn) == []  # idempotent
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r[0] for r in versions] == [m.version for m in available()]
    finally:
        await conn.close()


async def _court(store: Store) -> asyncpg.Record:
    court, _token, _secret = await store.courts.create("Test Court", COURT_ADMIN)
    return court


async def test_audit_rows_cannot_be_updated_deleted_or_truncated(store: Store) -> None:
    court = await _court(store)
    await store.listings.put(
        court["id"], 8613800138000, "CASE-1", datetime.now(UTC) + timedelta(days=30), COURT_ADMIN
    )
    async with store.pool.acquire() as conn:
        count = await conn.fetchval("SELECT count(*) FROM audit_events")
        assert count >= 3  # court, token, listing
        for statement in (
            "UPDATE audit_events SET actor = 'someone else' WHERE id = 1",
            "DELETE FROM audit_events WHERE id = 1",
            "TRUNCATE audit_events",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM audit_events") == count
        assert await conn.fetchval("SELECT actor FROM audit_events WHERE id = 1") == "test"


async def test_audit_chain_verifies_and_detects_tampering(store: Store) -> None:
    court = await _court(store)
    for i in range(5):
        await store.listings.put(
            court["id"],
            8613800138000 + i,
            f"CASE-{i}",
            datetime.now(UTC) + timedelta(days=30),
            COURT_ADMIN,
        )
    async with store.pool.acquire() as conn:
        result = await verify_chain(conn)
        assert result.ok and result.rows == 7
        rows = await conn.fetch("SELECT id, prev_hash, hash FROM audit_events ORDER BY id")
        for prev, row in itertools.pairwise(rows):
            assert row["prev_hash"] == prev["hash"]
        # A superuser goes behind the database's back; the chain shows it.
        await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_no_update")
        await conn.execute("UPDATE audit_events SET actor = 'forged' WHERE id = 4")
        await conn.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_no_update")
        result = await verify_chain(conn)
        assert not result.ok and result.first_bad_id == 4


async def test_every_listing_change_is_audited_with_before_and_after(store: Store) -> None:
    court = await _court(store)
    expires = datetime.now(UTC) + timedelta(days=30)
    who = Principal("token:7:rbk_abc…", "court", court["id"])
    listing = await store.listings.put(court["id"], 8613800138000, "CASE-9", expires, who)
    await store.listings.change_status(
        court["id"], 8613800138000, "suspended", who, reason="appeal"
    )
    await store.listings.change_status(court["id"], 8613800138000, "active", who)
    await store.listings.change_status(court["id"], 8613800138000, "cleared", who, reason="paid")
    rows = await store.pool.fetch(
        "SELECT actor, action, before, after FROM audit_events WHERE entity = $1 ORDER BY id",
        f"listing:{listing['id']}",
    )
    assert [r["action"] for r in rows] == [
        "listing.create",
        "listing.suspend",
        "listing.resume",
        "listing.clear",
    ]
    assert all(r["actor"] == who.actor for r in rows)
    assert rows[0]["before"] is None and rows[0]["after"]["status"] == "active"
    assert rows[1]["before"]["status"] == "active" and rows[1]["after"]["status"] == "suspended"
    assert rows[1]["after"]["reason"] == "appeal"
    assert rows[3]["after"]["status"] == "cleared" and rows[3]["after"]["clear_reason"] == "paid"


async def test_expiry_is_applied_by_time_without_a_sweep(store: Store) -> None:
    court = await _court(store)
    now = datetime.now(UTC)
    await store.listings.put(
        court["id"],
        8613800138001,
        "CASE-A",
        now + timedelta(days=1),
        COURT_ADMIN,
        effective_at=now - timedelta(days=2),
    )
    await store.listings.put(
        court["id"],
        8613800138002,
        "CASE-B",
        now + timedelta(days=1),
        COURT_ADMIN,
        effective_at=now - timedelta(days=2),
    )
    # Move one listing's expiry into the past, as time passing would.
    await store.pool.execute(
        "UPDATE listings SET expires_at = now() - interval '1 second' WHERE number = $1",
        8613800138002,
    )
    status = dict(
        await store.pool.fetch("SELECT number, effective_status FROM listings_view ORDER BY number")
    )
    assert status == {8613800138001: "active", 8613800138002: "expired"}
    indexed = [r[0] for r in await store.pool.fetch("SELECT number FROM index_entries")]
    assert indexed == [8613800138001]


async def test_two_courts_listing_one_number_first_listed_recording_wins(store: Store) -> None:
    a, _, _ = await store.courts.create("Court A", COURT_ADMIN)
    b, _, _ = await store.courts.create("Court B", COURT_ADMIN)
    rec_a = await store.recordings.add(a["id"], "a", b"\x00\x01" * 8000, COURT_ADMIN)
    rec_b = await store.recordings.add(b["id"], "b", b"\x00\x02" * 8000, COURT_ADMIN)
    now = datetime.now(UTC)
    await store.listings.put(
        a["id"],
        8613800138000,
        "A-1",
        now + timedelta(days=10),
        COURT_ADMIN,
        recording_id=rec_a["id"],
    )
    await store.listings.put(
        b["id"],
        8613800138000,
        "B-1",
        now + timedelta(days=20),
        COURT_ADMIN,
        recording_id=rec_b["id"],
    )
    # One row per live listing: the first-listed one first.
    first = "SELECT * FROM index_entries ORDER BY listed_at, listing_id"
    row = await store.pool.fetchrow(first)
    assert row["recording_id"] == rec_a["id"]
    await store.listings.change_status(
        a["id"], 8613800138000, "cleared", COURT_ADMIN, reason="paid"
    )
    row = await store.pool.fetchrow(first)
    assert row["recording_id"] == rec_b["id"]  # still announced until both clear
    await store.listings.change_status(
        b["id"], 8613800138000, "cleared", COURT_ADMIN, reason="paid"
    )
    assert await store.pool.fetchrow("SELECT * FROM index_entries") is None


async def test_version_5_keeps_existing_listings_and_lets_a_court_list_a_second_case(
    database: str,
) -> None:
    conn = await asyncpg.connect(database)
    try:
        # A database at version 4 with listings made under it (as `migrate` would have).
        await conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for m in available():
            if m.version <= 4:
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    m.version,
                    m.name,
                )
        x, y = [
            await conn.fetchval(
                "INSERT INTO courts (name, webhook_secret) VALUES ($1, 's') RETURNING id", name
            )
            for name in ("Court X", "Court Y")
        ]
        old = [
            (8613800138000, x, "X-1", "active"),
            (8613800138000, y, "Y-1", "active"),
            (8613900139000, x, "X-2", "cleared"),
            (8613900139000, x, "X-3", "active"),
        ]
        for number, court, case_ref, status in old:
            await conn.execute(
                "INSERT INTO listings (number, court_id, case_ref, status, expires_at) "
                "VALUES ($1, $2, $3, $4, now() + interval '30 days')",
                number,
                court,
                case_ref,
                status,
            )
        with pytest.raises(asyncpg.UniqueViolationError):  # version 4: one per court
            await conn.execute(
                "INSERT INTO listings (number, court_id, case_ref, expires_at) "
                "VALUES (8613800138000, $1, 'X-9', now() + interval '30 days')",
                x,
            )

        applied = [m.version for m in await migrate(conn)]
        # 5 and every later one (numbers are reserved per branch, so there may be gaps)
        assert applied == [m.version for m in available() if m.version >= 5]
        rows = await conn.fetch(
            "SELECT number, court_id, case_ref, status FROM listings ORDER BY id"
        )
        assert [tuple(r) for r in rows] == old
        entries = await conn.fetch(
            "SELECT number, listing_id FROM index_entries ORDER BY number, listed_at, listing_id"
        )
        assert [tuple(r) for r in entries] == [
            (8613800138000, 1),
            (8613800138000, 2),
            (8613900139000, 4),
        ]
        # A second case of the same court is its own listing; the same case open twice is not.
        await conn.execute(
            "INSERT INTO listings (number, court_id, case_ref, expires_at) "
            "VALUES (8613800138000, $1, 'X-9', now() + interval '30 days')",
            x,
        )
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO listings (number, court_id, case_ref, expires_at) "
                "VALUES (8613800138000, $1, 'X-1', now() + interval '30 days')",
                x,
            )
    finally:
        await conn.close()


async def test_change_feed_sequence_is_gapless_and_in_commit_order(store: Store) -> None:
    court = await _court(store)
    expires = datetime.now(UTC) + timedelta(days=3)
    for i in range(10):
        await store.listings.put(court["id"], 8613800000000 + i, "C", expires, COURT_ADMIN)
    seqs = [r[0] for r in await store.pool.fetch("SELECT seq FROM change_feed ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))
    assert await store.pool.fetchval("SELECT last_seq FROM feed_counter") == seqs[-1]


async def test_listings_references_are_checked_per_statement_both_ways(store: Store) -> None:
    """Migration 014 checks listings' courts and recordings once per statement (instead of a
    foreign key's lookup per row): a listing naming a missing court or recording is refused,
    and so is deleting a court or recording a listing names."""
    court, _, _ = await store.courts.create("Reference Court", COURT_ADMIN)
    recording = await store.pool.fetchval(
        "INSERT INTO recordings (court_id, name, duration_ms, pcm) "
        "VALUES ($1, 'r', 20, '\\x0000') RETURNING id",
        court["id"],
    )
    insert = (
        "INSERT INTO listings (number, court_id, case_ref, expires_at, recording_id) "
        "VALUES ($1, $2, 'C', now() + interval '1 day', $3)"
    )
    with pytest.raises(asyncpg.ForeignKeyViolationError, match=r"court .* does not exist"):
        await store.pool.execute(
            insert, 8613800138000, "00000000-0000-0000-0000-000000000001", None
        )
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="recording 999999 does not"):
        await store.pool.execute(insert, 8613800138000, court["id"], 999999)
    await store.pool.execute(insert, 8613800138000, court["id"], recording)
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="recording 999999 does not"):
        await store.pool.execute("UPDATE listings SET recording_id = 999999")
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="is named by a listing"):
        await store.pool.execute("DELETE FROM recordings WHERE id = $1", recording)
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="is named by a listing"):
        await store.pool.execute("DELETE FROM courts WHERE id = $1", court["id"])
    assert await store.pool.fetchval("SELECT count(*) FROM listings") == 1


@pytest.mark.parametrize("shared", [False, True], ids=["in memory", "through the snapshot"])
async def test_index_entries_round_to_whole_seconds_outward_at_the_microsecond(
    store: Store, database: str, tmp_path: Path, shared: bool
) -> None:
    """The index holds whole seconds: a listing is effective from the second its notice
    ends (rounded down) and expires at the second after (rounded up), to the microsecond,
    however the view computes the epochs (migration 015: float8 date_part) and however a
    node's full load rounds the times it reads (migration 016: in the node)."""
    court = await _court(store)
    cases = [
        ("2026-06-01 12:00:00.999999+00", "2031-01-01 00:00:00.000001+00"),
        ("2026-06-01 12:00:00+00", "2031-01-01 00:00:00+00"),
        ("2026-06-01 12:00:00.000001+00", "2105-12-31 23:59:59.999999+00"),
    ]
    expected = []
    async with store.pool.acquire() as conn:
        for i, (effective, expires) in enumerate(cases):
            number = 8613800138100 + i
            await store.listings.put(
                court["id"],
                number,
                f"CASE-{i}",
                datetime.fromisoformat(expires),
                COURT_ADMIN,
                effective_at=datetime.fromisoformat(effective),
            )
            e, x = datetime.fromisoformat(effective), datetime.fromisoformat(expires)
            whole = int(e.replace(microsecond=0).timestamp())
            up = int(x.replace(microsecond=0).timestamp()) + (1 if x.microsecond else 0)
            expected.append((number, whole, up))
        rows = await conn.fetch(
            "SELECT number, effective_epoch, expires_epoch FROM index_entries "
            "WHERE number = ANY($1::int8[]) ORDER BY number",
            [n for n, _, _ in expected],
        )
    assert [tuple(r) for r in rows] == expected
    node = IndexSync(database, ListingIndex(), snapshot_dir=tmp_path if shared else None)
    node.start()
    try:
        for _ in range(500):
            if node.loaded:
                break
            await asyncio.sleep(0.02)
        loaded = {n: node.index.get(n) for n, _, _ in expected}
    finally:
        await node.stop()
    assert node.full_loads == 1 and node.snapshot_writes == int(shared)
    got = [(n, e.effective_at, e.expires_at) for n, e in loaded.items() if e is not None]
    assert got == expected
