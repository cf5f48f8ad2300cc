"""Listings over HTTP: validation, notice period, status changes, search, two courts."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from court_api_support import (
    Api,
    add_recording,
    announced,
    caught_up,
    days,
    listing,
    seconds,
    until,
)

from ringback.server import Service

N1 = 8613800138000
N2 = 8613900139000
N3 = 8613700137000


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("13800138000", "E.164"),
        ("8613800138000", "E.164"),
        ("+86 138 0013 8000", "E.164"),
        ("+86-138-0013-8000", "E.164"),
        ("+8610086", "E.164"),  # too short for E.164's minimum
        ("+86100861", "too short"),  # a service-length number in the home plan
        ("+1234567890123456", "E.164"),  # 16 digits
        ("+0861380013800", "E.164"),
        ("tel:+8613800138000", "E.164"),
    ],
)
async def test_put_rejects_numbers_not_in_e164(
    api: Api, operator: str, number: str, reason: str
) -> None:
    court = await api.court(operator, "Numbers Court")
    from urllib.parse import quote

    r = await api.put(f"/v1/listings/{quote(number, safe='+:')}", court["token"], listing())
    assert r.status == 400, r.body
    assert r.code == "invalid_number"
    assert reason in r.body["error"]["message"]


async def test_put_validates_the_body(api: Api, operator: str, service: Service) -> None:
    court = await api.court(operator, "Validation Court")
    token = court["token"]
    path = f"/v1/listings/+{N1}"
    cases = [
        ({"expires_at": days(30)}, "missing_field", "case_ref is required"),
        ({"case_ref": "C-1"}, "missing_field", "expires_at is required"),
        ({"case_ref": "C-1", "expires_at": "next week"}, "invalid_field", "RFC 3339"),
        ({"case_ref": "C-1", "expires_at": "2026-12-01T00:00:00"}, "invalid_field", "timezone"),
        ({"case_ref": "C-1", "expires_at": days(-1)}, "invalid_field", "in the past"),
        ({"case_ref": "C-1", "expires_at": days(400)}, "expiry_too_late", "at most 365 days"),
        ({"case_ref": "x" * 201, "expires_at": days(30)}, "invalid_field", "at most 200"),
        ({"case_ref": "C-1", "expires_at": days(30), "extra": 1}, "unknown_field", "extra"),
        (
            {"case_ref": "C-1", "expires_at": days(30), "recording_id": "7"},
            "invalid_field",
            "integer",
        ),
        (
            {"case_ref": "C-1", "expires_at": days(30), "effective_at": seconds(60)},
            "effective_reason_required",
            "3-day notice period",
        ),
        (
            {"case_ref": "C-1", "expires_at": days(4), "effective_at": days(5)},
            "invalid_field",
            "must be after effective_at",
        ),
        (
            # With the default notice period the listing would start after it ends.
            {"case_ref": "C-1", "expires_at": days(1)},
            "invalid_field",
            "must be after effective_at",
        ),
        (
            {
                "case_ref": "C-1",
                "expires_at": days(30),
                "effective_at": days(-1),
                "effective_reason": "x",
            },
            "invalid_field",
            "effective_at",
        ),
    ]
    for body, code, text in cases:
        r = await api.put(path, token, body)
        assert r.status == 400, (body, r.body)
        assert r.code == code, (body, r.body)
        assert text in r.body["error"]["message"], (body, r.body)
    # Nothing was written.
    count = await service.store.pool.fetchval("SELECT count(*) FROM listings")
    assert count == 0


async def test_default_notice_period_keeps_a_new_listing_silent(
    api: Api, operator: str, service: Service
) -> None:
    court = await api.court(operator, "Notice Court")
    before = datetime.now(UTC)
    r = await api.put(
        f"/v1/listings/+{N1}", court["token"], {"case_ref": "C-1", "expires_at": days(30)}
    )
    assert r.status == 201, r.body
    assert r.headers["Location"] == f"/v1/listings/+{N1}"
    body = r.body
    assert body["number"] == f"+{N1}" and body["status"] == "active"
    assert body["audible"] is False and body["effective_reason"] is None
    effective = datetime.fromisoformat(body["effective_at"])
    assert abs(effective - (before + timedelta(days=3))) < timedelta(seconds=10)
    # The index holds it, but the SIP path does not announce it before effective_at.
    assert await until(lambda: service.index.get(N1) is not None)
    assert not announced(service, N1)
    assert service.index.lookup(N1, effective.timestamp() + 1) is not None


async def test_early_effective_at_needs_a_reason_which_is_audited(
    api: Api, operator: str, service: Service
) -> None:
    court = await api.court(operator, "Early Court")
    token = court["token"]
    reason = "debtor absconded; court ordered immediate effect"
    r = await api.put(
        f"/v1/listings/+{N1}",
        token,
        {
            "case_ref": "C-2",
            "expires_at": days(30),
            "effective_at": seconds(2),
            "effective_reason": reason,
        },
    )
    assert r.status == 201, r.body
    assert r.body["effective_reason"] == reason and r.body["audible"] is False
    # Silent until effective_at, then announced — with no further change to the database.
    assert await until(lambda: service.index.get(N1) is not None)
    assert not announced(service, N1)
    look = await api.get(f"/v1/lookup/+{N1}", operator)
    assert look.status == 200 and look.body["listed"] is False
    await asyncio.sleep(
        max(0.0, datetime.fromisoformat(r.body["effective_at"]).timestamp() - time.time()) + 1.0
    )
    assert announced(service, N1)
    look = await api.get(f"/v1/lookup/+{N1}", operator)
    assert look.body["listed"] is True
    audit = await api.get("/v1/audit", token, params={"entity": f"listing:{r.body['id']}"})
    (event,) = audit.body["items"]
    assert event["action"] == "listing.create"
    assert event["after"]["effective_reason"] == reason
    assert event["actor"].startswith("token:")


async def test_put_again_updates_and_keeps_effective_at(api: Api, operator: str) -> None:
    court = await api.court(operator, "Update Court")
    token = court["token"]
    first = await api.put(f"/v1/listings/+{N1}", token, listing("C-3"))
    assert first.status == 201
    second = await api.put(
        f"/v1/listings/+{N1}", token, {"case_ref": "C-3", "expires_at": days(60)}
    )
    assert second.status == 200, second.body
    assert second.body["id"] == first.body["id"]
    assert second.body["effective_at"] == first.body["effective_at"]
    assert second.body["expires_at"] != first.body["expires_at"]
    # Sending back the same effective_at needs no new reason.
    third = await api.put(
        f"/v1/listings/+{N1}",
        token,
        {"case_ref": "C-3", "expires_at": days(60), "effective_at": first.body["effective_at"]},
    )
    assert third.status == 200, third.body
    audit = await api.get("/v1/audit", token, params={"entity": f"listing:{first.body['id']}"})
    assert [e["action"] for e in audit.body["items"]] == [
        "listing.create",
        "listing.update",
        "listing.update",
    ]
    assert (
        audit.body["items"][1]["before"]["expires_at"]
        != audit.body["items"][1]["after"]["expires_at"]
    )


async def test_a_second_case_at_the_same_court_is_a_second_listing(
    api: Api, operator: str, service: Service
) -> None:
    court = await api.court(operator, "Two Cases Court")
    token = court["token"]
    path = f"/v1/listings/+{N1}"
    first = await api.put(path, token, listing("C-1"))
    second = await api.put(path, token, listing("C-2"))
    assert first.status == 201 and second.status == 201, second.body
    assert second.body["id"] != first.body["id"] and second.body["case_ref"] == "C-2"
    again = await api.put(path, token, {"case_ref": "C-2", "expires_at": days(60)})
    assert again.status == 200 and again.body["id"] == second.body["id"]  # same case: update
    got = await api.get(path, token)
    assert {i["case_ref"]: i["id"] for i in got.body["items"]} == {
        "C-1": first.body["id"],
        "C-2": second.body["id"],
    }

    def heard() -> int | None:
        entry = service.index.lookup(N1, time.time())
        return None if entry is None else entry.listing_id

    assert await until(lambda: heard() == first.body["id"])  # the first-listed case
    r = await api.post(path + "/suspend", token, {"reason": "appeal"})
    assert r.status == 409 and r.code == "ambiguous", r.body
    assert "'C-1'" in r.body["error"]["message"] and "'C-2'" in r.body["error"]["message"]
    r = await api.post(path + "/suspend", token, {"reason": "appeal", "case_ref": "C-9"})
    assert r.status == 404 and r.code == "not_found"
    r = await api.post(path + "/suspend", token, {"reason": "appeal", "case_ref": "C-1"})
    assert r.status == 200 and r.body["id"] == first.body["id"]
    assert await until(lambda: heard() == second.body["id"])
    r = await api.post(path + "/clear", token, {"reason": "paid", "case_ref": "C-2"})
    assert r.status == 200 and r.body["id"] == second.body["id"]
    assert await until(lambda: heard() is None)
    r = await api.post(path + "/resume", token)  # one open listing left: no case_ref needed
    assert r.status == 200 and r.body["id"] == first.body["id"]
    assert await until(lambda: heard() == first.body["id"])


async def test_suspend_resume_clear(api: Api, operator: str, service: Service) -> None:
    court = await api.court(operator, "Status Court")
    token = court["token"]
    path = f"/v1/listings/+{N1}"
    assert (await api.put(path, token, listing("C-4"))).status == 201
    assert await until(lambda: announced(service, N1))

    r = await api.post(path + "/suspend", token, {})
    assert r.status == 400 and r.body["error"]["message"] == "reason is required"
    r = await api.post(path + "/suspend", token, {"reason": "appeal filed"})
    assert r.status == 200 and r.body["status"] == "suspended"
    assert r.body["suspend_reason"] == "appeal filed" and r.body["audible"] is False
    assert await until(lambda: not announced(service, N1))
    r = await api.post(path + "/suspend", token, {"reason": "again"})
    assert r.status == 409 and r.code == "invalid_transition"

    r = await api.post(path + "/resume", token)
    assert r.status == 200 and r.body["status"] == "active" and r.body["suspend_reason"] is None
    assert await until(lambda: announced(service, N1))
    r = await api.post(path + "/resume", token)
    assert r.status == 409

    r = await api.post(path + "/clear", token, {})
    assert r.status == 400
    r = await api.post(path + "/clear", token, {"reason": "settled out of court"})
    assert r.status == 200 and r.body["status"] == "cleared"
    assert r.body["clear_reason"] == "settled out of court" and r.body["cleared_at"]
    assert await until(lambda: not announced(service, N1))
    for action in ("clear", "suspend", "resume"):
        r = await api.post(f"{path}/{action}", token, {"reason": "x"})
        assert r.status == 404 and r.code == "not_found", action

    got = await api.get(path, token)
    assert got.status == 200 and [i["status"] for i in got.body["items"]] == ["cleared"]
    audit = await api.get(
        "/v1/audit", token, params={"entity": f"listing:{got.body['items'][0]['id']}"}
    )
    assert [e["action"] for e in audit.body["items"]] == [
        "listing.create",
        "listing.suspend",
        "listing.resume",
        "listing.clear",
    ]
    # Listing again after a clear is a new listing.
    again = await api.put(path, token, listing("C-4"))
    assert again.status == 201 and again.body["id"] != got.body["items"][0]["id"]


async def test_recording_must_be_the_courts_own(api: Api, operator: str, service: Service) -> None:
    a = await api.court(operator, "Court A")
    b = await api.court(operator, "Court B")
    mine = await add_recording(service, a["court"]["id"])
    theirs = await add_recording(service, b["court"]["id"])
    r = await api.put(f"/v1/listings/+{N1}", a["token"], listing(recording_id=theirs))
    assert r.status == 404 and "recording_id" in r.body["error"]["message"]
    r = await api.put(f"/v1/listings/+{N1}", a["token"], listing(recording_id=999999))
    assert r.status == 404
    r = await api.put(f"/v1/listings/+{N1}", a["token"], listing(recording_id=mine))
    assert r.status == 201 and r.body["recording_id"] == mine
    assert await until(lambda: announced(service, N1))
    entry = service.index.lookup(N1, time.time())
    assert entry is not None and entry.recording_id == mine


async def test_operator_lists_on_behalf_of_a_court(
    api: Api, operator: str, service: Service
) -> None:
    court = await api.court(operator, "Behalf Court")
    cid = court["court"]["id"]
    r = await api.put(f"/v1/listings/+{N1}", operator, listing())
    assert r.status == 400 and "court_id is required" in r.body["error"]["message"]
    r = await api.put(
        f"/v1/listings/+{N1}", operator, listing(court_id="00000000-0000-0000-0000-000000000000")
    )
    assert r.status == 404
    r = await api.put(f"/v1/listings/+{N1}", operator, listing(court_id=cid))
    assert r.status == 201 and r.body["court_id"] == cid
    got = await api.get(f"/v1/listings/+{N1}", court["token"])
    assert got.status == 200 and got.body["items"][0]["id"] == r.body["id"]
    # Operator acts without court_id when only one court lists the number.
    r = await api.post(f"/v1/listings/+{N1}/suspend", operator, {"reason": "carrier complaint"})
    assert r.status == 200 and r.body["status"] == "suspended"


async def test_one_case_several_numbers_and_search_paging(api: Api, operator: str) -> None:
    a = await api.court(operator, "Search Court A")
    b = await api.court(operator, "Search Court B")
    numbers = [N1 + i for i in range(5)]
    for n in numbers:
        assert (await api.put(f"/v1/listings/+{n}", a["token"], listing("CASE-MANY"))).status == 201
    assert (await api.put(f"/v1/listings/+{N2}", a["token"], listing("CASE-OTHER"))).status == 201
    assert (await api.put(f"/v1/listings/+{N3}", b["token"], listing("CASE-MANY"))).status == 201
    await api.post(f"/v1/listings/+{numbers[0]}/suspend", a["token"], {"reason": "appeal"})

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"case_ref": "CASE-MANY", "limit": "2"}
        if cursor:
            params["cursor"] = cursor
        r = await api.get("/v1/listings", a["token"], params=params)
        assert r.status == 200, r.body
        seen += [item["number"] for item in r.body["items"]]
        pages += 1
        cursor = r.body["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"+{n}" for n in numbers] and pages == 3  # court B's listing not included

    r = await api.get("/v1/listings", a["token"], params={"status": "suspended"})
    assert [i["number"] for i in r.body["items"]] == [f"+{numbers[0]}"]
    r = await api.get("/v1/listings", operator, params={"case_ref": "CASE-MANY"})
    assert len(r.body["items"]) == 6 and r.body["next_cursor"] is None
    r = await api.get(
        "/v1/listings", operator, params={"court_id": b["court"]["id"], "number": f"+{N3}"}
    )
    assert [i["number"] for i in r.body["items"]] == [f"+{N3}"]

    for params, code in [
        ({"status": "gone"}, "invalid_parameter"),
        ({"limit": "0"}, "invalid_parameter"),
        ({"limit": "5000"}, "invalid_parameter"),
        ({"cursor": "garbage"}, "invalid_cursor"),
        ({"court_id": "nope"}, "invalid_parameter"),
        ({"number": "123"}, "invalid_number"),
        ({"sort": "id"}, "invalid_parameter"),
    ]:
        r = await api.get("/v1/listings", operator, params=params)
        assert r.status == 400 and r.code == code, (params, r.body)
    # An audit cursor is not a listing cursor.
    audit = await api.get("/v1/audit", operator, params={"limit": "1"})
    r = await api.get("/v1/listings", operator, params={"cursor": audit.body["next_cursor"]})
    assert r.status == 400 and r.code == "invalid_cursor"


async def test_a_number_listed_by_two_courts_stays_announced_until_both_clear(
    api: Api, operator: str, service: Service
) -> None:
    a = await api.court(operator, "First Court")
    b = await api.court(operator, "Second Court")
    rec_a = await add_recording(service, a["court"]["id"], "A's warning")
    rec_b = await add_recording(service, b["court"]["id"], "B's warning")
    path = f"/v1/listings/+{N1}"
    ra = await api.put(path, a["token"], listing("A-1", recording_id=rec_a))
    rb = await api.put(path, b["token"], listing("B-1", recording_id=rec_b))
    assert ra.status == 201 and rb.status == 201
    assert await until(lambda: announced(service, N1))
    entry = service.index.lookup(N1, time.time())
    assert entry is not None and entry.recording_id == rec_a  # the first-listed court's

    # Each court sees only its own listing; the operator sees both.
    got_a = await api.get(path, a["token"])
    assert [i["court_id"] for i in got_a.body["items"]] == [a["court"]["id"]]
    assert "announced" not in got_a.body
    got_op = await api.get(path, operator)
    assert len(got_op.body["items"]) == 2 and got_op.body["announced"] is True
    r = await api.post(path + "/clear", operator, {"reason": "x"})
    assert r.status == 409 and r.code == "ambiguous"

    r = await api.post(path + "/clear", a["token"], {"reason": "paid to court A"})
    assert r.status == 200
    assert await caught_up(service)  # court A's clearing has reached the index
    assert announced(service, N1)  # court B still lists it
    assert await until(
        lambda: (e := service.index.lookup(N1, time.time())) is not None and e.recording_id == rec_b
    )
    look = await api.get(f"/v1/lookup/+{N1}", operator)
    assert look.body["listed"] is True and look.body["recording_id"] == rec_b

    r = await api.post(
        path + "/clear", operator, {"reason": "paid to court B", "court_id": b["court"]["id"]}
    )
    assert r.status == 200
    assert await until(lambda: not announced(service, N1))
    look = await api.get(f"/v1/lookup/+{N1}", operator)
    assert look.body == {"number": f"+{N1}", "listed": False}
