"""What every portal page shares: who is signed in (the session cookie), the language,
CSRF checks, the security headers, rendering templates, and error pages.

Security measures, in one place:
- the court's token is exchanged at sign-in for a session (`PortalSessions`): a random id
  in an HttpOnly, SameSite=Strict cookie (Secure and `__Host-` prefixed over HTTPS) with an
  absolute and an idle expiry; the token itself never reaches the browser again;
- every form carries the session's CSRF token (sign-in: a double-submit cookie), checked
  in constant time, and a cross-origin `Origin` on a POST is refused;
- a strict Content-Security-Policy (scripts, styles and media from the portal itself only;
  no inline script or style), no framing, no sniffing, no caching of pages, HSTS over HTTPS.
"""

from __future__ import annotations

import contextvars
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web

from ringback.api.context import CONTEXT, ApiContext
from ringback.api.portal.i18n import LANGUAGES, Translator
from ringback.registry.common import DATABASE_UNAVAILABLE, NotFound
from ringback.registry.portal_sessions import PortalSession

log = logging.getLogger("ringback.portal")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PREFIX = "/portal"
LANG_COOKIE = "ringback_lang"
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "media-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
ENV: web.AppKey[jinja2.Environment] = web.AppKey("portal_templates", jinja2.Environment)


class PortalError(Exception):
    """An error page: HTTP `status`, the catalogue `key` of its explanation and params."""

    def __init__(self, status: int, key: str, **params: Any) -> None:
        super().__init__(key)
        self.status = status
        self.key = key
        self.params = params


@dataclass
class Visit:
    """One request's view of the portal: language, scheme, session."""

    t: Translator
    https: bool
    session: PortalSession | None
    session_id: str | None

    @property
    def cookie_prefix(self) -> str:
        # __Host-: the browser only accepts it Secure, from this host, with Path=/ .
        return "__Host-" if self.https else ""


def ctx_of(request: web.Request) -> ApiContext:
    return request.config_dict[CONTEXT]


# The request being served (each request runs in its own task, so its own context).
_VISIT: contextvars.ContextVar[Visit] = contextvars.ContextVar("portal_visit")


def visit(request: web.Request) -> Visit:
    return _VISIT.get()


def session_cookie_name(https: bool) -> str:
    return ("__Host-" if https else "") + "ringback_session"


def signin_cookie_name(https: bool) -> str:
    return ("__Host-" if https else "") + "ringback_signin"


def is_https(request: web.Request, trusted_proxies: list[str]) -> bool:
    """Served over TLS: directly, or by a trusted reverse proxy that says so."""
    if request.secure:
        return True
    peer = request.remote
    if not peer or not trusted_proxies:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if not any(address in ipaddress.ip_network(c, strict=False) for c in trusted_proxies):
        return False
    return request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip() == "https"


def language(request: web.Request, default: str) -> str:
    lang = request.cookies.get(LANG_COOKIE, "")
    return lang if lang in LANGUAGES else default


def set_cookie(
    response: web.StreamResponse,
    v: Visit,
    name: str,
    value: str,
    max_age: int | None,
    *,
    http_only: bool = True,
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=v.https,
        httponly=http_only,
        samesite="Strict",
    )


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def local_path(text: str | None, fallback: str = f"{PREFIX}/") -> str:
    """`text` if it is a path of the portal (never another site: no open redirects)."""
    if not text or not text.startswith(f"{PREFIX}/") or text.startswith("//"):
        return fallback
    parts = urlsplit(text)
    if parts.scheme or parts.netloc or "\\" in text:
        return fallback
    return text


def wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def check_origin(request: web.Request, https: bool) -> None:
    """Refuse a POST whose Origin (when the browser sends one) is another site."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    expected = f"{'https' if https else 'http'}://{request.host}"
    if origin != expected:
        raise PortalError(403, "error.csrf")


def check_csrf(request: web.Request, supplied: str | None) -> None:
    """The session's CSRF token must come back with every form."""
    session = visit(request).session
    if session is None or not supplied or not hmac.compare_digest(supplied, session.csrf):
        raise PortalError(403, "error.csrf")


async def form(request: web.Request) -> dict[str, str]:
    """An urlencoded form, its CSRF token checked; fields stripped."""
    data = await request.post()
    fields = {k: v.strip() for k, v in data.items() if isinstance(v, str)}
    check_csrf(request, fields.get("csrf"))
    return fields


def require(request: web.Request, *roles: str) -> PortalSession:
    """The signed-in session (redirect to sign-in otherwise); 404 for another role's
    pages (as the API answers for another court's data)."""
    session = visit(request).session
    if session is None:
        raise SignInNeeded(request.path_qs)
    if roles and session.principal.role not in roles:
        raise PortalError(404, "error.not_found")
    return session


class SignInNeeded(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def render(
    request: web.Request, template: str, http_status: int = 200, **values: Any
) -> web.Response:
    v = visit(request)
    env = request.config_dict[ENV]
    session = v.session
    html = env.get_template(template).render(
        _=v.t,
        t=v.t,
        lang=v.t.lang,
        session=session,
        role=session.principal.role if session else None,
        csrf=session.csrf if session else "",
        path=request.path_qs,
        other_lang="en" if v.t.lang == "zh" else "zh",
        **values,
    )
    return web.Response(text=html, status=http_status, content_type="text/html", charset="utf-8")


def error_page(request: web.Request, status: int, key: str, **params: Any) -> web.Response:
    return render(
        request,
        "error.html",
        http_status=status,
        status_code=status,
        message=visit(request).t(key, **params),
    )


def _secure(response: web.StreamResponse, v: Visit | None, static: bool) -> None:
    response.headers.update(SECURITY_HEADERS)
    if not static:
        response.headers["Cache-Control"] = "no-store"
    if v is not None and v.https:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"


@web.middleware
async def portal_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = ctx_of(request)
    https = is_https(request, ctx.http_rules.trusted_proxies)
    lang = language(request, ctx.portal_rules.language)
    v = Visit(Translator(lang, ctx.portal_rules.timezone), https, None, None)
    _VISIT.set(v)
    static = request.path.startswith(f"{PREFIX}/static/")
    try:
        if not static:
            session_id = request.cookies.get(session_cookie_name(https))
            if session_id:
                idle_s = ctx.portal_rules.idle_minutes * 60
                v.session = await ctx.sessions.get(session_id, idle_s=idle_s)
                v.session_id = session_id if v.session else None
        if request.method not in ("GET", "HEAD"):
            check_origin(request, https)
        response = await handler(request)
    except SignInNeeded as exc:
        response = redirect(f"{PREFIX}/signin?next={quote(exc.next_path, safe='/')}")
    except PortalError as exc:
        response = _error(request, exc.status, exc.key, exc.params)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        key = {404: "error.not_found", 405: "error.method", 413: "error.too_large"}.get(
            exc.status, "error.bad_request"
        )
        response = _error(request, exc.status, key, {})
    except NotFound:
        response = _error(request, 404, "error.not_found", {})
    except DATABASE_UNAVAILABLE as exc:
        log.warning("database unavailable for %s %s: %s", request.method, request.path, exc)
        response = _error(request, 503, "error.unavailable", {})
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        response = _error(request, 500, "error.internal", {})
    _secure(response, v, static)
    return response


def _error(request: web.Request, status: int, key: str, params: dict[str, Any]) -> web.Response:
    v = visit(request)
    if wants_json(request):
        return web.json_response(
            {"error": {"code": key.removeprefix("error."), "message": v.t(key, **params)}},
            status=status,
        )
    return error_page(request, status, key, **params)


def new_signin_nonce() -> str:
    return secrets.token_urlsafe(24)
