"""`GET /v1/audit` (the hash-chained audit trail) and `GET /v1/stats`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ringback.api.common import decode_cursor, iso, page, query, scope_court
from ringback.api.context import context
from ringback.api.errors import ApiError
from ringback.api.routes import COURT_OR_OPERATOR, Reply, Routes, principal
from ringback.api.schemas.audit import AuditEvents, AuditQuery, Stats, StatsQuery
from ringback.api.schemas.fields import PAGE_DEFAULT


def audit_json(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "at": iso(row["at"]),
        "actor": row["actor"],
        "court_id": None if row["court_id"] is None else str(row["court_id"]),
        "action": row["action"],
        "entity": row["entity"],
        "before": row["before"],
        "after": row["after"],
        "prev_hash": bytes(row["prev_hash"]).hex(),
        "hash": bytes(row["hash"]).hex(),
    }


async def list_audit(request: web.Request) -> web.Response:
    """Oldest first; a court sees only events about its own data."""
    who = principal(request)
    params = query(request, AuditQuery)
    limit = params.limit or PAGE_DEFAULT
    after = decode_cursor(params.cursor, "audit")
    court_id = who.court_id if who.role == "court" else None
    rows = await context(request).audit.page(
        court_id=court_id,
        entity=params.entity,
        action=params.action,
        after_id=after,
        limit=limit,
    )
    items = [audit_json(r) for r in rows]
    return web.json_response(page(items, "audit", limit, rows[-1]["id"] if rows else None))


async def stats(request: web.Request) -> web.Response:
    court_id = scope_court(principal(request), query(request, StatsQuery).court_id)
    ctx = context(request)
    if court_id is not None and await ctx.courts.get(court_id) is None:
        raise ApiError(404, "not_found", "no such court")
    body = await ctx.listings.stats(court_id)
    return web.json_response({"court_id": None if court_id is None else str(court_id), **body})


def register(app: web.Application) -> None:
    r = Routes(app, "audit")
    r.add(
        "GET",
        "/v1/audit",
        list_audit,
        "The audit trail, oldest first (court: its own events)",
        roles=COURT_OR_OPERATOR,
        query=AuditQuery,
        replies={200: Reply("a page of events", AuditEvents)},
        errors={400: "invalid parameter or cursor"},
    )
    r.add(
        "GET",
        "/v1/stats",
        stats,
        "Listings by status and announcements by outcome",
        roles=COURT_OR_OPERATOR,
        query=StatsQuery,
        replies={200: Reply("counts", Stats)},
        errors={400: "invalid parameter", 404: "no such court (or another court's)"},
    )
