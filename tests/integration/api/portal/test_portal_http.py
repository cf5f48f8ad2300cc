"""The portal over HTTP without a browser: sessions and their cookies, CSRF, the security
headers, HTTPS served directly (TLS 1.2 or newer) and behind a trusted proxy."""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import string
import subprocess
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from court_api_support import SETUP, Api, listing, make_config

from ringback.api.portal.i18n import LANGUAGES, catalogue
from ringback.server import Service


def jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)  # keep cookies of 127.0.0.1


async def signin(
    http: aiohttp.ClientSession, base: str, token: str, **kw: object
) -> aiohttp.ClientResponse:
    async with http.get(f"{base}/portal/signin", **kw) as r:  # type: ignore[arg-type]
        page = await r.text()
    nonce = re.search(r'name="nonce" value="([^"]+)"', page)
    assert nonce is not None
    async with http.post(
        f"{base}/portal/signin",
        data={"nonce": nonce[1], "token": token, "next": ""},
        allow_redirects=False,
        **kw,  # type: ignore[arg-type]
    ) as r:
        await r.read()
        return r


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None
    return match[1]


def set_cookies(response: aiohttp.ClientResponse) -> dict[str, str]:
    """name -> the raw Set-Cookie header of each cookie the response sets."""
    out = {}
    for header in response.headers.getall("Set-Cookie", []):
        name = header.split("=", 1)[0]
        out[name] = header
    return out


def test_catalogues_have_the_same_keys_and_placeholders() -> None:
    fields = string.Formatter()
    keys = {lang: set(catalogue(lang)) for lang in LANGUAGES}
    assert keys["zh"] == keys["en"], keys["zh"] ^ keys["en"]
    for key in keys["en"]:
        names = [
            {f for _, f, _, _ in fields.parse(catalogue(lang)[key]) if f} for lang in LANGUAGES
        ]
        assert names[0] == names[1], key


def test_templates_use_only_known_keys() -> None:
    root = Path(__file__).resolve().parents[4] / "src/ringback/api/portal/templates"
    used = set()
    for path in root.glob("*.html"):
        used |= set(re.findall(r"""_\(\s*["']([a-z_.]+)["']""", path.read_text()))
    keys = set(catalogue("en"))
    # "status." ~ s and the like: a family of keys, each member must exist
    missing = {
        k
        for k in used
        if not (k in keys or (k.endswith(".") and any(known.startswith(k) for known in keys)))
    }
    assert not missing, missing
    assert len(used) > 100  # the pattern finds the keys at all


async def test_session_cookie_csrf_and_headers(service: Service, api: Api, operator: str) -> None:
    court = await api.court(operator, "杭州市西湖区人民法院")
    r = await api.put("/v1/listings/+8613800138000", court["token"], listing("(2026)浙0106执1号"))
    base = api.base
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        async with http.get(f"{base}/portal/listings", allow_redirects=False) as resp:
            assert resp.status == 303
            assert resp.headers["Location"] == "/portal/signin?next=/portal/listings"
        # A wrong token: refused, no session.
        bad = await signin(http, base, "rbk_not-a-token")
        assert bad.status == 401 and "ringback_session" not in set_cookies(bad)
        # Without the sign-in form's nonce: refused.
        async with http.post(f"{base}/portal/signin", data={"token": court["token"]}) as resp:
            assert resp.status == 403
        good = await signin(http, base, court["token"])
        assert good.status == 303 and good.headers["Location"] == "/portal/listings"
        cookie = set_cookies(good)["ringback_session"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=28800" in cookie
        assert "Secure" not in cookie  # plain HTTP on loopback
        assert court["token"] not in cookie
        async with http.get(f"{base}/portal/listings/{r.body['id']}") as resp:
            page = await resp.text()
            h = resp.headers
            assert resp.status == 200
            csp = h["Content-Security-Policy"]
            assert "default-src 'none'" in csp and "script-src 'self'" in csp
            assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
            assert h["X-Frame-Options"] == "DENY" and h["X-Content-Type-Options"] == "nosniff"
            assert h["Cache-Control"] == "no-store"
            assert "Strict-Transport-Security" not in h
            assert "<script>" not in page and " style=" not in page
        token = csrf_of(page)
        clear = f"{base}/portal/listings/{r.body['id']}/clear"
        async with http.post(clear, data={"reason": "paid"}, allow_redirects=False) as resp:
            assert resp.status == 403  # no CSRF token
        async with http.post(clear, data={"reason": "paid", "csrf": "x" + token[1:]}) as resp:
            assert resp.status == 403  # a wrong one
        async with http.post(
            clear,
            data={"reason": "paid", "csrf": token},
            headers={"Origin": "https://evil.example"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 403  # another site's form, even with the token
        rows = await service.store.listings.of_number(8613800138000, None)
        assert rows[0]["status"] == "active"
        async with http.post(
            clear, data={"reason": "已缴清", "csrf": token}, allow_redirects=False
        ) as resp:
            assert resp.status == 303
        rows = await service.store.listings.of_number(8613800138000, None)
        assert rows[0]["status"] == "cleared" and rows[0]["clear_reason"] == "已缴清"
        # Signing out ends the session on the server, not only in this browser.
        async with http.post(
            f"{base}/portal/signout", data={"csrf": token}, allow_redirects=False
        ) as resp:
            assert resp.status == 303
        assert await service.pool.fetchval("SELECT count(*) FROM portal_sessions") == 0


async def test_revoking_the_token_ends_its_sessions(
    service: Service, api: Api, operator: str
) -> None:
    court = await api.court(operator, "南京市玄武区人民法院")
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        assert (await signin(http, api.base, court["token"])).status == 303
        async with http.get(f"{api.base}/portal/listings", allow_redirects=False) as resp:
            assert resp.status == 200
        tokens = await api.get(f"/v1/courts/{court['court']['id']}/tokens", operator)
        await api.delete(f"/v1/tokens/{tokens.body['items'][0]['id']}", operator)
        async with http.get(f"{api.base}/portal/listings", allow_redirects=False) as resp:
            assert resp.status == 303


async def test_forwarded_proto_counts_only_from_a_trusted_proxy(database: str) -> None:
    config = make_config(database)
    config.http.trusted_proxies = ["10.0.0.0/8"]  # not us: our X-Forwarded-Proto is ignored
    service = Service(config)
    await service.start()
    try:
        base = f"http://127.0.0.1:{service.http_port}"
        headers = {"X-Forwarded-Proto": "https"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{base}/portal/signin", headers=headers) as resp,
        ):
            assert "Strict-Transport-Security" not in resp.headers
            assert "ringback_signin" in set_cookies(resp)
        service.config.http.trusted_proxies.append("127.0.0.0/8")  # now the proxy is us
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{base}/portal/signin", headers=headers) as resp,
        ):
            assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
            cookie = set_cookies(resp)["__Host-ringback_signin"]
            assert "Secure" in cookie and "Path=/" in cookie
    finally:
        await service.stop()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        raise AssertionError("openssl is missing: apt-get install openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def tls_service(database: str, certificate: tuple[Path, Path]) -> AsyncIterator[Service]:
    config = make_config(database)
    config.http.tls_cert, config.http.tls_key = str(certificate[0]), str(certificate[1])
    service = Service(config)
    await service.start()
    yield service
    await service.stop()


async def test_https_served_directly(tls_service: Service, certificate: tuple[Path, Path]) -> None:
    base = f"https://127.0.0.1:{tls_service.http_port}"
    trust = ssl.create_default_context(cafile=str(certificate[0]))
    _, token, _ = await tls_service.store.courts.create("深圳市福田区人民法院", SETUP)
    connector = aiohttp.TCPConnector(ssl=trust, limit=1)
    opened: list[object] = []

    async def on_connect(*_: object) -> None:
        opened.append(1)

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_connect)
    async with aiohttp.ClientSession(
        cookie_jar=jar(), connector=connector, trace_configs=[trace]
    ) as http:
        response = await signin(http, base, token)
        assert response.status == 303
        cookie = set_cookies(response)["__Host-ringback_session"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        for _ in range(3):
            async with http.get(f"{base}/portal/listings") as resp:
                assert resp.status == 200 and resp.version == aiohttp.HttpVersion11
                assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
                await resp.read()
    assert len(opened) == 1  # keep-alive: every request on one connection
    _, writer = await asyncio.open_connection("127.0.0.1", tls_service.http_port, ssl=trust)
    assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
    writer.close()
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(cafile=str(certificate[0]))
    with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
        _, writer = await asyncio.open_connection("127.0.0.1", tls_service.http_port, ssl=old)
        writer.close()
    weak = ssl.create_default_context(cafile=str(certificate[0]))
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("ECDHE-ECDSA-AES128-SHA")  # CBC, no forward-secret AEAD: refused
    with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
        _, writer = await asyncio.open_connection("127.0.0.1", tls_service.http_port, ssl=weak)
        writer.close()


async def test_the_recordings_page_plays_each_recording_as_each_codec_delivers_it(
    service: Service, api: Api, operator: str
) -> None:
    """Issue 15: besides the stored audio, the page links the recording as heard over G.711,
    G.722, Opus, AMR and AMR-WB; each link is a WAV of that codec's decoded audio."""
    court = await api.court(operator, "深圳市福田区人民法院")
    base = api.base
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        assert (await signin(http, base, court["token"])).status == 303
        async with http.get(f"{base}/portal/recordings") as resp:
            page = await resp.text()
        links = re.findall(
            r'href="(/portal/recordings/default/audio\.wav\?codec=[a-z0-9-]+)"', page
        )
        assert [link.rsplit("=", 1)[1] for link in links] == [
            "pcma",
            "g722",
            "opus",
            "amr",
            "amr-wb",
        ]
        rates = {}
        for link in links:
            async with http.get(base + link) as resp:
                assert resp.status == 200 and resp.content_type == "audio/wav"
                data = await resp.read()
            assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
            rates[link.rsplit("=", 1)[1]] = int.from_bytes(data[24:28], "little")
        assert rates == {"pcma": 8000, "g722": 16000, "opus": 16000, "amr": 8000, "amr-wb": 16000}
        async with http.get(f"{base}/portal/recordings/default/audio.wav?codec=gsm") as resp:
            assert resp.status == 404
