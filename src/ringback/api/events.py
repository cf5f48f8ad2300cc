"""Outgoing event webhooks, as operators manage them: `/v1/events/subscriptions` and
`/v1/events/deliveries` (listing, inspecting and retrying deliveries).

How events are written and delivered, and what a receiver gets: `ringback.webhooks`.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from ringback.api.common import body, iso, path_int, path_uuid, query
from ringback.api.context import context
from ringback.api.errors import ApiError
from ringback.api.routes import OPERATOR, Reply, Routes, principal
from ringback.api.schemas.events import (
    Deliveries,
    Delivery,
    DeliveryFilter,
    DeliveryPath,
    SecretRotate,
    SecretRotated,
    Subscription,
    SubscriptionCreated,
    SubscriptionNew,
    SubscriptionPath,
    Subscriptions,
)


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
    new = await body(request, SubscriptionNew)
    refused = await context(request).event_destinations.check_url(new.url)
    if refused is not None:
        raise ApiError(422, "invalid", f"url: {refused}")
    secret = new.secret or "whsec_" + secrets.token_urlsafe(32)
    row = await context(request).events.subscribe(
        new.url, secret, new.event_types, new.description, principal(request)
    )
    return web.json_response(
        {**_subscription_json(row), "secret": secret},
        status=201,
        headers={"Location": f"/v1/events/subscriptions/{row['id']}"},
    )


async def rotate_subscription_secret(request: web.Request) -> web.Response:
    """Sign deliveries with a new secret from now on; the receiver accepts both secrets
    for as long as it chooses (docs/operations.md, "Rotating secrets")."""
    sid = path_int(request, "id", "subscription")
    new = await body(request, SecretRotate)
    secret = new.secret or "whsec_" + secrets.token_urlsafe(32)
    row = await context(request).events.rotate_secret(sid, secret, principal(request))
    return web.json_response(
        {
            **_subscription_json(row),
            "secret": secret,
            "secret_rotated_at": iso(row["secret_rotated_at"]),
        }
    )


async def list_subscriptions(request: web.Request) -> web.Response:
    rows = await context(request).events.subscriptions()
    return web.json_response({"subscriptions": [_subscription_json(r) for r in rows]})


async def delete_subscription(request: web.Request) -> web.Response:
    sid = path_int(request, "id", "subscription")
    row = await context(request).events.disable(sid, principal(request))
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
    params = query(request, DeliveryFilter)
    limit = params.limit
    rows = await context(request).events.deliveries(
        status=params.status,
        subscription_id=params.subscription_id,
        event_id=params.event_id,
        after=params.after,  # cursor: the id of the last delivery of the previous page
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
    row = await context(request).events.delivery(path_uuid(request, "id", "delivery"))
    if row is None:
        raise ApiError(404, "not_found", "no such delivery")
    return web.json_response(_delivery_json(row))


async def retry_delivery(request: web.Request) -> web.Response:
    """Send a failed delivery again now (one more attempt beyond the limit)."""
    row = await context(request).events.retry(path_uuid(request, "id", "delivery"))
    return web.json_response(_delivery_json(row), status=202)


def register(app: web.Application) -> None:
    r = Routes(app, "events")
    delivery: dict[str, Any] = {"roles": OPERATOR, "path_params": DeliveryPath}
    r.add(
        "POST",
        "/v1/events/subscriptions",
        create_subscription,
        "Subscribe a URL to events (operator)",
        description="Event types: listing.created, listing.effective, listing.suspended, "
        "listing.resumed, listing.cleared, warnings.played.hourly, import.completed, "
        "audit.checkpoint (the audit chain's head as HASH@SEQ: keep it outside the database "
        "for `ringback audit verify --checkpoint`). A bulk import's new listings are one "
        "listing.created event per import, {import_id, court_id, listed, actor, listings}, "
        "`listings` being the GET /v1/listings?import_id= page of them, not one event per "
        "listing. The URL may not reach loopback, "
        "link-local or private addresses unless events.allowed_destinations lists them.",
        roles=OPERATOR,
        body=SubscriptionNew,
        replies={201: Reply("the subscription, with its signing secret", SubscriptionCreated)},
        errors={400: "not JSON", 422: "invalid subscription (URL, event types)"},
    )
    r.add(
        "GET",
        "/v1/events/subscriptions",
        list_subscriptions,
        "Outgoing event webhook subscriptions (operator)",
        roles=OPERATOR,
        replies={200: Reply("subscriptions", Subscriptions)},
    )
    r.add(
        "DELETE",
        "/v1/events/subscriptions/{id}",
        delete_subscription,
        "Remove a subscription (operator)",
        roles=OPERATOR,
        path_params=SubscriptionPath,
        replies={200: Reply("the removed subscription", Subscription)},
        errors={404: "no such subscription"},
    )
    r.add(
        "POST",
        "/v1/events/subscriptions/{id}/rotate-secret",
        rotate_subscription_secret,
        "Sign the subscription's deliveries with a new secret (operator)",
        description="Every delivery attempt from now on, retries included, is signed with "
        "the new secret only; receivers should accept the old and the new secret while "
        "they switch over. Audited.",
        roles=OPERATOR,
        path_params=SubscriptionPath,
        body=SecretRotate,
        body_required=False,
        replies={200: Reply("the subscription with its new secret (shown once)", SecretRotated)},
        errors={400: "not JSON", 404: "no such subscription", 422: "invalid secret"},
    )
    r.add(
        "GET",
        "/v1/events/deliveries",
        list_deliveries,
        "Event deliveries and their failures (operator)",
        roles=OPERATOR,
        query=DeliveryFilter,
        replies={200: Reply("deliveries, oldest first", Deliveries)},
        errors={400: "invalid parameter"},
    )
    r.add(
        "GET",
        "/v1/events/deliveries/{id}",
        get_delivery,
        "One delivery with its attempts (operator)",
        replies={200: Reply("the delivery", Delivery)},
        errors={404: "no such delivery"},
        **delivery,
    )
    r.add(
        "POST",
        "/v1/events/deliveries/{id}/retry",
        retry_delivery,
        "Deliver a failed delivery again now (operator)",
        replies={202: Reply("the delivery, queued again", Delivery)},
        errors={404: "no such delivery", 409: "the delivery has not failed"},
        **delivery,
    )
