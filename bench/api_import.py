"""Bulk import benchmark: POST /v1/imports of an N-row CSV (default 1,000,000 rows).

Starts a Service on a throw-away embedded PostgreSQL plus a second node (`ringback serve`
in a process of its own with its own cache folder, i.e. another host, on the same
database), writes a CSV of N distinct Chinese mobile
numbers (numpy, about a second per 5 M rows; `--shuffle` puts them in random order, as a
national list sorted by case rather than by number would be), uploads it with
`Prefer: respond-async`, polls `GET /v1/imports/{id}` and reports the time to upload,
validate+COPY, and load (update, insert, digest, audit, the feed marker), then how long
after the job is done every node's index holds every number at the feed's head, with each
node's reload time from its log and whether autovacuum ran meanwhile.

    .venv/bin/python bench/api_import.py [--rows 1000000] [--shuffle] [--subscriptions 0]
        [--timeout 900]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import shutil
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from ringback.config import load_config
from ringback.registry.common import Principal
from ringback.registry.embedded import EmbeddedPostgres
from ringback.server import Service

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "interop"))

import harness

WHO = Principal("bench", "operator")
# WAL written and checkpoints taken so far (PostgreSQL 17+: pg_stat_checkpointer).
_WAL = """
SELECT w.wal_bytes::float8 AS bytes, w.wal_fpi AS fpi,
       c.num_timed + c.num_requested AS checkpoints
FROM pg_stat_wal w, pg_stat_checkpointer c
"""


async def wal_mark(pool: Any) -> dict[str, float]:
    await pool.execute("SELECT pg_stat_force_next_flush()")  # this backend's own counts
    row = await pool.fetchrow(_WAL)
    return {k: float(row[k]) for k in ("bytes", "fpi", "checkpoints")}


def wal_between(a: dict[str, float], b: dict[str, float]) -> str:
    return (
        f"{(b['bytes'] - a['bytes']) / 1e9:.2f} GB of WAL, {b['fpi'] - a['fpi']:,.0f} full-page "
        f"images, {b['checkpoints'] - a['checkpoints']:.0f} checkpoint(s)"
    )


LOADED = re.compile(r"index sync: (loaded \d+ numbers at seq \d+ in [\d.]+ s[^\"]*)")


class LogLines(logging.Handler):
    """The in-process node's reload lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if m := LOADED.search(record.getMessage()):
            self.lines.append(m.group(1))


class OtherHost:
    """`ringback serve` in a process of its own, with its own cache folder (so its own
    index snapshot): a node on another host, read through its /metrics."""

    def __init__(self, workdir: Path, dsn: str) -> None:
        self.http_port = harness.free_port("tcp")
        config = workdir / "other.toml"
        config.write_text(
            f"[database]\nurl = '{dsn}'\n[cache]\ndir = '{workdir / 'other-cache'}'\n"
            f"[sip]\nport = {harness.free_port('both')}\n[http]\nport = {self.http_port}\n"
            "[log]\nformat = 'json'\nlevel = 'info'\n[events]\nenabled = false\n"
        )
        self.processes = harness.ProcessSet()
        self.log_path = workdir / "other.log"
        self.proc = self.processes.start(
            "ringback serve (other host)",
            [sys.executable, "-m", "ringback", "serve", "--config", str(config)],
            log_path=self.log_path,
        )

    def metrics(self) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        return {m[1]: float(m[2]) for m in re.finditer(r"^(ringback_\w+) ([-\d.e+]+)$", text, re.M)}

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.metrics().get("ringback_index_loaded") == 1:
                    return
            except OSError:
                pass
            if not self.proc.alive():
                break
            time.sleep(0.2)
        raise SystemExit("the other node did not start:\n" + self.proc.log())

    def current(self, head: int, rows: int) -> bool:
        try:
            m = self.metrics()
        except OSError:
            return False
        return (
            m.get("ringback_feed_last_seq", 0) >= head
            and m.get("ringback_index_listings", 0) >= rows
        )

    def reloads(self) -> list[str]:
        return LOADED.findall(self.log_path.read_text(errors="replace"))

    def stop(self) -> None:
        self.processes.stop_all()


FIRST = 13_000_000_000  # national significant numbers 130 0000 0000 upwards


def write_csv(path: Path, rows: int, shuffle: bool, block: int = 1_000_000) -> None:
    """`rows` lines `+86<11 digits>,(2026) Jing 0105 Zhi <8 digits>,<expiry>`, built as a
    byte matrix per block (fixed width: every digit column is arithmetic)."""
    expiry = (datetime.now(UTC) + timedelta(days=180)).strftime("%Y-%m-%dT%H:%M:%SZ")
    template = f"+86{0:011d},(2026) Jing 0105 Zhi {0:08d},{expiry}\n".encode()
    width = len(template)
    number_at, case_at = 3, template.index(b"Zhi ") + 4
    order = np.random.default_rng(14).permutation(rows) if shuffle else np.arange(rows)
    with path.open("wb") as f:
        f.write(b"number,case_ref,expires_at\n")
        for start in range(0, rows, block):
            ids = np.arange(start, min(rows, start + block), dtype=np.int64)
            lines = np.tile(np.frombuffer(template, np.uint8), (len(ids), 1))
            numbers = FIRST + order[ids]
            for k in range(11):
                lines[:, number_at + 10 - k] = 48 + (numbers // 10**k) % 10
            for k in range(8):
                lines[:, case_at + 7 - k] = 48 + (ids // 10**k) % 10
            f.write(lines.reshape(-1).tobytes())
    assert path.stat().st_size == 27 + rows * width


async def main(rows: int, subscriptions: int, shuffle: bool, timeout: float) -> None:
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
    lines = LogLines()
    logging.getLogger("ringback.registry.feed").addHandler(lines)
    logging.getLogger("ringback.registry.feed").setLevel(logging.INFO)
    other = OtherHost(tmp, dsn)
    try:
        await asyncio.to_thread(other.wait_ready, 60)
        _court, token, _ = await service.store.courts.create("Bench Court", WHO)
        for i in range(subscriptions):
            await service.pool.execute(
                "INSERT INTO event_subscriptions (url, secret) VALUES ($1, 'x')",
                f"http://127.0.0.1:9/{i}",
            )
        csv_path = tmp / "import.csv"
        t = time.perf_counter()
        await asyncio.to_thread(write_csv, csv_path, rows, shuffle)
        size = csv_path.stat().st_size
        print(
            f"CSV: {rows:,} rows{' (shuffled)' if shuffle else ''}, {size / 1e6:.1f} MB "
            f"(written in {time.perf_counter() - t:.1f} s)"
        )
        base = f"http://127.0.0.1:{service.http_port}"
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "text/csv",
            "Prefer": "respond-async",
        }
        wal_start = await wal_mark(service.pool)
        async with aiohttp.ClientSession() as http:
            start = time.perf_counter()
            with csv_path.open("rb") as f:
                async with http.post(base + "/v1/imports", data=f, headers=headers) as r:
                    job = await r.json()
                    assert r.status == 202, job
            uploaded = time.perf_counter() - start
            marks: dict[str, float] = {}
            while job["status"] not in ("done", "failed"):
                if time.perf_counter() - start > timeout:
                    raise SystemExit(f"import not done after {timeout:.0f} s: {job}")
                await asyncio.sleep(0.1)
                async with http.get(
                    f"{base}/v1/imports/{job['id']}", headers={"Authorization": f"Bearer {token}"}
                ) as r:
                    job = await r.json()
                marks.setdefault(job["status"], time.perf_counter() - start)
            total = time.perf_counter() - start
        if job["status"] != "done":
            raise SystemExit(f"import failed: {job['error']}")
        done_at = time.perf_counter()
        # The import's backend reports its statistics up to a second after it goes idle.
        await asyncio.sleep(1.5)
        wal_done = await wal_mark(service.pool)
        loading = marks.get("loading", total)
        print(f"upload (spooled, sha256):        {uploaded:6.2f} s")
        print(f"validate + COPY to staging:      {loading - uploaded:6.2f} s")
        print(f"load (insert, digest, audit):    {total - loading:6.2f} s")
        print(f"total POST → done:               {total:6.2f} s  ({rows / total:,.0f} rows/s)")
        head = await service.pool.fetchval("SELECT last_seq FROM feed_counter")
        sync = service.sync
        probes = {
            "node 1 (this process)": lambda: sync.last_seq >= head and len(sync.index) >= rows,
            "node 2 (another process)": lambda: other.current(head, rows),
        }
        current: dict[str, float] = {}
        autovacuum: set[str] = set()
        while len(current) < len(probes):
            for name, probe in probes.items():
                if name not in current and await asyncio.to_thread(probe):
                    current[name] = time.perf_counter() - done_at
            for r in await service.pool.fetch(
                "SELECT query FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
            ):
                autovacuum.add(r["query"])
            if time.perf_counter() - done_at > timeout:
                break
            await asyncio.sleep(0.05)
        for name, took in ((n, current.get(n)) for n in probes):
            print(
                f"{name}: index current (all {rows:,} numbers, feed head {head}) "
                + (f"+{took:.2f} s after done" if took is not None else "NEVER")
            )
        await asyncio.sleep(1.0)  # the backends report their statistics within a second
        wal_end = await wal_mark(service.pool)
        print(f"import (POST → done + 1.5 s): {wal_between(wal_start, wal_done)}")
        print(f"then → every node current + 1 s: {wal_between(wal_done, wal_end)}")
        print(f"node 1 loads: {lines.lines}")
        print(f"node 2 loads: {other.reloads()}")
        print(f"autovacuum meanwhile: {sorted(autovacuum) or 'none'}")
        if len(current) == len(probes):
            print(f"every node's index current within {max(current.values()):.2f} s after done")
    finally:
        other.stop()
        await service.stop()
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--subscriptions", type=int, default=0)
    parser.add_argument("--shuffle", action="store_true", help="numbers in random order")
    parser.add_argument("--timeout", type=float, default=900.0, help="bound on each wait (s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("ringback.registry.imports").setLevel(logging.INFO)
    asyncio.run(main(args.rows, args.subscriptions, args.shuffle, args.timeout))
