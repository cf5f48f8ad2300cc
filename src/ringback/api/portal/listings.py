"""Listings: search and page through them, list a number, one listing with its actions
(clear, suspend, resume) and its audit trail, read as a person would."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from ringback.api.portal.core import (
    PREFIX,
    PortalError,
    Visit,
    ctx_of,
    form,
    redirect,
    render,
    require,
    visit,
)
from ringback.api.portal.i18n import Translator
from ringback.registry.common import Conflict, NotFound
from ringback.registry.listing_rules import (
    STATUSES,
    RuleViolation,
    check_listing_times,
    listing_status,
)
from ringback.registry.numbers import NumberError, normalize

PAGE_SIZE = 25
DONE = {
    "listed": "listing.done.listed",
    "updated": "listing.done.updated",
    "cleared": "listing.done.cleared",
    "suspended": "listing.done.suspended",
    "active": "listing.done.resumed",
}


def _court(request: web.Request) -> uuid.UUID:
    session = require(request, "court")
    assert session.principal.court_id is not None
    return session.principal.court_id


def listing_view(t: Translator, row: Any, now: datetime) -> dict[str, Any]:
    status = listing_status(row, now)
    return {
        "id": row["id"],
        "number": f"+{row['number']}",
        "case_ref": row["case_ref"],
        "recording_id": row["recording_id"],
        "status": status,
        "status_text": t(f"status.{status}"),
        "audible": status == "active" and row["effective_at"] <= now,
        "pending": status == "active" and row["effective_at"] > now,
        "listed_at": t.datetime(row["listed_at"]),
        "effective_at": t.datetime(row["effective_at"]),
        "effective_reason": row["effective_reason"],
        "expires_at": t.datetime(row["expires_at"]),
        "cleared_at": t.datetime(row["cleared_at"]),
        "clear_reason": reason_text(t, row["clear_reason"]),
        "suspend_reason": row["suspend_reason"],
        "updated_at": t.datetime(row["updated_at"]),
    }


async def index(request: web.Request) -> web.Response:
    court_id = _court(request)
    ctx, t = ctx_of(request), visit(request).t
    q = request.query.get("q", "").strip()[:200]
    status = request.query.get("status", "")
    status = status if status in STATUSES else ""
    try:
        after = max(0, min(int(request.query.get("after", "0")), 2**62))
    except ValueError:
        after = 0
    number = None
    case_ref = None
    problem = None
    if q:
        digits = q.replace(" ", "").replace("-", "")
        if digits.lstrip("+").isdigit():
            try:
                number = normalize(digits, ctx.numbering)
            except NumberError:
                problem = t("listings.search.bad_number", text=q)
        else:
            case_ref = q
    rows = []
    if problem is None:
        rows = await ctx.listings.search(
            court_id=court_id,
            status=status or None,
            case_ref=case_ref,
            number=number,
            after_id=after,
            limit=PAGE_SIZE + 1,
        )
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    now = datetime.now(UTC)
    next_url = None
    if more:
        params = {k: v for k, v in (("q", q), ("status", status)) if v}
        next_url = f"{PREFIX}/listings?{urlencode({**params, 'after': rows[-1]['id']})}"
    stats = await ctx.listings.stats(court_id)
    return render(
        request,
        "listings.html",
        listings=[listing_view(t, r, now) for r in rows],
        q=q,
        status=status,
        statuses=STATUSES,
        problem=problem,
        next_url=next_url,
        first_page=after > 0,
        counts=stats["listings"],
        done=DONE.get(request.query.get("done", "")),
    )


def _start_of(day: date, v: Visit) -> datetime:
    return datetime.combine(day, time(0), tzinfo=v.t.tz).astimezone(UTC)


def _parse_day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


async def _recording_choices(request: web.Request, court_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await ctx_of(request).recordings.page(0, 500, court_id=court_id, with_shipped=True)
    return [{"id": r["id"], "name": r["name"], "own": r["court_id"] is not None} for r in rows]


async def _new_form(
    request: web.Request,
    court_id: uuid.UUID,
    values: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> web.Response:
    ctx, t = ctx_of(request), visit(request).t
    rules = ctx.listing_rules
    now = datetime.now(UTC)
    notice_end = now + timedelta(days=rules.notice_period_days)
    today = t.local(now).date()
    return render(
        request,
        "listing_new.html",
        http_status=status,
        values=values,
        errors=errors,
        recordings=await _recording_choices(request, court_id),
        notice_days=f"{rules.notice_period_days:g}",
        notice_end=t.datetime(notice_end),
        max_days=rules.max_duration_days,
        min_date=today.isoformat(),
        max_date=(today + timedelta(days=rules.max_duration_days)).isoformat(),
    )


async def new_form(request: web.Request) -> web.Response:
    court_id = _court(request)
    return await _new_form(request, court_id, {}, {})


async def create(request: web.Request) -> web.Response:
    court_id = _court(request)
    session = require(request, "court")
    fields = await form(request)
    v = visit(request)
    t, ctx = v.t, ctx_of(request)
    errors: dict[str, str] = {}
    number = None
    raw_number = fields.get("number", "")
    if not raw_number:
        errors["number"] = t("form.required")
    else:
        try:
            number = normalize(raw_number.replace(" ", "").replace("-", ""), ctx.numbering)
        except NumberError:
            errors["number"] = t("listing.error.number", text=raw_number)
    case_ref = fields.get("case_ref", "")
    if not case_ref:
        errors["case_ref"] = t("form.required")
    elif len(case_ref) > 200 or any(ord(c) < 32 for c in case_ref):
        errors["case_ref"] = t("listing.error.case_ref")
    recording_id = None
    if fields.get("recording_id"):
        try:
            recording_id = int(fields["recording_id"])
        except ValueError:
            errors["recording_id"] = t("listing.error.recording")
    expires_day = _parse_day(fields.get("expires_on", ""))
    if expires_day is None:
        errors["expires_on"] = t("form.required_date")
    starts_day = None
    if fields.get("starts_on"):
        starts_day = _parse_day(fields["starts_on"])
        if starts_day is None:
            errors["starts_on"] = t("form.bad_date")
    reason = fields.get("reason") or None
    if reason is not None and len(reason) > 1000:
        errors["reason"] = t("listing.error.reason_long")
    if errors:
        return await _new_form(request, court_id, fields, errors, 400)
    assert number is not None and expires_day is not None
    now = datetime.now(UTC)
    # An expiry date means: played up to the end of that day.
    expires_at = _start_of(expires_day + timedelta(days=1), v)
    effective_at = None
    if starts_day is not None:
        today = t.local(now).date()
        effective_at = now if starts_day <= today else _start_of(starts_day, v)
        if starts_day < today:
            errors["starts_on"] = t("rule.effective_in_past", effective_at=t.date(starts_day))
            return await _new_form(request, court_id, fields, errors, 400)
    existing = next(
        (
            r
            for r in await ctx.listings.of_number(number, court_id)
            if r["status"] in ("active", "suspended")
        ),
        None,
    )
    rules = ctx.listing_rules
    try:
        times = check_listing_times(
            now,
            notice_period_days=rules.notice_period_days,
            max_duration_days=rules.max_duration_days,
            expires_at=expires_at,
            effective_at=effective_at,
            effective_reason=reason,
            existing_effective_at=existing["effective_at"] if existing is not None else None,
        )
    except RuleViolation as exc:
        field = {
            "expires_in_past": "expires_on",
            "expiry_too_late": "expires_on",
            "effective_in_past": "starts_on",
            "effective_reason_required": "reason",
            "expires_before_start": "expires_on",
        }.get(exc.rule, "expires_on")
        errors[field] = rule_message(t, exc)
        return await _new_form(request, court_id, fields, errors, 400)
    try:
        row = await ctx.listings.put(
            court_id,
            number,
            case_ref,
            expires_at,
            session.principal,
            effective_at=times.effective_at,
            recording_id=recording_id,
            effective_reason=times.effective_reason,
            default_effective_at=times.notice_end,
        )
    except NotFound:
        errors["recording_id"] = t("listing.error.recording")
        return await _new_form(request, court_id, fields, errors, 400)
    done = "listed" if row["created"] else "updated"
    return redirect(f"{PREFIX}/listings/{row['id']}?done={done}")


def rule_message(t: Translator, exc: RuleViolation) -> str:
    """A broken listing rule, said in the page's language (dates in the portal's zone)."""
    params = {
        k: t.datetime(v) if isinstance(v, datetime) else (f"{v:g}" if isinstance(v, float) else v)
        for k, v in exc.params.items()
    }
    return t(f"rule.{exc.rule}", **params)


def _listing_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 2**63:
        raise PortalError(404, "error.not_found")
    return int(text)


async def _own_listing(request: web.Request, court_id: uuid.UUID) -> Any:
    row = await ctx_of(request).listings.get(_listing_id(request), court_id)
    if row is None:
        raise PortalError(404, "error.not_found")  # another court's: as if it did not exist
    return row


async def detail(request: web.Request) -> web.Response:
    court_id = _court(request)
    row = await _own_listing(request, court_id)
    return await _detail_page(request, row, {})


async def _detail_page(
    request: web.Request, row: Any, errors: dict[str, str], status: int = 200
) -> web.Response:
    ctx, t = ctx_of(request), visit(request).t
    events = await ctx.audit.page(
        court_id=row["court_id"],
        entity=f"listing:{row['id']}",
        action=None,
        after_id=0,
        limit=1000,
    )
    token_ids = [_token_id(e["actor"]) for e in events]
    labels = await ctx.tokens.labels([i for i in token_ids if i is not None])
    recording = None
    if row["recording_id"] is not None:
        rec = await ctx.recordings.get(row["recording_id"])
        recording = rec["name"] if rec is not None else None
    return render(
        request,
        "listing.html",
        http_status=status,
        listing=listing_view(t, row, datetime.now(UTC)),
        recording=recording,
        trail=[describe_event(t, e, labels) for e in events],
        errors=errors,
        done=DONE.get(request.query.get("done", "")),
    )


async def change(request: web.Request) -> web.Response:
    court_id = _court(request)
    session = require(request, "court")
    action = request.match_info["action"]
    new_status = {"clear": "cleared", "suspend": "suspended", "resume": "active"}.get(action)
    if new_status is None:
        raise PortalError(404, "error.not_found")
    fields = await form(request)
    row = await _own_listing(request, court_id)
    reason = fields.get("reason", "")
    t = visit(request).t
    if new_status in ("cleared", "suspended") and not reason:
        return await _detail_page(request, row, {action: t("listing.error.reason_needed")}, 400)
    if len(reason) > 1000:
        return await _detail_page(request, row, {action: t("listing.error.reason_long")}, 400)
    try:
        await ctx_of(request).listings.change_status(
            court_id, row["number"], new_status, session.principal, reason=reason
        )
    except (NotFound, Conflict):
        return await _detail_page(request, row, {action: t("listing.error.transition")}, 409)
    return redirect(f"{PREFIX}/listings/{row['id']}?done={new_status}")


# ------------------------------------------------------------------- the audit trail
def _token_id(actor: str) -> int | None:
    kind, _, rest = actor.partition(":")
    ident = rest.partition(":")[0]
    return int(ident) if kind == "token" and ident.isdigit() else None


def describe_actor(t: Translator, actor: str, labels: dict[int, tuple[str, str]]) -> str:
    token_id = _token_id(actor)
    if token_id is not None:
        prefix, label = labels.get(token_id, (actor.split(":", 2)[-1], ""))
        if label:
            return t("actor.token_label", label=label, prefix=prefix)
        return t("actor.token", prefix=prefix)
    kind, _, rest = actor.partition(":")
    if kind == "payment":
        return t("actor.payment", payment=rest)
    if actor in ("cli", "demo", "system"):
        return t(f"actor.{actor}")
    return t("actor.other", actor=actor)


CHANGED = ("case_ref", "recording_id", "effective_at", "expires_at")


def describe_event(t: Translator, event: Any, labels: dict[int, tuple[str, str]]) -> dict[str, Any]:
    """One audit event as a person reads it: when, who, what, why."""
    action = event["action"]
    key = f"action.{action}"
    after = event["after"] if isinstance(event["after"], dict) else {}
    before = event["before"] if isinstance(event["before"], dict) else {}
    why = None
    details: list[str] = []
    if action == "listing.create":
        why = after.get("effective_reason")
        details.append(t("trail.case_ref", value=after.get("case_ref", "")))
        details.append(t("trail.effective_at", value=_when(t, after.get("effective_at"))))
        details.append(t("trail.expires_at", value=_when(t, after.get("expires_at"))))
    elif action == "listing.update":
        why = (
            after.get("effective_reason")
            if after.get("effective_reason") != before.get("effective_reason")
            else None
        )
        for name in CHANGED:
            if before.get(name) != after.get(name):
                old, new = before.get(name), after.get(name)
                if name.endswith("_at"):
                    old, new = _when(t, old), _when(t, new)
                details.append(
                    t(
                        f"trail.changed.{name}",
                        old=old if old is not None else "—",
                        new=new if new is not None else "—",
                    )
                )
    elif action in ("listing.clear", "listing.suspend", "listing.resume"):
        why = reason_text(t, after.get("reason"))
    return {
        "at": t.datetime(event["at"]),
        "who": describe_actor(t, event["actor"], labels),
        "what": t(key) if t.has(key) else t("action.other", action=action),
        "why": why,
        "details": details,
    }


_PAYMENT_REASON = re.compile(r"^payment (.+) confirmed$")


def reason_text(t: Translator, reason: str | None) -> str | None:
    """A reason as written by a person, or the payment hook's own, said in the page's
    language."""
    if reason is None:
        return None
    match = _PAYMENT_REASON.match(reason)
    return t("trail.paid", payment=match[1]) if match else reason


def _when(t: Translator, text: Any) -> str:
    if not isinstance(text, str):
        return "—"
    try:
        return t.datetime(datetime.fromisoformat(text))
    except ValueError:
        return text
