"""Court A's token against court B's ids, on every court API endpoint: always 404, never
403, and nothing of B's changes or leaks."""

from __future__ import annotations

import uuid
from typing import Any

from court_api_support import (
    Api,
    add_recording,
    announced,
    listing,
    until,
)

from ringback.server import Service

B_NUMBER = 8613900139000
A_NUMBER = 8613800138000


async def test_cross_court_matrix(api: Api, operator: str, service: Service) -> None:
    a = await api.court(operator, "Matrix Court A")
    b = await api.court(operator, "Matrix Court B")
    a_token, b_id = a["token"], b["court"]["id"]
    b_rec = await add_recording(service, b_id)
    r = await api.put(f"/v1/listings/+{B_NUMBER}", b["token"], listing("B-CASE"))
    assert r.status == 201
    b_listing_id = r.body["id"]
    extra = await api.post(f"/v1/courts/{b_id}/tokens", b["token"], {"label": "b2"})
    b_token_id = extra.body["id"]
    assert (await api.put(f"/v1/listings/+{A_NUMBER}", a_token, listing("A-CASE"))).status == 201
    assert await until(lambda: announced(service, B_NUMBER))
    audit_before = await service.store.pool.fetchval("SELECT count(*) FROM audit_events")

    matrix: list[tuple[str, str, Any]] = [
        ("GET", f"/v1/courts/{b_id}", None),
        ("POST", f"/v1/courts/{b_id}/tokens", {"label": "sneaky"}),
        ("GET", f"/v1/courts/{b_id}/tokens", None),
        ("DELETE", f"/v1/tokens/{b_token_id}", None),
        ("GET", f"/v1/listings/+{B_NUMBER}", None),
        ("POST", f"/v1/listings/+{B_NUMBER}/clear", {"reason": "x"}),
        ("POST", f"/v1/listings/+{B_NUMBER}/suspend", {"reason": "x"}),
        ("POST", f"/v1/listings/+{B_NUMBER}/resume", {}),
        ("POST", f"/v1/listings/+{B_NUMBER}/clear", {"reason": "x", "court_id": b_id}),
        ("POST", f"/v1/listings/+{B_NUMBER}/suspend", {"reason": "x", "court_id": b_id}),
        ("PUT", f"/v1/listings/+{B_NUMBER}", listing("B-CASE", court_id=b_id)),
        ("PUT", f"/v1/listings/+{A_NUMBER}", listing("A-CASE", recording_id=b_rec)),
        ("GET", f"/v1/listings?court_id={b_id}", None),
        ("GET", f"/v1/stats?court_id={b_id}", None),
    ]
    for method, path, body in matrix:
        r = await api.call(method, path, a_token, body)
        assert r.status == 404, (method, path, r.status, r.body)
        assert r.code == "not_found", (method, path, r.body)
        assert b_id not in r.raw.decode() or "court_id" in path, (method, path, r.body)

    # Reads that are scoped rather than addressed by id show nothing of B's.
    r = await api.get("/v1/listings", a_token, params={"limit": "1000"})
    assert {i["court_id"] for i in r.body["items"]} == {a["court"]["id"]}
    r = await api.get("/v1/listings", a_token, params={"case_ref": "B-CASE"})
    assert r.body["items"] == []
    r = await api.get("/v1/listings", a_token, params={"number": f"+{B_NUMBER}"})
    assert r.body["items"] == []
    r = await api.get("/v1/audit", a_token, params={"limit": "1000"})
    assert all(e["court_id"] == a["court"]["id"] for e in r.body["items"])
    r = await api.get("/v1/audit", a_token, params={"entity": f"listing:{b_listing_id}"})
    assert r.body["items"] == []
    r = await api.get("/v1/courts", a_token)
    assert [c["id"] for c in r.body["items"]] == [a["court"]["id"]]
    r = await api.get("/v1/stats", a_token)
    assert r.body["listings"]["active"] == 1

    # A's listing of B's number is A's own and does not touch B's.
    r = await api.put(f"/v1/listings/+{B_NUMBER}", a_token, listing("A-CASE-2"))
    assert r.status == 201 and r.body["court_id"] == a["court"]["id"]
    r = await api.post(f"/v1/listings/+{B_NUMBER}/clear", a_token, {"reason": "mine"})
    assert r.status == 200 and r.body["court_id"] == a["court"]["id"]

    # Nothing of B's changed: its listing is active and announced, its token still works.
    got = await api.get(f"/v1/listings/+{B_NUMBER}", b["token"])
    assert [i["status"] for i in got.body["items"]] == ["active"]
    assert announced(service, B_NUMBER)
    assert (await api.get(f"/v1/courts/{b_id}", extra.body["token"])).status == 200
    changed = await service.store.pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE id > $1 AND court_id = $2",
        audit_before,
        uuid.UUID(b_id),
    )
    assert changed == 0


async def test_other_roles_are_refused_with_403_not_404(api: Api, operator: str) -> None:
    """403 only says what a role may do, never whether another court's id exists."""
    court = await api.court(operator, "Role Matrix Court")
    switch = (await api.post("/v1/tokens", operator, {"role": "switch"})).body["token"]
    for method, path in [
        ("POST", "/v1/courts"),
        ("GET", "/v1/courts"),
        ("GET", f"/v1/courts/{court['court']['id']}"),
        ("GET", "/v1/listings"),
        ("PUT", f"/v1/listings/+{A_NUMBER}"),
        ("GET", "/v1/audit"),
        ("GET", "/v1/stats"),
        ("POST", "/v1/tokens"),
    ]:
        r = await api.call(method, path, switch, {} if method in ("POST", "PUT") else None)
        assert r.status == 403 and r.code == "forbidden", (method, path, r.body)
