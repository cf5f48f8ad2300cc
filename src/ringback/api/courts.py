"""Courts and API tokens: `/v1/courts`, `/v1/courts/{id}/tokens`, `/v1/tokens`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ringback.api.auth import authenticate
from ringback.api.common import (
    decode_cursor,
    encode_cursor,
    get_str,
    iso,
    json_body,
    parse_limit,
    path_int,
    path_uuid,
    scope_court,
)
from ringback.api.context import context
from ringback.api.errors import ApiError
from ringback.registry.common import Conflict, NotFound

ONCE = "shown once only: ringback keeps a hash of the token and cannot show it again"


def court_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "default_recording_id": row["default_recording_id"],
        "created_at": iso(row["created_at"]),
    }


def token_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "prefix": row["prefix"],
        "role": row["role"],
        "court_id": None if row["court_id"] is None else str(row["court_id"]),
        "label": row["label"],
        "created_at": iso(row["created_at"]),
        "revoked_at": iso(row["revoked_at"]),
    }


async def create_court(request: web.Request) -> web.Response:
    who = await authenticate(request, "operator")
    body = await json_body(request, ("name",))
    name = get_str(body, "name", required=True)
    assert name is not None
    try:
        court, token, secret = await context(request).courts.create(name, who)
    except Conflict as exc:
        raise ApiError(409, "court_exists", str(exc)) from None
    return web.json_response(
        {
            "court": court_json(court),
            "token": token,
            "webhook_secret": secret,
            "note": "token and webhook_secret are " + ONCE,
        },
        status=201,
    )


async def list_courts(request: web.Request) -> web.Response:
    who = await authenticate(request, "operator", "court")
    courts = context(request).courts
    if who.role == "court":
        assert who.court_id is not None
        court = await courts.get(who.court_id)
        return web.json_response(
            {"items": [court_json(court)] if court else [], "next_cursor": None}
        )
    limit = parse_limit(request)
    # Court ids are UUIDs: the cursor carries the last one as a 128-bit integer.
    after = decode_cursor(request, "court", max_value=2**128)
    after_id = uuid.UUID(int=after) if after else None
    rows = await courts.page(after_id, limit)
    items = [court_json(r) for r in rows]
    next_cursor = None
    if len(rows) == limit:
        next_cursor = encode_cursor("court", rows[-1]["id"].int)
    return web.json_response({"items": items, "next_cursor": next_cursor})


async def get_court(request: web.Request) -> web.Response:
    who = await authenticate(request, "operator", "court")
    court_id = scope_court(who, path_uuid(request, "court_id", "court"))
    court = await context(request).courts.get(court_id)
    if court is None:
        raise ApiError(404, "not_found", "no such court")
    return web.json_response(court_json(court))


async def create_court_token(request: web.Request) -> web.Response:
    who = await authenticate(request, "operator", "court")
    court_id = scope_court(who, path_uuid(request, "court_id", "court"))
    body = await json_body(request, ("label",))
    label = get_str(body, "label", required=False) or ""
    try:
        row, token = await context(request).tokens.issue("court", court_id, label, who)
    except NotFound:
        raise ApiError(404, "not_found", "no such court") from None
    return web.json_response({**token_json(row), "token": token, "note": ONCE}, status=201)


async def list_court_tokens(request: web.Request) -> web.Response:
    who = await authenticate(request, "operator", "court")
    court_id = scope_court(who, path_uuid(request, "court_id", "court"))
    ctx = context(request)
    if await ctx.courts.get(court_id) is None:
        raise ApiError(404, "not_found", "no such court")
    rows = await ctx.tokens.of_court(court_id)
    return web.json_response({"items": [token_json(r) for r in rows], "next_cursor": None})


async def create_token(request: web.Request) -> web.Response:
    """Operator and switch tokens (court tokens: POST /v1/courts/{id}/tokens)."""
    who = await authenticate(request, "operator")
    body = await json_body(request, ("role", "label"))
    role = get_str(body, "role", required=True)
    if role not in ("operator", "switch"):
        raise ApiError(
            400,
            "invalid_field",
            f"role: must be operator or switch, got {role!r} "
            "(court tokens: POST /v1/courts/{id}/tokens)",
        )
    label = get_str(body, "label", required=False) or ""
    row, token = await context(request).tokens.issue(role, None, label, who)
    return web.json_response({**token_json(row), "token": token, "note": ONCE}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    who = await authenticate(request, "operator", "court")
    token_id = path_int(request, "token_id", "token")
    scope = who.court_id if who.role == "court" else None
    try:
        row = await context(request).tokens.revoke(token_id, who, court_id=scope)
    except NotFound:
        raise ApiError(404, "not_found", "no such token") from None
    return web.json_response(token_json(row))


def register(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/courts", create_court)
    r.add_get("/v1/courts", list_courts)
    r.add_get("/v1/courts/{court_id}", get_court)
    r.add_post("/v1/courts/{court_id}/tokens", create_court_token)
    r.add_get("/v1/courts/{court_id}/tokens", list_court_tokens)
    r.add_post("/v1/tokens", create_token)
    r.add_delete("/v1/tokens/{token_id}", revoke_token)
