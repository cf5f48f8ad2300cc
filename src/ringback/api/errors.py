"""Errors as JSON: every error answer is `{"error": {"code", "message"}}`, never an HTML
page or a traceback. Handlers raise `ApiError`, or let a registry error through; the
`json_errors` middleware renders both (and a database that is away as a 503).

A request that its pydantic model refuses becomes an `ApiError` here, in `refusal`: the
model's `Refusal` says which status and codes its family of endpoints answers with."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import asyncpg
from aiohttp import web
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ringback.registry.common import DATABASE_UNAVAILABLE, Conflict, NotFound

log = logging.getLogger("ringback.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An HTTP error rendered as `{"error": {"code", "message"}}` by the middleware."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Refusal:
    """How a family of endpoints answers a request its model refuses."""

    status: int
    invalid: str  # code for a member of the wrong type or value
    missing: str  # code for a required member that is absent
    unknown: str  # code for a member the model does not have
    noun: str  # what a member is called in messages: field or parameter
    # A body that is not JSON, and one that is JSON but not an object: (status, code).
    not_json: tuple[int, str] = (400, "invalid_json")
    not_object: tuple[int, str] = (400, "invalid_json")
    empty_is_object: bool = True  # an empty body is {}


# The court API: 400 with a code that says what is wrong.
BODY = Refusal(400, "invalid_field", "missing_field", "unknown_field", "field")
QUERY = Refusal(400, "invalid_parameter", "invalid_parameter", "invalid_parameter", "parameter")
# Recordings and event subscriptions: 422 for a body, 400 for a query.
FORM = Refusal(
    422,
    "invalid",
    "invalid",
    "invalid",
    "field",
    not_json=(400, "bad_request"),
    not_object=(422, "invalid"),
    empty_is_object=False,
)
FILTER = Refusal(400, "bad_request", "bad_request", "bad_request", "parameter")


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _said(error: ErrorDetails) -> str:
    """What is wrong with one member, in the API's words (pydantic's for the rare rest)."""
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    if kind == "string_type":
        return f"must be a string, got {type(value).__name__}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be an integer, got {json.dumps(value, default=str)[:40]}"
    if kind == "string_too_short":
        n = ctx.get("min_length")
        return "must not be empty" if n == 1 else f"must be at least {n} characters"
    if kind == "string_too_long":
        length = len(value) if isinstance(value, str) else "more"
        return f"must be at most {ctx['max_length']} characters, got {length}"
    if kind == "literal_error":
        expected = str(ctx["expected"]).replace("'", "").replace(" or ", ", ")
        return f"must be one of {expected}, got {value!r}"
    if kind == "too_short":
        return f"must have at least {ctx['min_length']} item(s)"
    if kind == "list_type":
        return "must be a list"
    if kind == "uuid_parsing":
        return f"not a UUID: {value!r}"
    if kind == "uuid_type":
        return "must be a UUID string"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}"
    message = error["msg"]
    return message[:1].lower() + message[1:]


def refusal(exc: ValidationError, style: Refusal, allowed: Iterable[str]) -> ApiError:
    """The answer to a request whose body or query `exc` refused: unknown members first
    (they are usually typos), then the first member in the model's order. A validator
    that raises a `not_found` error makes it a 404 (an id that names nothing)."""
    errors = exc.errors(include_url=False)
    unknown = sorted(_where(e["loc"]) for e in errors if e["type"] == "extra_forbidden")
    if unknown:
        return ApiError(
            style.status,
            style.unknown,
            f"unknown {style.noun}(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}",
        )
    first = errors[0]
    where = _where(first["loc"])
    if first["type"] == "not_found":
        return ApiError(404, "not_found", first["msg"])
    if first["type"] == "missing":
        return ApiError(style.status, style.missing, f"{where} is required")
    if first["type"] == "required":  # required in this case (a validator says why)
        return ApiError(style.status, style.missing, f"{where} {first['msg']}")
    if not where:  # the whole body (a model validator)
        return ApiError(style.status, style.invalid, _said(first))
    return ApiError(style.status, style.invalid, f"{where}: {_said(first)}")


def _brief(exc: BaseException) -> str:
    """A database error for the log: its class and SQLSTATE, and its message."""
    state = getattr(exc, "sqlstate", None)
    return f"{type(exc).__name__} (SQLSTATE {state}): {exc}"


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
    except NotFound as exc:
        return error(404, "not_found", str(exc))
    except Conflict as exc:
        return error(409, "conflict", str(exc))
    except asyncpg.IntegrityConstraintViolationError as exc:
        # Validation should have caught it; a race with another writer can still get here.
        # The database's own words (table, constraint, values) stay in the log.
        log.warning("database refused %s %s: %s", request.method, request.path, _brief(exc))
        return error(
            409, "conflict", "the change conflicts with the current data; reload and retry"
        )
    except asyncpg.DataError as exc:
        # A value the database cannot hold (out of range, not text): the client's input.
        log.warning(
            "database refused a value in %s %s: %s", request.method, request.path, _brief(exc)
        )
        return error(400, "invalid_value", "a value is out of range or not valid text")
    except DATABASE_UNAVAILABLE as exc:
        log.warning("database unavailable for %s %s: %s", request.method, request.path, exc)
        return error(503, "database_unavailable", "the database is unavailable; retry")
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return error(500, "internal_error", "internal error; it has been logged")
