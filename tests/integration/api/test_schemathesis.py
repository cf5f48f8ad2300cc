"""Schemathesis against a live Service: the court API's endpoints, fuzzed from /openapi.json,
must never answer 5xx and must match their documented responses, for an operator and for
a court (each role reaches different code: scoping, 403s, its own tokens)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sys
from pathlib import Path

import pytest
from court_api_support import Api, listing

from ringback.server import Service

# The court API. Recordings, imports and events are fuzzed by their own tests.
COURT_API = (
    r"^/v1/(courts(/\{court_id\}(/tokens)?)?|tokens(/\{token_id\})?|listings(/.*)?"
    r"|hooks/payment-confirmed|audit|stats|lookup/\{number\})$"
)
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")


def _st() -> str:
    exe = Path(sys.executable).with_name("st")
    found = str(exe) if exe.exists() else shutil.which("st")
    if found is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[test]'")
    return found


@pytest.mark.parametrize("role", ["operator", "court"])
async def test_schemathesis_finds_no_server_errors_or_schema_violations(
    api: Api, operator: str, service: Service, tmp_path: Path, role: str
) -> None:
    # Something for the fuzzer to find: a court with listings (operator sees everything).
    court = await api.court(operator, "Fuzz Court")
    for n in (8613800138000, 8613900139000):
        assert (await api.put(f"/v1/listings/+{n}", court["token"], listing())).status == 201
    token = operator if role == "operator" else court["token"]
    token_id = await service.pool.fetchval(
        "SELECT id FROM api_tokens WHERE token_hash = $1", hashlib.sha256(token.encode()).digest()
    )

    base = f"http://127.0.0.1:{service.http_port}"
    process = await asyncio.create_subprocess_exec(
        _st(),
        "run",
        f"{base}/openapi.json",
        "--url",
        base,
        "--header",
        f"Authorization: Bearer {token}",
        "--include-path-regex",
        COURT_API,
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance",
        "--phases",
        "examples,coverage,fuzzing",
        # About 2,200 requests and 20-25 s per role here. No --max-time: with one, schemathesis
        # repeats its phases until the time is used up, so the run's length, not this budget,
        # would decide how much is tested.
        "--max-examples",
        "100",
        "--seed",
        "5",
        # One worker: Python 3.11's ast.parse (used by hypothesis) is not thread-safe.
        "--workers",
        "1",
        "--generation-allow-x00",
        "false",
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": str(HOOKS),
            "FUZZ_OWN_TOKEN_ID": str(token_id),
            "NO_COLOR": "1",
        },
        cwd=tmp_path,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=150)
    text = out.decode(errors="replace")
    assert process.returncode == 0, text[-8000:]
    assert "operations" in text.lower() or "passed" in text.lower(), text[-2000:]
    # The run kept its own token to the end (DELETE is fuzzed, see schemathesis_hooks.py).
    assert await service.store.tokens.authenticate(token) is not None
