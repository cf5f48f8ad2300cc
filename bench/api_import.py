"""Bulk import benchmark: POST /v1/imports of an N-row CSV (default 1,000,000 rows).

Starts a Service on a throw-away embedded PostgreSQL, writes a CSV of N distinct Chinese
mobile numbers, uploads it with `Prefer: respond-async`, polls `GET /v1/imports/{id}` and
reports the time to upload, validate+COPY, and load (the one INSERT … SELECT, with the
change-feed trigger, outbox events and audit), then how long the node's in-memory index
takes to hold every number.

    .venv/bin/python bench/api_import.py [--rows 1000000] [--subscriptions 0]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from ringback.config import load_config
from ringback.registry.common import Principal
from ringback.registry.embedded import EmbeddedPostgres
from ringback.server import Service

WHO = Principal("bench", "operator")


def write_csv(path: Path, rows: int) -> None:
    expiry = (datetime.now(UTC) + timedelta(days=180)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with path.open("w") as f:
        f.write("number,case_ref,expires_at\n")
        for i in range(rows):
            f.write(f"+86138{i:08d},(2026) Jing 0105 Zhi {i},{expiry}\n")


async def main(rows: int, subscriptions: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ringback-bench-import-"))
    pg = EmbeddedPostgres(tmp / "pg")
    dsn = await asyncio.to_thread(pg.start)
    config = load_config(None, env={})
    config.database.url = dsn
    config.http.port = 0
    config.sip.port = 0
    config.log.level = "warning"
    config.events.enabled = False  # measure the import, not deliveries to nowhere
    config.imports.max_bytes = 1 << 31
    service = Service(config)
    await service.start()
    try:
        _court, token, _ = await service.store.courts.create("Bench Court", WHO)
        for i in range(subscriptions):
            await service.pool.execute(
                "INSERT INTO event_subscriptions (url, secret) VALUES ($1, 'x')",
                f"http://127.0.0.1:9/{i}",
            )
        csv_path = tmp / "import.csv"
        t = time.perf_counter()
        await asyncio.to_thread(write_csv, csv_path, rows)
        size = csv_path.stat().st_size
        print(
            f"CSV: {rows:,} rows, {size / 1e6:.1f} MB (written in {time.perf_counter() - t:.1f} s)"
        )
        base = f"http://127.0.0.1:{service.http_port}"
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "text/csv",
            "Prefer": "respond-async",
        }
        async with aiohttp.ClientSession() as http:
            start = time.perf_counter()
            with csv_path.open("rb") as f:
                async with http.post(base + "/v1/imports", data=f, headers=headers) as r:
                    job = await r.json()
                    assert r.status == 202, job
            uploaded = time.perf_counter() - start
            marks: dict[str, float] = {}
            while job["status"] not in ("done", "failed"):
                await asyncio.sleep(0.1)
                async with http.get(
                    f"{base}/v1/imports/{job['id']}", headers={"Authorization": f"Bearer {token}"}
                ) as r:
                    job = await r.json()
                marks.setdefault(job["status"], time.perf_counter() - start)
            total = time.perf_counter() - start
        if job["status"] != "done":
            raise SystemExit(f"import failed: {job['error']}")
        loading = marks.get("loading", total)
        print(f"upload (spooled, sha256):        {uploaded:6.2f} s")
        print(f"validate + COPY to staging:      {loading - uploaded:6.2f} s")
        print(f"INSERT … SELECT + events + audit:{total - loading:6.2f} s")
        print(f"total POST → done:               {total:6.2f} s  ({rows / total:,.0f} rows/s)")
        t = time.perf_counter()
        while len(service.index) < rows:
            await asyncio.sleep(0.05)
            if time.perf_counter() - t > 300:
                break
        print(f"index holds all rows after +{time.perf_counter() - t:.2f} s")
    finally:
        await service.stop()
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--subscriptions", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("ringback.registry.imports").setLevel(logging.INFO)
    asyncio.run(main(args.rows, args.subscriptions))
