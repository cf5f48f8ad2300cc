"""Listings: `PUT/GET /v1/listings/{number}`, clear/suspend/resume, `GET /v1/listings`.

A court acts on its own listings only; an operator acts for any court (naming it with
`court_id` where a number could be listed by several).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ringback.api.auth import authenticate
from ringback.api.common import (
    decode_cursor,
    get_int,
    get_str,
    get_time,
    iso,
    json_body,
    known_params,
    page,
    parse_limit,
    parse_uuid,
    scope_court,
)
from ringback.api.context import context
from ringback.api.errors import ApiError
from ringback.registry.common import Conflict, NotFound, Principal
from ringback.registry.listing_rules import (
    STATUSES,
    RuleViolation,
    check_listing_times,
    listing_status,
)
from ringback.registry.numbers import NumberError, NumberingPlan, normalize, parse_e164


def listing_json(row: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    status = listing_status(row, now)
    return {
        "id": row["id"],
        "number": f"+{row['number']}",
        "court_id": str(row["court_id"]),
        "case_ref": row["case_ref"],
        "recording_id": row["recording_id"],
        "status": status,
        # Whether this listing, on its own, makes callers hear the warning now.
        "audible": status == "active" and row["effective_at"] <= now,
        "listed_at": iso(row["listed_at"]),
        "effective_at": iso(row["effective_at"]),
        "effective_reason": row["effective_reason"],
        "expires_at": iso(row["expires_at"]),
        "cleared_at": iso(row["cleared_at"]),
        "clear_reason": row["clear_reason"],
        "suspend_reason": row["suspend_reason"],
        "updated_at": iso(row["updated_at"]),
    }


def e164_number(plan: NumberingPlan, text: str) -> int:
    """A listed number: strict E.164 ('+' and digits only) that the home plan also accepts."""
    try:
        number = parse_e164(text)
        if normalize(text, plan) != number:  # pragma: no cover - defensive
            raise NumberError(f"not a canonical E.164 number: {text!r}")
    except NumberError as exc:
        raise ApiError(
            400, "invalid_number", f"{exc}; write numbers in E.164, e.g. +8613800138000"
        ) from None
    return number


def _body_court(who: Principal, body: dict[str, Any]) -> uuid.UUID | None:
    raw = body.get("court_id")
    requested = None if raw is None else parse_uuid("court_id", raw)
    court_id: uuid.UUID | None = scope_court(who, requested)
    return court_id


async def put_listing(request: web.Request) -> web.Response:
    who = await authenticate(request, "operator", "court")
    ctx = context(request)
    number = e164_number(ctx.numbering, request.match_info["number"])
    body = await json_body(
        request,
        ("case_ref", "expires_at", "recording_id", "effective_at", "effective_reason", "court_id"),
    )
    court_id = _body_court(who, body)
    if court_id is None:
        raise ApiError(400, "missing_field", "court_id is required when an operator lists a number")
    case_ref = get_str(body, "case_ref", required=True)
    assert case_ref is not None
    expires_at = get_time(body, "expires_at", required=True)
    assert expires_at is not None
    recording_id = get_int(body, "recording_id")
    effective_at = get_time(body, "effective_at", required=False)
    effective_reason = get_str(body, "effective_reason", required=False, max_len=1000)

    if await ctx.courts.get(court_id) is None:
        raise ApiError(404, "not_found", "no such court")
    existing = next(
        (
            r
            for r in await ctx.listings.of_number(number, court_id)
            if r["status"] in ("active", "suspended")
        ),
        None,
    )
    cfg = ctx.listing_rules
    try:
        times = check_listing_times(
            datetime.now(UTC),
            notice_period_days=cfg.notice_period_days,
            max_duration_days=cfg.max_duration_days,
            expires_at=expires_at,
            effective_at=effective_at,
            effective_reason=effective_reason,
            existing_effective_at=existing["effective_at"] if existing is not None else None,
        )
    except RuleViolation as exc:
        raise ApiError(400, exc.code, exc.message) from None
    try:
        row = await ctx.listings.put(
            court_id,
            number,
            case_ref,
            expires_at,
            who,
            effective_at=times.effective_at,
            recording_id=recording_id,
            effective_reason=times.effective_reason,
            default_effective_at=times.notice_end,
        )
    except NotFound:
        raise ApiError(
            404, "not_found", f"recording_id: no recording {recording_id} of this court"
        ) from None
    created = bool(row["created"])
    return web.json_response(
        listing_json(row),
        status=201 if created else 200,
        headers={"Location": f"/v1/listings/+{number}"} if created else None,
    )


async def get_listing(request: web.Request) -> web.Response:
    who = await authenticate(request, "operator", "court")
    ctx = context(request)
    number = e164_number(ctx.numbering, request.match_info["number"])
    scope = who.court_id if who.role == "court" else None
    rows = await ctx.listings.of_number(number, scope)
    if not rows:
        raise ApiError(404, "not_found", f"no listing of +{number}")
    now = datetime.now(UTC)
    body: dict[str, Any] = {"number": f"+{number}", "items": [listing_json(r, now) for r in rows]}
    if who.role == "operator":
        body["announced"] = ctx.index.lookup(number, time.time()) is not None
    return web.json_response(body)


async def _change(request: web.Request, new_status: str, reason_required: bool) -> web.Response:
    who = await authenticate(request, "operator", "court")
    ctx = context(request)
    listings = ctx.listings
    number = e164_number(ctx.numbering, request.match_info["number"])
    body = await json_body(request, ("reason", "court_id"))
    reason = get_str(body, "reason", required=reason_required, max_len=1000)
    court_id = _body_court(who, body)
    if court_id is None:
        courts = await listings.open_courts(number)
        if not courts:
            raise ApiError(404, "not_found", f"no open listing of +{number}")
        if len(courts) > 1:
            raise ApiError(
                409,
                "ambiguous",
                f"+{number} is listed by {len(courts)} courts; give court_id "
                f"({', '.join(str(c) for c in courts)})",
            )
        court_id = courts[0]
    try:
        row = await listings.change_status(court_id, number, new_status, who, reason=reason or "")
    except NotFound:
        raise ApiError(404, "not_found", f"no open listing of +{number}") from None
    except Conflict as exc:
        raise ApiError(409, "invalid_transition", str(exc)) from None
    return web.json_response(listing_json(row))


async def clear_listing(request: web.Request) -> web.Response:
    return await _change(request, "cleared", reason_required=True)


async def suspend_listing(request: web.Request) -> web.Response:
    return await _change(request, "suspended", reason_required=True)


async def resume_listing(request: web.Request) -> web.Response:
    return await _change(request, "active", reason_required=False)


_SEARCH_PARAMS = {"status", "case_ref", "court_id", "number", "limit", "cursor"}


async def search_listings(request: web.Request) -> web.Response:
    who = await authenticate(request, "operator", "court")
    q = request.query
    known_params(request, _SEARCH_PARAMS)
    status = q.get("status") or None
    if status is not None and status not in STATUSES:
        raise ApiError(
            400,
            "invalid_parameter",
            f"status: must be one of {', '.join(STATUSES)}, got {status!r}",
        )
    requested = None
    if q.get("court_id"):
        try:
            requested = uuid.UUID(q["court_id"])
        except ValueError:
            raise ApiError(
                400, "invalid_parameter", f"court_id: not a UUID: {q['court_id']!r}"
            ) from None
    court_id = scope_court(who, requested)
    ctx = context(request)
    number = e164_number(ctx.numbering, q["number"]) if q.get("number") else None
    case_ref = q.get("case_ref") or None
    limit = parse_limit(request)
    after = decode_cursor(request, "listing")
    rows = await ctx.listings.search(
        court_id=court_id,
        status=status,
        case_ref=case_ref,
        number=number,
        after_id=after,
        limit=limit,
    )
    now = datetime.now(UTC)
    items = [listing_json(r, now) for r in rows]
    return web.json_response(page(items, "listing", limit, rows[-1]["id"] if rows else None))


def register(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/listings", search_listings)
    r.add_put("/v1/listings/{number}", put_listing)
    r.add_get("/v1/listings/{number}", get_listing)
    r.add_post("/v1/listings/{number}/clear", clear_listing)
    r.add_post("/v1/listings/{number}/suspend", suspend_listing)
    r.add_post("/v1/listings/{number}/resume", resume_listing)
