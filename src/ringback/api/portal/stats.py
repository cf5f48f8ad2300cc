"""Proof of play: warnings played per day (completed and cancelled) over a chosen period,
with the period's totals."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from aiohttp import web
from markupsafe import Markup

from ringback.api.portal.charts import Bar, plays_chart
from ringback.api.portal.core import ctx_of, render, require, visit

MAX_DAYS = 366
DEFAULT_DAYS = 30


def _day(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


async def index(request: web.Request) -> web.Response:
    session = require(request, "court")
    court_id = session.principal.court_id
    ctx, t = ctx_of(request), visit(request).t
    today = t.local(datetime.now(UTC)).date()
    last = _day(request.query.get("to")) or today
    first = _day(request.query.get("from")) or last - timedelta(days=DEFAULT_DAYS - 1)
    problem = None
    if first > last:
        problem = t("stats.error.order")
        first, last = last - timedelta(days=DEFAULT_DAYS - 1), last
    if (last - first).days >= MAX_DAYS:
        problem = t("stats.error.too_long", days=MAX_DAYS)
        first = last - timedelta(days=MAX_DAYS - 1)
    days = await ctx.plays.per_day(court_id, first, last, ctx.portal_rules.timezone)
    totals = {
        "completed": sum(d.completed for d in days),
        "cancelled": sum(d.cancelled for d in days),
        "failed": sum(d.failed for d in days),
    }
    totals["total"] = sum(totals.values())
    chart = plays_chart(
        [Bar(t.short_date(d.day), d.completed, d.cancelled) for d in days],
        title=t("stats.chart_title", first=t.date(first), last=t.date(last)),
        completed_label=t("stats.completed"),
        cancelled_label=t("stats.cancelled"),
    )
    return render(
        request,
        "stats.html",
        chart=Markup(chart),  # built from escaped text only (charts.py)
        days=[
            {
                "day": t.date(d.day),
                "completed": d.completed,
                "cancelled": d.cancelled,
                "failed": d.failed,
            }
            for d in days
        ],
        totals=totals,
        first=first.isoformat(),
        last=last.isoformat(),
        first_text=t.date(first),
        last_text=t.date(last),
        problem=problem,
    )
