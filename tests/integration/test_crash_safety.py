"""`kill -9` of a real `ringback serve` during a bulk import and during a burst of listing
changes and payment hooks. After a restart the database holds exactly the acknowledged
changes — every 2xx the client saw is there, nothing else is, each change whole with its
audit event — the node's index equals the database, and an import left running by the
dead node is marked failed with the reason."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
from faults_support import Node, api, start_node

from ringback.registry.common import Principal
from ringback.registry.import_csv import ImportOptions
from ringback.registry.imports import Imports
from ringback.registry.store import Store
from ringback.webhooks import sign

WHO = Principal("test", "operator")


def _csv(path: Path, rows: int) -> Path:
    expires = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(path, "w") as f:
        f.write("number,case_ref,expires_at\n")
        for i in range(rows):
            f.write(f"+86137{i:08d},IMP-{i},{expires}\n")
    return path


async def _job(node: Node, token: str, job_id: str) -> dict[str, object]:
    status, body = await api(node, "GET", f"/v1/imports/{job_id}", token)
    assert status == 200, body
    return body


async def test_kill_during_bulk_import_then_the_job_is_failed_at_restart(
    store: Store, database: str, tmp_path: Path
) -> None:
    _, token, _ = await store.courts.create("Import Court", WHO)
    extra = "[imports]\nbatch_rows = 2000\nlease_s = 600.0\n"
    node = start_node(tmp_path / "n", database, extra_toml=extra)
    try:
        await node.wait_ready()
        csv_path = _csv(tmp_path / "big.csv", 300_000)
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{node.url}/v1/imports",
                data=csv_path.read_bytes(),
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "text/csv",
                    "Prefer": "respond-async",
                },
            ) as response,
        ):
            assert response.status == 202, await response.text()
            job_id = (await response.json())["id"]
        deadline = time.monotonic() + 30
        while True:  # mid-import: rows are being validated and staged
            job = await _job(node, token, job_id)
            processed = job["rows_processed"]
            assert isinstance(processed, int)
            if job["status"] in ("validating", "loading") and processed > 0:
                break
            assert job["status"] not in ("done", "failed"), job
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.02)
        node.kill()
    finally:
        node.kill()

    # The crash left the job unfinished and nothing of the file applied.
    row = await store.pool.fetchrow("SELECT status, node FROM imports WHERE id = $1", job_id)
    assert row is not None and row["status"] in ("validating", "loading")
    assert await store.pool.fetchval("SELECT count(*) FROM listings") == 0
    assert (
        await store.pool.fetchval(
            "SELECT count(*) FROM audit_events WHERE action = 'listing.import'"
        )
        == 0
    )

    # The same node starts again (same ports: the same node to the cluster). Its lease
    # (600 s) has not run out: it knows the job is its own and fails it at once.
    again = start_node(
        tmp_path / "n", database, extra_toml=extra, sip_port=node.sip_port, http_port=node.http_port
    )
    try:
        started = time.monotonic()

        async def failed() -> bool:
            return (await _job(again, token, job_id))["status"] == "failed"

        await again.wait_until("the abandoned job to be marked failed", failed)
        assert time.monotonic() - started < 30
        job = await _job(again, token, job_id)
        error = job["error"]
        assert isinstance(error, dict) and error["code"] == "abandoned"
        assert "stopped before it finished" in error["message"]
        assert "nothing from the file was applied" in error["message"]
        assert job["finished_at"] is not None
        await again.wait_ready()
        _, body = await again.get("/readyz")
        assert body["index"]["listings"] == 0
    finally:
        again.stop()
    assert await store.pool.fetchval("SELECT count(*) FROM listings") == 0


async def test_an_expired_lease_fails_the_job_on_any_node(store: Store, tmp_path: Path) -> None:
    """Another node's job whose lease ran out is failed; one whose lease is live is not."""
    court, _, _ = await store.courts.create("Lease Court", WHO)
    dead = Imports(store.pool, lease_s=0.5, node="dead-node:8080")
    alive = Imports(store.pool, lease_s=600, node="alive-node:8080")
    abandoned = await dead.create_job(court["id"], WHO, "a.csv")
    running = await alive.create_job(court["id"], WHO, "b.csv")
    sweeper = Imports(store.pool, lease_s=30, node="sweeper:8080")
    assert await sweeper.fail_abandoned() == []  # nothing has expired yet
    await asyncio.sleep(1.0)
    assert await sweeper.fail_abandoned() == [abandoned]
    rows = {
        r["id"]: r
        for r in await store.pool.fetch("SELECT id, status, error_code, error_message FROM imports")
    }
    assert rows[abandoned]["status"] == "failed" and rows[abandoned]["error_code"] == "abandoned"
    assert "dead-node:8080" in rows[abandoned]["error_message"]
    assert rows[running]["status"] == "receiving"


async def test_a_running_import_renews_its_lease(store: Store, tmp_path: Path) -> None:
    """An import that runs longer than its lease is not taken for abandoned."""
    court, _, _ = await store.courts.create("Slow Court", WHO)
    imports = Imports(store.pool, lease_s=0.6, node="slow-node:1")
    sweeper = Imports(store.pool, lease_s=30, node="sweeper:1")
    job = await imports.create_job(court["id"], WHO, "slow.csv")
    path = _csv(tmp_path / "slow.csv", 50)
    blocker = await store.pool.acquire()
    try:  # hold the job's listings so the import waits well past its lease
        await blocker.execute("BEGIN; LOCK TABLE listings IN SHARE ROW EXCLUSIVE MODE")
        run = asyncio.create_task(
            imports.run(job, court["id"], WHO, path, _options(), filename="slow.csv")
        )
        for _ in range(8):
            await asyncio.sleep(0.3)
            assert await sweeper.fail_abandoned() == []
        await blocker.execute("ROLLBACK")
    finally:
        await store.pool.release(blocker)
    done = await asyncio.wait_for(run, 30)
    assert done["status"] == "done" and done["listed"] == 50


def _options() -> ImportOptions:
    from ringback.config import load_config

    return load_config(None, env={}).import_options()


# ---------------------------------------------------------------- a burst of changes
@dataclass
class Sent:
    kind: str  # put | clear | hook
    number: int
    case_ref: str
    outcome: str = "unsent"  # ack (2xx) | refused (an answer that is not 2xx) | unknown


async def _burst(node: Node, token: str, court_id: str, secret: str, log: list[Sent]) -> None:
    """Three clients as fast as they go, until the node dies under them."""
    expires = (datetime.now(UTC) + timedelta(days=10)).isoformat()

    async def send(item: Sent, method: str, path: str, body: Mapping[str, object]) -> bool:
        log.append(item)
        try:
            if item.kind == "hook":
                raw = json.dumps(body).encode()
                stamp = str(int(time.time()))
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(
                        node.url + path,
                        data=raw,
                        headers={
                            "Content-Type": "application/json",
                            "X-Ringback-Timestamp": stamp,
                            "X-Ringback-Signature": sign(secret, stamp, raw),
                        },
                        timeout=aiohttp.ClientTimeout(total=10),
                    ) as response,
                ):
                    status = response.status
            else:
                status, _ = await api(node, method, path, token, body)
        except (aiohttp.ClientError, OSError, TimeoutError):
            item.outcome = "unknown"  # no answer: it may or may not have happened
            return False
        item.outcome = "ack" if 200 <= status < 300 else "refused"
        return True

    async def lister(base: int) -> None:
        for i in range(10_000):
            number = base + i
            ref = f"B-{number}"
            put = {"case_ref": ref, "expires_at": expires}
            if not await send(Sent("put", number, ref), "PUT", f"/v1/listings/+{number}", put):
                return
            if i % 3 == 2:  # and clear every third one again
                body = {"case_ref": ref, "reason": "crash test"}
                if not await send(
                    Sent("clear", number, ref), "POST", f"/v1/listings/+{number}/clear", body
                ):
                    return

    async def payer(base: int) -> None:
        for i in range(10_000):
            number = base + i
            ref = f"P-{number}"
            put = {"case_ref": ref, "expires_at": expires}
            if not await send(Sent("put", number, ref), "PUT", f"/v1/listings/+{number}", put):
                return
            hook = {
                "court_id": court_id,
                "case_ref": ref,
                "payment_id": f"pay-{number}",
                "paid_at": datetime.now(UTC).isoformat(),
            }
            if not await send(
                Sent("hook", number, ref), "POST", "/v1/hooks/payment-confirmed", hook
            ):
                return

    await asyncio.gather(lister(8613500000000), lister(8613600000000), payer(8613700000000))


async def test_kill_during_a_burst_of_changes_and_payment_hooks(
    store: Store, database: str, tmp_path: Path
) -> None:
    court, token, secret = await store.courts.create("Burst Court", WHO)
    _, switch_token = await store.tokens.issue("switch", None, "lookups", WHO)
    node = start_node(tmp_path / "n", database)
    log: list[Sent] = []
    try:
        await node.wait_ready()
        burst = asyncio.create_task(_burst(node, token, str(court["id"]), secret, log))
        deadline = time.monotonic() + 30
        while sum(s.outcome == "ack" for s in log) < 150:  # well into the burst
            assert not burst.done(), [s for s in log if s.outcome != "ack"][:5]
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        node.kill()
        await asyncio.wait_for(burst, 30)
    finally:
        node.kill()
    refused = [s for s in log if s.outcome == "refused"]
    assert not refused, refused[:5]
    acked = [s for s in log if s.outcome == "ack"]
    unknown = [s for s in log if s.outcome == "unknown"]
    assert len(acked) >= 150 and 1 <= len(unknown) <= 3  # one in flight per client

    conn = await asyncpg.connect(database)
    try:
        listings = {
            (r["number"], r["case_ref"]): r["status"]
            for r in await conn.fetch("SELECT number, case_ref, status FROM listings")
        }
        payments = {r[0] for r in await conn.fetch("SELECT case_ref FROM payment_events")}
        audited = {
            (r["action"], r["entity"])
            for r in await conn.fetch("SELECT action, entity FROM audit_events")
        }
        ids = {
            (r["number"], r["case_ref"]): r["id"]
            for r in await conn.fetch("SELECT id, number, case_ref FROM listings")
        }
    finally:
        await conn.close()

    asked = {(s.number, s.case_ref) for s in log if s.kind == "put"}
    for s in acked:  # every acknowledged change is there
        key = (s.number, s.case_ref)
        assert key in listings, s
        if s.kind == "hook":
            assert s.case_ref in payments and listings[key] == "cleared", s
        if s.kind == "clear":
            assert listings[key] == "cleared", s
    # nothing else: each listing and payment was asked for, and is whole with its audit row
    assert set(listings) <= asked
    unacked_puts = {(s.number, s.case_ref) for s in unknown if s.kind == "put"}
    assert set(listings) >= asked - unacked_puts
    for key, listing_id in ids.items():
        assert ("listing.create", f"listing:{listing_id}") in audited, key
    hooks_sent = {s.case_ref for s in log if s.kind == "hook" and s.outcome != "unsent"}
    assert payments <= hooks_sent
    for key, status in listings.items():
        if status == "cleared":
            cleared_by = [
                s for s in log if (s.number, s.case_ref) == key and s.kind in ("clear", "hook")
            ]
            assert cleared_by and cleared_by[0].outcome in ("ack", "unknown"), key
            assert ("listing.clear", f"listing:{ids[key]}") in audited, key
        else:
            acked_clears = [
                s for s in acked if (s.number, s.case_ref) == key and s.kind in ("clear", "hook")
            ]
            assert not acked_clears, key

    # The node starts again: its index equals the database, number by number.
    again = start_node(tmp_path / "n", database, sip_port=node.sip_port, http_port=node.http_port)
    try:
        await again.wait_ready()
        conn = await asyncpg.connect(database)
        try:
            live = {r[0] for r in await conn.fetch("SELECT DISTINCT number FROM index_entries")}
        finally:
            await conn.close()
        assert live  # some listings are active, some cleared
        for number in sorted({s.number for s in log}):
            status, body = await api(again, "GET", f"/v1/lookup/+{number}", switch_token)
            assert status == 200, body
            assert body["listed"] is (number in live), (number, body)
        _, ready = await again.get("/readyz")
        assert ready["index"]["listings"] == len(live)
    finally:
        again.stop()
