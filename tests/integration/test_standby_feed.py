"""A node following a hot standby: LISTEN is refused there, so the feed polls by sequence,
and a clearance committed on the primary reaches the node's index through replication."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from pg_standby import start_pair

from ringback.registry.common import Principal
from ringback.registry.embedded import EmbeddedPostgres
from ringback.registry.feed import IndexSync
from ringback.registry.listing_index import ListingIndex
from ringback.registry.store import Store, create_pool

WHO = Principal("test", "operator")
NUMBERS = [8613800138000 + i for i in range(20)]


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedPostgres, EmbeddedPostgres]]:
    primary, standby = await asyncio.to_thread(start_pair, tmp_path)
    try:
        yield primary, standby
    finally:
        await asyncio.to_thread(standby.stop)
        await asyncio.to_thread(primary.stop)


async def test_clearances_on_the_primary_reach_a_node_on_the_standby_in_order(
    pair: tuple[EmbeddedPostgres, EmbeddedPostgres],
) -> None:
    primary, standby = pair
    pool = await create_pool(primary.url, min_size=1, max_size=2)
    try:
        store = Store(pool)
        await store.migrate()
        court, _, _ = await store.courts.create("Standby Court", WHO)
        now = datetime.now(UTC)
        for number in NUMBERS:
            await store.listings.put(
                court["id"], number, "CASE-1", now + timedelta(days=1), WHO,
                effective_at=now - timedelta(minutes=1),
            )  # fmt: skip
        refused = await asyncpg.connect(standby.url)
        try:
            assert await refused.fetchval("SELECT pg_is_in_recovery()")
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await refused.execute("LISTEN ringback_feed")
        finally:
            await refused.close()

        index = ListingIndex()
        sync = IndexSync(standby.url, index, heartbeat_s=1.0, poll_interval_s=0.1)
        sync.start()
        try:
            deadline = time.monotonic() + 30
            while len(index) < len(NUMBERS):  # replication, then the first load
                assert time.monotonic() < deadline, "the standby never showed the listings"
                await asyncio.sleep(0.05)
            assert sync.polling
            waits = []
            for number in NUMBERS:
                await store.listings.change_status(court["id"], number, "cleared", WHO)
                committed = time.monotonic()
                while index.lookup(number, time.time()) is not None:
                    assert time.monotonic() - committed < 10, f"{number} still warned"
                    await asyncio.sleep(0.005)
                waits.append(time.monotonic() - committed)
            assert len(index) == 0
            seq_on_primary = await pool.fetchval("SELECT last_seq FROM feed_counter")
            deadline = time.monotonic() + 10
            while sync.last_seq != seq_on_primary:  # every change, none skipped
                assert time.monotonic() < deadline, (sync.last_seq, seq_on_primary)
                await asyncio.sleep(0.05)
        finally:
            await sync.stop()
    finally:
        await pool.close()
