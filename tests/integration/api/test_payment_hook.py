"""The payment-confirmed webhook: signatures, replay window, idempotency, clearing."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from typing import Any

from court_api_support import (
    Api,
    announced,
    caught_up,
    listing,
    until,
)

from ringback.server import Service
from ringback.sip.message import parse_message
from ringback.sip.model import Response
from ringback.webhooks import sign

N1 = 8613800138000
N2 = 8613900139000
N3 = 8613700137000
CASE = "(2026) Hu 0101 Zhi 77"


def payment(court: dict[str, Any], payment_id: str = "pay-0001", **extra: Any) -> dict[str, Any]:
    return {
        "court_id": court["court"]["id"],
        "case_ref": CASE,
        "payment_id": payment_id,
        "paid_at": "2026-11-20T10:00:00+08:00",
        "amount": "12345.67",
        "currency": "CNY",
        **extra,
    }


async def _list(api: Api, court: dict[str, Any], number: int, case_ref: str = CASE) -> None:
    r = await api.put(f"/v1/listings/+{number}", court["token"], listing(case_ref))
    assert r.status == 201, r.body


async def _sip_warning_header(service: Service, number: int) -> str | None:
    """Send a real INVITE (no SDP) to the service; the 302's X-Ringback-Warning header:
    'skipped; reason=listed_no_sdp' while the number is listed, None once it is not."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        port, branch = sock.getsockname()[1], uuid.uuid4().hex
        invite = (
            f"INVITE sip:+{number}@127.0.0.1:{service.sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=a\r\n"
            f"To: <sip:+{number}@127.0.0.1>\r\nCall-ID: {branch}\r\nCSeq: 1 INVITE\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        await loop.sock_sendto(sock, invite, ("127.0.0.1", service.sip_port))
        response = parse_message(await asyncio.wait_for(loop.sock_recv(sock, 65535), 2))
        assert isinstance(response, Response) and response.status == 302
        return response.headers.get("X-Ringback-Warning")
    finally:
        sock.close()


async def _audit_count(service: Service) -> int:
    return int(await service.store.pool.fetchval("SELECT count(*) FROM audit_events"))


async def test_payment_clears_every_listing_of_the_case_and_the_sip_path_stops_announcing(
    api: Api, operator: str, service: Service
) -> None:
    court = await api.court(operator, "Pay Court")
    await _list(api, court, N1)
    await _list(api, court, N2)
    await _list(api, court, N3, case_ref="ANOTHER CASE")
    r = await api.post(f"/v1/listings/+{N2}/suspend", court["token"], {"reason": "appeal"})
    assert r.status == 200
    assert await until(lambda: announced(service, N1) and announced(service, N3))
    assert await _sip_warning_header(service, N1) == "skipped; reason=listed_no_sdp"

    r = await api.hook(court["webhook_secret"], payment(court))
    assert r.status == 200, r.body
    assert r.headers["Idempotent-Replayed"] == "false"
    assert sorted(r.body["cleared"]) == [f"+{N1}", f"+{N2}"]
    assert r.body["payment_id"] == "pay-0001" and r.body["case_ref"] == CASE
    # Durable before the 200, and the SIP path stops announcing within the feed's latency.
    assert await until(lambda: not announced(service, N1), timeout=1.0)
    assert service.index.get(N1) is None and service.index.get(N2) is None
    assert announced(service, N3)  # another case of the same court: untouched
    assert await _sip_warning_header(service, N1) is None  # a switch now gets a plain 302
    assert await _sip_warning_header(service, N3) == "skipped; reason=listed_no_sdp"

    got = await api.get(f"/v1/listings/+{N1}", court["token"])
    item = got.body["items"][0]
    assert item["status"] == "cleared" and "pay-0001" in item["clear_reason"]
    audit = await api.get("/v1/audit", court["token"], params={"action": "listing.clear"})
    actors = {e["actor"] for e in audit.body["items"]}
    assert actors == {"payment:pay-0001"}
    assert {e["before"]["status"] for e in audit.body["items"]} == {"active", "suspended"}
    confirmed = await api.get("/v1/audit", operator, params={"action": "payment.confirmed"})
    (event,) = confirmed.body["items"]
    assert event["after"]["amount"] == "12345.67" and event["after"]["currency"] == "CNY"
    stored = await service.store.pool.fetchrow("SELECT amount, currency FROM payment_events")
    assert str(stored["amount"]) == "12345.67" and stored["currency"] == "CNY"


async def test_paying_one_case_leaves_the_same_courts_other_case_of_the_number_warned(
    api: Api, operator: str, service: Service
) -> None:
    court = await api.court(operator, "Two Cases Pay Court")
    await _list(api, court, N1)
    await _list(api, court, N1, case_ref="SECOND CASE")  # a second listing, not an update
    got = await api.get(f"/v1/listings/+{N1}", court["token"])
    ids = {i["case_ref"]: i["id"] for i in got.body["items"]}
    assert set(ids) == {CASE, "SECOND CASE"}
    assert await until(
        lambda: (
            (e := service.index.lookup(N1, time.time())) is not None and e.listing_id == ids[CASE]
        )
    )

    r = await api.hook(court["webhook_secret"], payment(court))
    assert r.status == 200, r.body
    assert r.body["cleared"] == [f"+{N1}"] and r.body["cleared_listing_ids"] == [ids[CASE]]
    # The other case is still owed: still warned, now for (and credited to) that listing.
    assert await until(
        lambda: (
            (e := service.index.lookup(N1, time.time())) is not None
            and e.listing_id == ids["SECOND CASE"]
        )
    )
    assert await _sip_warning_header(service, N1) == "skipped; reason=listed_no_sdp"

    r = await api.hook(court["webhook_secret"], payment(court, "pay-0002", case_ref="SECOND CASE"))
    assert r.status == 200, r.body
    assert r.body["cleared_listing_ids"] == [ids["SECOND CASE"]]
    assert await until(lambda: not announced(service, N1))
    assert await _sip_warning_header(service, N1) is None


async def test_replay_returns_the_first_result_and_changes_nothing(
    api: Api, operator: str, service: Service
) -> None:
    court = await api.court(operator, "Replay Court")
    await _list(api, court, N1)
    first = await api.hook(court["webhook_secret"], payment(court))
    assert first.status == 200 and first.body["cleared"] == [f"+{N1}"]
    rows = await _audit_count(service)

    # The case is listed again after the payment (say, a new debt under the same case).
    await _list(api, court, N1)
    rows = await _audit_count(service)
    assert await until(lambda: announced(service, N1))
    # The same delivery again, and the same payment id with a fresh timestamp: same answer.
    for _ in range(2):
        again = await api.hook(court["webhook_secret"], payment(court))
        assert again.status == 200
        assert again.raw == first.raw  # byte for byte
        assert again.headers["Idempotent-Replayed"] == "true"
    assert await _audit_count(service) == rows
    assert await caught_up(service)  # whatever the replays changed has reached the index
    assert announced(service, N1)  # the replay did not clear the new listing


async def test_concurrent_duplicates_clear_once(api: Api, operator: str, service: Service) -> None:
    court = await api.court(operator, "Concurrent Court")
    for n in (N1, N2):
        await _list(api, court, n)
    results = await asyncio.gather(
        *(api.hook(court["webhook_secret"], payment(court, "pay-dup")) for _ in range(6))
    )
    assert {r.status for r in results} == {200}
    assert len({r.raw for r in results}) == 1
    assert sum(r.headers["Idempotent-Replayed"] == "false" for r in results) == 1
    n = await service.store.pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'payment.confirmed'"
    )
    assert n == 1


async def test_forged_stale_missing_and_wrong_court_signatures_are_refused(
    api: Api, operator: str, service: Service
) -> None:
    a = await api.court(operator, "Hook Court A")
    b = await api.court(operator, "Hook Court B")
    await _list(api, a, N1)
    await _list(api, b, N2)  # same case reference, other court
    assert await until(lambda: announced(service, N1) and announced(service, N2))
    rows = await _audit_count(service)
    body = payment(a)
    raw = json.dumps(body).encode()
    now = int(time.time())
    secret = a["webhook_secret"]

    async def send(headers: dict[str, str], data: bytes = raw) -> Any:
        return await api.call(
            "POST",
            "/v1/hooks/payment-confirmed",
            headers={"Content-Type": "application/json", **headers},
            data=data,
        )

    cases = [
        ({}, "missing_signature"),
        ({"X-Ringback-Timestamp": str(now)}, "missing_signature"),
        ({"X-Ringback-Signature": sign(secret, now, raw)}, "missing_signature"),
        (
            {"X-Ringback-Timestamp": "yesterday", "X-Ringback-Signature": sign(secret, now, raw)},
            "bad_timestamp",
        ),
        # Forged: random key; right key but wrong timestamp in the MAC; garbage.
        (
            {"X-Ringback-Timestamp": str(now), "X-Ringback-Signature": sign("guess", now, raw)},
            "bad_signature",
        ),
        (
            {"X-Ringback-Timestamp": str(now), "X-Ringback-Signature": sign(secret, now - 1, raw)},
            "bad_signature",
        ),
        ({"X-Ringback-Timestamp": str(now), "X-Ringback-Signature": "sha256=zz"}, "bad_signature"),
        (
            {
                "X-Ringback-Timestamp": str(now),
                "X-Ringback-Signature": sign(secret, now, raw).replace("sha256", "sha1"),
            },
            "bad_signature",
        ),
        # Wrong court: court B's secret over a body naming court A.
        (
            {
                "X-Ringback-Timestamp": str(now),
                "X-Ringback-Signature": sign(b["webhook_secret"], now, raw),
            },
            "bad_signature",
        ),
        # Stale or from the future: outside ±300 s, even with a valid signature (302: `now` is
        # truncated to the second, so 301 could be 300.x by the server's clock).
        (
            {
                "X-Ringback-Timestamp": str(now - 302),
                "X-Ringback-Signature": sign(secret, now - 302, raw),
            },
            "stale_timestamp",
        ),
        (
            {
                "X-Ringback-Timestamp": str(now + 302),
                "X-Ringback-Signature": sign(secret, now + 302, raw),
            },
            "stale_timestamp",
        ),
    ]
    for headers, code in cases:
        r = await send(headers)
        assert r.status == 401, (headers, r.body)
        assert r.code == code, (headers, r.body)
        assert r.body["error"]["message"]
    # A body changed after signing.
    tampered = raw.replace(CASE.encode(), b"OTHER CASE")
    r = await send(
        {"X-Ringback-Timestamp": str(now), "X-Ringback-Signature": sign(secret, now, raw)}, tampered
    )
    assert r.status == 401 and r.code == "bad_signature"
    # An unknown court is just a bad signature (no oracle for which courts exist).
    ghost = {**body, "court_id": str(uuid.uuid4())}
    r = await api.hook("anything", ghost)
    assert r.status == 401 and r.code == "bad_signature"
    # Within the window (299 s old) it is accepted.
    ok = await api.hook(secret, body, timestamp=now - 299)
    assert ok.status == 200 and ok.body["cleared"] == [f"+{N1}"]
    assert await until(lambda: not announced(service, N1))
    # Court A's payment never touches court B's listing with the same case reference.
    assert await caught_up(service)  # all of court A's payment has reached the index
    assert announced(service, N2)
    assert await _audit_count(service) > rows
    b_listing = await api.get(f"/v1/listings/+{N2}", b["token"])
    assert b_listing.body["items"][0]["status"] == "active"


async def test_signed_but_invalid_bodies_get_400(api: Api, operator: str) -> None:
    court = await api.court(operator, "Body Court")
    secret = court["webhook_secret"]
    cases = [
        (payment(court, paid_at=None), "missing_field"),
        (payment(court, paid_at="not a time"), "invalid_field"),
        (payment(court, payment_id=""), "invalid_field"),
        (payment(court, amount=-5), "invalid_field"),
        (payment(court, amount="lots"), "invalid_field"),
        (payment(court, currency="yuan"), "invalid_field"),
        (payment(court, surprise=True), "unknown_field"),
    ]
    for body, code in cases:
        body = {k: v for k, v in body.items() if v is not None}
        r = await api.hook(secret, body)
        assert r.status == 400 and r.code == code, (body, r.body)
    r = await api.hook(secret, b"[1, 2]")
    assert r.status == 400 and r.code == "invalid_json"
    r = await api.hook(secret, {"case_ref": "x"})
    assert r.status == 400 and "court_id" in r.body["error"]["message"]


async def test_payment_with_nothing_to_clear_is_recorded(api: Api, operator: str) -> None:
    court = await api.court(operator, "Empty Court")
    r = await api.hook(court["webhook_secret"], payment(court, "pay-none"))
    assert r.status == 200 and r.body["cleared"] == []
