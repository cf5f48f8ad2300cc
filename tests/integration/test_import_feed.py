"""A bulk import reaches the nodes' indexes through one change-feed marker (migration 014):
the feed gets one row for the whole import, in commit order with every other change, and
a node applying it (by the import's numbers, or by a full reload when the import is
bigger than its reload threshold) holds exactly what the database holds."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from ringback.config import load_config
from ringback.registry.common import Principal
from ringback.registry.feed import IndexSync
from ringback.registry.listing_index import Entry, ListingIndex
from ringback.registry.store import Store

WHO = Principal("test", "operator")
BASE = 8613700000000
CASE = "IMP-CASE"


async def _eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def _database_index(pool: asyncpg.Pool) -> dict[int, tuple[Entry, ...]]:
    """What a node's index must hold: every live listing, by number, earliest-listed first."""
    rows = await pool.fetch(
        "SELECT number, listing_id, recording_id, effective_epoch, expires_epoch "
        "FROM index_entries ORDER BY number, listed_at, listing_id"
    )
    found: dict[int, list[Entry]] = {}
    for r in rows:
        found.setdefault(r[0], []).append(Entry(r[1], r[2], r[3], r[4]))
    return {number: tuple(entries) for number, entries in found.items()}


async def _index_equals_database(sync: IndexSync, pool: asyncpg.Pool) -> None:
    expected = await _database_index(pool)
    assert len(sync.index) == len(expected)
    for number, entries in expected.items():
        assert sync.index.entries(number) == entries, number


@pytest.fixture
async def nodes(database: str) -> AsyncIterator[Callable[[int], IndexSync]]:
    started: list[IndexSync] = []

    def make(full_reload_threshold: int) -> IndexSync:
        sync = IndexSync(
            database,
            ListingIndex(),
            heartbeat_s=0.2,
            connect_timeout_s=2.0,
            full_reload_threshold=full_reload_threshold,
        )
        sync.start()
        started.append(sync)
        return sync

    yield make
    for sync in started:
        await sync.stop()


def _csv(path: Path, first: int, rows: int, *, extra: str = "") -> Path:
    expires = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with path.open("w") as f:
        f.write("number,case_ref,expires_at\n")
        for i in range(first, first + rows):
            f.write(f"+{BASE + i},{CASE},{expires}\n")
        f.write(extra)
    return path


async def _import(store: Store, court: asyncpg.Record, path: Path) -> uuid.UUID:
    job = await store.imports.create_job(court["id"], WHO, path.name)
    options = load_config(None, env={}).import_options()
    done = await store.imports.run(job, court["id"], WHO, path, options, filename=path.name)
    assert done["status"] == "done"
    return job


async def _feed_after(pool: asyncpg.Pool, seq: int) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT seq, number, import_id FROM change_feed WHERE seq > $1 ORDER BY seq", seq
        )
    )


async def test_an_import_is_one_feed_marker_and_a_node_applies_it_by_its_numbers(
    store: Store, nodes: Callable[[int], IndexSync], tmp_path: Path
) -> None:
    court, _, _ = await store.courts.create("Feed Import Court", WHO)
    expires = datetime.now(UTC) + timedelta(days=60)
    await store.listings.put(court["id"], BASE + 1, CASE, expires, WHO)  # updated below
    await store.listings.put(court["id"], BASE + 2, "another case", expires, WHO)  # stays
    node = nodes(50_000)
    await _eventually(lambda: node.loaded, "the first load")
    head = await store.pool.fetchval("SELECT last_seq FROM feed_counter")

    job = await _import(store, court, _csv(tmp_path / "a.csv", 0, 400))

    # one marker for the 400 listings it wrote (399 new, one of them a second case; 1 updated)
    feed = await _feed_after(store.pool, head)
    assert [(r["number"], r["import_id"]) for r in feed] == [(None, job)]
    await _eventually(lambda: node.last_seq == feed[0]["seq"], "the marker to be applied")
    await _index_equals_database(node, store.pool)
    assert len(node.index.entries(BASE + 2)) == 2  # the hand-made listing and the import's
    assert (node.full_loads, node.import_reloads) == (1, 0)  # applied number by number

    # a change after the import comes after its marker, and reaches the node as usual
    await store.listings.change_status(
        court["id"], BASE + 5, "cleared", WHO, reason="paid", case_ref=CASE
    )
    feed = await _feed_after(store.pool, head)
    assert [(r["number"], r["import_id"]) for r in feed] == [(None, job), (BASE + 5, None)]
    await _eventually(lambda: node.index.get(BASE + 5) is None, "the clearance")
    await _index_equals_database(node, store.pool)


async def test_an_import_bigger_than_the_threshold_makes_the_node_reload(
    store: Store, nodes: Callable[[int], IndexSync], tmp_path: Path
) -> None:
    court, _, _ = await store.courts.create("Big Import Court", WHO)
    await _import(store, court, _csv(tmp_path / "first.csv", 0, 50))
    node = nodes(100)
    await _eventually(lambda: node.loaded, "the first load")
    await _index_equals_database(node, store.pool)

    # 300 listings written (50 updated, 250 new) > 100: a full reload, not 300 upserts
    job = await _import(store, court, _csv(tmp_path / "big.csv", 0, 300))
    head = await store.pool.fetchval("SELECT last_seq FROM feed_counter")
    assert (
        await store.pool.fetchval("SELECT count(*) FROM change_feed WHERE import_id = $1", job) == 1
    )
    await _eventually(lambda: node.last_seq == head, "the marker to be applied")
    assert (node.full_loads, node.import_reloads) == (2, 1)
    await _index_equals_database(node, store.pool)
    assert len(node.index) == 300


async def test_a_node_that_was_away_catches_up_imports_and_changes_in_order(
    store: Store, nodes: Callable[[int], IndexSync], tmp_path: Path
) -> None:
    """Markers and per-number changes read together in one catch-up: the result is the
    database's state whichever came first."""
    court, _, _ = await store.courts.create("Order Court", WHO)
    node = nodes(50_000)
    await _eventually(lambda: node.loaded, "the first load")
    await node.stop()
    first = await _import(store, court, _csv(tmp_path / "1.csv", 0, 100))
    await store.listings.change_status(
        court["id"], BASE + 7, "suspended", WHO, reason="dispute", case_ref=CASE
    )
    second = await _import(store, court, _csv(tmp_path / "2.csv", 50, 100))  # 50 updated
    feed = await _feed_after(store.pool, 0)
    assert [r["import_id"] for r in feed] == [first, None, second]
    node.start()
    head = await store.pool.fetchval("SELECT last_seq FROM feed_counter")
    await _eventually(lambda: node.loaded and node.last_seq == head, "the catch-up")
    await _index_equals_database(node, store.pool)
    assert node.index.get(BASE + 7) is None  # suspended by hand between the two imports
    assert len(node.index) == 149
