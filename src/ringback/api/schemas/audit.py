"""The audit trail, statistics, and the HTTP dip for switches."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, PlainValidator, WithJsonSchema

from ringback.api.schemas.fields import (
    E164,
    CourtQuery,
    PageLimit,
    PathParams,
    ReplyModel,
    not_found,
)

HEX64 = r"^[0-9a-f]{64}$"


# ------------------------------------------------------------------- requests
class AuditQuery(CourtQuery):
    limit: PageLimit | None = None
    cursor: str | None = Field(None, description="next_cursor of the previous page")
    entity: str | None = Field(None, description="e.g. listing:42, court:<uuid>, token:7")
    action: str | None = Field(None, description="e.g. listing.clear")


def _court_id(value: Any) -> uuid.UUID:
    """A court id; one that is not even a UUID names no court (404, as an unknown one)."""
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        raise not_found("court") from None


class StatsQuery(CourtQuery):
    court_id: (
        Annotated[
            uuid.UUID,
            PlainValidator(_court_id),
            WithJsonSchema({"type": "string", "format": "uuid"}),
        ]
        | None
    ) = Field(None, description="operator: one court (court: itself)")


class LookupPath(PathParams):
    number: str = Field(description="the called number")


# ------------------------------------------------------------------ responses
class AuditEvent(ReplyModel):
    id: int
    at: datetime
    actor: str
    court_id: uuid.UUID | None
    action: str = Field(examples=["listing.create"])
    entity: str = Field(examples=["listing:42"])
    before: Any = Field(description="the entity before the change (JSON or null)")
    after: Any = Field(description="the entity after the change (JSON or null)")
    prev_hash: str = Field(pattern=HEX64)
    hash: str = Field(pattern=HEX64)


class AuditEvents(ReplyModel):
    items: list[AuditEvent]
    next_cursor: str | None


class ListingCounts(BaseModel):
    active: int
    suspended: int
    cleared: int
    expired: int
    in_notice_period: int


class AnnouncementCounts(BaseModel):
    """Warnings played, all time, by outcome; from the proof-of-play rollups, so days whose
    rows were dropped for retention (`announcements.retention_days`) still count."""

    completed: int
    cancelled: int
    failed: int
    total: int


class Stats(ReplyModel):
    court_id: uuid.UUID | None
    listings: ListingCounts
    announcements: AnnouncementCounts


class RecordingUrls(BaseModel):
    pcmu: str
    pcma: str


class Lookup(ReplyModel):
    """The fields after `listed` are there when it is true."""

    number: E164
    listed: bool
    listing_id: int | None = None
    recording_id: int | None = Field(None, description="0: the shipped default warning")
    recording_url: str | None = Field(None, description="the warning as 8 kHz G.711 μ-law WAV")
    recording_urls: RecordingUrls | None = None
