"""Health, readiness and the docs page's files."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ringback.api.schemas.fields import PathParams, ReplyModel


class Health(ReplyModel):
    status: str


class ReadinessChecks(BaseModel):
    index_loaded: bool
    database_reachable: bool
    index_fresh: bool


class IndexState(BaseModel):
    listings: int
    last_seq: int
    staleness_s: float | None = Field(description="null: never synchronised")
    max_staleness_s: float


class Readiness(ReplyModel):
    ready: bool
    checks: ReadinessChecks
    index: IndexState


class AssetPath(PathParams):
    name: str = Field(description="a file of the docs page")
