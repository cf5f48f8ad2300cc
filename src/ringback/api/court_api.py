"""Registers the court API (issue 5a): courts, tokens, listings, payment hook, audit, stats,
the HTTP dip and the OpenAPI description."""

from __future__ import annotations

from aiohttp import web


def register_court_api(app: web.Application) -> None:
    from ringback.api import audit, courts, hooks, listings, lookup, openapi

    courts.register(app)
    listings.register(app)
    hooks.register(app)
    audit.register(app)
    lookup.register(app)
    openapi.register(app)
