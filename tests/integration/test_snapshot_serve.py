"""`ringback serve` with the shared index snapshot: the workers of `--workers 2` map one
file and answer the same, a change after the snapshot reaches both, and a node restarted
(with two workers) while its database is down warns listed callers from the snapshot."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from faults_support import Node, children, start_node, tone
from sip_load import Call, SipLoad

from ringback.registry.common import Principal
from ringback.registry.embedded import EmbeddedPostgres
from ringback.registry.index_snapshot import FILE_NAME, read_header
from ringback.registry.store import Store, create_pool

WHO = Principal("test", "operator")
LISTED = [f"+86138001380{i:02d}" for i in range(1, 9)]
UNLISTED = [f"+86139001390{i:02d}" for i in range(6)]
LATE = "+8613800138050"  # listed after the snapshot was written


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own: the test stops it."""
    server = EmbeddedPostgres(tmp_path / "pg")
    server.start()
    yield server
    server.remove()


async def _seed(url: str) -> str:
    """A court with a 0.6 s recording and LISTED listed (effective now); its id."""
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        store = Store(pool)
        await store.migrate()
        court, _, _ = await store.courts.create("Snapshot Court", WHO)
        recording = await store.recordings.add(court["id"], "tone", tone(500.0, 0.6), WHO)
        await store.courts.set_default_recording(court["id"], recording["id"], WHO)
        for number in LISTED:
            await _list(store, court["id"], number)
        return str(court["id"])
    finally:
        await pool.close()


async def _list(store: Store, court_id: object, number: str) -> None:
    now = datetime.now(UTC)
    await store.listings.put(
        court_id,  # type: ignore[arg-type]
        int(number[1:]),
        "CASE-1",
        now + timedelta(days=1),
        WHO,
        effective_at=now - timedelta(seconds=5),
    )


def _check(calls: list[Call], listed: set[str]) -> None:
    assert calls and all(c.final == 302 for c in calls), [c for c in calls if c.final != 302][:3]
    wrong = [c for c in calls if c.warned != (c.number in listed)]
    assert not wrong, f"{len(wrong)} calls warned wrongly: {wrong[:3]}"


async def _every_worker_reports(node: Node) -> None:
    """Both workers are running their loops: each has written its CPU counter (once a
    second) to the table every worker's /metrics shows."""

    async def reported() -> bool:
        m = await node.metrics()
        return all(
            m.get(f'ringback_worker_cpu_milliseconds_total{{worker="{i}"}}', 0) > 0 for i in (0, 1)
        )

    await node.wait_until("both workers reporting", reported)


def _mapped_by(pid: int, path: Path) -> bool:
    return str(path) in Path(f"/proc/{pid}/maps").read_text()


async def test_two_workers_share_one_snapshot_and_follow_changes_after_it(
    tmp_path: Path, postgres: EmbeddedPostgres
) -> None:
    court = await _seed(postgres.url)
    node = start_node(tmp_path / "node", postgres.url, args=("--workers", "2"))
    try:
        await node.wait_ready()
        snapshot = tmp_path / "node" / "cache" / FILE_NAME

        async def both_mapped() -> bool:
            workers = children(node.proc.pid)
            return (
                len(workers) == 2
                and all(_mapped_by(p, snapshot) for p in workers)
                and "from the snapshot at seq" in node.log()  # the second one's line
            )

        await node.wait_until("both workers mapping the snapshot", both_mapped)
        log = node.log()
        assert log.count("index sync: loaded") == 1, log  # one worker read PostgreSQL
        seq = read_header(snapshot).seq
        await _every_worker_reports(node)

        async with SipLoad(("127.0.0.1", node.sip_port)) as load:
            _check(await load.run(LISTED + UNLISTED, rate=20, seconds=1.4), set(LISTED))

            pool = await create_pool(postgres.url, min_size=1, max_size=1)
            try:
                await _list(Store(pool), court, LATE)
                await pool.execute(
                    "UPDATE listings SET status = 'cleared' WHERE number = $1",
                    int(LISTED[0][1:]),
                )
            finally:
                await pool.close()
            await asyncio.sleep(1.0)  # heartbeat 0.2 s; NOTIFY is at once
            after = await load.run([*LISTED, *UNLISTED, LATE], rate=20, seconds=1.5)
            _check(after, {*LISTED[1:], LATE})
            assert {c.number for c in after} >= {LATE, LISTED[0]}

        metrics = await node.metrics()
        per_worker = [
            metrics.get(f'ringback_worker_sip_invites_total{{worker="{i}"}}') for i in (0, 1)
        ]
        assert all(v and v > 0 for v in per_worker), per_worker  # both workers answered
        assert read_header(snapshot).seq == seq  # the changes went to overlays, not a merge
    finally:
        node.stop()


async def test_a_node_restarted_with_the_database_down_warns_from_the_snapshot(
    tmp_path: Path, postgres: EmbeddedPostgres
) -> None:
    await _seed(postgres.url)
    node: Node = start_node(tmp_path / "node", postgres.url)
    try:
        await node.wait_ready()

        async def cached() -> bool:
            return (await node.metrics()).get("ringback_recordings_cached") == 1

        await node.wait_until("the recording in the local cache", cached)
    finally:
        node.stop()
    assert (tmp_path / "node" / "cache" / FILE_NAME).exists()
    await asyncio.to_thread(postgres.stop)

    # Two workers this time: the supervisor, too, has to start with the database down.
    node = start_node(tmp_path / "node", postgres.url, name="restarted", args=("--workers", "2"))
    try:

        async def loaded() -> bool:
            log = node.log()
            return log.count("from the snapshot at seq") == 2 and log.count("SIP listening") == 2

        await node.wait_until("both workers loaded with the database down", loaded, timeout=20)
        await _every_worker_reports(node)
        status, body = await node.get("/readyz")
        assert status == 503 and body["checks"]["database_reachable"] is False
        assert body["checks"]["index_loaded"] is True
        assert body["index"]["listings"] == len(LISTED)
        assert 0 <= body["index"]["staleness_s"] < 120  # the snapshot's age counts
        async with SipLoad(("127.0.0.1", node.sip_port)) as load:
            _check(await load.run(LISTED + UNLISTED, rate=20, seconds=1.4), set(LISTED))
        assert "from the snapshot at seq" in node.log()
    finally:
        node.stop()
