"""Bearer-token authentication and role checks for the HTTP API.

A court may only see its own data: handlers look rows up *scoped to the caller's court*
and answer 404 for another court's ids (never 403, which would confirm they exist).
"""

from __future__ import annotations

from aiohttp import web

from ringback.registry.store import Principal

PRINCIPAL: web.AppKey[Principal] = web.AppKey("principal")


class ApiError(Exception):
    """An HTTP error rendered as `{"error": {"code", "message"}}` by the middleware."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


async def authenticate(request: web.Request, *roles: str) -> Principal:
    """The caller, if its token is valid and its role is one of `roles` (401 / 403 otherwise)."""
    from ringback.api.app import SERVICE

    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthenticated", "missing 'Authorization: Bearer <token>' header")
    principal = await request.app[SERVICE].store.authenticate(token.strip())
    if principal is None:
        raise ApiError(401, "unauthenticated", "unknown or revoked token")
    if roles and principal.role not in roles:
        raise ApiError(403, "forbidden", f"this needs a token of role {' or '.join(roles)}")
    return principal
