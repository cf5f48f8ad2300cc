"""`ringback demo`: the service on the embedded database with a demo court and test numbers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ringback.config import Config
from ringback.media.shipped import default_warning_8k, default_warning_path
from ringback.registry.common import Principal
from ringback.registry.numbers import format_e164
from ringback.runtime import until_signalled
from ringback.server import Service

log = logging.getLogger(__name__)

DEMO_COURT = "Demo People's Court"
DEMO_CASE = "(2026) DEMO 0001"
LISTED = [8613800138000, 8613900139000]
UNLISTED = [8613700137000]
DEMO = Principal("demo", "operator")


async def seed(service: Service) -> dict[str, Any]:
    """Create (or reuse) the demo court, its recording and listings; mint fresh tokens."""
    store = service.store
    court = await store.courts.by_name(DEMO_COURT)
    if court is None:
        court, court_token, _secret = await store.courts.create(DEMO_COURT, DEMO)
    else:
        _, court_token = await store.tokens.issue("court", court["id"], "demo", DEMO)
    if court["default_recording_id"] is None:
        pcm = default_warning_8k()
        recording = await store.recordings.add(
            court["id"],
            "Shipped default warning (Mandarin, English)",
            pcm,
            DEMO,
            original={
                "filename": default_warning_path().name,
                "format": "wav",
                "bytes": default_warning_path().stat().st_size,
            },
        )
        await store.courts.set_default_recording(court["id"], recording["id"], DEMO)
    _, operator_token = await store.tokens.issue("operator", None, "demo operator", DEMO)
    now = datetime.now(UTC)
    for number in LISTED:
        await store.listings.put(
            court["id"], number, DEMO_CASE, now + timedelta(days=365), DEMO, effective_at=now
        )
    secret = await store.courts.webhook_secret(court["id"])
    return {
        "court": {
            "id": str(court["id"]),
            "name": DEMO_COURT,
            "token": court_token,
            "webhook_secret": secret,
            "case_ref": DEMO_CASE,
        },
        "operator_token": operator_token,
    }


LAB_USER = 8613900139000  # a listed number a softphone can register as (the debtor's phone)


async def run_demo(config: Config) -> int:
    # Lab mode: no switch here, so ringback itself takes the call after the warning.
    lab_password = secrets.token_urlsafe(9)
    config.lab.enabled = True
    config.lab.users = [*config.lab.users, f"{format_e164(LAB_USER)}:{lab_password}"]
    if config.ringback.mode == "ringback":
        # The debtor's phone rings while the warning plays: the callee leg comes back here,
        # where the lab callee rings a few seconds before it answers.
        config.ringback.next_hop = config.ringback.next_hop or "self"
        config.lab.answer_after_s = config.lab.answer_after_s or 6.0
    service = Service(config)
    await service.start()
    service.take_over_gc()
    try:
        facts = await seed(service)
        for _ in range(100):  # the index follows the database through the change feed
            if service.sync.loaded and all(service.index.get(n) for n in LISTED):
                break
            await asyncio.sleep(0.05)
        host = config.http.host
        sip_host = config.sip.listen[0] if config.sip.listen else "127.0.0.1"
        demo = {
            "http": f"http://{host}:{service.http_port}",
            "sip": {"host": sip_host, "port": service.sip_port, "transport": ["udp", "tcp"]},
            "operator_token": facts["operator_token"],
            "court": facts["court"],
            "numbers": {
                "listed": [format_e164(n) for n in LISTED],
                "unlisted": [format_e164(n) for n in UNLISTED],
            },
            "lab": {
                "user": format_e164(LAB_USER),
                "password": lab_password,
                "realm": config.lab.realm,
            },
            "data_dir": str(Path(config.database.data_dir).resolve()),
            "mode": config.ringback.mode,
        }
        path = Path(config.database.data_dir) / "demo.json"
        path.write_text(json.dumps(demo, indent=2) + "\n", encoding="utf-8")
        os.chmod(path, 0o600)  # it holds tokens
        print(_instructions(demo, path), flush=True)
        await until_signalled()
        await service.drain()
    finally:
        await service.stop()
    return 0


def _command() -> str:
    """How the user ran `ringback` (`.venv/bin/ringback` from scripts/demo)."""
    name = Path(sys.argv[0])
    if name.name == "ringback":
        return os.path.relpath(name) if name.is_absolute() else str(name)
    return "ringback"


def _instructions(demo: dict[str, Any], path: Path) -> str:
    sip = demo["sip"]
    listed, unlisted = demo["numbers"]["listed"], demo["numbers"]["unlisted"]
    lab = demo["lab"]
    if demo["mode"] == "ringback":
        listed_hears = (
            "the court's warning while the lab callee rings (6 s),\n"
            "                then it answers with beeps (ringback mode)"
        )
    else:
        listed_hears = "the court's warning, then the lab callee answers with beeps"
    return f"""
ringback demo is running ({demo["mode"]} mode).

  Dial from a softphone (SIP over UDP or TCP, no registration needed):
    listed   -> sip:{listed[0]}@{sip["host"]}:{sip["port"]}
                {listed_hears}
    unlisted -> sip:{unlisted[0]}@{sip["host"]}:{sip["port"]}
                no warning: the lab callee answers at once
  Or try it from the command line:
    {_command()} dial {listed[0]} --via {sip["host"]}:{sip["port"]}

  Lab mode: a second softphone may register as the debtor's phone
    user {lab["user"]}  password {lab["password"]}  domain {sip["host"]}:{sip["port"]}
    then a call to {lab["user"]} plays the warning and rings that softphone.

  Court portal  {demo["http"]}/portal/   (sign in with the court token below)
  HTTP API   {demo["http"]}   (docs: {demo["http"]}/docs, health: /readyz, metrics: /metrics)
    operator token: {demo["operator_token"]}
    court token:    {demo["court"]["token"]}

  The same facts, for scripts: {path}
  Stop with Ctrl-C.
"""
