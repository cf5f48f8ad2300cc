"""Courts and tokens over HTTP: creation, roles, scoping, revocation, audit."""

from __future__ import annotations

from court_api_support import Api

from ringback.server import Service


async def test_operator_creates_a_court_with_token_and_secret(
    api: Api, operator: str, service: Service
) -> None:
    r = await api.post("/v1/courts", operator, {"name": "Beijing Chaoyang People's Court"})
    assert r.status == 201, r.body
    court, token, secret = r.body["court"], r.body["token"], r.body["webhook_secret"]
    assert court["name"] == "Beijing Chaoyang People's Court"
    assert token.startswith("rbk_") and len(token) >= 4 + 43  # 256 bits, base64url
    assert len(secret) >= 43
    # The token works and is the court's; the secret is the court's webhook secret.
    me = await api.get(f"/v1/courts/{court['id']}", token)
    assert me.status == 200 and me.body == court
    import uuid

    assert await service.store.courts.webhook_secret(uuid.UUID(court["id"])) == secret
    # Never shown again.
    assert "token" not in me.body and "webhook_secret" not in me.body
    # Same name twice: 409 with a reason.
    again = await api.post("/v1/courts", operator, {"name": "Beijing Chaoyang People's Court"})
    assert again.status == 409 and again.code == "court_exists"
    # Audited in the same transaction.
    audit = await api.get("/v1/audit", operator, params={"entity": f"court:{court['id']}"})
    assert [e["action"] for e in audit.body["items"]] == ["court.create"]


async def test_authentication_and_roles(api: Api, operator: str) -> None:
    r = await api.post("/v1/courts", None, {"name": "X"})
    assert r.status == 401 and r.code == "unauthenticated"
    assert "Authorization" in r.body["error"]["message"]
    r = await api.post("/v1/courts", "rbk_not-a-real-token", {"name": "X"})
    assert r.status == 401 and r.body["error"]["message"] == "unknown or revoked token"
    court = await api.court(operator, "Role Court")
    r = await api.post("/v1/courts", court["token"], {"name": "Y"})
    assert r.status == 403 and r.code == "forbidden"
    switch = await api.post("/v1/tokens", operator, {"role": "switch", "label": "kamailio-1"})
    assert switch.status == 201 and switch.body["role"] == "switch"
    r = await api.get("/v1/listings", switch.body["token"])
    assert r.status == 403
    r = await api.post("/v1/tokens", operator, {"role": "court"})
    assert r.status == 400 and "courts/{id}/tokens" in r.body["error"]["message"]
    r = await api.post("/v1/tokens", court["token"], {"role": "operator"})
    assert r.status == 403


async def test_validation_errors_are_precise(api: Api, operator: str) -> None:
    r = await api.call(
        "POST",
        "/v1/courts",
        operator,
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert r.status == 400 and r.code == "invalid_json"
    r = await api.post("/v1/courts", operator, {"name": ""})
    assert r.status == 400 and r.code == "invalid_field"
    r = await api.post("/v1/courts", operator, {"nmae": "typo"})
    assert r.status == 400 and r.code == "unknown_field" and "nmae" in r.body["error"]["message"]
    r = await api.post("/v1/courts", operator, {"name": 42})
    assert r.status == 400 and "must be a string" in r.body["error"]["message"]


async def test_court_tokens_created_listed_and_revoked(api: Api, operator: str) -> None:
    court = await api.court(operator, "Token Court")
    cid, first = court["court"]["id"], court["token"]
    r = await api.post(f"/v1/courts/{cid}/tokens", first, {"label": "clerk laptop"})
    assert r.status == 201, r.body
    second, second_id = r.body["token"], r.body["id"]
    assert r.body["label"] == "clerk laptop" and r.body["court_id"] == cid
    assert (await api.get(f"/v1/courts/{cid}", second)).status == 200
    listed = await api.get(f"/v1/courts/{cid}/tokens", first)
    assert listed.status == 200 and len(listed.body["items"]) == 2
    assert all("token" not in t for t in listed.body["items"])

    revoked = await api.delete(f"/v1/tokens/{second_id}", first)
    assert revoked.status == 200 and revoked.body["revoked_at"] is not None
    r = await api.get(f"/v1/courts/{cid}", second)
    assert r.status == 401 and r.code == "unauthenticated"
    again = await api.delete(f"/v1/tokens/{second_id}", operator)  # idempotent
    assert again.status == 200 and again.body["revoked_at"] == revoked.body["revoked_at"]
    assert (await api.delete("/v1/tokens/999999", operator)).status == 404
    assert (await api.delete("/v1/tokens/abc", operator)).status == 404

    audit = await api.get("/v1/audit", first, params={"entity": f"token:{second_id}"})
    assert [e["action"] for e in audit.body["items"]] == ["token.create", "token.revoke"]
    assert audit.body["items"][1]["before"]["revoked_at"] is None
    assert audit.body["items"][1]["after"]["revoked_at"] is not None


async def test_operator_lists_courts_with_cursor(api: Api, operator: str) -> None:
    ids = {(await api.court(operator, f"Court {i}"))["court"]["id"] for i in range(5)}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        r = await api.get("/v1/courts", operator, params=params)
        assert r.status == 200
        seen += [c["id"] for c in r.body["items"]]
        cursor = r.body["next_cursor"]
        if cursor is None:
            break
    assert set(seen) == ids and len(seen) == 5
    court = await api.court(operator, "Lonely Court")
    mine = await api.get("/v1/courts", court["token"])
    assert [c["id"] for c in mine.body["items"]] == [court["court"]["id"]]


async def test_a_court_chooses_ringback_mode_for_its_recordings(
    api: Api, operator: str, service: Service
) -> None:
    import uuid

    from ringback.registry.common import Principal

    court = await api.court(operator, "Mode Court")
    other = await api.court(operator, "Other Court")
    cid = court["court"]["id"]
    path = f"/v1/courts/{cid}/call-mode"
    r = await api.put(path, court["token"], {"call_mode": "ringback", "answer_after": "first_play"})
    assert r.status == 200, r.body
    assert r.body == {"court_id": cid, "call_mode": "ringback", "answer_after": "first_play"}
    me = await api.get(f"/v1/courts/{cid}", court["token"])
    assert (me.body["call_mode"], me.body["answer_after"]) == ("ringback", "first_play")
    # Precise refusals; another court cannot choose for this one.
    bad = await api.put(path, court["token"], {"call_mode": "forking"})
    assert bad.status == 400 and "call_mode" in bad.body["error"]["message"]
    assert (await api.put(path, other["token"], {"call_mode": "redirect"})).status == 404
    # Audited with before and after.
    audit = await api.get("/v1/audit", operator, params={"entity": f"court:{cid}"})
    changes = [e for e in audit.body["items"] if e["action"] == "court.call_mode"]
    assert len(changes) == 1
    assert changes[0]["after"]["call_mode"] == "ringback"
    # The call path's map: the court's recordings carry its choice; null resets it.
    who = Principal("test", "operator")
    recording = await service.store.recordings.add(uuid.UUID(cid), "w", b"\0\0" * 8000, who)
    modes = await service.store.courts.call_modes()
    assert modes[recording["id"]] == ("ringback", "first_play")
    assert (await api.put(path, court["token"], {})).status == 200
    assert recording["id"] not in await service.store.courts.call_modes()
