"""The route table: each operation is registered once, with what it takes and gives.

`Routes.add` puts the handler on the aiohttp router and an `Operation` in the app's table;
`/openapi.json` is generated from that table and the pydantic models it names, so the
description cannot leave out a route. The table also does the authentication: an
operation with `roles` answers 401 or 403 before its handler runs, and the handler reads
the caller with `principal(request)`.

With `http.check_answers` (the test suite sets it), `check_answers` holds every answer
to its operation's description: a status, media type or JSON body it does not document,
or a request model other than the one it names, is turned into a 500 that says so.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ringback.api.auth import authenticate
from ringback.api.errors import error
from ringback.api.ratelimit import RATE_LIMIT
from ringback.api.schemas.fields import Error
from ringback.registry.common import Principal

log = logging.getLogger("ringback.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Schema = dict[str, Any]
Content = type[BaseModel] | Schema  # a model, or a JSON schema for what no model describes

OPERATOR = ("operator",)
COURT_OR_OPERATOR = ("operator", "court")


@dataclass(frozen=True)
class Reply:
    """One documented answer: its description and body (JSON of `model` by default)."""

    description: str
    model: Content | None = None
    media: str | tuple[str, ...] = "application/json"


@dataclass(frozen=True)
class Header:
    name: str
    schema: Schema
    description: str = ""
    required: bool = True


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    tag: str
    summary: str
    description: str = ""
    roles: tuple[str, ...] = ()  # empty: no bearer token
    auth_cache_s: float | None = None
    path_params: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    body: Mapping[str, Content] = field(default_factory=dict)  # media type → content
    body_required: bool = True
    headers: tuple[Header, ...] = ()
    replies: Mapping[int, Reply] = field(default_factory=dict)
    errors: Mapping[int, str] = field(default_factory=dict)  # status → when
    database: bool = True  # may answer 503 when the database is away


OPERATIONS: web.AppKey[list[Operation]] = web.AppKey("operations", list)
OPERATION: web.RequestKey[Operation] = web.RequestKey("operation", Operation)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
# The models a handler validated its request with (for `check_answers`).
USED_MODELS: web.RequestKey[dict[str, type]] = web.RequestKey("used_models", dict)


def principal(request: web.Request) -> Principal:
    """Who is calling (set by the route table for an operation with roles)."""
    return request[PRINCIPAL]


def _bind(op: Operation) -> Handler:
    handler, roles, cache_s = op.handler, op.roles, op.auth_cache_s

    async def handle(request: web.Request) -> web.StreamResponse:
        request[OPERATION] = op
        if roles:
            limit = request.app.get(RATE_LIMIT)
            refused = limit.refuse(request) if limit is not None else None
            if refused is not None:
                return refused
            request[PRINCIPAL] = await authenticate(request, *roles, cache_s=cache_s)
        return await handler(request)

    handle.__name__ = handler.__name__
    handle.__doc__ = handler.__doc__
    return handle


class Routes:
    """Registers one module's operations under one tag."""

    def __init__(self, app: web.Application, tag: str) -> None:
        self.app = app
        self.tag = tag
        if OPERATIONS not in app:
            app[OPERATIONS] = []

    def add(
        self,
        method: str,
        path: str,
        handler: Handler,
        summary: str,
        *,
        body: type[BaseModel] | Mapping[str, Content] | None = None,
        **details: Any,
    ) -> Operation:
        if body is None:
            content: Mapping[str, Content] = {}
        elif isinstance(body, type):
            content = {"application/json": body}
        else:
            content = body
        op = Operation(method, path, handler, self.tag, summary, body=content, **details)
        if method == "GET":
            self.app.router.add_get(path, _bind(op))  # and HEAD
        else:
            self.app.router.add_route(method, path, _bind(op))
        self.app[OPERATIONS].append(op)
        return op


# ------------------------------------------------------------------ answer check
# Added to every operation's answers by `ringback.api.openapi` (and so allowed here).
AUTH_ERRORS = (401, 403, 429)
DATABASE_ERRORS = (503,)


def documented(op: Operation) -> dict[int, tuple[tuple[str, ...], Any]]:
    """Status → (media types, model or schema) of every answer `op` documents."""
    out: dict[int, tuple[tuple[str, ...], Any]] = {}
    for status, reply in op.replies.items():
        media = (reply.media,) if isinstance(reply.media, str) else reply.media
        out[status] = (media if reply.model is not None else (), reply.model)
    extra = (AUTH_ERRORS if op.roles else ()) + (DATABASE_ERRORS if op.database else ())
    for status in (*op.errors, *extra):
        out.setdefault(status, (("application/json",), Error))
    return out


def _mismatch(request: web.Request, op: Operation, answer: web.StreamResponse) -> str | None:
    used = request.get(USED_MODELS, {})
    json_body = op.body.get("application/json")
    if "body" in used and used["body"] is not json_body:
        return f"validated its body with {used['body'].__name__}, documents {json_body}"
    if "query" in used and used["query"] is not op.query:
        return f"validated its query with {used['query'].__name__}, documents {op.query}"
    answers = documented(op)
    if answer.status not in answers:
        return f"answered {answer.status}, documents {sorted(answers)}"
    media, model = answers[answer.status]
    if not media:
        return None
    if answer.content_type not in media:
        return f"answered {answer.status} as {answer.content_type}, documents {media}"
    if (
        isinstance(model, type)
        and issubclass(model, BaseModel)
        and isinstance(answer, web.Response)
        and answer.body is not None
    ):
        raw = answer.body if isinstance(answer.body, bytes) else answer.text or ""
        try:
            model.model_validate_json(raw, strict=True)
        except ValidationError as exc:
            return f"{answer.status} answer is not a {model.__name__}: {exc}"
    return None


@web.middleware
async def check_answers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer as its operation documents it (for tests; see the module docstring)."""
    answer = await handler(request)
    op = request.get(OPERATION)
    if op is None:  # no such route: aiohttp's own 404 or 405
        return answer
    problem = _mismatch(request, op, answer)
    if problem is None:
        return answer
    log.error("%s %s does not match its description: %s", request.method, request.path, problem)
    return error(500, "undocumented_answer", f"{request.method} {op.path}: {problem}")
