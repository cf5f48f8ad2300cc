"""Schemathesis against a live Service: the court API's endpoints, fuzzed from /openapi.json,
must never answer 5xx and must match their documented responses."""

from __future__ import annotations

import asyncio
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


def _st() -> str:
    exe = Path(sys.executable).with_name("st")
    found = str(exe) if exe.exists() else shutil.which("st")
    if found is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[test]'")
    return found


async def test_schemathesis_finds_no_server_errors_or_schema_violations(
    api: Api, operator: str, service: Service, tmp_path: Path
) -> None:
    # Something for the fuzzer to find: a court with listings (operator sees everything).
    court = await api.court(operator, "Fuzz Court")
    for n in (8613800138000, 8613900139000):
        assert (await api.put(f"/v1/listings/+{n}", court["token"], listing())).status == 201

    base = f"http://127.0.0.1:{service.http_port}"
    process = await asyncio.create_subprocess_exec(
        _st(),
        "run",
        f"{base}/openapi.json",
        "--url",
        base,
        "--header",
        f"Authorization: Bearer {operator}",
        "--include-path-regex",
        COURT_API,
        # Revoking tokens by guessed id would revoke the fuzzer's own token; revocation is
        # covered by test_courts_api and the cross-court matrix.
        "--exclude-method",
        "DELETE",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "30",
        "--seed",
        "5",
        # One worker: Python 3.11's ast.parse (used by hypothesis) is not thread-safe.
        "--workers",
        "1",
        "--max-time",
        "50",
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
        env={**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"},
        cwd=tmp_path,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=150)
    text = out.decode(errors="replace")
    assert process.returncode == 0, text[-8000:]
    assert "operations" in text.lower() or "passed" in text.lower(), text[-2000:]
