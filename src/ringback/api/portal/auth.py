"""Signing in and out, choosing the language, and the portal's front door."""

from __future__ import annotations

import hmac

from aiohttp import web

from ringback.api.portal.core import (
    LANG_COOKIE,
    PREFIX,
    ctx_of,
    form,
    local_path,
    new_signin_nonce,
    redirect,
    render,
    session_cookie_name,
    set_cookie,
    signin_cookie_name,
    visit,
)
from ringback.api.portal.i18n import LANGUAGES

NOTICES = {"signed_out": "signin.signed_out", "expired": "signin.expired"}


def home_of(role: str) -> str:
    return f"{PREFIX}/operator" if role == "operator" else f"{PREFIX}/listings"


async def home(request: web.Request) -> web.Response:
    session = visit(request).session
    if session is None:
        return redirect(f"{PREFIX}/signin")
    return redirect(home_of(session.principal.role))


def _signin_page(
    request: web.Request, nonce: str | None, status: int = 200, error: str | None = None
) -> web.Response:
    v = visit(request)
    cookie = signin_cookie_name(v.https)
    nonce = nonce or request.cookies.get(cookie) or new_signin_nonce()
    notice = NOTICES.get(request.query.get("notice", ""))
    response = render(
        request,
        "signin.html",
        http_status=status,
        nonce=nonce,
        error=error,
        notice=notice,
        next=local_path(request.query.get("next"), ""),
    )
    set_cookie(response, v, cookie, nonce, max_age=3600)
    return response


async def signin_form(request: web.Request) -> web.Response:
    if visit(request).session is not None:
        return redirect(home_of(visit(request).session.principal.role))  # type: ignore[union-attr]
    return _signin_page(request, None)


async def signin(request: web.Request) -> web.Response:
    v = visit(request)
    data = await request.post()
    nonce = str(data.get("nonce", ""))
    expected = request.cookies.get(signin_cookie_name(v.https), "")
    if not nonce or not expected or not hmac.compare_digest(nonce, expected):
        # No CSRF nonce (or another site's form): the sign-in cookie is renewed, try again.
        return _signin_page(request, new_signin_nonce(), 403, "error.csrf")
    token = str(data.get("token", "")).strip()
    ctx = ctx_of(request)
    opened = None
    if token and len(token) <= 200:
        max_age = ctx.portal_rules.session_hours * 3600
        opened = await ctx.sessions.open(token, max_age_s=max_age)
    if opened is None:
        return _signin_page(request, nonce, 401, "signin.bad_token")
    session_id, session = opened
    await ctx.sessions.purge()  # expired sessions of everyone: sign-ins are rare enough
    target = local_path(str(data.get("next", "")), home_of(session.principal.role))
    response = redirect(target)
    set_cookie(
        response,
        v,
        session_cookie_name(v.https),
        session_id,
        max_age=int(ctx.portal_rules.session_hours * 3600),
    )
    response.del_cookie(signin_cookie_name(v.https), path="/")
    return response


async def signout(request: web.Request) -> web.Response:
    v = visit(request)
    if v.session is None:
        return redirect(f"{PREFIX}/signin")
    await form(request)
    assert v.session_id is not None
    await ctx_of(request).sessions.close(v.session_id)
    response = redirect(f"{PREFIX}/signin?notice=signed_out")
    response.del_cookie(session_cookie_name(v.https), path="/")
    return response


async def choose_language(request: web.Request) -> web.Response:
    lang = request.match_info["lang"]
    if lang not in LANGUAGES:
        return redirect(f"{PREFIX}/")
    response = redirect(local_path(request.query.get("next")))
    set_cookie(response, visit(request), LANG_COOKIE, lang, max_age=365 * 86400)
    return response
