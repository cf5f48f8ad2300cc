"""PostgreSQL dies (SIGKILL of the postmaster) under steady SIP load, then comes back; and
`ringback serve` started while its database is down.

What a switch, a court and an operator would see: every call gets its 302 (none fails),
listed numbers are still warned — also one whose recording no call had played before
the crash (it comes from the node's local recording cache, not the database) — API writes
answer 503 with a clear message and leave nothing behind, and once PostgreSQL is back the
change feed catches up, `/readyz` recovers and a new listing is warned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from faults_support import Node, api, kill_postmaster, start_node, tone
from sip_load import Call, SipLoad

from ringback.registry.common import Principal
from ringback.registry.embedded import EmbeddedPostgres
from ringback.registry.store import Store, create_pool

WHO = Principal("test", "operator")
LISTED_A = "+8613800138001"  # warned before and after the crash
LISTED_B = "+8613800138002"  # first dialled only while the database is down
LISTED_C = "+8613800138003"  # listed through the API once the database is back
REFUSED_D = "+8613800138004"  # an API write tried while the database is down
UNLISTED = [f"+86139001390{i:02d}" for i in range(9)]


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own: the test kills it."""
    server = EmbeddedPostgres(tmp_path / "pg")
    server.start()
    yield server
    server.remove()


async def _seed(url: str) -> tuple[str, dict[str, int]]:
    """A court with two recordings and two listed numbers; returns (court token, ids)."""
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        store = Store(pool)
        await store.migrate()
        court, token, _ = await store.courts.create("Faults Court", WHO)
        now = datetime.now(UTC)
        ids = {}
        for number, hz in ((LISTED_A, 440.0), (LISTED_B, 660.0)):
            recording = await store.recordings.add(court["id"], f"{hz}", tone(hz, 0.6), WHO)
            ids[number] = recording["id"]
            await store.listings.put(
                court["id"],
                int(number[1:]),
                f"CASE-{number[-1]}",
                now + timedelta(days=1),
                WHO,
                effective_at=now - timedelta(seconds=5),
                recording_id=recording["id"],
            )
        return token, ids
    finally:
        await pool.close()


def _check_calls(calls: list[Call], listed: set[str]) -> None:
    failed = [c for c in calls if c.final != 302]
    assert not failed, f"{len(failed)} of {len(calls)} calls failed: {failed[:3]}"
    unwarned = [c for c in calls if c.number in listed and not c.warned]
    assert not unwarned, f"listed calls not warned: {unwarned[:3]}"
    wrongly = [c for c in calls if c.number not in listed and 183 in c.statuses]
    assert not wrongly, f"unlisted calls warned: {wrongly[:3]}"


async def test_postgres_killed_under_load_then_back(
    tmp_path: Path, postgres: EmbeddedPostgres
) -> None:
    token, recordings = await _seed(postgres.url)
    node = start_node(tmp_path / "node", postgres.url)
    try:
        await node.wait_ready()

        async def cached() -> bool:
            return (await node.metrics()).get("ringback_recordings_cached") == 2

        await node.wait_until("both recordings in the local cache", cached)
        files = sorted(p.name for p in (tmp_path / "node" / "cache" / "recordings").iterdir())
        assert [f.split("-")[0] for f in files] == sorted(str(i) for i in recordings.values())

        async with SipLoad(("127.0.0.1", node.sip_port)) as load:
            before = await load.run([*UNLISTED, LISTED_A], rate=40, seconds=2)
            _check_calls(before, {LISTED_A})
            assert any(c.number == LISTED_A for c in before)

            # The crash, in the middle of a steady load.
            stop = asyncio.Event()
            during = asyncio.create_task(load.run([*UNLISTED, LISTED_A], 40, 60, stop))
            writes: list[tuple[int, int, str | None]] = []
            writer = asyncio.create_task(_write_until(node, token, stop, writes))
            await asyncio.sleep(1.0)
            await asyncio.to_thread(kill_postmaster, postgres)
            # B is first dialled now: its recording can only come from the local cache.
            only_after = asyncio.create_task(load.run([LISTED_B, *UNLISTED], 10, 60, stop))

            async def database_down() -> bool:
                return (await node.metrics()).get("ringback_database_up") == 0

            await node.wait_until("the node to see the database gone", database_down)
            status, body = await node.get("/readyz")
            assert status == 503 and body["checks"]["database_reachable"] is False
            # An API write while the database is away: a clear 503, nothing written.
            put = {"case_ref": "CASE-D", "expires_at": _tomorrow()}
            status, body = await api(node, "PUT", f"/v1/listings/{REFUSED_D}", token, put)
            assert status == 503, body
            assert body["error"]["code"] == "database_unavailable"
            assert "database" in body["error"]["message"]
            await asyncio.sleep(3.0)  # calls keep coming while it is down
            stop.set()
            crashed = await during + await only_after
            await writer
            _check_calls(crashed, {LISTED_A, LISTED_B})
            assert sum(c.number == LISTED_B for c in crashed) >= 3
            # Audio actually flowed for those calls: 0.6 s is 30 frames of 20 ms each.
            warned = sum(c.warned for c in [*before, *crashed])
            assert sum(load.rtp_packets.values()) >= 0.95 * 30 * warned

            # PostgreSQL comes back: ready again, the feed follows, writes work.
            await asyncio.to_thread(postgres.start)
            await node.wait_ready()
            for _ in range(50):  # a client retries a 503 until the database answers
                status, body = await api(
                    node,
                    "PUT",
                    f"/v1/listings/{LISTED_C}",
                    token,
                    {
                        "case_ref": "CASE-C",
                        "expires_at": _tomorrow(),
                        "recording_id": recordings[LISTED_A],
                    },
                )
                if status != 503:
                    break
                await asyncio.sleep(0.2)
            assert status in (200, 201), body
            after = await _calls_once_listed(load, LISTED_C)
            _check_calls(after, {LISTED_A, LISTED_B, LISTED_C})

        conn = await asyncpg.connect(postgres.url)
        try:
            head = await conn.fetchval("SELECT last_seq FROM feed_counter")
            assert (await node.metrics())["ringback_feed_last_seq"] == head
            rows = await conn.fetch("SELECT id, number FROM listings")
            numbers = {r["number"] for r in rows}
            wanted = {int(n[1:]) for n in (LISTED_A, LISTED_B, LISTED_C)}
            # Writes racing the crash: every 2xx is there; every other answer is a 503
            # (no 500, not even for a request the dying server was running); nothing
            # else was written, and every listing is whole with its audit event.
            acked = {n for n, status, _ in writes if 200 <= status < 300}
            assert acked and acked <= numbers
            others = [(n, status, code) for n, status, code in writes if not 200 <= status < 300]
            assert others and all(s == 503 and c == "database_unavailable" for _, s, c in others)
            assert wanted <= numbers <= wanted | {n for n, _, _ in writes}
            creates = {
                r[0]
                for r in await conn.fetch(
                    "SELECT entity FROM audit_events WHERE action = 'listing.create'"
                )
            }
            assert {f"listing:{r['id']}" for r in rows} <= creates
            audited = await conn.fetchval(
                "SELECT count(*) FROM audit_events WHERE entity LIKE $1", f"%{REFUSED_D[1:]}%"
            )
            assert audited == 0
        finally:
            await conn.close()
        assert "Traceback" not in node.log()
    finally:
        node.stop()


async def _write_until(
    node: Node, token: str, stop: asyncio.Event, writes: list[tuple[int, int, str | None]]
) -> None:
    """List one number after another until `stop`: (number, status, error code) each."""
    for i in range(100_000):
        if stop.is_set():
            return
        number = 8613599000000 + i
        put = {"case_ref": f"W-{i}", "expires_at": _tomorrow()}
        status, body = await api(node, "PUT", f"/v1/listings/+{number}", token, put)
        writes.append((number, status, body.get("error", {}).get("code")))
        if status == 503:
            await asyncio.sleep(0.05)  # a client backing off


async def _calls_once_listed(load: SipLoad, number: str) -> list[Call]:
    """Calls to `number` until one is warned (the feed brought the listing), then a
    short steady round with it among the others."""
    for _ in range(50):
        [call] = await load.run([number], rate=1, seconds=0.5)
        if call.warned:
            break
        assert call.final == 302, call
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"{number} never warned after the database came back")
    return await load.run([*UNLISTED, number, LISTED_A, LISTED_B], rate=30, seconds=1)


def _tomorrow() -> str:
    return (datetime.now(UTC) + timedelta(days=1)).isoformat()


async def test_serve_started_while_database_down(
    tmp_path: Path, postgres: EmbeddedPostgres
) -> None:
    """An external database URL whose server is stopped: the node comes up, redirects every
    call at once, is not ready, and becomes ready (and warns) when the database returns."""
    await _seed(postgres.url)
    await asyncio.to_thread(postgres.stop)
    node = start_node(tmp_path / "node", postgres.url)
    try:
        status, body = await node.get("/readyz")
        assert status == 503 and body["checks"]["index_loaded"] is False
        async with SipLoad(("127.0.0.1", node.sip_port)) as load:
            down = await load.run([*UNLISTED, LISTED_A], rate=20, seconds=2)
            assert [c.final for c in down] == [302] * len(down)
            assert all(183 not in c.statuses for c in down)
            assert all(c.warning is None for c in down)  # no index yet: nothing is listed

            await asyncio.to_thread(postgres.start)
            await node.wait_ready()
            up = await load.run([*UNLISTED, LISTED_A], rate=20, seconds=1)
            _check_calls(up, {LISTED_A})
    finally:
        node.stop()
