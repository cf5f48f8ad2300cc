"""Hostile HTTP: each attack gets a precise 4xx (or, for a slow client, a closed
connection within a bound), changes nothing in the database, and never shows the client a
database error or a stack trace."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import struct
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from court_api_support import Api, days, listing, make_config
from yarl import URL

from ringback.server import Service

# Tables whose rows are what a client can change; background housekeeping (the event
# worker's state, portal sessions, the feed heartbeat) is left out.
BUSINESS_TABLES = (
    "courts",
    "api_tokens",
    "recordings",
    "listings",
    "payment_events",
    "change_feed",
    "audit_events",
    "event_subscriptions",
    "event_outbox",
    "imports",
)
LEAKS = ("Traceback", "asyncpg", "SQLSTATE", "psycopg", "postgres", 'File "', "root:x:0")
NUMBER = "+8613800138000"
JSON = "application/json"


async def db_state(service: Service) -> dict[str, str]:
    """A digest of every business table's rows."""
    state = {}
    for table in BUSINESS_TABLES:
        state[table] = await service.pool.fetchval(
            f"SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, '|' "
            f"ORDER BY t::text)), '') FROM {table} t"
        )
    return state


def no_leak(raw: bytes) -> None:
    text = raw.decode(errors="replace")
    for word in LEAKS:
        assert word not in text, f"{word!r} reached the client: {text[:300]}"


@pytest.fixture
async def hostile(database: str) -> AsyncIterator[Service]:
    """A node with short slow-client bounds (2 s for a head, 2 s + 1 s/KB for a body)."""
    config = make_config(database)
    # As in production: the answers themselves are what these tests check (an internal
    # error, a 413 from aiohttp), not their agreement with the description.
    config.http.check_answers = False
    config.http.head_timeout_s = 2.0
    config.http.body_timeout_s = 2.0
    config.http.body_min_rate = 1000.0
    service = Service(config)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def client(hostile: Service) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(hostile, http)


@pytest.fixture
async def seeded(hostile: Service, client: Api) -> dict[str, Any]:
    """An operator, two courts with a token each, a listing of court A."""
    from court_api_support import SETUP

    _, operator = await hostile.store.tokens.issue("operator", None, "op", SETUP)
    a = await client.court(operator, "Court A")
    b = await client.court(operator, "Court B")
    r = await client.put(f"/v1/listings/{NUMBER}", a["token"], listing())
    assert r.status == 201, r.body
    return {"operator": operator, "a": a, "b": b, "listing": r.body}


# ------------------------------------------------------------------ database errors
TRIP = """
CREATE FUNCTION trip() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.name LIKE 'trip-check%' THEN
    RAISE EXCEPTION 'LEAKED-DETAIL constraint courts_secret_check on table courts'
      USING ERRCODE = 'check_violation';
  ELSIF NEW.name LIKE 'trip-range%' THEN
    RAISE EXCEPTION 'LEAKED-DETAIL value out of range for column x'
      USING ERRCODE = 'numeric_value_out_of_range';
  ELSIF NEW.name LIKE 'trip-internal%' THEN
    RAISE EXCEPTION 'LEAKED-DETAIL could not read block 7 of relation 1663/16384/2619'
      USING ERRCODE = 'XX000';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER trip BEFORE INSERT ON courts FOR EACH ROW EXECUTE FUNCTION trip();
"""


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("trip-check", 409, "conflict"),
        ("trip-range", 400, "invalid_value"),
        ("trip-internal", 500, "internal_error"),
    ],
)
async def test_a_database_error_never_reaches_the_client(
    hostile: Service, client: Api, seeded: dict[str, Any], name: str, status: int, code: str
) -> None:
    """The database's own words (constraint, table, relation file) stay in the log."""
    await hostile.pool.execute(TRIP)
    before = await db_state(hostile)
    r = await client.post("/v1/courts", seeded["operator"], {"name": name})
    assert (r.status, r.code) == (status, code), r.body
    assert b"LEAKED-DETAIL" not in r.raw and b"courts_secret_check" not in r.raw
    no_leak(r.raw)
    assert await db_state(hostile) == before


# ------------------------------------------------------------------ bodies
async def test_oversized_bodies_are_413_and_change_nothing(
    hostile: Service, client: Api, seeded: dict[str, Any]
) -> None:
    before = await db_state(hostile)
    token = seeded["a"]["token"]
    big = json.dumps(listing(case_ref="x" * (2 * 1024 * 1024))).encode()
    r = await client.call(
        "PUT", "/v1/listings/+8613800138001", token, data=big,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert (r.status, r.code) == (413, "request_entity_too_large"), r.body
    hook = {"court_id": seeded["a"]["court"]["id"], "pad": "y" * 70_000}
    r = await client.hook(seeded["a"]["webhook_secret"], hook)
    assert (r.status, r.code) == (413, "body_too_large"), r.body
    no_leak(r.raw)
    assert await db_state(hostile) == before


@pytest.mark.parametrize("depth", [2_000, 200_000])
async def test_deeply_nested_json_is_a_400(
    hostile: Service, client: Api, seeded: dict[str, Any], depth: int
) -> None:
    before = await db_state(hostile)
    nested = ("[" * depth + "]" * depth).encode()
    body = b'{"case_ref": ' + nested + b', "expires_at": "' + days(30).encode() + b'"}'
    for method, path, token in (
        ("PUT", "/v1/listings/+8613800138001", seeded["a"]["token"]),
        ("POST", "/v1/courts", seeded["operator"]),
        ("POST", "/v1/events/subscriptions", seeded["operator"]),
    ):
        r = await client.call(
            method, path, token, data=body, headers={"Content-Type": "application/json"}
        )
        assert r.status == 400 and r.code in ("invalid_json", "bad_request"), (path, r.body)
        no_leak(r.raw)
    # The payment hook reads at most 64 KB, still enough for 30,000 levels.
    levels = 30_000
    raw = b'{"court_id": "' + seeded["a"]["court"]["id"].encode() + b'", "x": '
    raw += b"[" * levels + b"]" * levels + b"}"
    r = await client.hook(seeded["a"]["webhook_secret"], raw)
    assert (r.status, r.code) == (400, "invalid_json"), r.body
    # A cursor is base64 JSON from the client: nested, it is just not a cursor.
    import base64

    cursor = base64.urlsafe_b64encode(b"[" * 2000 + b"]" * 2000).decode()
    r = await client.get("/v1/listings", seeded["a"]["token"], params={"cursor": cursor})
    assert (r.status, r.code) == (400, "invalid_cursor"), r.body
    assert await db_state(hostile) == before


async def test_huge_json_within_the_size_limit_is_refused_precisely(
    hostile: Service, client: Api, seeded: dict[str, Any]
) -> None:
    before = await db_state(hostile)
    body: dict[str, Any] = {**listing(), "case_ref": ["x"] * 150_000}  # ~900 KB, under 1 MB
    r = await client.put("/v1/listings/+8613800138001", seeded["a"]["token"], body)
    assert (r.status, r.code) == (400, "invalid_field"), r.body
    assert r.body["error"]["message"].startswith("case_ref: must be a string")
    body = {**listing(), **{f"k{i}": i for i in range(50_000)}}  # 50,000 unknown members
    r = await client.put("/v1/listings/+8613800138001", seeded["a"]["token"], body)
    assert (r.status, r.code) == (400, "unknown_field")
    assert len(r.raw) < 2_000_000
    assert await db_state(hostile) == before


# ----------------------------------------------------------- a decompression bomb
def _flac_bomb(path: Path, hours: float, *, declare: bool) -> None:
    """A few KB of FLAC that decodes to `hours` of audio; with `declare` False the stream
    header says "length unknown" (0 samples), so nothing short of decoding finds out."""
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono",
            "-t", str(hours * 3600), "-c:a", "flac", "-frame_size", "65535", str(path),
        ],
        check=True,
    )  # fmt: skip
    if not declare:
        data = bytearray(path.read_bytes())
        # STREAMINFO follows "fLaC" and its 4-byte block header; the 36-bit sample count
        # starts in the low nibble of its 14th byte.
        at = 8 + 13
        data[at] &= 0xF0
        data[at + 1 : at + 5] = struct.pack(">I", 0)
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("declare", [True, False], ids=["declared", "undeclared"])
async def test_a_decompression_bomb_is_refused_without_decoding_it_all(
    hostile: Service, client: Api, seeded: dict[str, Any], tmp_path: Path, declare: bool
) -> None:
    bomb = tmp_path / "bomb.flac"
    _flac_bomb(bomb, 3.0, declare=declare)
    assert bomb.stat().st_size < 64 * 1024  # three hours of audio in a few KB
    before = await db_state(hostile)
    form = aiohttp.FormData()
    form.add_field("name", "bomb")
    form.add_field("file", bomb.read_bytes(), filename="bomb.flac")
    async with client.http.post(
        client.base + "/v1/recordings",
        data=form,
        headers={"Authorization": f"Bearer {seeded['a']['token']}"},
    ) as r:
        raw = await r.read()
        assert r.status == 422, raw
    body = json.loads(raw)
    assert body["error"]["code"] == "too_long"
    if declare:  # refused from the header, before a sample is decoded
        assert body["error"]["message"] == "the file declares 10800 s of audio; the limit is 60 s"
    else:  # decoding stopped just past the cap (60 s + 30 s of room for trimming)
        assert body["error"]["message"] == "the audio is longer than the limit of 60 s"
    no_leak(raw)
    assert await db_state(hostile) == before


# ------------------------------------------------------------------ path parameters
TRAVERSAL = (
    "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%5C..%5C..%5Cetc%5Cpasswd",
    "%252e%252e%252fetc%252fpasswd",
    "....%2F%2F....%2F%2Fetc%2Fpasswd",
    "%2Fetc%2Fpasswd",
    "swagger-ui.css%00.js",
    "..",
)


def _dynamic_routes(service: Service) -> list[tuple[str, str]]:
    assert service.http_runner is not None
    app = service.http_runner.app
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        formatter = info.get("formatter")
        if formatter and "{" in formatter and route.method != "HEAD":
            out.append((route.method, formatter))
    return out


async def test_path_traversal_in_every_path_parameter_is_refused(
    hostile: Service, client: Api, seeded: dict[str, Any]
) -> None:
    routes = _dynamic_routes(hostile)
    assert len(routes) >= 15, routes  # every API and portal route with a path parameter
    before = await db_state(hostile)
    import re

    for method, formatter in routes:
        for payload in TRAVERSAL:
            path = re.sub(r"\{[^}]+\}", payload, formatter)
            for token in (seeded["operator"], seeded["a"]["token"]):
                async with client.http.request(
                    method,
                    URL(client.base + path, encoded=True),
                    headers={"Authorization": f"Bearer {token}", "Content-Type": JSON},
                    data=b"{}" if method != "GET" else None,
                    allow_redirects=False,
                ) as r:
                    raw = await r.read()
                    where = f"{method} {path}"
                    if 300 <= r.status < 400:  # the portal sends the signed-out to sign in
                        assert r.headers["Location"].startswith("/portal/"), where
                    else:
                        assert 400 <= r.status < 500, (where, r.status, raw[:200])
                    no_leak(raw)
    assert await db_state(hostile) == before


# ------------------------------------------------------------- SQL metacharacters
SQL = (
    "'; DROP TABLE listings; --",
    "x' OR '1'='1",
    '" OR 1=1 --',
    "'); DELETE FROM audit_events; --",
    "$1 $$ \\ %_ ;",
    "1; SELECT pg_sleep(10)",
)


async def test_sql_metacharacters_in_every_field_are_just_text(
    hostile: Service, client: Api, seeded: dict[str, Any]
) -> None:
    """Stored and read back verbatim where text is allowed, refused with a 4xx where it is
    not; no other row changes and no table goes missing."""
    op, a = seeded["operator"], seeded["a"]
    court_id = a["court"]["id"]
    for i, text in enumerate(SQL):
        # text fields: stored as given, read back as given
        r = await client.post("/v1/courts", op, {"name": f"{text} {i}"})
        assert r.status == 201, r.body
        got = await client.get(f"/v1/courts/{r.body['court']['id']}", op)
        assert got.body["name"] == f"{text} {i}"
        r = await client.post(f"/v1/courts/{court_id}/tokens", op, {"label": text})
        assert r.status == 201 and r.body["label"] == text, r.body
        number = f"+86139000000{i:02d}"
        body = listing(case_ref=text, effective_reason=f"reason {text}")
        r = await client.put(f"/v1/listings/{number}", a["token"], body)
        assert r.status == 201 and r.body["case_ref"] == text, r.body
        # search: only the listing with exactly that case reference
        r = await client.get("/v1/listings", a["token"], params={"case_ref": text})
        assert r.status == 200 and [x["number"] for x in r.body["items"]] == [number], r.body
        r = await client.post(
            f"/v1/listings/{number}/suspend", a["token"], {"reason": text, "case_ref": text}
        )
        assert r.status == 200 and r.body["status"] == "suspended", r.body
        # fields that are not free text: refused precisely, never an SQL error
        for path in (
            f"/v1/listings?status={text}",
            f"/v1/listings?court_id={text}",
            f"/v1/audit?court_id={text}",
            f"/v1/events/deliveries?status={text}",
        ):
            r = await client.get(path, op)
            assert r.status == 400, (path, r.body)
            no_leak(r.raw)
        for path in (f"/v1/courts/{text}", f"/v1/imports/{text}", f"/v1/recordings/{text}"):
            r = await client.get(path, op)
            assert r.status == 404, (path, r.body)
        r = await client.put(f"/v1/listings/{text}", a["token"], listing())
        assert (r.status, r.code) == (400, "invalid_number"), r.body
        r = await client.post(  # a public address: not contacted without events
            "/v1/events/subscriptions", op, {"url": "https://192.0.32.10/", "description": text}
        )
        assert r.status == 201 and r.body["description"] == text, r.body
        out = io.StringIO()
        csv.writer(out).writerows(
            [("number", "case_ref", "expires_at"), (f"+86137000000{i:02d}", text, days(30))]
        )
        r = await client.call(
            "POST", "/v1/imports", a["token"], data=out.getvalue().encode(),
            headers={"Content-Type": "text/csv"}, params={"filename": text},
        )  # fmt: skip
        assert r.status == 201 and r.body["filename"] == text, r.body
    # every table is still there, and the first listing is untouched
    r = await client.get(f"/v1/listings/{NUMBER}", a["token"])
    assert r.status == 200 and [x["status"] for x in r.body["items"]] == ["active"]
    for table in BUSINESS_TABLES:
        assert await hostile.pool.fetchval(f"SELECT count(*) FROM {table}") >= 0
    audit = await hostile.pool.fetchval("SELECT count(*) FROM audit_events")
    assert audit >= 6 * 4  # nothing deleted: every change above is in the trail


# --------------------------------------------------------------------- tokens
async def test_missing_invalid_revoked_and_other_court_tokens(
    hostile: Service, client: Api, seeded: dict[str, Any]
) -> None:
    a, b = seeded["a"], seeded["b"]
    before = await db_state(hostile)
    put = f"/v1/listings/{NUMBER}"
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer    "},
        {"Authorization": f"Basic {a['token']}"},
        {"Authorization": "Bearer rbk_" + "A" * 43},
        {"Authorization": "Bearer " + a["token"][:-1]},
        {"Authorization": "Bearer " + "x" * 8000},
    ):
        r = await client.call("PUT", put, headers=headers, json_body=listing(case_ref="B"))
        assert (r.status, r.code) == (401, "unauthenticated"), (headers.keys(), r.body)
        no_leak(r.raw)
    # another court's data: 404 whatever the verb, as if it did not exist
    listing_id = seeded["listing"]["id"]
    for method, path, body in (
        ("GET", f"/v1/courts/{a['court']['id']}", None),
        ("GET", f"/v1/courts/{a['court']['id']}/tokens", None),
        ("POST", f"/v1/listings/{NUMBER}/clear", {"reason": "not mine"}),
        ("POST", f"/v1/listings/{NUMBER}/suspend", {"reason": "not mine"}),
        ("GET", f"/v1/listings/{NUMBER}", None),
        ("GET", f"/v1/stats?court_id={a['court']['id']}", None),
    ):
        r = await client.call(method, path, b["token"], body)
        assert r.status == 404, (method, path, r.body, listing_id)
    # a court token on operator routes: 403
    r = await client.post("/v1/courts", a["token"], {"name": "mine now"})
    assert (r.status, r.code) == (403, "forbidden")
    assert await db_state(hostile) == before
    # a revoked token: 401 from then on
    tokens = await client.get(f"/v1/courts/{b['court']['id']}/tokens", seeded["operator"])
    token_id = tokens.body["items"][0]["id"]
    r = await client.delete(f"/v1/tokens/{token_id}")
    assert r.status == 401
    async with client.http.delete(
        f"{client.base}/v1/tokens/{token_id}",
        headers={"Authorization": f"Bearer {seeded['operator']}"},
    ) as resp:
        assert resp.status == 200
    after_revoke = await db_state(hostile)
    r = await client.put("/v1/listings/+8613800138002", b["token"], listing())
    assert (r.status, r.code) == (401, "unauthenticated")
    assert await db_state(hostile) == after_revoke


# ------------------------------------------------------------------ slow clients
async def _trickle(port: int, data: bytes, interval: float = 1.0) -> tuple[float, int, bytes]:
    """Send `data` a byte every `interval`; (seconds until the server closed, bytes sent,
    what it answered). Fails if the server never closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    sent = 0
    answer = b""
    try:
        for byte in data:
            if reader.at_eof():
                break
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except (ConnectionResetError, BrokenPipeError):
                break
            sent += 1
            try:
                chunk = await asyncio.wait_for(reader.read(4096), interval)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            answer += chunk
            if not chunk:
                break
        else:
            raise AssertionError("the server let the whole trickled request in")
        return time.monotonic() - started, sent, answer
    finally:
        writer.close()


async def test_a_slow_client_is_closed_within_the_bound(
    hostile: Service, client: Api, seeded: dict[str, Any]
) -> None:
    before = await db_state(hostile)
    port = hostile.http_port
    head = (
        f"PUT /v1/listings/+8613800138003 HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {seeded['a']['token']}\r\nContent-Type: application/json\r\n"
    ).encode()
    # a head a byte a second: closed about head_timeout_s (2 s) after the first byte
    took, sent, answer = await _trickle(port, head + b"Content-Length: 10\r\n\r\n{}")
    assert answer == b"" and sent < len(head)
    assert took < 2.0 + 2.0, took
    # a body a byte a second after a prompt head: closed after body_timeout_s (2 s) plus
    # a millisecond per byte received
    body = json.dumps(listing()).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + f"Content-Length: {len(body)}\r\n\r\n".encode())
    await writer.drain()
    started = time.monotonic()
    closed = None
    for byte in body:
        writer.write(bytes([byte]))
        try:
            await writer.drain()
            chunk = await asyncio.wait_for(reader.read(4096), 0.5)
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        assert chunk == b"", chunk  # never an answer: the request never completed
        closed = time.monotonic() - started
        break
    writer.close()
    assert closed is not None and closed < 2.0 + 2.0, closed
    # counted, and an ordinary request still goes through
    metrics = (await client.get("/metrics")).raw.decode()
    assert 'ringback_http_slow_clients_total{phase="head"} 1' in metrics
    assert 'ringback_http_slow_clients_total{phase="body"} 1' in metrics
    r = await client.get(f"/v1/listings/{NUMBER}", seeded["a"]["token"])
    assert r.status == 200
    assert await db_state(hostile) == before


async def test_a_slow_but_steady_upload_is_not_cut(
    hostile: Service, client: Api, seeded: dict[str, Any]
) -> None:
    """8 KB/s for 4 s: longer than body_timeout_s, but above body_min_rate."""
    body = json.dumps(listing(effective_reason="x" * 900)).encode() + b" " * 30_000
    reader, writer = await asyncio.open_connection("127.0.0.1", hostile.http_port)
    writer.write(
        (
            f"PUT /v1/listings/+8613800138004 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Authorization: Bearer {seeded['a']['token']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
    )
    for at in range(0, len(body), 800):
        writer.write(body[at : at + 800])
        await writer.drain()
        await asyncio.sleep(0.1)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
