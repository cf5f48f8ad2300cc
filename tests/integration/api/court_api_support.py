"""Shared helpers for the court API tests: a running Service and a small client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import secret_logs

from ringback.config import load_config
from ringback.registry.common import Principal
from ringback.server import Service
from ringback.webhooks import sign

SETUP = Principal("test-setup", "operator")


def make_config(dsn: str) -> Any:
    config = load_config(None, env={})
    config.database.url = dsn
    config.http.port = 0
    config.http.check_answers = True  # every answer as /openapi.json documents it
    config.sip.port = 0
    config.index.heartbeat_s = 0.2
    return config


@pytest.fixture
async def service(database: str) -> AsyncIterator[Service]:
    service = Service(make_config(database))
    await service.start()
    for _ in range(250):
        if service.sync.loaded:
            break
        await asyncio.sleep(0.02)
    yield service
    await service.stop()


@dataclass
class Response:
    status: int
    body: Any
    raw: bytes
    headers: Any

    @property
    def code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"].get("code")  # type: ignore[no-any-return]
        return None


class Api:
    def __init__(self, service: Service, http: aiohttp.ClientSession) -> None:
        self.service = service
        self.http = http
        self.base = f"http://127.0.0.1:{service.http_port}"

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        json_body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        params: dict[str, str] | None = None,
    ) -> Response:
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
            secret_logs.note(token)
        if json_body is not None:
            data = json.dumps(json_body).encode()
            h["Content-Type"] = "application/json"
        async with self.http.request(
            method, self.base + path, data=data, headers=h, params=params
        ) as r:
            raw = await r.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            secret_logs.note_body(body)
            return Response(r.status, body, raw, r.headers)

    async def get(self, path: str, token: str | None = None, **kw: Any) -> Response:
        return await self.call("GET", path, token, **kw)

    async def post(self, path: str, token: str | None, body: Any = None, **kw: Any) -> Response:
        return await self.call("POST", path, token, body if body is not None else {}, **kw)

    async def put(self, path: str, token: str | None, body: Any, **kw: Any) -> Response:
        return await self.call("PUT", path, token, body, **kw)

    async def delete(self, path: str, token: str | None = None) -> Response:
        return await self.call("DELETE", path, token)

    async def court(self, operator: str, name: str) -> dict[str, Any]:
        r = await self.post("/v1/courts", operator, {"name": name})
        assert r.status == 201, r.body
        body: dict[str, Any] = r.body
        return body

    async def hook(
        self,
        secret: str,
        body: dict[str, Any] | bytes,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> Response:
        secret_logs.note(secret)
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": "application/json",
            "X-Ringback-Timestamp": str(ts),
            "X-Ringback-Signature": signature or sign(secret, ts, raw),
        }
        return await self.call("POST", "/v1/hooks/payment-confirmed", headers=headers, data=raw)


@pytest.fixture
async def api(service: Service) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(service, http)


@pytest.fixture
async def operator(service: Service) -> str:
    _, token = await service.store.tokens.issue("operator", None, "test operator", SETUP)
    secret_logs.note(token)
    return token


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def days(n: float) -> str:
    return iso(datetime.now(UTC) + timedelta(days=n))


def seconds(n: float) -> str:
    return iso(datetime.now(UTC) + timedelta(seconds=n))


def listing(case_ref: str = "(2026) Jing 0105 Zhi 1", **extra: Any) -> dict[str, Any]:
    """A listing body that is audible at once (effective now, with a reason)."""
    body = {
        "case_ref": case_ref,
        "expires_at": days(30),
        "effective_at": seconds(0),
        "effective_reason": "debtor was notified in court on the judgment date",
    }
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


async def until(predicate: Callable[[], bool], timeout: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.005)
    return predicate()


def announced(service: Service, number: int) -> bool:
    """What the SIP path would decide right now."""
    return service.index.lookup(number, time.time()) is not None


async def caught_up(service: Service, timeout: float = 10.0) -> bool:
    """Wait until the node's index has applied every change committed so far: the change
    feed's sequence as the database reports it now. After that, a change missing from the
    index was never made, rather than merely not arrived yet."""
    head = await service.pool.fetchval("SELECT last_seq FROM feed_counter")
    return await until(lambda: service.sync.last_seq >= head, timeout)


async def add_recording(service: Service, court_id: str, name: str = "warning") -> int:
    import uuid

    pcm = b"\x01\x00" * 8000  # one second of 8 kHz s16le
    row = await service.store.recordings.add(uuid.UUID(court_id), name, pcm, SETUP)
    return int(row["id"])
