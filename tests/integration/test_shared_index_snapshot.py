"""The host's shared index snapshot with a real PostgreSQL: one process loads and writes it,
the others (and a restarted node) map it and follow the feed from its sequence; a damaged
snapshot or one of another database is never used; a node whose database is down serves
from it, as old as it is."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from ringback.registry.common import Principal
from ringback.registry.feed import IndexSync
from ringback.registry.index_snapshot import FILE_NAME, read_header, read_snapshot
from ringback.registry.listing_index import ListingIndex
from ringback.registry.store import Store, create_pool

WHO = Principal("test", "operator")
BASE = 8613800000000
NodeFactory = Callable[..., Awaitable[IndexSync]]


async def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


@pytest.fixture
async def nodes(database: str) -> AsyncIterator[NodeFactory]:
    started: list[IndexSync] = []

    async def make(snapshot_dir: Path, dsn: str = database, **kwargs: Any) -> IndexSync:
        threshold = kwargs.pop("compact_threshold", 50_000)
        sync = IndexSync(
            dsn,
            ListingIndex(compact_threshold=threshold),
            heartbeat_s=0.2,
            connect_timeout_s=2.0,
            snapshot_dir=snapshot_dir,
            **kwargs,
        )
        sync.start()
        started.append(sync)
        return sync

    yield make
    for sync in started:
        await sync.stop()


def _expires() -> datetime:
    return datetime.now(UTC) + timedelta(days=30)


async def _listed(store: Store, count: int, *, several: int = 0) -> uuid.UUID:
    """A court with `count` listed numbers BASE+1.. (the first `several` under a second
    case too, so they go to the side table); returns the court id."""
    court, _, _ = await store.courts.create("Snapshot Court", WHO)
    past = datetime.now(UTC) - timedelta(seconds=5)
    for i in range(1, count + 1):
        await store.listings.put(
            court["id"], BASE + i, "CASE-1", _expires(), WHO, effective_at=past
        )
    for i in range(1, several + 1):
        await store.listings.put(
            court["id"], BASE + i, "CASE-2", _expires(), WHO, effective_at=past
        )
    court_id: uuid.UUID = court["id"]
    return court_id


def _answers(sync: IndexSync, numbers: range) -> list[object]:
    now = time.time()
    return [(sync.index.lookup(n, now), sync.index.entries(n)) for n in numbers]


PROBES = range(BASE, BASE + 40)


def _maps_file(sync: IndexSync, path: Path) -> bool:
    """The base arrays are pages of the snapshot file (not a private copy)."""
    keys = sync.index.base.keys
    maps = Path(f"/proc/{os.getpid()}/maps").read_text()
    return str(path) in maps and not keys.flags.owndata and not keys.flags.writeable


async def test_a_second_process_maps_the_snapshot_and_follows_the_feed(
    store: Store, tmp_path: Path, nodes: NodeFactory
) -> None:
    court = await _listed(store, 20, several=3)
    a = await nodes(tmp_path)
    await eventually(lambda: a.loaded, 15, "the first node's load")
    assert a.full_loads == 1 and a.snapshot_writes == 1
    header = read_header(tmp_path / FILE_NAME)
    assert header.seq == a.last_seq and header.n == 20 and header.side_numbers == 3

    b = await nodes(tmp_path)
    await eventually(lambda: b.loaded, 15, "the second node's start")
    assert b.full_loads == 0 and b.snapshot_loads == 1  # never read the listings itself
    assert _maps_file(b, tmp_path / FILE_NAME)
    assert _answers(b, PROBES) == _answers(a, PROBES)
    assert b.index.lookup(BASE + 1, time.time()) is not None
    assert len(b.index.entries(BASE + 2)) == 2

    # Changes after the snapshot reach both, into their overlays.
    await store.listings.put(court, BASE + 30, "CASE-1", _expires(), WHO, effective_at=None)
    await store.listings.change_status(court, BASE + 5, "cleared", WHO, reason="paid")
    await store.listings.change_status(
        court, BASE + 1, "cleared", WHO, reason="paid", case_ref="CASE-2"
    )
    await eventually(
        lambda: all(
            s.index.get(BASE + 30) is not None
            and s.index.get(BASE + 5) is None
            and len(s.index.entries(BASE + 1)) == 1
            for s in (a, b)
        ),
        2.0,
        "the changes to reach both",
    )
    assert _answers(b, PROBES) == _answers(a, PROBES)
    assert b.index.overlay_size >= 2 and b.base_seq == header.seq


async def test_a_restarted_node_starts_from_the_snapshot_and_catches_up(
    store: Store, tmp_path: Path, nodes: NodeFactory
) -> None:
    court = await _listed(store, 10)
    first = await nodes(tmp_path)
    await eventually(lambda: first.loaded, 15, "the first load")
    before = _answers(first, PROBES)
    await first.stop()

    # While it is away: one listing cleared, one made.
    await store.listings.change_status(court, BASE + 3, "cleared", WHO, reason="paid")
    await store.listings.put(court, BASE + 12, "CASE-1", _expires(), WHO, effective_at=None)

    again = await nodes(tmp_path)
    await eventually(lambda: again.loaded, 15, "the restart")
    await eventually(lambda: again.index.get(BASE + 12) is not None, 5, "the catch-up")
    assert again.full_loads == 0 and again.snapshot_loads >= 1
    assert again.index.get(BASE + 3) is None
    after = _answers(again, PROBES)
    assert after != before
    assert [x for i, x in enumerate(after) if PROBES[i] not in (BASE + 3, BASE + 12)] == [
        x for i, x in enumerate(before) if PROBES[i] not in (BASE + 3, BASE + 12)
    ]


async def test_a_corrupt_snapshot_is_ignored_and_the_index_loaded_from_postgresql(
    store: Store, tmp_path: Path, nodes: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    await _listed(store, 10)
    first = await nodes(tmp_path)
    await eventually(lambda: first.loaded, 15, "the first load")
    expected = _answers(first, PROBES)
    await first.stop()
    path = tmp_path / FILE_NAME
    with open(path, "r+b") as f:  # one number's bytes damaged on disk
        f.seek(4096 + 8 * 4)
        f.write(b"\x00\x00\x00\x00\x00\x00\x00\x00")

    caplog.set_level(logging.WARNING, logger="ringback.registry.feed")
    node = await nodes(tmp_path)
    await eventually(lambda: node.loaded and node.full_loads == 1, 15, "a load from PostgreSQL")
    assert node.snapshot_loads == 0
    assert any(
        "index snapshot ignored" in r.getMessage() and "checksum mismatch" in r.getMessage()
        for r in caplog.records
    ), caplog.text
    assert _answers(node, PROBES) == expected
    read_snapshot(path)  # and the node wrote a good one in its place


async def test_a_snapshot_of_another_database_is_not_used(
    store: Store, tmp_path: Path, nodes: NodeFactory, pg_server: str
) -> None:
    await _listed(store, 10)
    first = await nodes(tmp_path)
    await eventually(lambda: first.loaded, 15, "the first load")
    await first.stop()
    snapshot_seq = read_header(tmp_path / FILE_NAME).seq

    # Another database whose feed has gone further, with other numbers listed: following
    # its feed from the snapshot's sequence would keep this database's numbers listed.
    name = "t_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(pg_server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    other = urlunsplit(urlsplit(pg_server)._replace(path="/" + name))
    pool = await create_pool(other, min_size=1, max_size=2)
    try:
        other_store = Store(pool)
        await other_store.migrate()
        court, _, _ = await other_store.courts.create("Other Court", WHO)
        for i in range(101, 113):
            await other_store.listings.put(
                court["id"], BASE + i, "CASE-9", _expires(), WHO, effective_at=None
            )
        assert await pool.fetchval("SELECT last_seq FROM feed_counter") > snapshot_seq

        node = await nodes(tmp_path, dsn=other)
        await eventually(lambda: node.loaded and node.full_loads == 1, 15, "a load from PG")
        assert len(node.index) == 12
        assert all(node.index.get(BASE + i) is None for i in range(1, 11))
        assert all(node.index.get(BASE + i) is not None for i in range(101, 113))
        assert read_header(tmp_path / FILE_NAME).n == 12  # rewritten from this database
        await node.stop()
    finally:
        await pool.close()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_a_merge_writes_a_new_snapshot_and_the_other_process_takes_it(
    store: Store, tmp_path: Path, nodes: NodeFactory
) -> None:
    court = await _listed(store, 10)
    a = await nodes(tmp_path, compact_threshold=5)
    await eventually(lambda: a.loaded, 15, "the first load")
    b = await nodes(tmp_path, compact_threshold=5)
    await eventually(lambda: b.loaded, 15, "the second node")
    first_seq = read_header(tmp_path / FILE_NAME).seq

    for i in range(20, 32):  # more changes than either overlay may hold
        await store.listings.put(court, BASE + i, "CASE-1", _expires(), WHO, effective_at=None)
    await eventually(
        lambda: all(s.index.get(BASE + 31) is not None for s in (a, b)), 5, "the changes"
    )
    # One of them merged and wrote the host's new snapshot; the other took it (or, if
    # both filled at once, merged too): either way both now map a snapshot past the first.
    await eventually(
        lambda: all(s.base_seq > first_seq and s.index.overlay_size <= 5 for s in (a, b)),
        10,
        "both on a newer base, their overlays merged",
    )
    header = read_header(tmp_path / FILE_NAME)
    assert header.seq > first_seq and header.n >= 16
    assert a.snapshot_writes + b.snapshot_writes >= 2
    assert all(_maps_file(s, tmp_path / FILE_NAME) for s in (a, b))
    probes = range(BASE, BASE + 40)
    assert _answers(a, probes) == _answers(b, probes)
    assert sum(a.index.get(n) is not None for n in probes) == 22


async def test_with_the_database_down_a_node_serves_from_the_snapshot_as_old_as_it_is(
    store: Store, tmp_path: Path, nodes: NodeFactory
) -> None:
    await _listed(store, 10)
    first = await nodes(tmp_path)
    await eventually(lambda: first.loaded, 15, "the first load")
    expected = _answers(first, PROBES)
    await first.stop()

    down = "postgresql://postgres@127.0.0.1:9/nowhere"  # nothing listens: refused at once
    node = await nodes(tmp_path, dsn=down)
    await eventually(lambda: node.loaded, 5, "a start from the snapshot")
    assert node.snapshot_loads == 1 and node.full_loads == 0 and not node.connected
    assert _answers(node, PROBES) == expected
    assert node.index.lookup(BASE + 1, time.time()) is not None
    assert 0 <= node.staleness_s < 10  # written a moment ago

    # The same file read 5 minutes later: the staleness counts the snapshot's age.
    later = await nodes(tmp_path, dsn=down, wall=lambda: time.time() + 300)
    await eventually(lambda: later.loaded, 5, "a later start from the snapshot")
    assert 300 <= later.staleness_s < 310
