"""Shared pieces of the API handlers: request bodies and queries validated by their models,
path ids, paging, scoping, multipart, times."""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import BodyPartReader, web
from pydantic import ValidationError

from ringback.api.context import context
from ringback.api.errors import BODY, ApiError, Refusal, refusal
from ringback.api.routes import USED_MODELS
from ringback.api.schemas.fields import Validated
from ringback.registry.common import Principal

V = TypeVar("V", bound=Validated)


# ---------------------------------------------------------- bodies and queries
MAX_JSON_DEPTH = 32  # no request body nests more than a few levels
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def too_deep(raw: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON text nests arrays and objects deeper than `limit`. Checked before
    parsing: the parser would hit the interpreter's recursion limit, and a RecursionError
    is best never raised in a long-running process."""
    data = raw.encode() if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub(b"", data)):
        depth += 1 if bracket in b"[{" else -1
        if depth > limit:
            return True
    return False


def json_object(raw: bytes, style: Refusal = BODY) -> dict[str, Any]:
    """`raw` as a JSON object (400 when it is not one)."""
    if too_deep(raw):
        status, code = style.not_json
        raise ApiError(
            status, code, f"request body is nested more than {MAX_JSON_DEPTH} levels deep"
        )
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        status, code = style.not_json
        raise ApiError(status, code, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        status, code = style.not_object
        raise ApiError(status, code, "request body must be a JSON object")
    return body


def validated(model: type[V], data: Mapping[str, Any], context: Any = None) -> V:
    """`data` validated by `model`; refused as the model's family of endpoints refuses."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise refusal(exc, model.refusal, model.model_fields) from None


async def body(request: web.Request, model: type[V], context: Any = None) -> V:
    """The request's JSON body, validated by `model` (its validators get `context`)."""
    request.setdefault(USED_MODELS, {})["body"] = model
    raw = await request.read()
    style = model.refusal
    data = {} if style.empty_is_object and not raw.strip() else json_object(raw, style)
    return validated(model, data, context)


def query(request: web.Request, model: type[V]) -> V:
    """The query string, validated by `model` (a repeated parameter: its first value)."""
    request.setdefault(USED_MODELS, {})["query"] = model
    params = request.query
    return validated(model, {name: params.get(name) for name in params})


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


# ------------------------------------------------------------------------- paging
def encode_cursor(kind: str, last_id: int) -> str:
    raw = json.dumps({"k": kind, "after": last_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(text: str | None, kind: str, max_value: int = 2**63) -> int:
    """The id to continue after (0: from the start). Cursors are opaque to clients."""
    if not text:
        return 0
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        if too_deep(raw):
            raise ValueError
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
