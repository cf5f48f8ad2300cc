"""Listings: `PUT/GET /v1/listings/{number}`, clear/suspend/resume, `GET /v1/listings`.

A court acts on its own listings only; an operator acts for any court (naming it with
`court_id` where a number could be listed by several). A listing is one case of one court:
PUT with a case_ref the court has not listed the number under creates another listing
(201), PUT with the same case_ref updates that listing (200); clear, suspend and resume
take `case_ref` when the court lists the number under several cases.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ringback.api.audit import audit_json
from ringback.api.common import body, decode_cursor, iso, page, query, scope_court
from ringback.api.context import context
from ringback.api.errors import ApiError
from ringback.api.routes import COURT_OR_OPERATOR, Reply, Routes, principal
from ringback.api.schemas.fields import PAGE_DEFAULT
from ringback.api.schemas.listings import (
    HistoryQuery,
    Listing,
    ListingHistory,
    ListingPut,
    Listings,
    ListingSearch,
    ListingsOfNumber,
    NumberPath,
    Reason,
    ResumeReason,
)
from ringback.registry.common import Ambiguous, Conflict, NotFound
from ringback.registry.listing_rules import (
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
        "import_id": None if row.get("import_id") is None else str(row["import_id"]),
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


async def put_listing(request: web.Request) -> web.Response:
    who = principal(request)
    ctx = context(request)
    number = e164_number(ctx.numbering, request.match_info["number"])
    put = await body(request, ListingPut, {"operator": who.role == "operator"})
    court_id: uuid.UUID | None = scope_court(who, put.court_id)
    if court_id is None:
        raise ApiError(400, "missing_field", "court_id is required when an operator lists a number")
    expires_at, recording_id = put.expires_at, put.recording_id
    effective_at, effective_reason = put.effective_at, put.effective_reason

    if await ctx.courts.get(court_id) is None:
        raise ApiError(404, "not_found", "no such court")
    existing = next(
        (
            r
            for r in await ctx.listings.of_number(number, court_id)
            if r["status"] in ("active", "suspended") and r["case_ref"] == put.case_ref
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
            put.case_ref,
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
    who = principal(request)
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


async def listing_history(request: web.Request) -> web.Response:
    """Who did what to a number's listings, when and why (court: its own listings)."""
    who = principal(request)
    ctx = context(request)
    number = e164_number(ctx.numbering, request.match_info["number"])
    case_ref = query(request, HistoryQuery).case_ref
    scope = who.court_id if who.role == "court" else None
    rows = [
        r
        for r in await ctx.listings.of_number(number, scope)
        if case_ref is None or r["case_ref"] == case_ref
    ]
    if not rows:
        raise ApiError(404, "not_found", f"no listing of +{number}")
    ids = sorted(r["id"] for r in rows)
    events = await ctx.audit.listing_history(ids)
    return web.json_response(
        {"number": f"+{number}", "listing_ids": ids, "items": [audit_json(e) for e in events]}
    )


async def _change(
    request: web.Request, new_status: str, model: type[Reason | ResumeReason]
) -> web.Response:
    who = principal(request)
    ctx = context(request)
    listings = ctx.listings
    number = e164_number(ctx.numbering, request.match_info["number"])
    change = await body(request, model)
    reason = change.reason
    case_ref = change.case_ref
    court_id: uuid.UUID | None = scope_court(who, change.court_id)
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
        row = await listings.change_status(
            court_id, number, new_status, who, reason=reason or "", case_ref=case_ref
        )
    except NotFound:
        of_case = f" for case {case_ref!r}" if case_ref is not None else ""
        raise ApiError(404, "not_found", f"no open listing of +{number}{of_case}") from None
    except Ambiguous as exc:
        raise ApiError(
            409, "ambiguous", f"{exc} ({', '.join(repr(c) for c in exc.choices)})"
        ) from None
    except Conflict as exc:
        raise ApiError(409, "invalid_transition", str(exc)) from None
    return web.json_response(listing_json(row))


async def clear_listing(request: web.Request) -> web.Response:
    return await _change(request, "cleared", Reason)


async def suspend_listing(request: web.Request) -> web.Response:
    return await _change(request, "suspended", Reason)


async def resume_listing(request: web.Request) -> web.Response:
    return await _change(request, "active", ResumeReason)


async def search_listings(request: web.Request) -> web.Response:
    who = principal(request)
    params = query(request, ListingSearch)
    court_id = scope_court(who, params.court_id)
    ctx = context(request)
    number = e164_number(ctx.numbering, params.number) if params.number else None
    limit = params.limit or PAGE_DEFAULT
    after = decode_cursor(params.cursor, "listing")
    rows = await ctx.listings.search(
        court_id=court_id,
        status=params.status,
        case_ref=params.case_ref,
        number=number,
        after_id=after,
        limit=limit,
        import_id=params.import_id,
    )
    now = datetime.now(UTC)
    items = [listing_json(r, now) for r in rows]
    return web.json_response(page(items, "listing", limit, rows[-1]["id"] if rows else None))


def register(app: web.Application) -> None:
    r = Routes(app, "listings")
    action: dict[str, Any] = {
        "roles": COURT_OR_OPERATOR,
        "path_params": NumberPath,
        "replies": {200: Reply("the listing after the change", Listing)},
        "errors": {
            400: "invalid number, missing reason or invalid body",
            404: "no open listing of this number (for this court)",
            409: "wrong state for this change, or several courts list it (give court_id)",
        },
    }
    r.add(
        "GET",
        "/v1/listings",
        search_listings,
        "Search listings, oldest first, with cursor paging",
        roles=COURT_OR_OPERATOR,
        query=ListingSearch,
        replies={200: Reply("a page of listings", Listings)},
        errors={400: "invalid parameter or cursor", 404: "another court's court_id"},
    )
    r.add(
        "PUT",
        "/v1/listings/{number}",
        put_listing,
        "List a number for a court, or update the court's open listing",
        description="effective_at defaults to now + listings.notice_period_days; an "
        "earlier effective_at needs effective_reason (audited). expires_at is capped "
        "at listings.max_duration_days from now.",
        roles=COURT_OR_OPERATOR,
        path_params=NumberPath,
        body=ListingPut,
        replies={
            201: Reply("listed", Listing),
            200: Reply("the open listing was updated", Listing),
        },
        errors={
            400: "invalid number or body, with the reason",
            404: "no such court or recording (or another court's)",
            409: "changed concurrently",
        },
    )
    r.add(
        "GET",
        "/v1/listings/{number}",
        get_listing,
        "Listings of a number, newest first (court: its own; operator: all)",
        roles=COURT_OR_OPERATOR,
        path_params=NumberPath,
        replies={200: Reply("the listings", ListingsOfNumber)},
        errors={400: "invalid number", 404: "no listing of this number (for this court)"},
    )
    r.add(
        "GET",
        "/v1/listings/{number}/history",
        listing_history,
        "The audit history of a number's listings (court: its own; operator: all)",
        roles=COURT_OR_OPERATOR,
        path_params=NumberPath,
        query=HistoryQuery,
        replies={200: Reply("oldest first", ListingHistory)},
        errors={400: "invalid number or parameter", 404: "no listing of this number"},
    )
    r.add(
        "POST",
        "/v1/listings/{number}/clear",
        clear_listing,
        "Clear a listing (reason)",
        body=Reason,
        **action,
    )
    r.add(
        "POST",
        "/v1/listings/{number}/suspend",
        suspend_listing,
        "Suspend a listing: dispute or appeal; the warning stops (reason)",
        body=Reason,
        **action,
    )
    r.add(
        "POST",
        "/v1/listings/{number}/resume",
        resume_listing,
        "Resume a suspended listing",
        body=ResumeReason,
        body_required=False,
        **action,
    )
