"""Bulk CSV import (HTTP and CLI) against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ringback.config import load_config
from ringback.registry.common import Principal
from ringback.server import Service

WHO = Principal("test", "operator")


@dataclass
class Api:
    service: Service
    base: str
    http: aiohttp.ClientSession
    operator: str
    court_a: Any
    token_a: str
    court_b: Any
    token_b: str

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def post_csv(
        self,
        token: str,
        text: str | bytes,
        *,
        query: str = "",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = text.encode() if isinstance(text, str) else text
        async with self.http.post(
            f"{self.base}/v1/imports{query}",
            data=data,
            headers={**self.auth(token), "Content-Type": "text/csv", **(headers or {})},
        ) as r:
            return r.status, await r.json()

    async def get(self, token: str, path: str) -> tuple[int, Any]:
        async with self.http.get(self.base + path, headers=self.auth(token)) as r:
            return r.status, await r.json()

    async def counts(self) -> tuple[int, int, int]:
        pool = self.service.pool
        return (
            await pool.fetchval("SELECT count(*) FROM listings"),
            await pool.fetchval("SELECT count(*) FROM audit_events"),
            await pool.fetchval("SELECT count(*) FROM event_outbox"),
        )


@pytest.fixture
async def api(database: str) -> AsyncIterator[Api]:
    config = load_config(None, env={})
    config.database.url = database
    config.http.port = 0
    config.http.check_answers = True
    config.sip.port = 0  # not 5060: other suites may run on this machine
    config.index.heartbeat_s = 0.2
    config.imports.batch_rows = 250  # several batches even for small files
    config.events.enabled = False
    service = Service(config)
    await service.start()
    store = service.store
    court_a, token_a, _ = await store.courts.create("Court A", WHO)
    court_b, token_b, _ = await store.courts.create("Court B", WHO)
    _, operator = await store.tokens.issue("operator", None, "test operator", WHO)
    async with aiohttp.ClientSession() as http:
        yield Api(
            service,
            f"http://127.0.0.1:{service.http_port}",
            http,
            operator,
            court_a,
            token_a,
            court_b,
            token_b,
        )
    await service.stop()


def _expiry(days: float = 30) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _csv(n: int, start: int = 0, *, bad: dict[int, str] | None = None) -> str:
    """`n` rows (file lines 2..n+1); `bad` replaces the row on a given file line."""
    exp = _expiry()
    lines = ["number,case_ref,expires_at"]
    forms = ["+86139{:08d}", "139 {:04d} {:04d}", "0086139{:08d}", "139-{:04d}-{:04d}"]
    for i in range(start, start + n):
        form = forms[i % len(forms)]
        number = form.format(i) if "{:08d}" in form else form.format(i // 10000, i % 10000)
        lines.append(f"{number},(2026) Jing 0105 Zhi {i},{exp}")
    for line, text in (bad or {}).items():
        lines[line - 1] = text
    return "\n".join(lines) + "\n"


async def test_import_lists_every_row_in_one_transaction_with_audit_and_events(api: Api) -> None:
    text = _csv(1000)
    status, job = await api.post_csv(api.token_a, text, query="?filename=debtors.csv")
    assert status == 201, job
    assert job["status"] == "done"
    assert (job["rows_total"], job["rows_processed"], job["listed"], job["updated"]) == (
        1000, 1000, 1000, 0,
    )  # fmt: skip
    assert job["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert job["filename"] == "debtors.csv" and job["error"] is None
    pool = api.service.pool
    rows = await pool.fetch("SELECT number, court_id, effective_at, listed_at FROM listings")
    assert len(rows) == 1000
    assert {r["number"] for r in rows} == {8613900000000 + i for i in range(1000)}
    assert all(r["court_id"] == api.court_a["id"] for r in rows)
    # effective_at defaults to now plus the notice period (3 days)
    assert all(
        abs((r["effective_at"] - r["listed_at"]) - timedelta(days=3)) < timedelta(minutes=1)
        for r in rows
    )
    audit = await pool.fetch(
        "SELECT action, entity, after FROM audit_events WHERE action = 'listing.import'"
    )
    assert len(audit) == 1
    assert audit[0]["entity"] == f"import:{job['id']}"
    assert audit[0]["after"]["sha256"] == job["sha256"]
    assert (audit[0]["after"]["rows"], audit[0]["after"]["listed"]) == (1000, 1000)
    # One listing.created for the import's 1000 new listings (not one per listing), then
    # import.completed; the event says where its listings are.
    events = await pool.fetch("SELECT event_type, payload FROM event_outbox ORDER BY id")
    assert [e["event_type"] for e in events] == ["listing.created", "import.completed"]
    created = events[0]["payload"]
    assert created["import_id"] == job["id"] and created["listed"] == 1000
    assert created["court_id"] == str(api.court_a["id"])
    numbers: list[str] = []
    url: str | None = created["listings"] + "&limit=300"
    while url:
        status, page = await api.get(api.token_a, url)
        assert status == 200, page
        numbers += [item["number"] for item in page["items"]]
        assert all(item["import_id"] == job["id"] for item in page["items"])
        url = (
            page["next_cursor"] and f"{created['listings']}&limit=300&cursor={page['next_cursor']}"
        )
    assert sorted(numbers) == [f"+{8613900000000 + i}" for i in range(1000)]
    status, page = await api.get(api.token_b, created["listings"])  # another court: none
    assert status == 200 and page["items"] == []
    # The change feed holds one marker for the whole import (migration 014).
    feed = await pool.fetch("SELECT number, import_id FROM change_feed")
    assert [(r["number"], str(r["import_id"])) for r in feed] == [(None, job["id"])]
    status, got = await api.get(api.token_a, f"/v1/imports/{job['id']}")
    assert status == 200 and got == job
    # The change feed brings the new listings into the node's in-memory index.
    for _ in range(200):
        if len(api.service.index) == 1000:
            break
        await asyncio.sleep(0.05)
    assert len(api.service.index) == 1000


async def test_a_bad_row_in_the_middle_rejects_the_file_and_changes_nothing(api: Api) -> None:
    status, _ = await api.post_csv(api.token_a, _csv(10, 5000))
    assert status == 201
    before = await api.counts()
    text = _csv(1000, bad={501: f"+86139ABC0001,case,{_expiry()}"})
    status, body = await api.post_csv(api.token_a, text)
    assert status == 422, body
    assert body["error"]["code"] == "invalid_row"
    assert body["error"]["line"] == 501
    assert body["error"]["message"].startswith("line 501: number '+86139ABC0001'")
    assert "letters" in body["error"]["message"]
    assert await api.counts() == before
    status, job = await api.get(api.token_a, f"/v1/imports/{body['error']['import_id']}")
    assert status == 200 and job["status"] == "failed"
    assert job["error"]["line"] == 501 and job["listed"] is None


@pytest.mark.parametrize(
    ("line", "row", "words"),
    [
        (3, "+8613900000001,,{exp}", "case_ref"),
        (4, "+8613900000002,c,2027-01-01", "needs a UTC offset"),
        (5, "+8613900000003,c,yesterday", "not an ISO 8601 time"),
        (6, "+8613900000004,c,2001-01-01T00:00:00Z", "in the past"),
        (7, "+8613900000005,c,2099-01-01T00:00:00Z", "more than 365 days"),
        (8, "+8613900000006,c", "2 fields, the header has 3"),
        (9, "10086,c,{exp}", "too short"),
        (10, "+8613900000000,(2026) Jing 0105 Zhi 0,{exp}", "already on line 2"),
    ],
)
async def test_each_kind_of_bad_row_is_named_with_its_line(
    api: Api, line: int, row: str, words: str
) -> None:
    text = _csv(20, bad={line: row.format(exp=_expiry())})
    before = await api.counts()
    status, body = await api.post_csv(api.token_a, text)
    assert status == 422, body
    assert body["error"]["line"] == line, body
    assert words in body["error"]["message"], body
    assert await api.counts() == before


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "empty_file"),
        ("number,case_ref,expires_at\n", "empty_file"),
        ("phone,case,expiry\n+8613900000000,c,2030-01-01T00:00:00Z\n", "invalid_header"),
        ("+8613900000000,c,2030-01-01T00:00:00Z\n", "invalid_header"),
        ("number,case_ref\n+8613900000000,c\n", "invalid_header"),
    ],
)
async def test_header_and_empty_files(api: Api, text: str, code: str) -> None:
    status, body = await api.post_csv(api.token_a, text)
    assert status == 422, body
    assert body["error"]["code"] == code


async def test_binary_file_is_refused(api: Api) -> None:
    status, body = await api.post_csv(api.token_a, b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    assert status == 422 and body["error"]["code"] == "invalid_encoding"


async def test_effective_at_inside_notice_period_needs_a_reason(api: Api) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+08:00")
    soon_utc = datetime.now(UTC) + timedelta(hours=1)
    soon = soon_utc.isoformat()
    text = f"number,case_ref,expires_at,effective_at\n+8613900000001,c1,{_expiry()},{soon}\n"
    status, body = await api.post_csv(api.token_a, text)
    assert status == 422 and "notice period" in body["error"]["message"]
    form = aiohttp.FormData()
    form.add_field("effective_reason", "debtor absconding; court order 17")
    form.add_field("file", text.encode(), filename="urgent.csv", content_type="text/csv")
    async with api.http.post(
        api.base + "/v1/imports", data=form, headers=api.auth(api.token_a)
    ) as r:
        assert r.status == 201, await r.text()
        job = await r.json()
    assert job["filename"] == "urgent.csv"
    row = await api.service.pool.fetchrow("SELECT effective_at, effective_reason FROM listings")
    assert abs(row["effective_at"] - soon_utc) < timedelta(seconds=1)
    assert row["effective_reason"] == "debtor absconding; court order 17"


async def test_reimport_updates_open_listings_and_courts_are_scoped(api: Api) -> None:
    status, first = await api.post_csv(api.token_a, _csv(30))
    assert status == 201
    later = _expiry(60)
    text = "number,case_ref,expires_at\n" + "".join(
        f"+86139{i:08d},(2026) Jing 0105 Zhi {i},{later}\n" for i in range(20, 40)
    )
    status, second = await api.post_csv(api.token_a, text)
    assert status == 201, second
    assert (second["listed"], second["updated"]) == (10, 10)
    assert await api.service.pool.fetchval("SELECT count(*) FROM listings") == 40
    renewed = await api.service.pool.fetchval(
        "SELECT expires_at FROM listings WHERE number = 8613900000025"
    )
    assert renewed > datetime.now(UTC) + timedelta(days=59)
    # Court B cannot see A's jobs; the operator can; an operator must name the court.
    status, body = await api.get(api.token_b, f"/v1/imports/{first['id']}")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, _ = await api.get(api.operator, f"/v1/imports/{first['id']}")
    assert status == 200
    status, body = await api.get(api.token_b, "/v1/imports")
    assert status == 200 and body["imports"] == []
    status, body = await api.get(api.token_a, "/v1/imports")
    assert [j["id"] for j in body["imports"]] == [second["id"], first["id"]]
    status, body = await api.post_csv(api.operator, _csv(3, 900))
    assert status == 422 and "court_id" in body["error"]["message"]
    status, body = await api.post_csv(
        api.token_b, _csv(3, 900), query=f"?court_id={api.court_a['id']}"
    )
    assert status == 404
    status, body = await api.post_csv(
        api.operator, _csv(3, 900), query=f"?court_id={api.court_b['id']}"
    )
    assert status == 201 and body["court_id"] == str(api.court_b["id"])
    status, body = await api.get(api.token_a, "/v1/imports/not-a-uuid")
    assert status == 404


async def test_another_case_of_a_listed_number_is_another_listing(api: Api) -> None:
    status, first = await api.post_csv(api.token_a, _csv(30))
    assert status == 201, first
    later = _expiry(60)
    text = (
        "number,case_ref,expires_at\n"
        f"+8613900000025,another case,{later}\n"
        f"+8613900000025,(2026) Jing 0105 Zhi 25,{later}\n"  # the first case: an update
        f"+8613900000900,case one,{later}\n"
        f"+8613900000900,case two,{later}\n"  # one number, two cases, one file
    )
    status, second = await api.post_csv(api.token_a, text)
    assert status == 201, second
    assert (second["listed"], second["updated"]) == (3, 1)
    rows = await api.service.pool.fetch(
        "SELECT number, case_ref FROM listings WHERE number IN (8613900000025, 8613900000900) "
        "AND status = 'active' ORDER BY number, id"
    )
    assert [tuple(r) for r in rows] == [
        (8613900000025, "(2026) Jing 0105 Zhi 25"),
        (8613900000025, "another case"),
        (8613900000900, "case one"),
        (8613900000900, "case two"),
    ]


async def test_respond_async_returns_202_and_the_job_shows_progress(api: Api) -> None:
    status, job = await api.post_csv(api.token_a, _csv(3000), headers={"Prefer": "respond-async"})
    assert status == 202, job
    assert job["status"] in ("validating", "loading", "receiving", "done")
    seen = set()
    for _ in range(400):
        status, job = await api.get(api.token_a, f"/v1/imports/{job['id']}")
        seen.add(job["status"])
        if job["status"] in ("done", "failed"):
            break
        await asyncio.sleep(0.02)
    assert job["status"] == "done", job
    assert job["rows_processed"] == 3000 and job["listed"] == 3000


async def test_import_over_the_byte_limit_is_413(api: Api) -> None:
    api.service.config.imports.max_bytes = 10_000
    status, body = await api.post_csv(api.token_a, _csv(1000))
    assert status == 413 and body["error"]["code"] == "too_large"


async def test_cli_import_shows_progress_and_lists_the_rows(
    api: Api, tmp_path: Path, repo_root: Path
) -> None:
    csv_path = tmp_path / "court-a.csv"
    csv_path.write_text(_csv(2000))
    config = tmp_path / "ringback.toml"
    config.write_text(f'[database]\nurl = "{api.service.dsn}"\n[imports]\nbatch_rows = 500\n')
    env = {**os.environ, "PYTHONPATH": str(repo_root / "src")}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ringback", "import", str(csv_path), "--court",
         str(api.court_a["id"]), "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "court-a.csv [" in done.stderr and "100%" in done.stderr and "2,000 rows" in done.stderr
    assert "2000 rows, 2000 listed, 0 updated" in done.stdout
    assert await api.service.pool.fetchval("SELECT count(*) FROM listings") == 2000

    bad = tmp_path / "bad.csv"
    bad.write_text(_csv(50, 9000, bad={40: "+86 139 nope,c,2030-01-01T00:00:00Z"}))
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ringback", "import", str(bad), "--court", "Court A",
         "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "line 40:" in done.stderr and "nothing was imported" in done.stderr
    assert await api.service.pool.fetchval("SELECT count(*) FROM listings") == 2000
