"""`GET /v1/lookup/{number}`: the HTTP dip for switches that prefer it to SIP.

Answered from the node's in-memory index only (no database round trip per request; the
caller's token is checked against a short-lived in-process cache).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from ringback.api.context import context
from ringback.api.errors import ApiError
from ringback.api.routes import Reply, Routes
from ringback.api.schemas.audit import Lookup, LookupPath
from ringback.registry.numbers import NumberError, normalize

AUTH_CACHE_S = 5.0


def recording_url(recording_id: int, codec: str) -> str:
    """Where a switch fetches the warning as WAV (recording 0: the shipped default)."""
    ref = "default" if recording_id == 0 else str(recording_id)
    return f"/v1/recordings/{ref}/audio.wav?codec={codec}"


async def lookup(request: web.Request) -> web.Response:
    ctx = context(request)
    try:
        number = normalize(request.match_info["number"], ctx.numbering)
    except NumberError as exc:
        raise ApiError(400, "invalid_number", str(exc)) from None
    if not ctx.index_status.loaded:
        raise ApiError(
            503, "index_not_ready", "the index is not loaded yet; treat the number as not listed"
        )
    entry = ctx.index.lookup(number, time.time())
    body: dict[str, Any] = {"number": f"+{number}", "listed": entry is not None}
    if entry is not None:
        body["listing_id"] = entry.listing_id
        body["recording_id"] = entry.recording_id
        body["recording_url"] = recording_url(entry.recording_id, "pcmu")
        body["recording_urls"] = {
            "pcmu": recording_url(entry.recording_id, "pcmu"),
            "pcma": recording_url(entry.recording_id, "pcma"),
        }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def register(app: web.Application) -> None:
    Routes(app, "switches").add(
        "GET",
        "/v1/lookup/{number}",
        lookup,
        "HTTP dip: is the number announced now? (operator or switch)",
        description="Answered from the node's in-memory index (no database round trip). "
        "Accepts E.164 or any form the SIP path normalises (national, 00-international, "
        "tel:/sip: URIs).",
        roles=("operator", "switch"),
        auth_cache_s=AUTH_CACHE_S,
        path_params=LookupPath,
        replies={200: Reply("the decision", Lookup)},
        errors={400: "not a number that can be normalised", 503: "the index is not loaded yet"},
    )
