"""/v1/stats from the proof-of-play rollups: the same answer as counting rows, and the same
answer after a day is dropped for retention; a node makes the day partitions ahead at start.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from court_api_support import Api, listing

from ringback.registry.announcement_days import create_days, expire, partition_days
from ringback.registry.proof_of_play import PlayRecord, ProofOfPlayWriter
from ringback.server import Service


async def test_a_node_makes_the_days_ahead_at_start(service: Service) -> None:
    keeper = service.announcement_days
    assert keeper is not None
    for _ in range(250):
        if keeper.runs:
            break
        await asyncio.sleep(0.02)
    today = datetime.now(UTC).date()
    days = await partition_days(service.pool)
    ahead = service.config.announcements.partitions_ahead_days
    assert [today + timedelta(days=n) for n in range(-1, ahead + 1)] == days[-(ahead + 2) :]


async def test_stats_stay_right_across_a_retention_drop(
    api: Api, operator: str, service: Service
) -> None:
    court = await api.court(operator, "Retention Court")
    token, court_id = court["token"], court["court"]["id"]
    r = await api.put("/v1/listings/+8613800138123", token, listing())
    assert r.status == 201, r.body
    listing_id = r.body["id"]
    today = datetime.now(UTC).date()
    old = today - timedelta(days=service.config.announcements.retention_days + 5)
    await create_days(service.pool, old, old)
    writer = ProofOfPlayWriter(service.pool, node="t")
    noon = datetime(old.year, old.month, old.day, 12, tzinfo=UTC).timestamp()
    for started, outcome in [
        (noon, "completed"),
        (noon + 60, "completed"),
        (noon + 120, "cancelled"),
        (time.time() - 5, "completed"),
        (time.time() - 4, "failed"),
    ]:
        writer.record(PlayRecord(listing_id, 0, "PCMU", started, started + 20, outcome))
    assert await writer.flush() == 5
    want = {"completed": 3, "cancelled": 1, "failed": 1, "total": 5}
    r = await api.get("/v1/stats", token)
    assert r.status == 200 and r.body["announcements"] == want, r.body
    raw = "SELECT count(*) FROM announcements WHERE court_id = $1"
    assert await service.pool.fetchval(raw, uuid.UUID(court_id)) == 5

    gone = await expire(service.pool, service.config.announcements.retention_days)

    assert [(g.day, g.rows) for g in gone] == [(old, 3)]
    assert await service.pool.fetchval(raw, uuid.UUID(court_id)) == 2
    for who in (token, operator):
        r = await api.get("/v1/stats", who, params={"court_id": court_id})
        assert r.status == 200 and r.body["announcements"] == want, r.body
    r = await api.get("/v1/audit", operator, params={"action": "announcements.expire"})
    assert [(e["entity"], e["before"]["rows"]) for e in r.body["items"]] == [
        (f"announcements:{old}", 3)
    ]
