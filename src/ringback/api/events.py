"""Outgoing event webhooks, as operators manage them: `/v1/events/subscriptions` and
`/v1/events/deliveries` (listing, inspecting and retrying deliveries).

How events are written and delivered, and what a receiver gets: `ringback.webhooks`.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from yarl import URL

from ringback.api.auth import authenticate
from ringback.api.common import iso, path_int, path_uuid
from ringback.api.context import context
from ringback.api.errors import ApiError
from ringback.registry.events import DELIVERY_STATUSES
from ringback.registry.outbox import EVENT_TYPES


def _query_int(q: Mapping[str, str], name: str) -> int | None:
    if name not in q:
        return None
    try:
        return min(int(q[name]), 2**63 - 1)
    except ValueError:
        raise ApiError(400, "bad_request", f"{name} must be an integer") from None


def _subscription_json(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "url": row["url"],
        "event_types": row["event_types"],
        "description": row["description"],
        "active": row["active"],
        "created_at": iso(row["created_at"]),
        "disabled_at": iso(row["disabled_at"]),
    }


async def create_subscription(request: web.Request) -> web.Response:
    who = await authenticate(request, "operator")
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "bad_request", "body must be JSON") from None
    if not isinstance(body, dict):
        raise ApiError(422, "invalid", "body must be a JSON object")
    unknown = set(body) - {"url", "event_types", "description", "secret"}
    if unknown:
        raise ApiError(422, "invalid", f"unknown field(s): {', '.join(sorted(unknown))}")
    url = body.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 2000:
        raise ApiError(422, "invalid", "url must be an http:// or https:// URL")
    try:
        parsed = URL(url)
    except ValueError:
        raise ApiError(422, "invalid", "url is not a valid URL") from None
    if not parsed.host:
        raise ApiError(422, "invalid", "url has no host")
    types = body.get("event_types")
    if types is not None:
        if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
            raise ApiError(422, "invalid", "event_types must be a non-empty list of strings")
        bad = [t for t in types if t not in EVENT_TYPES]
        if bad:
            raise ApiError(
                422,
                "invalid",
                f"unknown event type(s) {', '.join(bad)}; known: {', '.join(EVENT_TYPES)}",
            )
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > 500:
        raise ApiError(422, "invalid", "description must be a string of at most 500 characters")
    secret = body.get("secret")
    if secret is None:
        secret = "whsec_" + secrets.token_urlsafe(32)
    elif not isinstance(secret, str) or not 16 <= len(secret) <= 200:
        raise ApiError(422, "invalid", "secret must be 16-200 characters")
    row = await context(request).events.subscribe(url, secret, types, description, who)
    return web.json_response(
        {**_subscription_json(row), "secret": secret},
        status=201,
        headers={"Location": f"/v1/events/subscriptions/{row['id']}"},
    )


async def list_subscriptions(request: web.Request) -> web.Response:
    await authenticate(request, "operator")
    rows = await context(request).events.subscriptions()
    return web.json_response({"subscriptions": [_subscription_json(r) for r in rows]})


async def delete_subscription(request: web.Request) -> web.Response:
    who = await authenticate(request, "operator")
    sid = path_int(request, "id", "subscription")
    row = await context(request).events.disable(sid, who)
    return web.json_response(_subscription_json(row))


def _delivery_json(row: Any) -> dict[str, Any]:
    pending = row["status"] in ("pending", "retrying")
    return {
        "id": str(row["id"]),
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "subscription_id": row["subscription_id"],
        "url": row["url"],
        "status": row["status"],
        "attempts": row["attempts"],
        "next_attempt_at": iso(row["next_attempt_at"]) if pending else None,
        "last_attempt_at": iso(row["last_attempt_at"]),
        "last_status": row["last_status"],
        "last_error": row["last_error"],
        "delivered_at": iso(row["delivered_at"]),
        "created_at": iso(row["created_at"]),
    }


async def list_deliveries(request: web.Request) -> web.Response:
    await authenticate(request, "operator")
    q = request.query
    status = q.get("status")
    if status is not None and status not in DELIVERY_STATUSES:
        raise ApiError(400, "bad_request", f"status must be one of {', '.join(DELIVERY_STATUSES)}")
    subscription_id = _query_int(q, "subscription_id")
    event_id = _query_int(q, "event_id")
    after = None
    if "after" in q:  # cursor: the id of the last delivery of the previous page
        try:
            after = uuid.UUID(q["after"])
        except ValueError:
            raise ApiError(400, "bad_request", "after must be a delivery id") from None
    try:
        limit = min(max(int(q.get("limit", "100")), 1), 1000)
    except ValueError:
        raise ApiError(400, "bad_request", "limit must be an integer") from None
    rows = await context(request).events.deliveries(
        status=status,
        subscription_id=subscription_id,
        event_id=event_id,
        after=after,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return web.json_response(
        {
            "deliveries": [_delivery_json(r) for r in rows],
            "next_after": str(rows[-1]["id"]) if more else None,
        }
    )


async def get_delivery(request: web.Request) -> web.Response:
    await authenticate(request, "operator")
    row = await context(request).events.delivery(path_uuid(request, "id", "delivery"))
    if row is None:
        raise ApiError(404, "not_found", "no such delivery")
    return web.json_response(_delivery_json(row))


async def retry_delivery(request: web.Request) -> web.Response:
    """Send a failed delivery again now (one more attempt beyond the limit)."""
    await authenticate(request, "operator")
    row = await context(request).events.retry(path_uuid(request, "id", "delivery"))
    return web.json_response(_delivery_json(row), status=202)


def register(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/events/subscriptions", create_subscription)
    r.add_get("/v1/events/subscriptions", list_subscriptions)
    r.add_delete("/v1/events/subscriptions/{id}", delete_subscription)
    r.add_get("/v1/events/deliveries", list_deliveries)
    r.add_get("/v1/events/deliveries/{id}", get_delivery)
    r.add_post("/v1/events/deliveries/{id}/retry", retry_delivery)
