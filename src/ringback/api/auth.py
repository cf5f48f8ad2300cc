"""Bearer-token authentication and role checks for the HTTP API.

A court may only see its own data: handlers look rows up *scoped to the caller's court*
and answer 404 for another court's ids (never 403, which would confirm they exist).
"""

from __future__ import annotations

from aiohttp import web

from ringback.api.context import context
from ringback.api.errors import ApiError
from ringback.registry.common import Principal


def bearer_token(request: web.Request) -> str:
    """The token of `Authorization: Bearer <token>` (401 when there is none)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthenticated", "missing 'Authorization: Bearer <token>' header")
    return token.strip()


async def authenticate(
    request: web.Request, *roles: str, cache_s: float | None = None
) -> Principal:
    """The caller, if its token is valid and its role is one of `roles` (401 / 403 otherwise).

    With `cache_s`, a token seen valid is trusted that long without asking the database
    (hot paths such as the HTTP dip).
    """
    token = bearer_token(request)
    tokens = context(request).tokens
    if cache_s is None:
        principal = await tokens.authenticate(token)
    else:
        principal = await tokens.authenticate_cached(token, cache_s)
    if principal is None:
        raise ApiError(401, "unauthenticated", "unknown or revoked token")
    if roles and principal.role not in roles:
        raise ApiError(403, "forbidden", f"this needs a token of role {' or '.join(roles)}")
    return principal
