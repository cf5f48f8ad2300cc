"""The node's local recording cache: on disk, digest-checked, fetched on its own pool with
a timeout, following the recordings table (real PostgreSQL, real files)."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from faults_support import tone
from sip_load import SipLoad

from ringback.config import load_config
from ringback.registry.common import Principal
from ringback.registry.recording_cache import RecordingCache
from ringback.registry.store import Store, create_pool
from ringback.server import Service

WHO = Principal("test", "operator")
DOWN = "postgresql://postgres@/postgres?host=/nonexistent-ringback-db&port=5432"


async def _two_recordings(store: Store) -> tuple[dict[int, bytes], uuid.UUID]:
    court, _, _ = await store.courts.create("Cache Court", WHO)
    out = {}
    for hz in (440.0, 880.0):
        pcm = tone(hz, 0.5)
        out[(await store.recordings.add(court["id"], f"{hz}", pcm, WHO))["id"]] = pcm
    return out, court["id"]


async def test_cache_survives_a_restart_and_plays_with_the_database_down(
    store: Store, tmp_path: Path
) -> None:
    recordings, _ = await _two_recordings(store)
    first = RecordingCache(tmp_path / "recordings", store.pool)
    await asyncio.to_thread(first.scan)
    assert await first.sync() == 2
    assert sorted(first.files) == sorted(recordings)

    # A new process, and the database is away: everything comes from disk.
    dead = await create_pool(DOWN, min_size=0, max_size=1)
    try:
        second = RecordingCache(tmp_path / "recordings", dead, timeout_s=1.0)
        await asyncio.to_thread(second.scan)
        for recording_id, pcm in recordings.items():
            assert await second.pcm(recording_id) == pcm
        started = time.monotonic()
        assert await second.pcm(max(recordings) + 1) is None  # neither cached nor loadable
        assert time.monotonic() - started < 5
        assert second.load_failures == 1
    finally:
        dead.terminate()


async def test_a_corrupt_file_is_dropped_and_fetched_again(store: Store, tmp_path: Path) -> None:
    recordings, _ = await _two_recordings(store)
    cache = RecordingCache(tmp_path / "recordings", store.pool)
    await cache.sync()
    victim, other = sorted(recordings)
    path = cache.files[victim].path
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))

    again = RecordingCache(tmp_path / "recordings", store.pool)
    await asyncio.to_thread(again.scan)  # at start
    assert again.corrupt == 1 and victim not in again.files and not path.exists()
    assert await again.pcm(victim) == recordings[victim]  # fetched again from the database

    # Damaged after the scan: caught when read for a call.
    other_path = again.files[other].path
    other_path.write_bytes(other_path.read_bytes()[:-2])
    assert await asyncio.to_thread(again.read, other) is None
    assert again.corrupt == 2
    assert await again.pcm(other) == recordings[other]


async def test_a_copy_from_another_database_is_never_played(store: Store, tmp_path: Path) -> None:
    """The folder holds a recording under the same id from another database (a restore,
    a reused folder): the database's own audio is played, and the copy replaced."""
    recordings, _ = await _two_recordings(store)
    recording_id = min(recordings)
    foreign = tone(1234.0, 0.5)
    folder = tmp_path / "recordings"
    folder.mkdir()
    stale = folder / f"{recording_id}-{hashlib.sha256(foreign).hexdigest()}.pcm"
    stale.write_bytes(foreign)
    cache = RecordingCache(folder, store.pool)
    await asyncio.to_thread(cache.scan)
    assert cache.files[recording_id].path == stale  # a valid file, but not this database's
    assert await cache.pcm(recording_id) == recordings[recording_id]  # before any sync
    await cache.sync()
    assert not stale.exists()
    assert await cache.pcm(recording_id) == recordings[recording_id]


async def test_the_cache_follows_the_recordings_table(store: Store, tmp_path: Path) -> None:
    recordings, court_id = await _two_recordings(store)
    cache = RecordingCache(tmp_path / "recordings", store.pool)
    await cache.sync()
    added = await store.recordings.add(court_id, "new", tone(300.0, 0.5), WHO)
    gone = min(recordings)
    await store.pool.execute("DELETE FROM recordings WHERE id = $1", gone)
    assert await cache.sync() == 1
    assert sorted(cache.files) == sorted({*recordings, added["id"]} - {gone})
    names = sorted(p.name.split("-")[0] for p in (tmp_path / "recordings").iterdir())
    assert names == sorted(str(i) for i in cache.files)


async def test_a_recording_load_has_a_timeout(database: str, store: Store, tmp_path: Path) -> None:
    recordings, _ = await _two_recordings(store)
    cache = RecordingCache(tmp_path / "recordings", store.pool, timeout_s=0.5)
    blocker = await asyncpg.connect(database)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE recordings IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        assert await cache.pcm(min(recordings)) is None
        assert 0.4 < time.monotonic() - started < 3
        assert cache.load_failures == 1
        await tx.rollback()
    finally:
        await blocker.close()
    assert await cache.pcm(min(recordings)) == recordings[min(recordings)]


async def test_a_warning_plays_while_bulk_work_holds_every_api_connection(
    database: str, store: Store, tmp_path: Path
) -> None:
    """The API pool (the one bulk imports use) is exhausted; a listing with a recording the
    node has never seen is still warned: recordings come over their own pool."""
    config = load_config(None, env={})
    config.database.url = database
    config.database.pool_max = 1
    config.http.port = 0
    config.sip.port = 0
    config.index.heartbeat_s = 0.2
    config.cache.dir = str(tmp_path / "cache")
    config.events.enabled = False
    config.announcement.gap_ms = 0
    service = Service(config)
    await service.start()
    try:
        for _ in range(100):
            if service.sync.loaded:
                break
            await asyncio.sleep(0.05)
        held = await service.pool.acquire()  # what a long import does to the API pool
        try:
            court, _, _ = await store.courts.create("Busy Court", WHO)
            recording = await store.recordings.add(court["id"], "x", tone(500.0, 0.5), WHO)
            now = datetime.now(UTC)
            number = 8613800138077
            await store.listings.put(
                court["id"],
                number,
                "CASE-BUSY",
                now + timedelta(days=1),
                WHO,
                effective_at=now - timedelta(seconds=5),
                recording_id=recording["id"],
            )
            async with SipLoad(("127.0.0.1", service.sip_port), call_timeout=10) as load:
                for _ in range(50):
                    [call] = await load.run([f"+{number}"], rate=1, seconds=0.5)
                    if call.warned:
                        break
                    assert call.final == 302
                    await asyncio.sleep(0.1)
                assert call.warned, call
                assert call.final_at is not None and call.final_at - call.sent_at < 3
        finally:
            await service.pool.release(held)
    finally:
        await service.stop()
