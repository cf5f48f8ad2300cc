"""Courts and API tokens."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, WithJsonSchema

from ringback.api.schemas.fields import (
    CourtBody,
    CourtQuery,
    OptionalText,
    PageLimit,
    PathParams,
    ReplyModel,
    Text,
    invalid,
)

ROLES = ("operator", "court", "switch")


# ------------------------------------------------------------------- requests
class CourtNew(CourtBody):
    name: Text


class CourtTokenNew(CourtBody):
    label: OptionalText = None


def _token_role(value: str) -> str:
    if value not in ("operator", "switch"):
        raise invalid(
            f"must be operator or switch, got {value!r} "
            "(court tokens: POST /v1/courts/{id}/tokens)"
        )
    return value


class TokenNew(CourtBody):
    role: Annotated[
        Text,
        AfterValidator(_token_role),
        WithJsonSchema({"type": "string", "enum": ["operator", "switch"]}),
    ]
    label: OptionalText = None


class WebhookSecretRotate(CourtBody):
    overlap_s: Annotated[int, Field(ge=0, le=30 * 86400)] = Field(
        86400, description="seconds the current secret keeps verifying (default one day)"
    )


class CourtPage(CourtQuery):
    # Unknown parameters are ignored here (as they always were).
    model_config = CourtQuery.model_config | {"extra": "ignore"}
    limit: PageLimit | None = None
    cursor: str | None = Field(None, description="next_cursor of the previous page")


class CourtPath(PathParams):
    court_id: uuid.UUID = Field(description="the court")


class TokenPath(PathParams):
    token_id: int = Field(ge=1, description="the token's id")


# ------------------------------------------------------------------ responses
class Court(ReplyModel):
    id: uuid.UUID
    name: str
    default_recording_id: int | None
    call_mode: Literal["redirect", "ringback"] | None = Field(
        None, description="how the court's listed calls go; null: the deployment's"
    )
    answer_after: Literal["answer", "first_play"] | None = Field(
        None, description="ringback mode: when the caller is connected; null: the deployment's"
    )
    created_at: datetime


class CallModeBody(CourtBody):
    call_mode: Literal["redirect", "ringback"] | None = Field(
        None,
        description=(
            "redirect: the warning plays, then a 302 sends the call on; ringback: the "
            "debtor's phone rings at once and the warning replaces the ringing tone; null: "
            "the deployment's. Applies to listings that play one of the court's recordings."
        ),
    )
    answer_after: Literal["answer", "first_play"] | None = Field(
        None,
        description="ringback mode: connect on answer, or after the first full play; null: "
        "the deployment's",
    )


class CallModeReply(ReplyModel):
    court_id: uuid.UUID
    call_mode: Literal["redirect", "ringback"] | None
    answer_after: Literal["answer", "first_play"] | None


class CourtCreated(ReplyModel):
    court: Court
    token: str = Field(description="the court's first bearer token (shown once)")
    webhook_secret: str = Field(
        description="HMAC key of the payment hook for this court (shown once)"
    )
    note: str


class Courts(ReplyModel):
    items: list[Court]
    next_cursor: str | None


class Token(ReplyModel):
    id: int
    prefix: str = Field(description="first characters of the token, to recognise it")
    role: Literal["operator", "court", "switch"]
    court_id: uuid.UUID | None
    label: str
    created_at: datetime
    revoked_at: datetime | None


class TokenCreated(Token):
    token: str = Field(description="the bearer token (shown once)")
    note: str


class Tokens(ReplyModel):
    items: list[Token]
    next_cursor: str | None


class WebhookSecretRotated(ReplyModel):
    court_id: uuid.UUID
    webhook_secret: str = Field(description="the new HMAC key of the payment hook (shown once)")
    rotated_at: datetime
    previous_valid_until: datetime = Field(
        description="until then a hook signed with the previous secret is accepted too"
    )
    note: str
