"""Shared pieces of the API handlers: request bodies, validation, paging, scoping, times."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import BodyPartReader, web

from ringback.api.context import context
from ringback.api.errors import ApiError
from ringback.registry.common import Principal

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


# ------------------------------------------------------------------ bodies and fields
def json_object(raw: bytes) -> dict[str, Any]:
    """`raw` as a JSON object (400 when it is not one)."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    return body


async def json_body(request: web.Request, allowed: Iterable[str]) -> dict[str, Any]:
    """The request's JSON object; unknown members are refused (they are usually typos)."""
    raw = await request.read()
    if not raw.strip():
        return {}
    body = json_object(raw)
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ApiError(
            400,
            "unknown_field",
            f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}",
        )
    return body


def invalid(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_field", f"{field}: {message}")


def get_str(
    body: Mapping[str, Any], field: str, *, required: bool, max_len: int = 200
) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise ApiError(400, "missing_field", f"{field} is required")
        return None
    if not isinstance(value, str):
        raise invalid(field, f"must be a string, got {type(value).__name__}")
    value = value.strip()
    if not value:
        if required:
            raise invalid(field, "must not be empty")
        return None
    if len(value) > max_len:
        raise invalid(field, f"must be at most {max_len} characters, got {len(value)}")
    if any(ord(ch) < 32 for ch in value):
        raise invalid(field, "must not contain control characters")
    return value


def parse_time(field: str, value: Any) -> datetime:
    if not isinstance(value, str):
        raise invalid(field, "must be an RFC 3339 date-time string, e.g. 2026-07-01T00:00:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise invalid(
            field, f"not an RFC 3339 date-time: {value!r} (e.g. 2026-07-01T00:00:00+08:00)"
        ) from None
    if parsed.tzinfo is None:
        raise invalid(field, f"needs a timezone offset (Z or +08:00): {value!r}")
    if not 2000 <= parsed.astimezone(UTC).year <= 2100:
        raise invalid(field, f"year out of range 2000-2100: {value!r}")
    return parsed.astimezone(UTC)


def get_time(body: Mapping[str, Any], field: str, *, required: bool) -> datetime | None:
    value = body.get(field)
    if value is None:
        if required:
            raise ApiError(400, "missing_field", f"{field} is required")
        return None
    return parse_time(field, value)


def get_int(body: Mapping[str, Any], field: str) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(field, f"must be an integer, got {json.dumps(value)[:40]}")
    if not 1 <= value <= 2**63 - 1:
        raise invalid(field, "must be a positive integer")
    return value


def parse_uuid(field: str, value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise invalid(field, "must be a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise invalid(field, f"not a UUID: {value!r}") from None


def path_uuid(request: web.Request, name: str, what: str) -> uuid.UUID:
    """A UUID from the path; a malformed one is simply an id that does not exist (404)."""
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise ApiError(404, "not_found", f"no such {what}") from None


def path_int(request: web.Request, name: str, what: str) -> int:
    text = request.match_info[name]
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 2**63:
        raise ApiError(404, "not_found", f"no such {what}")
    return int(text)


def known_params(request: web.Request, allowed: set[str]) -> None:
    """Refuse query parameters not in `allowed` (they are usually typos)."""
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise ApiError(
            400,
            "invalid_parameter",
            f"unknown parameter(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}",
        )


# ------------------------------------------------------------------------- paging
def parse_limit(request: web.Request) -> int:
    text = request.query.get("limit")
    if text is None or text == "":
        return DEFAULT_LIMIT
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ApiError(
            400, "invalid_parameter", f"limit: must be an integer 1-{MAX_LIMIT}, got {text!r}"
        )
    return int(text)


def encode_cursor(kind: str, last_id: int) -> str:
    raw = json.dumps({"k": kind, "after": last_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(request: web.Request, kind: str, max_value: int = 2**63) -> int:
    """The id to continue after (0: from the start). Cursors are opaque to clients."""
    text = request.query.get("cursor")
    if not text:
        return 0
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = json.loads(raw)
        after = data["after"]
        if data["k"] != kind or isinstance(after, bool) or not isinstance(after, int):
            raise ValueError
        if not 0 <= after < max_value:
            raise ValueError
        return after
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ApiError(
            400, "invalid_cursor", "cursor: not a cursor returned by this endpoint"
        ) from None


def page(items: list[dict[str, Any]], kind: str, limit: int, last_id: int | None) -> dict[str, Any]:
    """A page of results; `next_cursor` is null on the last page."""
    more = len(items) == limit and last_id is not None
    return {
        "items": items,
        "next_cursor": encode_cursor(kind, last_id) if more and last_id is not None else None,
    }


# ------------------------------------------------------------------------ scoping
def scope_court(principal: Principal, requested: uuid.UUID | None, what: str = "court") -> Any:
    """The court a request acts on: a court token only ever its own (404 for any other)."""
    if principal.role == "court":
        if requested is not None and requested != principal.court_id:
            raise ApiError(404, "not_found", f"no such {what}")
        return principal.court_id
    return requested


async def court_of_request(request: web.Request, who: Principal, field: str | None) -> uuid.UUID:
    """The court an upload or import is for: a court's own, or the `court_id` an operator
    names (404 for an unknown or another court's id, never 403)."""
    if who.role == "court":
        assert who.court_id is not None
        if field and field != str(who.court_id):
            raise ApiError(404, "not_found", "no such court")
        return who.court_id
    if not field:
        raise ApiError(422, "invalid", "an operator must give court_id")
    try:
        court_id = uuid.UUID(field)
    except ValueError:
        raise ApiError(404, "not_found", "no such court") from None
    if not await context(request).courts.exists(court_id):
        raise ApiError(404, "not_found", "no such court")
    return court_id


# ---------------------------------------------------------------------- multipart
async def form_parts(request: web.Request) -> AsyncIterator[BodyPartReader]:
    """The parts of a multipart/form-data body, one at a time (streamed, never buffered
    whole); a malformed or nested body is a 400."""
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError):
        raise ApiError(400, "bad_request", "malformed multipart body") from None
    while True:
        try:
            part = await reader.next()
        except ValueError:
            raise ApiError(400, "bad_request", "malformed multipart body") from None
        if part is None:
            return
        if not isinstance(part, BodyPartReader):
            raise ApiError(400, "bad_request", "nested multipart is not supported")
        yield part


# ------------------------------------------------------------------------ JSON out
def iso(value: datetime | None) -> str | None:
    """A time as RFC 3339 in UTC with a 'Z' (None stays None)."""
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")
