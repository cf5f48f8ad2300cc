"""The in-memory index follows PostgreSQL through the change feed, across outages."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from ringback.registry.common import Principal
from ringback.registry.embedded import EmbeddedPostgres
from ringback.registry.feed import IndexSync
from ringback.registry.listing_index import ListingIndex
from ringback.registry.store import Store, create_pool

WHO = Principal("test", "operator")
BASE = 8613800000000


async def eventually(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Wait until `check()` holds; return how long it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)
    return time.monotonic() - started


@pytest.fixture
async def node_factory(database: str) -> AsyncIterator[Callable[..., Awaitable[IndexSync]]]:
    nodes: list[IndexSync] = []

    async def make(dsn: str = database, **kwargs: float) -> IndexSync:
        sync = IndexSync(
            dsn, ListingIndex(), heartbeat_s=kwargs.pop("heartbeat_s", 0.2), connect_timeout_s=2.0
        )
        sync.start()
        nodes.append(sync)
        return sync

    yield make
    for node in nodes:
        await node.stop()


async def _court(store: Store) -> asyncpg.Record:
    court, _, _ = await store.courts.create("Feed Court", WHO)
    return court


def _expires() -> datetime:
    return datetime.now(UTC) + timedelta(days=30)


async def test_two_nodes_converge_within_a_second_after_changes_by_either(
    store: Store, database: str, node_factory: Callable[..., Awaitable[IndexSync]]
) -> None:
    court = await _court(store)
    await store.listings.put(court["id"], BASE + 1, "CASE-1", _expires(), WHO)
    a, b = await node_factory(), await node_factory()
    await eventually(lambda: a.loaded and b.loaded, 10, "initial load")
    assert a.index.get(BASE + 1) is not None and b.index.get(BASE + 1) is not None

    # Two "nodes" each with their own database pool, changing listings in turn.
    pool_b = await create_pool(database, min_size=1, max_size=2)
    store_b = Store(pool_b)
    try:
        await store.listings.put(court["id"], BASE + 2, "CASE-2", _expires(), WHO)
        took = await eventually(
            lambda: a.index.get(BASE + 2) is not None and b.index.get(BASE + 2) is not None,
            1.0,
            "listing made via node A to reach both indexes",
        )
        await store_b.listings.change_status(court["id"], BASE + 1, "cleared", WHO, reason="paid")
        took = max(
            took,
            await eventually(
                lambda: a.index.get(BASE + 1) is None and b.index.get(BASE + 1) is None,
                1.0,
                "clearance made via node B to reach both indexes",
            ),
        )
        await store_b.listings.change_status(
            court["id"], BASE + 2, "suspended", WHO, reason="appeal"
        )
        await eventually(
            lambda: a.index.get(BASE + 2) is None and b.index.get(BASE + 2) is None,
            1.0,
            "suspension to reach both",
        )
        await store.listings.change_status(court["id"], BASE + 2, "active", WHO)
        await eventually(lambda: a.index.get(BASE + 2) is not None, 1.0, "resume to reach A")
    finally:
        await pool_b.close()
    assert a.full_loads == 1 and b.full_loads == 1  # all by catch-up, no reloads
    assert took < 1.0
    assert a.staleness_s < 1.0


async def test_lost_connection_loses_no_change(
    store: Store, database: str, node_factory: Callable[..., Awaitable[IndexSync]]
) -> None:
    """Changes made while a node is cut off arrive by catch-up from its last sequence."""
    court = await _court(store)
    admin = await asyncpg.connect(database)
    role = f"reader_{uuid.uuid4().hex[:8]}"  # roles are per server: unique per test
    await admin.execute(f"CREATE ROLE {role} LOGIN")
    await admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    node_dsn = database.replace("postgres@", f"{role}@", 1)
    try:
        node = await node_factory(node_dsn)
        await eventually(lambda: node.loaded, 10, "initial load")
        seq_before = node.last_seq

        # Cut the node off: refuse its logins, kill its session.
        await admin.execute(f"ALTER ROLE {role} NOLOGIN")
        await admin.execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
        )
        await eventually(lambda: not node.connected, 5, "node to notice the lost connection")
        for i in range(50):
            await store.listings.put(court["id"], BASE + 100 + i, f"CASE-{i}", _expires(), WHO)
        for i in range(0, 50, 5):
            await store.listings.change_status(
                court["id"], BASE + 100 + i, "cleared", WHO, reason="paid"
            )
        await asyncio.sleep(0.6)
        assert len(node.index) == 0  # still its last state
        assert node.staleness_s > 0.5

        await admin.execute(f"ALTER ROLE {role} LOGIN")
        expected = {BASE + 100 + i for i in range(50) if i % 5}
        await eventually(lambda: len(node.index) == len(expected), 10, "catch-up")
        assert all(node.index.get(n) is not None for n in expected)
        assert all(node.index.get(BASE + 100 + i) is None for i in range(0, 50, 5))
        assert node.full_loads == 1, "caught up by sequence, not by reloading"
        assert node.last_seq > seq_before
        assert node.reconnects >= 1
    finally:
        await admin.execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
        )
        await admin.close()


async def test_index_started_while_database_down_fills_when_it_returns(
    tmp_path: Path, node_factory: Callable[..., Awaitable[IndexSync]]
) -> None:
    server = EmbeddedPostgres(tmp_path / "db")
    url = server.start()
    try:
        pool = await create_pool(url, min_size=1, max_size=2)
        store = Store(pool)
        await store.migrate()
        court = await _court(store)
        for i in range(20):
            await store.listings.put(court["id"], BASE + i, "CASE", _expires(), WHO)
        await pool.close()
        server.stop()

        node = await node_factory(url)
        await asyncio.sleep(1.0)
        assert not node.loaded and not node.connected
        assert len(node.index) == 0
        assert math.isinf(node.staleness_s)

        server.start()
        await eventually(lambda: node.loaded, 15, "index to fill after the database returns")
        assert len(node.index) == 20
        assert node.staleness_s < 2
    finally:
        server.remove()


async def test_database_outage_keeps_last_state_and_reports_staleness(
    tmp_path: Path, node_factory: Callable[..., Awaitable[IndexSync]]
) -> None:
    server = EmbeddedPostgres(tmp_path / "db")
    url = server.start()
    try:
        pool = await create_pool(url, min_size=1, max_size=2)
        store = Store(pool)
        await store.migrate()
        court = await _court(store)
        await store.listings.put(court["id"], BASE, "CASE", _expires(), WHO)
        node = await node_factory(url)
        await eventually(lambda: node.loaded, 10, "load")
        await pool.close()

        server.stop()
        await eventually(lambda: not node.connected, 5, "outage noticed")
        await asyncio.sleep(1.0)
        assert node.index.lookup(BASE, time.time()) is not None  # still answers
        assert node.staleness_s >= 1.0

        server.start()
        await eventually(lambda: node.connected and node.staleness_s < 0.5, 15, "recovery")
        assert node.index.get(BASE) is not None
    finally:
        server.remove()


async def test_effective_and_expiry_times_reach_the_index(
    store: Store, node_factory: Callable[..., Awaitable[IndexSync]]
) -> None:
    court = await _court(store)
    now = datetime.now(UTC)
    await store.listings.put(
        court["id"],
        BASE + 7,
        "LATER",
        now + timedelta(days=9),
        WHO,
        effective_at=now + timedelta(days=3),
    )
    node = await node_factory()
    await eventually(lambda: node.loaded, 10, "load")
    entry = node.index.get(BASE + 7)
    assert entry is not None
    assert node.index.lookup(BASE + 7, time.time()) is None  # notice period: not yet audible
    assert node.index.lookup(BASE + 7, time.time() + 4 * 86400) is not None
    assert node.index.lookup(BASE + 7, time.time() + 10 * 86400) is None  # expired by time
    assert abs(entry.effective_at - (now + timedelta(days=3)).timestamp()) <= 1


async def test_feed_is_pruned_and_a_node_behind_the_pruned_range_reloads(
    store: Store, database: str, node_factory: Callable[..., Awaitable[IndexSync]]
) -> None:
    from ringback.registry.feed import prune_feed

    court = await _court(store)
    admin = await asyncpg.connect(database)
    role = f"reader_{uuid.uuid4().hex[:8]}"  # roles are per server: unique per test
    await admin.execute(f"CREATE ROLE {role} LOGIN")
    await admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    node = await node_factory(database.replace("postgres@", f"{role}@", 1))
    try:
        await eventually(lambda: node.loaded, 10, "load")
        # Cut the node off, change listings, then prune the feed past the node's position.
        await admin.execute(f"ALTER ROLE {role} NOLOGIN")
        await admin.execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
        )
        await eventually(lambda: not node.connected, 5, "node to notice")
        for i in range(5):
            await store.listings.put(court["id"], BASE + 500 + i, "P", _expires(), WHO)
        await admin.execute("UPDATE change_feed SET at = now() - interval '30 days'")
        assert await prune_feed(admin, 7) >= 5
        assert await admin.fetchval("SELECT count(*) FROM change_feed") == 0
        await admin.execute(f"ALTER ROLE {role} LOGIN")
        await eventually(lambda: len(node.index) == 5, 10, "reload after the gap")
        assert node.full_loads == 2  # the changes were pruned: caught up by a full load
    finally:
        await admin.execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
        )
        await admin.close()
