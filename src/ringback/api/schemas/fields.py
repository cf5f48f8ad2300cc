"""Field types and base models the request and response schemas are built from.

Request bodies validate in pydantic's strict mode (no "7" for 7, no 1 for "1"); the rules
of our own (RFC 3339 times with an offset, text without control characters, null meaning
absent) are here, so every endpoint applies them alike. How a refused request is answered
is the model's `refusal` (see `ringback.api.errors`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ringback.api.errors import BODY, FILTER, FORM, QUERY, Refusal

NUMBER_PATTERN = r"^\+[1-9][0-9]{7,14}$"
MAX_ID = 2**63 - 1


def invalid(message: str) -> PydanticCustomError:
    """A refusal in our own words (the field's name is put before it)."""
    return PydanticCustomError("invalid", message)


def not_found(what: str) -> PydanticCustomError:
    """A refusal that answers 404: the value names nothing the caller may see."""
    return PydanticCustomError("not_found", f"no such {what}")


# ------------------------------------------------------------------------ text
def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def strip_or_none(value: Any) -> Any:
    return (value.strip() or None) if isinstance(value, str) else value


def printable(value: str) -> str:
    if any(ord(ch) < 32 for ch in value):
        raise invalid("must not contain control characters")
    return value


# Required text: stripped, not empty, no control characters.
Text = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    BeforeValidator(_strip),
    AfterValidator(printable),
]
LongText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=1000),
    BeforeValidator(_strip),
    AfterValidator(printable),
]
# Optional text: blank is the same as absent.
OptionalText = Annotated[
    Annotated[str, StringConstraints(max_length=200), AfterValidator(printable)] | None,
    BeforeValidator(strip_or_none),
]
OptionalLongText = Annotated[
    Annotated[str, StringConstraints(max_length=1000), AfterValidator(printable)] | None,
    BeforeValidator(strip_or_none),
]


# ------------------------------------------------------------------- times, ids
def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise invalid("must be an RFC 3339 date-time string, e.g. 2026-07-01T00:00:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise invalid(
            f"not an RFC 3339 date-time: {value!r} (e.g. 2026-07-01T00:00:00+08:00)"
        ) from None
    if parsed.tzinfo is None:
        raise invalid(f"needs a timezone offset (Z or +08:00): {value!r}")
    if not 2000 <= parsed.astimezone(UTC).year <= 2100:
        raise invalid(f"year out of range 2000-2100: {value!r}")
    return parsed.astimezone(UTC)


# An RFC 3339 date-time with an offset, years 2000-2100; in UTC once validated.
Timestamp = Annotated[
    datetime,
    PlainValidator(_time),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
Uuid = Annotated[uuid.UUID, Strict(False)]  # from its string form


def _positive(value: int) -> int:
    if not 1 <= value <= MAX_ID:
        raise invalid("must be a positive integer")
    return value


PositiveId = Annotated[
    int,
    AfterValidator(_positive),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_ID}),
]
E164 = Annotated[
    str, Field(pattern=NUMBER_PATTERN, examples=["+8613800138000"], description="E.164")
]


# ------------------------------------------------------------------ base models
class Validated(BaseModel):
    """A request body or query; `refusal` says how a refused one is answered."""

    refusal: ClassVar[Refusal]


class CourtBody(Validated):
    """A JSON body of the court API: unknown members refused, null the same as absent."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    refusal: ClassVar[Refusal] = BODY

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None or k not in cls.model_fields}
        return data


class CourtQuery(Validated):
    """A query string of the court API: unknown parameters refused, empty the same as
    absent. Values are strings, so validation is lax (limit=5 is the integer 5)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    refusal: ClassVar[Refusal] = QUERY

    @model_validator(mode="before")
    @classmethod
    def _empty_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v != "" or k not in cls.model_fields}
        return data


class FormBody(Validated):
    """A JSON body of the recordings and events endpoints (422 when refused)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    refusal: ClassVar[Refusal] = FORM


class FilterQuery(Validated):
    """A query string of the recordings, imports and events listings (400 when refused;
    unknown parameters are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    refusal: ClassVar[Refusal] = FILTER


class ReplyModel(BaseModel):
    """A response body (documentation: the handlers build the JSON themselves; the test
    suite checks every answer against its model)."""


class PathParams(BaseModel):
    """The parameters in an operation's path (documentation only: handlers read them
    and answer 404 for one that names nothing)."""


# ------------------------------------------------------------------- paging
PAGE_MAX = 1000
PAGE_DEFAULT = 100


def _page_limit(value: Any) -> int:
    text = value if isinstance(value, str) else repr(value)
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= PAGE_MAX:
        raise invalid(f"must be an integer 1-{PAGE_MAX}, got {text!r}")
    return int(text)


PageLimit = Annotated[
    int,
    PlainValidator(_page_limit),
    WithJsonSchema(
        {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "description": "page size (100)"}
    ),
]


def clamp(low: int, high: int) -> PlainValidator:
    """An integer query parameter clamped to [low, high]: it only has to be an integer."""

    def check(value: Any) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise invalid("must be an integer") from None
        return max(low, min(high, number))

    return PlainValidator(check)


def bounds(low: int, high: int) -> WithJsonSchema:
    return WithJsonSchema({"type": "integer", "minimum": low, "maximum": high})


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable, e.g. invalid_number")
    message: str = Field(description="what is wrong, for people")


class Error(ReplyModel):
    """Every error answer."""

    error: ErrorDetail
