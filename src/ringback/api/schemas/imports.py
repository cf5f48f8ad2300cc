"""Bulk CSV imports of listings."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from ringback.api.schemas.fields import FilterQuery, PathParams, ReplyModel, bounds, clamp


# ------------------------------------------------------------------- requests
class ImportQuery(FilterQuery):
    """With a text/csv body (multipart sends court_id and effective_reason as fields)."""

    filename: str | None = Field(None, description="the file's name, for the job")
    court_id: str | None = Field(None, description="required for an operator token")
    effective_reason: str | None = Field(
        None,
        description="makes the rows effective at once (1-1000 characters; audited)",
    )


class ImportForm(BaseModel):
    """multipart/form-data (documentation: the parts are streamed by the handler)."""

    file: bytes = Field(json_schema_extra={"contentMediaType": "text/csv"})
    court_id: uuid.UUID | None = Field(None, description="required for an operator token")
    effective_reason: str | None = Field(None, description="as the query parameter")


class ImportList(FilterQuery):
    limit: Annotated[int, clamp(1, 500), bounds(1, 500)] = Field(50, description="how many")


class ImportPath(PathParams):
    id: uuid.UUID = Field(description="import id")


# ------------------------------------------------------------------ responses
class ImportFailure(BaseModel):
    code: str
    message: str
    line: int | None


class ImportJob(ReplyModel):
    id: uuid.UUID
    court_id: uuid.UUID
    status: Literal["receiving", "validating", "loading", "done", "failed"]
    filename: str | None
    bytes: int | None
    sha256: str | None
    rows_processed: int
    rows_total: int | None
    listed: int | None
    updated: int | None
    error: ImportFailure | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class ImportJobs(ReplyModel):
    imports: list[ImportJob]
