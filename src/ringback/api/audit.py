"""`GET /v1/audit` (the hash-chained audit trail) and `GET /v1/stats`."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from ringback.api.auth import authenticate
from ringback.api.common import decode_cursor, iso, known_params, page, parse_limit, scope_court
from ringback.api.context import context
from ringback.api.errors import ApiError

_AUDIT_PARAMS = {"limit", "cursor", "entity", "action"}


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
    who = await authenticate(request, "operator", "court")
    known_params(request, _AUDIT_PARAMS)
    limit = parse_limit(request)
    after = decode_cursor(request, "audit")
    entity = request.query.get("entity") or None
    action = request.query.get("action") or None
    court_id = who.court_id if who.role == "court" else None
    rows = await context(request).audit.page(
        court_id=court_id, entity=entity, action=action, after_id=after, limit=limit
    )
    items = [audit_json(r) for r in rows]
    return web.json_response(page(items, "audit", limit, rows[-1]["id"] if rows else None))


async def stats(request: web.Request) -> web.Response:
    who = await authenticate(request, "operator", "court")
    known_params(request, {"court_id"})
    requested = None
    if request.query.get("court_id"):
        try:
            requested = uuid.UUID(request.query["court_id"])
        except ValueError:
            raise ApiError(404, "not_found", "no such court") from None
    court_id = scope_court(who, requested)
    ctx = context(request)
    if court_id is not None and await ctx.courts.get(court_id) is None:
        raise ApiError(404, "not_found", "no such court")
    body = await ctx.listings.stats(court_id)
    return web.json_response({"court_id": None if court_id is None else str(court_id), **body})


def register(app: web.Application) -> None:
    app.router.add_get("/v1/audit", list_audit)
    app.router.add_get("/v1/stats", stats)
