"""Courts and API tokens: `/v1/courts`, `/v1/courts/{id}/tokens`, `/v1/tokens`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ringback.api.common import (
    body,
    decode_cursor,
    encode_cursor,
    iso,
    path_int,
    path_uuid,
    query,
    scope_court,
)
from ringback.api.context import context
from ringback.api.errors import ApiError
from ringback.api.routes import COURT_OR_OPERATOR, OPERATOR, Reply, Routes, principal
from ringback.api.schemas.courts import (
    CallModeBody,
    CallModeReply,
    Court,
    CourtCreated,
    CourtNew,
    CourtPage,
    CourtPath,
    Courts,
    CourtTokenNew,
    Token,
    TokenCreated,
    TokenNew,
    TokenPath,
    Tokens,
    WebhookSecretRotate,
    WebhookSecretRotated,
)
from ringback.api.schemas.fields import PAGE_DEFAULT
from ringback.registry.common import Conflict, NotFound

ONCE = "shown once only: ringback keeps a hash of the token and cannot show it again"


def court_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "default_recording_id": row["default_recording_id"],
        "call_mode": row["call_mode"],
        "answer_after": row["answer_after"],
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
    new = await body(request, CourtNew)
    try:
        court, token, secret = await context(request).courts.create(new.name, principal(request))
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
    who = principal(request)
    courts = context(request).courts
    if who.role == "court":
        assert who.court_id is not None
        court = await courts.get(who.court_id)
        return web.json_response(
            {"items": [court_json(court)] if court else [], "next_cursor": None}
        )
    params = query(request, CourtPage)
    limit = params.limit or PAGE_DEFAULT
    # Court ids are UUIDs: the cursor carries the last one as a 128-bit integer.
    after = decode_cursor(params.cursor, "court", max_value=2**128)
    after_id = uuid.UUID(int=after) if after else None
    rows = await courts.page(after_id, limit)
    items = [court_json(r) for r in rows]
    next_cursor = None
    if len(rows) == limit:
        next_cursor = encode_cursor("court", rows[-1]["id"].int)
    return web.json_response({"items": items, "next_cursor": next_cursor})


async def get_court(request: web.Request) -> web.Response:
    court_id = scope_court(principal(request), path_uuid(request, "court_id", "court"))
    court = await context(request).courts.get(court_id)
    if court is None:
        raise ApiError(404, "not_found", "no such court")
    return web.json_response(court_json(court))


async def create_court_token(request: web.Request) -> web.Response:
    who = principal(request)
    court_id = scope_court(who, path_uuid(request, "court_id", "court"))
    label = (await body(request, CourtTokenNew)).label or ""
    try:
        row, token = await context(request).tokens.issue("court", court_id, label, who)
    except NotFound:
        raise ApiError(404, "not_found", "no such court") from None
    return web.json_response({**token_json(row), "token": token, "note": ONCE}, status=201)


async def list_court_tokens(request: web.Request) -> web.Response:
    court_id = scope_court(principal(request), path_uuid(request, "court_id", "court"))
    ctx = context(request)
    if await ctx.courts.get(court_id) is None:
        raise ApiError(404, "not_found", "no such court")
    rows = await ctx.tokens.of_court(court_id)
    return web.json_response({"items": [token_json(r) for r in rows], "next_cursor": None})


async def create_token(request: web.Request) -> web.Response:
    """Operator and switch tokens (court tokens: POST /v1/courts/{id}/tokens)."""
    new = await body(request, TokenNew)
    row, token = await context(request).tokens.issue(
        new.role, None, new.label or "", principal(request)
    )
    return web.json_response({**token_json(row), "token": token, "note": ONCE}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    who = principal(request)
    token_id = path_int(request, "token_id", "token")
    scope = who.court_id if who.role == "court" else None
    try:
        row = await context(request).tokens.revoke(token_id, who, court_id=scope)
    except NotFound:
        raise ApiError(404, "not_found", "no such token") from None
    return web.json_response(token_json(row))


async def rotate_webhook_secret(request: web.Request) -> web.Response:
    who = principal(request)
    court_id = scope_court(who, path_uuid(request, "court_id", "court"))
    new = await body(request, WebhookSecretRotate)
    try:
        secret, row = await context(request).courts.rotate_webhook_secret(
            court_id, new.overlap_s, who
        )
    except NotFound:
        raise ApiError(404, "not_found", "no such court") from None
    return web.json_response(
        {
            "court_id": str(court_id),
            "webhook_secret": secret,
            "rotated_at": iso(row["rotated_at"]),
            "previous_valid_until": iso(row["previous_valid_until"]),
            "note": "webhook_secret is shown once: the API cannot show it again",
        }
    )


async def set_call_mode(request: web.Request) -> web.Response:
    who = principal(request)
    court_id = scope_court(who, path_uuid(request, "court_id", "court"))
    choice = await body(request, CallModeBody)
    row = await context(request).courts.set_call_mode(
        court_id, choice.call_mode, choice.answer_after, who
    )
    return web.json_response(
        {
            "court_id": str(court_id),
            "call_mode": row["call_mode"],
            "answer_after": row["answer_after"],
        }
    )


def register(app: web.Application) -> None:
    r = Routes(app, "courts")
    no_court = {404: "no such court (or another court's)"}
    r.add(
        "POST",
        "/v1/courts",
        create_court,
        "Create a court with its first token and webhook secret (operator)",
        roles=OPERATOR,
        body=CourtNew,
        replies={201: Reply("created; secrets are shown once", CourtCreated)},
        errors={400: "invalid body", 409: "a court of that name exists"},
    )
    r.add(
        "GET",
        "/v1/courts",
        list_courts,
        "Courts (operator: all; court: itself)",
        roles=COURT_OR_OPERATOR,
        query=CourtPage,
        replies={200: Reply("a page of courts", Courts)},
        errors={400: "bad limit or cursor"},
    )
    r.add(
        "GET",
        "/v1/courts/{court_id}",
        get_court,
        "One court (operator, or that court)",
        roles=COURT_OR_OPERATOR,
        path_params=CourtPath,
        replies={200: Reply("the court", Court)},
        errors=no_court,
    )
    r.add(
        "POST",
        "/v1/courts/{court_id}/webhook-secret/rotate",
        rotate_webhook_secret,
        "Rotate the court's payment-hook secret (operator, or that court)",
        description="A new secret at once; hooks signed with the previous secret are still "
        "accepted for overlap_s seconds, so the payment system can switch over. Audited "
        "(court.webhook_secret.rotate), without the secrets.",
        roles=COURT_OR_OPERATOR,
        path_params=CourtPath,
        body=WebhookSecretRotate,
        body_required=False,
        replies={200: Reply("the new secret, shown once", WebhookSecretRotated)},
        errors={400: "invalid body", **no_court},
    )
    r.add(
        "PUT",
        "/v1/courts/{court_id}/call-mode",
        set_call_mode,
        "How the court's listed calls go: redirect or ringback mode (null: the deployment's)",
        roles=COURT_OR_OPERATOR,
        path_params=CourtPath,
        body=CallModeBody,
        replies={200: Reply("the court's choice", CallModeReply)},
        errors={400: "invalid body", **no_court},
    )
    r = Routes(app, "tokens")
    r.add(
        "POST",
        "/v1/courts/{court_id}/tokens",
        create_court_token,
        "Issue a court token (operator, or that court)",
        roles=COURT_OR_OPERATOR,
        path_params=CourtPath,
        body=CourtTokenNew,
        body_required=False,
        replies={201: Reply("the token, shown once", TokenCreated)},
        errors={400: "invalid body", **no_court},
    )
    r.add(
        "GET",
        "/v1/courts/{court_id}/tokens",
        list_court_tokens,
        "The court's tokens (never the tokens themselves)",
        roles=COURT_OR_OPERATOR,
        path_params=CourtPath,
        replies={200: Reply("all the court's tokens", Tokens)},
        errors=no_court,
    )
    r.add(
        "POST",
        "/v1/tokens",
        create_token,
        "Issue an operator or switch token (operator)",
        roles=OPERATOR,
        body=TokenNew,
        replies={201: Reply("the token, shown once", TokenCreated)},
        errors={400: "invalid body"},
    )
    r.add(
        "DELETE",
        "/v1/tokens/{token_id}",
        revoke_token,
        "Revoke a token (operator: any; court: its own). Idempotent.",
        roles=COURT_OR_OPERATOR,
        path_params=TokenPath,
        replies={200: Reply("the revoked token", Token)},
        errors={404: "no such token (or another court's)"},
    )
