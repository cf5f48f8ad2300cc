"""The portal as an aiohttp sub-application mounted at /portal/ on the API's app: its own
middleware renders errors as pages (not JSON) and adds the security headers."""

from __future__ import annotations

from importlib import resources

import jinja2
from aiohttp import web

import ringback.api.portal.auth as auth
import ringback.api.portal.imports as imports
import ringback.api.portal.listings as listings
import ringback.api.portal.operator as operator
import ringback.api.portal.recordings as recordings
import ringback.api.portal.stats as stats
from ringback.api.context import CONTEXT
from ringback.api.portal.core import ENV, PREFIX, portal_middleware, redirect

STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ringback.api.portal", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
        raise web.HTTPNotFound()
    entry = resources.files("ringback.api.portal").joinpath("static", name)
    if not entry.is_file():
        raise web.HTTPNotFound()
    return web.Response(
        body=entry.read_bytes(),
        content_type=STATIC_TYPES[suffix],
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=3600"},
    )


async def _to_portal(request: web.Request) -> web.Response:
    return redirect(f"{PREFIX}/")


def register(app: web.Application) -> None:
    if not app[CONTEXT].portal_rules.enabled:
        return
    portal = web.Application(middlewares=[portal_middleware])
    portal[ENV] = _templates()
    portal[imports.PROGRESS] = {}
    r = portal.router
    r.add_get("/", auth.home)
    r.add_get("/signin", auth.signin_form)
    r.add_post("/signin", auth.signin)
    r.add_post("/signout", auth.signout)
    r.add_get("/language/{lang}", auth.choose_language)
    r.add_get("/static/{name}", static)
    r.add_get("/listings", listings.index)
    r.add_get("/listings/new", listings.new_form)
    r.add_post("/listings/new", listings.create)
    r.add_get("/listings/{id}", listings.detail)
    r.add_post("/listings/{id}/{action}", listings.change)
    r.add_get("/recordings", recordings.index)
    r.add_post("/recordings", recordings.upload)
    r.add_post("/recordings/default", recordings.choose_default)
    r.add_get("/recordings/{id}/audio.wav", recordings.audio)
    r.add_get("/recordings/{id}/waveform.svg", recordings.waveform)
    r.add_get("/imports", imports.index)
    r.add_post("/imports", imports.create)
    r.add_get("/imports/{id}", imports.detail)
    r.add_get("/imports/{id}/progress", imports.progress)
    r.add_get("/stats", stats.index)
    r.add_get("/operator", operator.index)
    app.router.add_get(PREFIX, _to_portal)
    app.add_subapp(PREFIX, portal)
