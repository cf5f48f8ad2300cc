"""Outgoing event webhooks: subscriptions and deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field, PlainValidator, StringConstraints, WithJsonSchema
from yarl import URL

from ringback.api.schemas.fields import (
    MAX_ID,
    FilterQuery,
    FormBody,
    PathParams,
    ReplyModel,
    Uuid,
    bounds,
    clamp,
    invalid,
)
from ringback.registry.events import DELIVERY_STATUSES
from ringback.registry.outbox import EVENT_TYPES


# ------------------------------------------------------------------- requests
def _url(value: Any) -> str:
    if (
        not isinstance(value, str)
        or not value.startswith(("http://", "https://"))
        or len(value) > 2000
    ):
        raise invalid("must be an http:// or https:// URL")
    try:
        parsed = URL(value)
    except ValueError:
        raise invalid("not a valid URL") from None
    if not parsed.host:
        raise invalid("has no host")
    return value


def _event_types(value: list[str]) -> list[str]:
    bad = [t for t in value if t not in EVENT_TYPES]
    if bad:
        raise invalid(f"unknown event type(s) {', '.join(bad)}; known: {', '.join(EVENT_TYPES)}")
    return value


def _delivery_status(value: Any) -> str:
    if value not in DELIVERY_STATUSES:
        raise invalid(f"must be one of {', '.join(DELIVERY_STATUSES)}")
    return str(value)


class SubscriptionNew(FormBody):
    url: Annotated[
        str,
        PlainValidator(_url),
        WithJsonSchema({"type": "string", "format": "uri", "maxLength": 2000}),
    ] = Field(description="http:// or https://")
    event_types: (
        Annotated[
            list[str],
            Field(min_length=1),
            AfterValidator(_event_types),
            WithJsonSchema(
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "enum": list(EVENT_TYPES)},
                }
            ),
        ]
        | None
    ) = Field(None, description="default: every event type")
    description: Annotated[str, StringConstraints(max_length=500)] = ""
    secret: Annotated[str, StringConstraints(min_length=16, max_length=200)] | None = Field(
        None, description="the HMAC key of the deliveries (default: a random one)"
    )


class SecretRotate(FormBody):
    secret: Annotated[str, StringConstraints(min_length=16, max_length=200)] | None = Field(
        None, description="the new HMAC key (default: a random one)"
    )


class DeliveryFilter(FilterQuery):
    status: (
        Annotated[
            str,
            PlainValidator(_delivery_status),
            WithJsonSchema({"type": "string", "enum": list(DELIVERY_STATUSES)}),
        ]
        | None
    ) = None
    subscription_id: Annotated[int, clamp(0, MAX_ID), bounds(0, MAX_ID)] | None = None
    event_id: Annotated[int, clamp(0, MAX_ID), bounds(0, MAX_ID)] | None = None
    after: Uuid | None = Field(None, description="next_after of the previous page")
    limit: Annotated[int, clamp(1, 1000), bounds(1, 1000)] = Field(100, description="page size")


class SubscriptionPath(PathParams):
    id: int = Field(ge=1, description="subscription id")


class DeliveryPath(PathParams):
    id: uuid.UUID = Field(description="delivery id")


# ------------------------------------------------------------------ responses
class Subscription(ReplyModel):
    id: int
    url: str
    event_types: list[str] | None = Field(description="null: every event type")
    description: str
    active: bool
    created_at: datetime
    disabled_at: datetime | None


class SubscriptionCreated(Subscription):
    secret: str = Field(description="the HMAC key of the deliveries")


class SecretRotated(SubscriptionCreated):
    secret_rotated_at: datetime = Field(
        description="deliveries from this moment on are signed with the new secret"
    )


class Subscriptions(ReplyModel):
    subscriptions: list[Subscription]


class Delivery(ReplyModel):
    id: uuid.UUID
    event_id: int
    event_type: str
    subscription_id: int
    url: str
    status: str = Field(json_schema_extra={"enum": list(DELIVERY_STATUSES)})
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


class Deliveries(ReplyModel):
    deliveries: list[Delivery]
    next_after: str | None
