"""`/openapi.json` (OpenAPI 3.1, written by hand) and `/docs`, a static page rendered from it.

The description covers every HTTP endpoint of ringback: the court API (courts, tokens,
listings, payment hook, audit, stats, HTTP dip), recordings, imports, event subscriptions,
and the operational endpoints. `/docs` needs no CDN or JavaScript: it is plain HTML
generated from the same dictionary.
"""

from __future__ import annotations

import html
import json
from typing import Any

from aiohttp import web

from ringback import __version__ as VERSION

Schema = dict[str, Any]

NUMBER_PATTERN = r"^\+[1-9][0-9]{7,14}$"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    out = dict(schema)
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
        return out
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(props: dict[str, Schema], required: list[str] | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    schema.update(extra)
    return schema


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> Schema:
    return _json(_ref("Error"), description)


_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_TIME = {"type": "string", "format": "date-time"}
_UUID = {"type": "string", "format": "uuid"}
_E164 = {"type": "string", "pattern": NUMBER_PATTERN, "examples": ["+8613800138000"]}


def _page(item: Schema) -> Schema:
    return _obj(
        {"items": {"type": "array", "items": item}, "next_cursor": _nullable(_STR)},
        ["items", "next_cursor"],
    )


SCHEMAS: dict[str, Schema] = {
    "Error": _obj(
        {
            "error": _obj(
                {
                    "code": {**_STR, "description": "machine-readable, e.g. invalid_number"},
                    "message": {**_STR, "description": "what is wrong, for people"},
                },
                ["code", "message"],
            )
        },
        ["error"],
    ),
    "Court": _obj(
        {
            "id": _UUID,
            "name": _STR,
            "default_recording_id": _nullable(_INT),
            "created_at": _TIME,
        },
        ["id", "name", "default_recording_id", "created_at"],
    ),
    "CourtCreated": _obj(
        {
            "court": _ref("Court"),
            "token": {**_STR, "description": "the court's first bearer token (shown once)"},
            "webhook_secret": {
                **_STR,
                "description": "HMAC key of the payment hook for this court (shown once)",
            },
            "note": _STR,
        },
        ["court", "token", "webhook_secret"],
    ),
    "Token": _obj(
        {
            "id": _INT,
            "prefix": {**_STR, "description": "first characters of the token, to recognise it"},
            "role": {"type": "string", "enum": ["operator", "court", "switch"]},
            "court_id": _nullable(_UUID),
            "label": _STR,
            "created_at": _TIME,
            "revoked_at": _nullable(_TIME),
        },
        ["id", "prefix", "role", "court_id", "label", "created_at", "revoked_at"],
    ),
    "TokenCreated": {
        "allOf": [
            _ref("Token"),
            _obj({"token": {**_STR, "description": "the bearer token (shown once)"}}, ["token"]),
        ]
    },
    "ListingStatus": {"type": "string", "enum": ["active", "suspended", "cleared", "expired"]},
    "Listing": _obj(
        {
            "id": _INT,
            "number": _E164,
            "court_id": _UUID,
            "case_ref": _STR,
            "recording_id": _nullable(_INT),
            "status": _ref("ListingStatus"),
            "audible": {
                **_BOOL,
                "description": "this listing on its own makes callers hear the warning now",
            },
            "listed_at": _TIME,
            "effective_at": _TIME,
            "effective_reason": _nullable(_STR),
            "expires_at": _TIME,
            "cleared_at": _nullable(_TIME),
            "clear_reason": _nullable(_STR),
            "suspend_reason": _nullable(_STR),
            "updated_at": _TIME,
        },
        [
            "id",
            "number",
            "court_id",
            "case_ref",
            "recording_id",
            "status",
            "audible",
            "listed_at",
            "effective_at",
            "effective_reason",
            "expires_at",
            "cleared_at",
            "clear_reason",
            "suspend_reason",
            "updated_at",
        ],
    ),
    "ListingPut": _obj(
        {
            "case_ref": {**_STR, "minLength": 1, "maxLength": 200},
            "expires_at": {
                **_TIME,
                "description": "at most listings.max_duration_days from now",
            },
            "recording_id": _nullable({**_INT, "minimum": 1}),
            "effective_at": _nullable(
                {
                    **_TIME,
                    "description": "default: now + listings.notice_period_days; earlier "
                    "needs effective_reason",
                }
            ),
            "effective_reason": _nullable({**_STR, "maxLength": 1000}),
            "court_id": _nullable(
                {**_UUID, "description": "required for an operator token; a court's own"}
            ),
        },
        ["case_ref", "expires_at"],
        additionalProperties=False,
    ),
    "Reason": _obj(
        {
            "reason": {**_STR, "minLength": 1, "maxLength": 1000},
            "court_id": _nullable(
                {**_UUID, "description": "operator: which court's listing (if several)"}
            ),
            "case_ref": _nullable(
                {
                    **_STR,
                    "maxLength": 200,
                    "description": "which case's listing, if the court lists the number "
                    "under several",
                }
            ),
        },
        additionalProperties=False,
    ),
    "ListingsOfNumber": _obj(
        {
            "number": _E164,
            "items": {"type": "array", "items": _ref("Listing")},
            "announced": {**_BOOL, "description": "operator only: the index announces it now"},
        },
        ["number", "items"],
    ),
    "PaymentConfirmed": _obj(
        {
            "court_id": _UUID,
            "case_ref": {**_STR, "minLength": 1, "maxLength": 200},
            "payment_id": {**_STR, "minLength": 1, "maxLength": 200},
            "paid_at": _TIME,
            "amount": {"anyOf": [{"type": "number", "minimum": 0}, _STR, {"type": "null"}]},
            "currency": _nullable({**_STR, "pattern": "^[A-Za-z]{3}$"}),
        },
        ["court_id", "case_ref", "payment_id", "paid_at"],
        additionalProperties=False,
    ),
    "PaymentResult": _obj(
        {
            "court_id": _UUID,
            "payment_id": _STR,
            "case_ref": _STR,
            "paid_at": _TIME,
            "received_at": _TIME,
            "cleared": {"type": "array", "items": _E164},
            "cleared_listing_ids": {"type": "array", "items": _INT},
        },
        ["court_id", "payment_id", "case_ref", "paid_at", "received_at", "cleared"],
    ),
    "AuditEvent": _obj(
        {
            "id": _INT,
            "at": _TIME,
            "actor": _STR,
            "court_id": _nullable(_UUID),
            "action": {**_STR, "examples": ["listing.create"]},
            "entity": {**_STR, "examples": ["listing:42"]},
            "before": {"description": "the entity before the change (JSON or null)"},
            "after": {"description": "the entity after the change (JSON or null)"},
            "prev_hash": {**_STR, "pattern": "^[0-9a-f]{64}$"},
            "hash": {**_STR, "pattern": "^[0-9a-f]{64}$"},
        },
        ["id", "at", "actor", "court_id", "action", "entity", "prev_hash", "hash"],
    ),
    "Stats": _obj(
        {
            "court_id": _nullable(_UUID),
            "listings": _obj(
                {
                    "active": _INT,
                    "suspended": _INT,
                    "cleared": _INT,
                    "expired": _INT,
                    "in_notice_period": _INT,
                },
                ["active", "suspended", "cleared", "expired", "in_notice_period"],
            ),
            "announcements": _obj(
                {"completed": _INT, "cancelled": _INT, "failed": _INT, "total": _INT},
                ["completed", "cancelled", "failed", "total"],
            ),
        },
        ["court_id", "listings", "announcements"],
    ),
    "Lookup": _obj(
        {
            "number": _E164,
            "listed": _BOOL,
            "listing_id": _INT,
            "recording_id": {**_INT, "description": "0: the shipped default warning"},
            "recording_url": {
                **_STR,
                "description": "the warning as 8 kHz G.711 μ-law WAV",
            },
            "recording_urls": _obj({"pcmu": _STR, "pcma": _STR}, ["pcmu", "pcma"]),
        },
        ["number", "listed"],
    ),
    "Recording": {
        "type": "object",
        "description": "A warning recording as callers hear it (8 kHz mono).",
        "properties": {
            "id": _INT,
            "court_id": _nullable(_UUID),
            "name": _STR,
            "duration_ms": _INT,
            "loudness_lufs": _nullable({"type": "number"}),
            "created_at": _TIME,
            "original": {"type": "object"},
        },
    },
    "Generic": {"type": "object", "description": "see the endpoint's description"},
}

_AUTH_ERRORS = {
    "401": _error("missing, unknown or revoked token"),
    "403": _error("the token's role may not use this endpoint"),
}
_DB_ERRORS = {"503": _error("the database is unavailable; retry")}


def _responses(ok: dict[str, Schema], *errors: tuple[str, str], auth: bool = True) -> Schema:
    out: Schema = dict(ok)
    for status, description in errors:
        out[status] = _error(description)
    if auth:
        out.update(_AUTH_ERRORS)
    out.update(_DB_ERRORS)
    return out


def _q(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _p(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


_LIMIT = _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size (100)")
_CURSOR = _q("cursor", _STR, "next_cursor of the previous page")
_COURT_ID = _p("court_id", _UUID, "the court")
_NUMBER = _p("number", _E164, "E.164 number with '+' (URL-encode '+' as %2B if you like)")


def _body(schema: Schema, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _listing_action(summary: str, reason_required: bool) -> Schema:
    schema = _ref("Reason")
    if reason_required:
        schema = {"allOf": [_ref("Reason"), {"required": ["reason"]}]}
    return {
        "post": {
            "tags": ["listings"],
            "summary": summary,
            "parameters": [_NUMBER],
            "requestBody": _body(schema, required=reason_required),
            "responses": _responses(
                {"200": _json(_ref("Listing"), "the listing after the change")},
                ("400", "invalid number, missing reason or invalid body"),
                ("404", "no open listing of this number (for this court)"),
                (
                    "409",
                    "wrong state for this change, or several courts (give court_id) or cases "
                    "(give case_ref) list it",
                ),
            ),
        }
    }


def _imports_post() -> dict[str, Any]:
    return {
        "post": {
            "tags": ["imports"],
            "summary": "Bulk import of listings from CSV (number, case_ref, expires_at)",
            "requestBody": {
                "required": True,
                "content": {"text/csv": {"schema": {"type": "string"}}},
            },
            "responses": _responses(
                {
                    "201": _json(_ref("Generic"), "the import job"),
                    "202": _json(_ref("Generic"), "the import job, running"),
                },
                ("400", "not a CSV file, or a bad header row"),
                ("413", "too large"),
                ("422", "a bad row: its line number and reason; nothing changed"),
            ),
        }
    }


def _paths() -> dict[str, Any]:
    court_errors = (("404", "no such court (or another court's)"),)
    return {
        "/v1/courts": {
            "post": {
                "tags": ["courts"],
                "summary": "Create a court with its first token and webhook secret (operator)",
                "requestBody": _body(
                    _obj(
                        {"name": {**_STR, "minLength": 1, "maxLength": 200}},
                        ["name"],
                        additionalProperties=False,
                    )
                ),
                "responses": _responses(
                    {"201": _json(_ref("CourtCreated"), "created; secrets are shown once")},
                    ("400", "invalid body"),
                    ("409", "a court of that name exists"),
                ),
            },
            "get": {
                "tags": ["courts"],
                "summary": "Courts (operator: all; court: itself)",
                "parameters": [_LIMIT, _CURSOR],
                "responses": _responses(
                    {"200": _json(_page(_ref("Court")), "a page of courts")},
                    ("400", "bad limit or cursor"),
                ),
            },
        },
        "/v1/courts/{court_id}": {
            "get": {
                "tags": ["courts"],
                "summary": "One court (operator, or that court)",
                "parameters": [_COURT_ID],
                "responses": _responses({"200": _json(_ref("Court"), "the court")}, *court_errors),
            }
        },
        "/v1/courts/{court_id}/tokens": {
            "post": {
                "tags": ["tokens"],
                "summary": "Issue a court token (operator, or that court)",
                "parameters": [_COURT_ID],
                "requestBody": _body(
                    _obj({"label": {**_STR, "maxLength": 200}}, additionalProperties=False),
                    required=False,
                ),
                "responses": _responses(
                    {"201": _json(_ref("TokenCreated"), "the token, shown once")},
                    ("400", "invalid body"),
                    *court_errors,
                ),
            },
            "get": {
                "tags": ["tokens"],
                "summary": "The court's tokens (never the tokens themselves)",
                "parameters": [_COURT_ID],
                "responses": _responses(
                    {"200": _json(_page(_ref("Token")), "all the court's tokens")}, *court_errors
                ),
            },
        },
        "/v1/courts/{court_id}/default-recording": {
            "put": {
                "tags": ["recordings"],
                "summary": "Set (or unset with null) the court's default recording",
                "parameters": [_COURT_ID],
                "requestBody": _body(_obj({"recording_id": _nullable(_INT)}, ["recording_id"])),
                "responses": _responses(
                    {
                        "200": _json(
                            _obj({"court_id": _UUID, "default_recording_id": _nullable(_INT)}),
                            "the new default",
                        )
                    },
                    ("400", "invalid body"),
                    ("404", "no such court or recording"),
                    ("422", "invalid body"),
                ),
            }
        },
        "/v1/tokens": {
            "post": {
                "tags": ["tokens"],
                "summary": "Issue an operator or switch token (operator)",
                "requestBody": _body(
                    _obj(
                        {
                            "role": {"type": "string", "enum": ["operator", "switch"]},
                            "label": {**_STR, "maxLength": 200},
                        },
                        ["role"],
                        additionalProperties=False,
                    )
                ),
                "responses": _responses(
                    {"201": _json(_ref("TokenCreated"), "the token, shown once")},
                    ("400", "invalid body"),
                ),
            }
        },
        "/v1/tokens/{token_id}": {
            "delete": {
                "tags": ["tokens"],
                "summary": "Revoke a token (operator: any; court: its own). Idempotent.",
                "parameters": [_p("token_id", {**_INT, "minimum": 1}, "the token's id")],
                "responses": _responses(
                    {"200": _json(_ref("Token"), "the revoked token")},
                    ("404", "no such token (or another court's)"),
                ),
            }
        },
        "/v1/listings": {
            "get": {
                "tags": ["listings"],
                "summary": "Search listings, oldest first, with cursor paging",
                "parameters": [
                    _q("status", _ref("ListingStatus"), "by status (expired is derived)"),
                    _q("case_ref", _STR, "exact case reference"),
                    _q("court_id", _UUID, "operator: one court's; court: only its own"),
                    _q("number", _E164, "one number"),
                    _LIMIT,
                    _CURSOR,
                ],
                "responses": _responses(
                    {"200": _json(_page(_ref("Listing")), "a page of listings")},
                    ("400", "invalid parameter or cursor"),
                    ("404", "another court's court_id"),
                ),
            }
        },
        "/v1/listings/{number}": {
            "put": {
                "tags": ["listings"],
                "summary": "List a number for a court's case, or update that case's open listing",
                "description": "A listing is one case of one court: a case_ref the court has "
                "no open listing of this number under creates another listing (201), the same "
                "case_ref updates it (200). effective_at defaults to now + "
                "listings.notice_period_days; an earlier effective_at needs effective_reason "
                "(audited). expires_at is capped at listings.max_duration_days from now.",
                "parameters": [_NUMBER],
                "requestBody": _body(_ref("ListingPut")),
                "responses": _responses(
                    {
                        "201": _json(_ref("Listing"), "listed"),
                        "200": _json(_ref("Listing"), "the case's open listing was updated"),
                    },
                    ("400", "invalid number or body, with the reason"),
                    ("404", "no such court or recording (or another court's)"),
                    ("409", "changed concurrently"),
                ),
            },
            "get": {
                "tags": ["listings"],
                "summary": "Listings of a number, newest first (court: its own; operator: all)",
                "parameters": [_NUMBER],
                "responses": _responses(
                    {"200": _json(_ref("ListingsOfNumber"), "the listings")},
                    ("400", "invalid number"),
                    ("404", "no listing of this number (for this court)"),
                ),
            },
        },
        "/v1/listings/{number}/clear": _listing_action("Clear a listing (reason)", True),
        "/v1/listings/{number}/suspend": _listing_action(
            "Suspend a listing: dispute or appeal; the warning stops (reason)", True
        ),
        "/v1/listings/{number}/resume": _listing_action("Resume a suspended listing", False),
        "/v1/hooks/payment-confirmed": {
            "post": {
                "tags": ["payments"],
                "summary": "A payment system confirms a payment: clear the case's listings",
                "description": "Signed: X-Ringback-Signature is 'sha256=' + hex HMAC-SHA256 "
                "of '<X-Ringback-Timestamp>.<raw body>' with the court's webhook secret; "
                "the timestamp must be within ±300 s. Idempotent by (court_id, payment_id): "
                "a replay returns the first result (Idempotent-Replayed: true).",
                "security": [],
                "parameters": [
                    {
                        "name": "X-Ringback-Timestamp",
                        "in": "header",
                        "required": True,
                        "schema": {**_STR, "pattern": "^[0-9]{1,12}$"},
                        "description": "unix seconds",
                    },
                    {
                        "name": "X-Ringback-Signature",
                        "in": "header",
                        "required": True,
                        "schema": {**_STR, "pattern": "^sha256=[0-9a-f]{64}$"},
                    },
                ],
                "requestBody": _body(_ref("PaymentConfirmed")),
                "responses": _responses(
                    {"200": _json(_ref("PaymentResult"), "cleared (or the first result again)")},
                    ("400", "invalid body (after a valid signature)"),
                    (
                        "401",
                        "missing_signature, bad_timestamp, stale_timestamp or bad_signature",
                    ),
                    ("413", "body too large"),
                    auth=False,
                ),
            }
        },
        "/v1/audit": {
            "get": {
                "tags": ["audit"],
                "summary": "The audit trail, oldest first (court: its own events)",
                "parameters": [
                    _LIMIT,
                    _CURSOR,
                    _q("entity", _STR, "e.g. listing:42, court:<uuid>, token:7"),
                    _q("action", _STR, "e.g. listing.clear"),
                ],
                "responses": _responses(
                    {"200": _json(_page(_ref("AuditEvent")), "a page of events")},
                    ("400", "invalid parameter or cursor"),
                ),
            }
        },
        "/v1/stats": {
            "get": {
                "tags": ["audit"],
                "summary": "Listings by status and announcements by outcome",
                "parameters": [_q("court_id", _UUID, "operator: one court (court: itself)")],
                "responses": _responses(
                    {"200": _json(_ref("Stats"), "counts")},
                    ("400", "invalid parameter"),
                    ("404", "no such court (or another court's)"),
                ),
            }
        },
        "/v1/lookup/{number}": {
            "get": {
                "tags": ["switches"],
                "summary": "HTTP dip: is the number announced now? (operator or switch)",
                "description": "Answered from the node's in-memory index (no database "
                "round trip). Accepts E.164 or any form the SIP path normalises "
                "(national, 00-international, tel:/sip: URIs).",
                "parameters": [_p("number", _STR, "the called number")],
                "responses": _responses(
                    {"200": _json(_ref("Lookup"), "the decision")},
                    ("400", "not a number that can be normalised"),
                    ("503", "the index is not loaded yet"),
                ),
            }
        },
        "/v1/recordings": {
            "post": {
                "tags": ["recordings"],
                "summary": "Upload a warning (multipart: file, name, court_id for operators)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": _obj(
                                {
                                    "file": {
                                        "type": "string",
                                        "contentMediaType": "application/octet-stream",
                                    },
                                    "name": _STR,
                                    "court_id": _UUID,
                                },
                                ["file"],
                            )
                        }
                    },
                },
                "responses": _responses(
                    {"201": _json(_ref("Recording"), "transcoded and stored")},
                    ("400", "malformed upload, empty or silent file"),
                    ("404", "no such court"),
                    ("415", "not an audio file ffmpeg can decode"),
                    ("413", "too large"),
                    ("422", "too long or otherwise unusable"),
                ),
            },
            "get": {
                "tags": ["recordings"],
                "summary": "Recordings (court: its own and the shipped ones)",
                "parameters": [
                    _q("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "page size"),
                    _q("after", {"type": "integer", "minimum": 0}, "id to continue after"),
                    _q("court_id", _UUID, "one court's"),
                ],
                "responses": _responses(
                    {"200": _json(_ref("Generic"), "{recordings: [...], next}")},
                    ("400", "invalid parameter"),
                ),
            },
        },
        "/v1/recordings/{id}": {
            "get": {
                "tags": ["recordings"],
                "summary": "One recording's metadata",
                "parameters": [_p("id", _INT, "recording id")],
                "responses": _responses(
                    {"200": _json(_ref("Recording"), "the recording")},
                    ("404", "no such recording (or another court's)"),
                ),
            }
        },
        "/v1/recordings/{id}/audio.wav": {
            "get": {
                "tags": ["recordings"],
                "summary": "What callers hear, as 8 kHz WAV (pcm, pcmu or pcma)",
                "parameters": [
                    _p("id", _INT, "recording id"),
                    _q("codec", {"type": "string", "enum": ["pcm", "pcmu", "pcma"]}, "encoding"),
                ],
                "responses": _responses(
                    {
                        "200": {
                            "description": "WAV audio",
                            "content": {"audio/wav": {"schema": {"type": "string"}}},
                        }
                    },
                    ("400", "unknown codec"),
                    ("404", "no such recording (or another court's)"),
                ),
            }
        },
        "/v1/imports": {
            **_imports_post(),
            "get": {
                "tags": ["imports"],
                "summary": "Import jobs, newest first",
                "responses": _responses({"200": _json(_ref("Generic"), "import jobs")}),
            },
        },
        "/v1/imports/{id}": {
            "get": {
                "tags": ["imports"],
                "summary": "An import job and its progress",
                "parameters": [_p("id", _STR, "import id")],
                "responses": _responses(
                    {"200": _json(_ref("Generic"), "the job")}, ("404", "no such import")
                ),
            }
        },
        "/v1/events/subscriptions": {
            "get": {
                "tags": ["events"],
                "summary": "Outgoing event webhook subscriptions (operator)",
                "responses": _responses({"200": _json(_ref("Generic"), "subscriptions")}),
            },
            "post": {
                "tags": ["events"],
                "summary": "Subscribe a URL to events (listing.created, listing.effective, "
                "listing.suspended, listing.resumed, listing.cleared, warnings.played.hourly)",
                "requestBody": _body(_ref("Generic")),
                "responses": _responses(
                    {"201": _json(_ref("Generic"), "the subscription, with its signing secret")},
                    ("400", "invalid JSON"),
                    ("422", "invalid subscription (URL, event types)"),
                ),
            },
        },
        "/v1/events/subscriptions/{id}": {
            "delete": {
                "tags": ["events"],
                "summary": "Remove a subscription (operator)",
                "parameters": [_p("id", _STR, "subscription id")],
                "responses": _responses(
                    {"200": _json(_ref("Generic"), "the removed subscription")},
                    ("404", "no such subscription"),
                ),
            }
        },
        "/v1/events/deliveries": {
            "get": {
                "tags": ["events"],
                "summary": "Event deliveries and their failures (operator)",
                "parameters": [
                    _q("status", _STR, "pending, retrying, delivered or failed"),
                ],
                "responses": _responses({"200": _json(_ref("Generic"), "deliveries")}),
            }
        },
        "/v1/events/deliveries/{id}": {
            "get": {
                "tags": ["events"],
                "summary": "One delivery with its attempts (operator)",
                "parameters": [_p("id", _STR, "delivery id")],
                "responses": _responses(
                    {"200": _json(_ref("Generic"), "the delivery")}, ("404", "no such delivery")
                ),
            }
        },
        "/v1/events/deliveries/{id}/retry": {
            "post": {
                "tags": ["events"],
                "summary": "Deliver a failed delivery again now (operator)",
                "parameters": [_p("id", _STR, "delivery id")],
                "responses": _responses(
                    {"200": _json(_ref("Generic"), "the delivery, queued again")},
                    ("404", "no such delivery"),
                ),
            }
        },
        "/healthz": {
            "get": {
                "tags": ["operations"],
                "summary": "Liveness",
                "security": [],
                "responses": {"200": _json(_obj({"status": _STR}, ["status"]), "alive")},
            }
        },
        "/readyz": {
            "get": {
                "tags": ["operations"],
                "summary": "Readiness: index loaded and fresh, database reachable",
                "security": [],
                "responses": {
                    "200": _json(_ref("Generic"), "ready"),
                    "503": _json(_ref("Generic"), "not ready, with the failing checks"),
                },
            }
        },
        "/metrics": {
            "get": {
                "tags": ["operations"],
                "summary": "Prometheus metrics",
                "security": [],
                "responses": {
                    "200": {
                        "description": "text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "tags": ["operations"],
                "summary": "This description",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
            }
        },
        "/docs": {
            "get": {
                "tags": ["operations"],
                "summary": "This description as an HTML page",
                "security": [],
                "responses": {
                    "200": {
                        "description": "HTML",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }


def spec() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ringback",
            "version": VERSION,
            "description": "Court-ordered warning announcements in the SIP call-setup path: "
            "courts list judgment debtors' numbers, payment systems clear them, switches ask. "
            'Errors are always {"error": {"code", "message"}}.',
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "tags": [
            {"name": n}
            for n in (
                "courts",
                "tokens",
                "listings",
                "payments",
                "audit",
                "switches",
                "recordings",
                "imports",
                "events",
                "operations",
            )
        ],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "roles: operator, court (its own data only), switch (dip)",
                }
            },
            "schemas": SCHEMAS,
        },
    }


def docs_html(document: dict[str, Any]) -> str:
    """A self-contained page listing every operation of `document` (no scripts, no CDN)."""
    e = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(document['info']['title'])} API</title>",
        "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem}code{background:#f3f3f3;padding:0 .2em}.m{display:inline-block;"
        "min-width:4.5em;font-weight:bold}h3{margin-bottom:.2em}details{margin:.3em 0}"
        "pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:13px}</style>",
        "</head><body>",
        f"<h1>{e(document['info']['title'])} {e(document['info']['version'])}</h1>",
        f"<p>{e(document['info']['description'])}</p>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1).</p>",
    ]
    for path, item in document["paths"].items():
        for method, op in item.items():
            parts.append(
                f"<h3 id='{e(method + path)}'><span class='m'>{e(method.upper())}</span>"
                f"<code>{e(path)}</code></h3><p>{e(op.get('summary', ''))}</p>"
            )
            if op.get("description"):
                parts.append(f"<p>{e(op['description'])}</p>")
            params = op.get("parameters", [])
            if params:
                parts.append("<ul>")
                for p in params:
                    parts.append(
                        f"<li><code>{e(p['name'])}</code> ({e(p['in'])}"
                        f"{', required' if p.get('required') else ''}) "
                        f"{e(p.get('description', ''))}</li>"
                    )
                parts.append("</ul>")
            if "requestBody" in op:
                body = json.dumps(op["requestBody"]["content"], indent=1)
                parts.append(
                    f"<details><summary>request body</summary><pre>{e(body)}</pre></details>"
                )
            codes = ", ".join(
                f"{code} {op['responses'][code]['description']}" for code in op["responses"]
            )
            parts.append(f"<p><small>Responses: {e(codes)}</small></p>")
    schemas = json.dumps(document["components"]["schemas"], indent=1)
    parts.append(f"<h2>Schemas</h2><pre>{e(schemas)}</pre></body></html>")
    return "".join(parts)


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(spec())


async def docs(request: web.Request) -> web.Response:
    return web.Response(text=docs_html(spec()), content_type="text/html", charset="utf-8")


def register(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs)
