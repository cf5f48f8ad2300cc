"""Listings: a court's order that callers of a number hear the warning."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from ringback.api.schemas.audit import AuditEvent
from ringback.api.schemas.fields import (
    E164,
    CourtBody,
    CourtQuery,
    LongText,
    OptionalLongText,
    PageLimit,
    PathParams,
    PositiveId,
    ReplyModel,
    Text,
    Timestamp,
    Uuid,
)

STATUSES = ("active", "suspended", "cleared", "expired")
ListingStatus = Literal["active", "suspended", "cleared", "expired"]


# ------------------------------------------------------------------- requests
class ListingPut(CourtBody):
    """Validated with context {"operator": True} for an operator's token."""

    # In the order they are checked: the first refused one is the one reported.
    court_id: Uuid | None = Field(
        None,
        validate_default=True,
        description="required for an operator token; a court's own",
    )
    case_ref: Text
    expires_at: Timestamp = Field(description="at most listings.max_duration_days from now")
    recording_id: PositiveId | None = None
    effective_at: Timestamp | None = Field(
        None,
        description="default: now + listings.notice_period_days; earlier needs effective_reason",
    )
    effective_reason: OptionalLongText = None

    @field_validator("court_id")
    @classmethod
    def _operator_names_the_court(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and (info.context or {}).get("operator"):
            raise PydanticCustomError("required", "is required when an operator lists a number")
        return value


class Reason(CourtBody):
    """Clearing or suspending a listing says why."""

    reason: LongText
    court_id: Uuid | None = Field(None, description="operator: which court's listing (if several)")
    case_ref: str | None = Field(
        None, description="which case, when the court lists the number under several"
    )


class ResumeReason(CourtBody):
    reason: OptionalLongText = None
    court_id: Uuid | None = Field(None, description="operator: which court's listing (if several)")
    case_ref: str | None = Field(
        None, description="which case, when the court lists the number under several"
    )


class ListingSearch(CourtQuery):
    status: ListingStatus | None = Field(None, description="by status (expired is derived)")
    case_ref: str | None = Field(None, description="exact case reference")
    court_id: Uuid | None = Field(None, description="operator: one court's; court: only its own")
    number: str | None = Field(None, description="one number, E.164", examples=["+8613800138000"])
    import_id: Uuid | None = Field(
        None, description="the listings this bulk import created or updated"
    )
    limit: PageLimit | None = None
    cursor: str | None = Field(None, description="next_cursor of the previous page")


class NumberPath(PathParams):
    number: E164 = Field(description="E.164 number with '+' (URL-encode '+' as %2B if you like)")


# ------------------------------------------------------------------ responses
class Listing(ReplyModel):
    id: int
    number: E164
    court_id: Uuid
    case_ref: str
    recording_id: int | None
    status: ListingStatus
    audible: bool = Field(description="this listing on its own makes callers hear the warning now")
    listed_at: datetime
    effective_at: datetime
    effective_reason: str | None
    expires_at: datetime
    cleared_at: datetime | None
    clear_reason: str | None
    suspend_reason: str | None
    updated_at: datetime
    import_id: Uuid | None = Field(
        None, description="the bulk import that last created or changed it (null: none)"
    )


class Listings(ReplyModel):
    items: list[Listing]
    next_cursor: str | None


class ListingsOfNumber(ReplyModel):
    number: E164
    items: list[Listing]
    announced: bool | None = Field(None, description="operator only: the index announces it now")


class HistoryQuery(CourtQuery):
    case_ref: str | None = Field(None, description="only the listing of this case")


class ListingHistory(ReplyModel):
    number: E164
    listing_ids: list[int] = Field(description="the listings whose history this is")
    items: list[AuditEvent] = Field(
        description="oldest first: each listing's own audit events (listing.create, update, "
        "clear, suspend, resume) and the listing.import events of the bulk imports that "
        "wrote it (with rows_sha256, the digest of the rows the import applied)"
    )
