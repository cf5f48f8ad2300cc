"""A listing created or changed by a bulk import names its import; the import's audit row
carries the digest of the exact rows it applied; a listing's history (its own audit events
and its imports') is readable through the API."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from court_api_support import Api, listing

from ringback.registry.imports import applied_digest
from ringback.server import Service

A, B, C = "+8613800138000", "+8613800138001", "+8613800138002"
CASE = "(2026) Jing 0105 Zhi 1"


def _when(text: str) -> str:
    """An API time as the digest writes it: UTC with microseconds."""
    t = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _digest(listings: list[dict[str, Any]]) -> str:
    """The digest of applied rows, recomputed from what the API shows (docs/operations.md)."""
    lines = [
        json.dumps(
            [x["id"], x["number"], x["case_ref"], _when(x["effective_at"]), _when(x["expires_at"])],
            ensure_ascii=False,
        )
        for x in sorted(listings, key=lambda x: x["id"])
    ]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


async def _import(api: Api, token: str, rows: list[tuple[str, str]], days: int) -> Any:
    expires = (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = "number,case_ref,expires_at\n" + "".join(f"{n},{c},{expires}\n" for n, c in rows)
    r = await api.call(
        "POST", "/v1/imports", token, data=text.encode(), headers={"Content-Type": "text/csv"}
    )
    assert r.status == 201 and r.body["status"] == "done", r.body
    return r.body


async def _one(api: Api, token: str, number: str) -> dict[str, Any]:
    r = await api.get(f"/v1/listings/{number}", token)
    assert r.status == 200, r.body
    (item,) = r.body["items"]
    return item  # type: ignore[no-any-return]


async def test_imports_are_attributable_and_a_listings_history_is_readable(
    api: Api, operator: str, service: Service
) -> None:
    court = await api.court(operator, "Import Court")
    token = court["token"]
    r = await api.put(f"/v1/listings/{A}", token, listing(CASE))
    assert r.status == 201 and r.body["import_id"] is None  # listed by hand

    first = await _import(api, token, [(A, CASE), (B, CASE)], 40)  # updates A, lists B
    b_then = await _one(api, token, B)
    second = await _import(api, token, [(B, CASE), (C, CASE)], 50)  # updates B, lists C
    a, b, c = [await _one(api, token, n) for n in (A, B, C)]
    assert a["import_id"] == first["id"]
    assert b["import_id"] == second["id"] and c["import_id"] == second["id"]

    # each import's audit row: the digest of exactly the rows it applied, as they stood
    rows = await service.pool.fetch(
        "SELECT entity, after::text AS after FROM audit_events WHERE action = 'listing.import' "
        "ORDER BY id"
    )
    audits = {r["entity"]: json.loads(r["after"]) for r in rows}
    second_audit = audits[f"import:{second['id']}"]
    assert second_audit["rows_applied"] == 2
    assert second_audit["rows_sha256"] == _digest([b, c])  # B and C as they are now
    first_audit = audits[f"import:{first['id']}"]
    assert first_audit["rows_applied"] == 2
    assert first_audit["rows_sha256"] == _digest([a, b_then])  # A and B as it applied them
    assert first_audit["rows_sha256"] != _digest([a, b])  # B was changed since

    # the history of B: the two imports that wrote it, oldest first
    r = await api.get(f"/v1/listings/{B}/history", token)
    assert r.status == 200, r.body
    assert r.body["listing_ids"] == [b["id"]]
    assert [(e["action"], e["entity"]) for e in r.body["items"]] == [
        ("listing.import", f"import:{first['id']}"),
        ("listing.import", f"import:{second['id']}"),
    ]
    # the history of A: listed by hand (with its reason), then changed by the first import
    await api.post(f"/v1/listings/{A}/suspend", token, {"reason": "disputed by the debtor"})
    r = await api.get(f"/v1/listings/{A}/history", operator, params={"case_ref": CASE})
    actions = [(e["action"], e["entity"]) for e in r.body["items"]]
    assert actions == [
        ("listing.create", f"listing:{a['id']}"),
        ("listing.import", f"import:{first['id']}"),
        ("listing.suspend", f"listing:{a['id']}"),
    ], actions
    assert r.body["items"][2]["after"]["suspend_reason"] == "disputed by the debtor"
    assert all(len(e["hash"]) == 64 for e in r.body["items"])

    # another court sees nothing of it; an unknown case or number is a 404
    other = await api.court(operator, "Other Court")
    for path, params in (
        (f"/v1/listings/{A}/history", None),
        (f"/v1/listings/{A}/history", {"case_ref": "no such case"}),
    ):
        r = await api.get(path, other["token"], params=params)
        assert r.status == 404, r.body
    r = await api.get(f"/v1/listings/{A}/history", token, params={"case_ref": "other"})
    assert r.status == 404
    r = await api.get(f"/v1/listings/{A}/history", token, params={"sort": "x"})
    assert (r.status, r.code) == (400, "invalid_parameter")


async def test_the_digest_written_here_is_the_one_postgresql_writes_of_the_same_rows(
    api: Api, operator: str, service: Service
) -> None:
    """The import writes its digest's lines itself (numpy, `import_digest`); read back, the
    same rows as PostgreSQL writes them (jsonb) give the same digest, whatever the case
    references hold."""
    court = await api.court(operator, "Digest Court")
    expires = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S.123456Z")
    odd = [
        '"say ""no"" to a \\ backslash"',
        '"a\ttab inside"',
        "（2026）京0105执字第1号",
        '"\x01control\x02"',
        '"ends with a backslash \\"',
    ]
    lines = [f"+86139{i:08d},{case},{expires}" for i, case in enumerate(odd)]
    lines += [f"+86138{i:08d},(2026) Jing 0105 Zhi {i},{expires}" for i in range(5000)]
    text = "number,case_ref,expires_at\n" + "\n".join(lines) + "\n"
    r = await api.call(
        "POST",
        "/v1/imports",
        court["token"],
        data=text.encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert r.status == 201 and r.body["status"] == "done", r.body
    after = await service.pool.fetchval(
        "SELECT after::text FROM audit_events WHERE entity = $1", f"import:{r.body['id']}"
    )
    audit = json.loads(after)
    async with service.pool.acquire() as conn:
        rows, digest = await applied_digest(conn, uuid.UUID(r.body["id"]))
    assert rows == audit["rows_applied"] == 5005
    assert audit["rows_sha256"] == digest
    # and by the definition, from what the API shows of the odd ones
    shown = [await _one(api, court["token"], f"+86139{i:08d}") for i in range(len(odd))]
    assert [x["case_ref"] for x in shown] == [
        'say "no" to a \\ backslash',
        "a\ttab inside",
        "（2026）京0105执字第1号",
        "\x01control\x02",
        "ends with a backslash \\",
    ]
