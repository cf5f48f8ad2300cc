"""The aiohttp application: the court API, the portal, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import math
import ssl
from collections.abc import Callable

from aiohttp import web

from ringback.api import (
    audit,
    courts,
    events,
    hooks,
    imports,
    listings,
    lookup,
    openapi,
    portal,
    recordings,
)
from ringback.api.context import CONTEXT, ApiContext, context
from ringback.api.errors import json_errors
from ringback.api.ratelimit import RATE_LIMIT, ApiRateLimit
from ringback.api.routes import Reply, Routes
from ringback.api.routes import check_answers as check_answers_middleware
from ringback.api.schemas.operations import Health, Readiness
from ringback.api.slow_clients import GuardedSite, ReceiveLimits
from ringback.ratelimit import TokenBuckets

ROUTES = (courts, listings, hooks, audit, lookup, openapi, recordings, imports, events, portal)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers. Says nothing about the database on purpose."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ctx = context(request)
    db_ok = await ctx.database_reachable()
    status = ctx.index_status
    staleness = status.staleness_s
    max_staleness = ctx.ready_max_staleness_s
    checks = {
        "index_loaded": status.loaded,
        "database_reachable": db_ok,
        "index_fresh": staleness <= max_staleness,
    }
    body = {
        "ready": all(checks.values()),
        "checks": checks,
        "index": {
            "listings": len(ctx.index),
            "last_seq": status.last_seq,
            "staleness_s": None if math.isinf(staleness) else round(staleness, 3),
            "max_staleness_s": max_staleness,
        },
    }
    return web.json_response(body, status=200 if body["ready"] else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        text=context(request).metrics.render(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def build_app(ctx: ApiContext, *, check_answers: bool = False) -> web.Application:
    """The application; `check_answers` holds every answer to the description (tests)."""
    middlewares = [check_answers_middleware, json_errors] if check_answers else [json_errors]
    app = web.Application(middlewares=middlewares, client_max_size=1024**2)
    app[CONTEXT] = ctx
    rules = ctx.http_rules
    app[RATE_LIMIT] = ApiRateLimit(
        TokenBuckets(rules.rate_limit_per_token, rules.rate_limit_burst)
        if rules.rate_limit_per_token > 0
        else None,
        ctx.metrics.counter(
            "ringback_http_rate_limited_total",
            "API requests refused with 429: their token was over http.rate_limit_per_token",
        ),
    )
    r = Routes(app, "operations")
    r.add(
        "GET",
        "/healthz",
        healthz,
        "Liveness",
        replies={200: Reply("alive", Health)},
        database=False,
    )
    r.add(
        "GET",
        "/readyz",
        readyz,
        "Readiness: index loaded and fresh, database reachable",
        replies={
            200: Reply("ready", Readiness),
            503: Reply("not ready, with the failing checks", Readiness),
        },
        database=False,
    )
    r.add(
        "GET",
        "/metrics",
        metrics,
        "Prometheus metrics",
        replies={200: Reply("text exposition format", {"type": "string"}, media="text/plain")},
        database=False,
    )
    for module in ROUTES:
        module.register(app)
    return app


async def start_http(
    app: web.Application,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    limits: ReceiveLimits | None = None,
    on_slow_client: Callable[[str], object] | None = None,
    reuse_port: bool = False,
) -> web.AppRunner:
    """Serve `app`; a request that arrives slower than `limits` closes its connection
    (and `on_slow_client` is told in which phase: head or body). ``reuse_port``: share the
    port with the other workers of `ringback serve --workers`."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = GuardedSite(
        runner,
        host,
        port,
        reuse_address=True,
        reuse_port=reuse_port or None,
        ssl_context=ssl_context,
        limits=limits or ReceiveLimits(),
        on_close=on_slow_client,
    )
    await site.start()
    return runner


async def bound_port(runner: web.AppRunner) -> int:
    """The port actually bound (for `http.port = 0`)."""
    await asyncio.sleep(0)
    for address in runner.addresses:
        return int(address[1])
    raise RuntimeError("HTTP server is not listening")
