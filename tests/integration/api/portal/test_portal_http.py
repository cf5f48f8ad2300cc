"""The portal over plain HTTP, without a browser: sign-in, sessions, CSRF, headers,
scoping, every page in both languages."""

from __future__ import annotations

import re

import aiohttp
from court_api_support import Api, listing

from ringback.server import Service


async def signin(http: aiohttp.ClientSession, base: str, token: str) -> None:
    async with http.get(f"{base}/portal/signin") as r:
        page = await r.text()
    nonce = re.search(r'name="nonce" value="([^"]+)"', page)
    assert nonce is not None
    async with http.post(
        f"{base}/portal/signin",
        data={"nonce": nonce[1], "token": token, "next": ""},
        allow_redirects=False,
    ) as r:
        assert r.status == 303, await r.text()


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None
    return match[1]


async def test_smoke_pages(service: Service, api: Api, operator: str) -> None:
    court = await api.court(operator, "Smoke court")
    r = await api.put("/v1/listings/+8613800138000", court["token"], listing("(2026)京0105执1号"))
    assert r.status == 201, r.body
    base = api.base
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await signin(http, base, court["token"])
        for path in (
            "/portal/listings",
            f"/portal/listings/{r.body['id']}",
            "/portal/listings/new",
            "/portal/recordings",
            "/portal/imports",
            "/portal/stats",
            "/portal/recordings/default/waveform.svg",
        ):
            async with http.get(base + path) as resp:
                text = await resp.text()
                assert resp.status == 200, (path, text[:3000])
                assert "Content-Security-Policy" in resp.headers
