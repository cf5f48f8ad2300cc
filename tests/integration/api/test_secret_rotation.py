"""Secrets rotate with an overlap: a court's payment-hook secret (both verify until the
overlap ends) and an event subscription's secret (deliveries signed with the new one at
once); every rotation is audited, never with a secret in it."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from court_api_support import SETUP, Api, listing, make_config, until

from ringback.server import Service

NUMBER = "+8613800138000"


def _payment(court_id: str, payment_id: str) -> dict[str, Any]:
    return {
        "court_id": court_id,
        "payment_id": payment_id,
        "case_ref": "(2026) Jing 0105 Zhi 1",
        "paid_at": "2026-01-01T00:00:00Z",
    }


async def _audit(service: Service, action: str) -> list[dict[str, Any]]:
    rows = await service.pool.fetch(
        "SELECT actor, after::text AS after FROM audit_events WHERE action = $1 ORDER BY id",
        action,
    )
    return [{"actor": r["actor"], "after": json.loads(r["after"])} for r in rows]


async def test_court_webhook_secret_rotates_with_an_overlap(
    api: Api, operator: str, service: Service
) -> None:
    court = await api.court(operator, "Rotating Court")
    court_id, old = court["court"]["id"], court["webhook_secret"]
    assert (await api.put(f"/v1/listings/{NUMBER}", court["token"], listing())).status == 201

    r = await api.post(
        f"/v1/courts/{court_id}/webhook-secret/rotate", court["token"], {"overlap_s": 3600}
    )
    assert r.status == 200, r.body
    new = r.body["webhook_secret"]
    assert new != old and len(new) >= 40
    # during the overlap both secrets verify (each payment once; a bad one never)
    assert (await api.hook(old, _payment(court_id, "p-old"))).status == 200
    assert (await api.hook(new, _payment(court_id, "p-new"))).status == 200
    bad = await api.hook("x" * 43, _payment(court_id, "p-bad"))
    assert (bad.status, bad.code) == (401, "bad_signature")
    # the rotation is audited, without either secret
    rows = await _audit(service, "court.webhook_secret.rotate")
    assert len(rows) == 1 and rows[0]["actor"].startswith("token:")
    assert set(rows[0]["after"]) == {"rotated_at", "previous_valid_until"}
    text = json.dumps(rows)
    assert old not in text and new not in text

    # a second rotation with no overlap: the first secret is gone at once, so is the second
    r = await api.post(f"/v1/courts/{court_id}/webhook-secret/rotate", operator, {"overlap_s": 0})
    newest = r.body["webhook_secret"]
    for stale in (old, new):
        r = await api.hook(stale, _payment(court_id, f"p-{uuid.uuid4()}"))
        assert (r.status, r.code) == (401, "bad_signature")
    assert (await api.hook(newest, _payment(court_id, "p-newest"))).status == 200
    assert len(await _audit(service, "court.webhook_secret.rotate")) == 2


async def test_court_rotation_is_scoped_and_bounded(api: Api, operator: str) -> None:
    a = await api.court(operator, "Court A")
    b = await api.court(operator, "Court B")
    r = await api.post(f"/v1/courts/{a['court']['id']}/webhook-secret/rotate", b["token"], {})
    assert r.status == 404
    r = await api.post(
        f"/v1/courts/{a['court']['id']}/webhook-secret/rotate", operator, {"overlap_s": 10**9}
    )
    assert (r.status, r.code) == (400, "invalid_field")
    # neither changed the secret
    assert (await api.hook(a["webhook_secret"], _payment(a["court"]["id"], "p1"))).status == 200


@pytest.fixture
async def receiver() -> Any:
    """A receiver that keeps every delivery's headers and body."""
    got: list[tuple[dict[str, str], bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        got.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield site.port, got
    await runner.cleanup()


def _verifies(secret: str, headers: dict[str, str], body: bytes) -> bool:
    ts = headers["X-Ringback-Timestamp"]
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest("sha256=" + mac, headers["X-Ringback-Signature"])


async def test_subscription_secret_rotation_signs_with_the_new_secret(
    database: str, receiver: Any
) -> None:
    port, got = receiver
    config = make_config(database)
    config.events.allowed_destinations = ["127.0.0.0/8"]
    config.events.poll_interval_s = 0.05
    service = Service(config)
    await service.start()
    try:
        _, op = await service.store.tokens.issue("operator", None, "op", SETUP)
        async with aiohttp.ClientSession() as http:
            api = Api(service, http)
            r = await api.post(
                "/v1/events/subscriptions",
                op,
                {"url": f"http://127.0.0.1:{port}/hook", "event_types": ["listing.created"]},
            )
            assert r.status == 201, r.body
            sid, first = r.body["id"], r.body["secret"]
            court = await api.court(op, "Events Court")
            await api.put(f"/v1/listings/{NUMBER}", court["token"], listing())
            assert await until(lambda: len(got) >= 1, 15)
            assert _verifies(first, *got[0])

            r = await api.post(f"/v1/events/subscriptions/{sid}/rotate-secret", op, {})
            assert r.status == 200, r.body
            second = r.body["secret"]
            assert second.startswith("whsec_") and second != first
            await api.put("/v1/listings/+8613800138001", court["token"], listing())
            assert await until(lambda: len(got) >= 2, 15)
            headers, body = got[1]
            assert _verifies(second, headers, body) and not _verifies(first, headers, body)
            # audited without the secret; unknown subscription: 404
            rows = await _audit(service, "event_subscription.rotate_secret")
            assert len(rows) == 1 and second not in json.dumps(rows)
            r = await api.post("/v1/events/subscriptions/999/rotate-secret", op, {})
            assert r.status == 404
    finally:
        await service.stop()
