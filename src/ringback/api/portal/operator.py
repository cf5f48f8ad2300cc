"""The operator's view (carrier administrators): every court, every token, and the
deliveries of outgoing events with their failures. Read-only: changes go through the API
or the command line, where they are scripted and reviewed."""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import web

from ringback.api.portal.core import ctx_of, render, require, visit
from ringback.registry.events import DELIVERY_STATUSES


async def index(request: web.Request) -> web.Response:
    require(request, "operator")
    ctx, t = ctx_of(request), visit(request).t
    courts = await ctx.courts.page(None, 1000)
    names = {c["id"]: c["name"] for c in courts}
    tokens = await ctx.tokens.every(1000)
    live = Counter(tk["court_id"] for tk in tokens if tk["revoked_at"] is None)
    status = request.query.get("status", "failed")
    status = status if status in DELIVERY_STATUSES else "failed"
    deliveries = await ctx.events.deliveries(
        status=status, subscription_id=None, event_id=None, after=None, limit=200
    )
    counts = await ctx.events.delivery_counts()
    court_rows: list[dict[str, Any]] = [
        {
            "name": c["name"],
            "id": str(c["id"]),
            "default": c["default_recording_id"] or t("operator.builtin"),
            "tokens": live.get(c["id"], 0),
            "created_at": t.datetime(c["created_at"]),
        }
        for c in courts
    ]
    token_rows = [
        {
            "id": tk["id"],
            "prefix": tk["prefix"],
            "role": t(f"role.{tk['role']}"),
            "court": names.get(tk["court_id"], "—") if tk["court_id"] else "—",
            "label": tk["label"],
            "created_at": t.datetime(tk["created_at"]),
            "revoked": t.datetime(tk["revoked_at"]) if tk["revoked_at"] else None,
        }
        for tk in tokens
    ]
    delivery_rows = [
        {
            "event_type": d["event_type"],
            "url": d["url"],
            "status": t(f"delivery.{d['status']}"),
            "attempts": d["attempts"],
            "last_status": d["last_status"] if d["last_status"] is not None else "—",
            "last_error": d["last_error"] or "—",
            "last_attempt_at": t.datetime(d["last_attempt_at"]) or "—",
            "created_at": t.datetime(d["created_at"]),
        }
        for d in deliveries
    ]
    return render(
        request,
        "operator.html",
        courts=court_rows,
        tokens=token_rows,
        deliveries=delivery_rows,
        counts=[(s, t(f"delivery.{s}"), counts[s]) for s in DELIVERY_STATUSES],
        status=status,
    )
