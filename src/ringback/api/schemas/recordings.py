"""Warning recordings."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PlainValidator, WithJsonSchema

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
    not_found,
)


# ------------------------------------------------------------------- requests
class RecordingUpload(BaseModel):
    """multipart/form-data (documentation: the parts are streamed by the handler)."""

    file: bytes = Field(json_schema_extra={"contentMediaType": "application/octet-stream"})
    name: str | None = Field(None, description="default: the file's name")
    court_id: uuid.UUID | None = Field(None, description="required for an operator token")


class RecordingFilter(FilterQuery):
    limit: Annotated[int, clamp(1, 500), bounds(1, 500)] = Field(100, description="page size")
    after: Annotated[int, clamp(0, MAX_ID), bounds(0, MAX_ID)] = Field(
        0, description="id to continue after"
    )
    court_id: Uuid | None = Field(None, description="one court's")


CODECS = ("pcm", "pcmu", "pcma", "g722", "opus", "amr", "amr-wb")


def _codec(value: Any) -> str:
    codec = value.lower() if isinstance(value, str) else value
    if codec not in CODECS:
        raise invalid("must be one of " + ", ".join(CODECS))
    return str(codec)


class AudioQuery(FilterQuery):
    codec: Annotated[
        Literal["pcm", "pcmu", "pcma", "g722", "opus", "amr", "amr-wb"],
        PlainValidator(_codec),
        WithJsonSchema({"type": "string", "enum": list(CODECS)}),
    ] = Field(
        "pcm",
        description="what to return: the stored 16-bit PCM (16 kHz for wideband uploads), "
        "G.711 μ-law or A-law (8 kHz, as sent), or 16-bit PCM of the audio after G.722, "
        "Opus, AMR-NB or AMR-WB (as a caller offering that codec hears it)",
    )


def _recording_id(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid("must be an integer or null")
    if not 0 < value <= MAX_ID:
        raise not_found("recording")
    return value


class DefaultRecording(FormBody):
    # Members other than recording_id are ignored (as they always were).
    model_config = FormBody.model_config | {"extra": "ignore"}
    recording_id: Annotated[
        int | None,
        PlainValidator(_recording_id),
        WithJsonSchema({"type": ["integer", "null"], "minimum": 1}),
    ] = Field(description="null: the shipped default")


class RecordingPath(PathParams):
    id: int = Field(ge=1, description="recording id")


class AudioPath(PathParams):
    id: str = Field(pattern=r"^([1-9][0-9]*|default)$", description="recording id, or default")


# ------------------------------------------------------------------ responses
class Original(BaseModel):
    filename: str | None
    format: str | None
    bytes: int | None
    sha256: str | None


class Recording(ReplyModel):
    """A warning recording as callers hear it (8 kHz mono)."""

    id: int
    court_id: uuid.UUID | None
    name: str
    duration_ms: int
    loudness_lufs: float | None
    created_at: datetime
    original: Original
    audio_url: str


class Processing(BaseModel):
    decoded_duration_ms: int
    trimmed_start_ms: int
    trimmed_end_ms: int
    gain_db: float
    peak_dbfs: float
    sample_rate: int


class RecordingUploaded(Recording):
    processing: Processing = Field(description="what was done to the upload")


class Recordings(ReplyModel):
    recordings: list[Recording]
    next: str | None = Field(description="the URL of the next page")


class CourtDefault(ReplyModel):
    court_id: uuid.UUID
    default_recording_id: int | None
