"""Errors as JSON: every error answer is `{"error": {"code", "message"}}`, never an HTML
page or a traceback. Handlers raise `ApiError`, or let a registry error through; the
`json_errors` middleware renders both (and a database that is away as a 503)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

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
        return error(409, "conflict", f"refused by the database: {exc}")
    except DATABASE_UNAVAILABLE as exc:
        log.warning("database unavailable for %s %s: %s", request.method, request.path, exc)
        return error(503, "database_unavailable", "the database is unavailable; retry")
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return error(500, "internal_error", "internal error; it has been logged")
