"""Clearance on the primary -> no longer warned on a node that follows a hot standby.

A real primary and a streaming hot standby (`pg_basebackup -R` with the embedded
binaries, tests/integration/pg_standby.py); an `IndexSync` on the standby, which refuses
LISTEN, so it polls the change feed every --poll seconds. Each of --n listed numbers is
cleared on the primary through the store (as the payment hook does) and timed from COMMIT
until the node's index no longer announces it.

    .venv/bin/python bench/replica_feed.py [--n 200] [--poll 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from pg_standby import start_pair  # noqa: E402

from ringback.registry.common import Principal  # noqa: E402
from ringback.registry.feed import IndexSync  # noqa: E402
from ringback.registry.listing_index import ListingIndex  # noqa: E402
from ringback.registry.store import Store, create_pool  # noqa: E402

WHO = Principal("bench", "operator")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def run(n: int, poll: float) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="replica-feed-"))
    primary, standby = await asyncio.to_thread(start_pair, workdir)
    try:
        pool = await create_pool(primary.url, min_size=1, max_size=2)
        try:
            store = Store(pool)
            await store.migrate()
            court, _, _ = await store.courts.create("Replica Court", WHO)
            now = datetime.now(UTC)
            numbers = [8613900000000 + i for i in range(n)]
            for number in numbers:
                await store.listings.put(
                    court["id"], number, "CASE", now + timedelta(days=1), WHO,
                    effective_at=now - timedelta(minutes=1),
                )  # fmt: skip
            index = ListingIndex()
            sync = IndexSync(standby.url, index, poll_interval_s=poll)
            sync.start()
            try:
                while len(index) < n:
                    await asyncio.sleep(0.05)
                waits = []
                for number in numbers:
                    await store.listings.change_status(court["id"], number, "cleared", WHO)
                    committed = time.perf_counter()
                    while index.lookup(number, time.time()) is not None:
                        await asyncio.sleep(0.002)
                    waits.append((time.perf_counter() - committed) * 1000)
                    await asyncio.sleep(0.013)  # spread the clearances over the poll phase
                assert sync.polling
            finally:
                await sync.stop()
        finally:
            await pool.close()
    finally:
        await asyncio.to_thread(standby.stop)
        await asyncio.to_thread(primary.stop)
        shutil.rmtree(workdir, ignore_errors=True)
    return {"p50_ms": pct(waits, 50), "p99_ms": pct(waits, 99), "max_ms": max(waits)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--poll", type=float, default=0.25, help="index.poll_interval_s")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    result = asyncio.run(run(args.n, args.poll))
    print(
        f"{args.n} clearances on the primary, node on the standby polling every "
        f"{args.poll:g} s: p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, "
        f"max {result['max_ms']:.0f} ms"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
