"""`POST /v1/hooks/payment-confirmed`: a payment system says a debt is paid.

Authenticated by the court's webhook secret, not by a bearer token:

    X-Ringback-Timestamp: <unix seconds>
    X-Ringback-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">

The timestamp must be within ±300 s of our clock (replay window). The hook is idempotent
by (court_id, payment_id): a replay gets the first answer, byte for byte, and changes
nothing. A first delivery clears every open (active or suspended) listing of the case in
one transaction; the change feed then takes the numbers out of every node's index.
"""

from __future__ import annotations

import hmac
import json
import time
import uuid

from aiohttp import web

from ringback.api.common import json_object, validated
from ringback.api.context import context
from ringback.api.errors import ApiError
from ringback.api.routes import Header, Reply, Routes
from ringback.api.schemas.payments import PaymentConfirmed, PaymentResult
from ringback.webhooks import sign

REPLAY_WINDOW_S = 300
MAX_BODY = 64 * 1024


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message)


def _check_headers(request: web.Request, now: float) -> tuple[str, str]:
    timestamp = request.headers.get("X-Ringback-Timestamp", "").strip()
    signature = request.headers.get("X-Ringback-Signature", "").strip()
    if not signature or not timestamp:
        missing = [
            name
            for name, value in (
                ("X-Ringback-Timestamp", timestamp),
                ("X-Ringback-Signature", signature),
            )
            if not value
        ]
        raise _unauthorized("missing_signature", f"missing header(s): {', '.join(missing)}")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise _unauthorized(
            "bad_timestamp", f"X-Ringback-Timestamp: must be unix seconds, got {timestamp[:40]!r}"
        )
    skew = int(timestamp) - now
    if abs(skew) > REPLAY_WINDOW_S:
        raise _unauthorized(
            "stale_timestamp",
            f"X-Ringback-Timestamp is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} "
            f"our clock; the window is ±{REPLAY_WINDOW_S} s",
        )
    scheme, _, hexdigest = signature.partition("=")
    if scheme != "sha256" or len(hexdigest) != 64:
        raise _unauthorized(
            "bad_signature", "X-Ringback-Signature: must be 'sha256=' and 64 hex digits"
        )
    return timestamp, hexdigest.lower()


async def payment_confirmed(request: web.Request) -> web.Response:
    ctx = context(request)
    timestamp, digest = _check_headers(request, time.time())
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, "body_too_large", f"body larger than {MAX_BODY} bytes")
    raw = await request.read()
    if len(raw) > MAX_BODY:
        raise ApiError(413, "body_too_large", f"body larger than {MAX_BODY} bytes")
    body = json_object(raw)
    # The court (and so the secret) comes from the body; only a correct signature makes
    # any of the body trustworthy, so an unknown court is just a bad signature.
    court_text = body.get("court_id")
    court_id: uuid.UUID | None = None
    if isinstance(court_text, str):
        try:
            court_id = uuid.UUID(court_text)
        except ValueError:
            court_id = None
    if court_id is None:
        raise ApiError(400, "invalid_field", "court_id: must be the court's UUID")
    # The current secret, and the previous one during a rotation's overlap.
    secrets = await ctx.courts.webhook_secrets(court_id)
    matched = False
    for secret in secrets or ["\0unknown court"]:
        expected = sign(secret, timestamp, raw).removeprefix("sha256=")
        matched |= hmac.compare_digest(expected.encode(), digest.encode())
    if not matched or not secrets:
        raise _unauthorized(
            "bad_signature",
            "X-Ringback-Signature does not match HMAC-SHA256('<timestamp>.<body>') "
            "with the court's webhook secret",
        )

    payment = validated(PaymentConfirmed, body)
    result, replayed = await ctx.payments.confirm(
        court_id,
        payment.payment_id,
        payment.case_ref,
        payment.paid_at,
        payment.amount,
        payment.currency,
    )
    # Keys sorted: a replay (read back from jsonb) answers with exactly the same bytes.
    return web.Response(
        text=json.dumps(result, sort_keys=True, ensure_ascii=False),
        content_type="application/json",
        headers={"Idempotent-Replayed": "true" if replayed else "false"},
    )


def register(app: web.Application) -> None:
    Routes(app, "payments").add(
        "POST",
        "/v1/hooks/payment-confirmed",
        payment_confirmed,
        "A payment system confirms a payment: clear the case's listings",
        description="Signed: X-Ringback-Signature is 'sha256=' + hex HMAC-SHA256 of "
        "'<X-Ringback-Timestamp>.<raw body>' with the court's webhook secret; the timestamp "
        f"must be within ±{REPLAY_WINDOW_S} s. Idempotent by (court_id, payment_id): a "
        "replay returns the first result (Idempotent-Replayed: true).",
        headers=(
            Header(
                "X-Ringback-Timestamp",
                {"type": "string", "pattern": "^[0-9]{1,12}$"},
                "unix seconds",
            ),
            Header("X-Ringback-Signature", {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"}),
        ),
        body=PaymentConfirmed,
        replies={200: Reply("cleared (or the first result again)", PaymentResult)},
        errors={
            400: "invalid body (after a valid signature)",
            401: "missing_signature, bad_timestamp, stale_timestamp or bad_signature",
            413: "body too large",
        },
    )
