"""GET /v1/audit, GET /v1/stats and the HTTP dip GET /v1/lookup/{number}."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from urllib.parse import quote

from court_api_support import (
    Api,
    add_recording,
    announced,
    listing,
    until,
)

from ringback.registry.audit import verify_chain
from ringback.server import Service

N1 = 8613800138000
N2 = 8613900139000


async def test_audit_is_scoped_paged_and_chained(api: Api, operator: str, service: Service) -> None:
    a = await api.court(operator, "Audit Court A")
    b = await api.court(operator, "Audit Court B")
    for n in (N1, N2):
        assert (await api.put(f"/v1/listings/+{n}", a["token"], listing())).status == 201
    assert (await api.put(f"/v1/listings/+{N1}", b["token"], listing())).status == 201

    all_rows = (await api.get("/v1/audit", operator, params={"limit": "1000"})).body["items"]
    a_rows = (await api.get("/v1/audit", a["token"], params={"limit": "1000"})).body["items"]
    b_rows = (await api.get("/v1/audit", b["token"], params={"limit": "1000"})).body["items"]
    assert {r["court_id"] for r in a_rows} == {a["court"]["id"]}
    assert {r["court_id"] for r in b_rows} == {b["court"]["id"]}
    assert len(all_rows) >= len(a_rows) + len(b_rows) + 1  # + the operator token's creation
    assert [r["action"] for r in a_rows] == [
        "court.create",
        "token.create",
        "listing.create",
        "listing.create",
    ]
    # Each row carries its place in the hash chain.
    for prev, row in itertools.pairwise(all_rows):
        assert row["prev_hash"] == prev["hash"] and row["id"] == prev["id"] + 1
    # Paging with the cursor gives the same rows.
    paged, cursor = [], None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        r = await api.get("/v1/audit", a["token"], params=params)
        paged += r.body["items"]
        cursor = r.body["next_cursor"]
        if not cursor:
            break
    assert paged == a_rows
    # entity filter; another court's entity gives nothing.
    b_listing = b_rows[-1]["entity"]
    assert (await api.get("/v1/audit", a["token"], params={"entity": b_listing})).body[
        "items"
    ] == []
    r = await api.get("/v1/audit", a["token"], params={"bogus": "1"})
    assert r.status == 400 and r.code == "invalid_parameter"
    async with service.store.pool.acquire() as conn:
        assert (await verify_chain(conn)).ok


async def test_stats_counts_listings_and_announcements(
    api: Api, operator: str, service: Service
) -> None:
    a = await api.court(operator, "Stats Court A")
    b = await api.court(operator, "Stats Court B")
    for i in range(3):
        await api.put(f"/v1/listings/+{N1 + i}", a["token"], listing())
    await api.put(f"/v1/listings/+{N2}", a["token"], listing())
    await api.post(f"/v1/listings/+{N1}/suspend", a["token"], {"reason": "appeal"})
    await api.post(f"/v1/listings/+{N1 + 1}/clear", a["token"], {"reason": "paid"})
    await api.put(f"/v1/listings/+{N1}", b["token"], listing())
    rec = await add_recording(service, a["court"]["id"])
    now = datetime.now(UTC)
    for outcome in ("completed", "completed", "cancelled"):
        await service.store.pool.execute(
            "INSERT INTO announcements (court_id, recording_id, node, codec, started_at, outcome)"
            " VALUES ($1, $2, 'n1', 'PCMU', $3, $4)",
            uuid.UUID(a["court"]["id"]),
            rec,
            now,
            outcome,
        )
    r = await api.get("/v1/stats", a["token"])
    assert r.status == 200, r.body
    assert r.body["court_id"] == a["court"]["id"]
    assert r.body["listings"] == {
        "active": 2,
        "suspended": 1,
        "cleared": 1,
        "expired": 0,
        "in_notice_period": 0,
    }
    assert r.body["announcements"] == {"completed": 2, "cancelled": 1, "failed": 0, "total": 3}
    r = await api.get("/v1/stats", b["token"])
    assert r.body["listings"]["active"] == 1 and r.body["announcements"]["total"] == 0
    r = await api.get("/v1/stats", operator)
    assert r.body["court_id"] is None and r.body["listings"]["active"] == 3
    r = await api.get("/v1/stats", operator, params={"court_id": b["court"]["id"]})
    assert r.body["listings"]["active"] == 1


async def test_lookup_dip_for_switches(api: Api, operator: str, service: Service) -> None:
    court = await api.court(operator, "Dip Court")
    rec = await add_recording(service, court["court"]["id"])
    assert (
        await api.put(f"/v1/listings/+{N1}", court["token"], listing(recording_id=rec))
    ).status == 201
    assert (await api.put(f"/v1/listings/+{N2}", court["token"], listing())).status == 201
    switch = (await api.post("/v1/tokens", operator, {"role": "switch"})).body["token"]
    assert await until(lambda: announced(service, N1) and announced(service, N2))

    listed = {
        "number": f"+{N1}",
        "listed": True,
        "listing_id": 1,
        "recording_id": rec,
        "recording_url": f"/v1/recordings/{rec}/audio.wav?codec=pcmu",
        "recording_urls": {
            "pcmu": f"/v1/recordings/{rec}/audio.wav?codec=pcmu",
            "pcma": f"/v1/recordings/{rec}/audio.wav?codec=pcma",
        },
    }
    for form in (
        "+8613800138000",
        "8613800138000",
        "13800138000",
        "+86 138-0013-8000",
        "0086-138-0013-8000",
        "tel:+86-138-0013-8000",
        "sip:+8613800138000@sbc.example;user=phone",
    ):
        r = await api.get(f"/v1/lookup/{quote(form, safe='')}", switch)
        assert r.status == 200, (form, r.body)
        assert r.body == listed, form
    r = await api.get(f"/v1/lookup/+{N2}", operator)
    assert r.body["listed"] is True and r.body["recording_id"] == 0
    assert r.body["recording_url"] == "/v1/recordings/default/audio.wav?codec=pcmu"
    audio = await api.get(r.body["recording_url"], switch)
    assert audio.status == 200 and audio.headers["Content-Type"] == "audio/wav"
    wav = audio.raw
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    assert int.from_bytes(wav[20:22], "little") == 7  # G.711 mu-law format tag
    r = await api.get("/v1/lookup/+8613700137000", switch)
    assert r.status == 200 and r.body == {"number": "+8613700137000", "listed": False}

    for bad in ("10086", "abc", "*123#"):
        r = await api.get(f"/v1/lookup/{quote(bad, safe='')}", switch)
        assert r.status == 400 and r.code == "invalid_number", bad
    assert (await api.get(f"/v1/lookup/+{N1}", court["token"])).status == 403
    assert (await api.get(f"/v1/lookup/+{N1}")).status == 401
    assert (await api.get(f"/v1/lookup/+{N1}", "rbk_nope")).status == 401


async def test_lookup_makes_no_database_round_trip(
    api: Api, operator: str, service: Service
) -> None:
    court = await api.court(operator, "No-DB Court")
    assert (await api.put(f"/v1/listings/+{N1}", court["token"], listing())).status == 201
    switch = (await api.post("/v1/tokens", operator, {"role": "switch"})).body["token"]
    assert await until(lambda: announced(service, N1))
    assert (await api.get(f"/v1/lookup/+{N1}", switch)).body["listed"] is True  # warms auth

    class NoDatabase:
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"the dip touched the database ({name})")

    pool = service.store.pool
    service.store.pool = NoDatabase()
    try:
        for _ in range(20):
            r = await api.get(f"/v1/lookup/+{N1}", switch)
            assert r.status == 200 and r.body["listed"] is True
    finally:
        service.store.pool = pool


async def test_revoked_switch_token_stops_working_on_this_node(api: Api, operator: str) -> None:
    made = await api.post("/v1/tokens", operator, {"role": "switch"})
    token, token_id = made.body["token"], made.body["id"]
    assert (await api.get(f"/v1/lookup/+{N1}", token)).status == 200
    assert (await api.delete(f"/v1/tokens/{token_id}", operator)).status == 200
    assert (await api.get(f"/v1/lookup/+{N1}", token)).status == 401
