"""A burst of changes through the change feed: how long does applying it hold the event loop?

An embedded PostgreSQL with --base listings, an `IndexSync` loaded from it in this process,
and a 1 ms ticker on the same event loop recording how late each tick is. Then one
transaction lists --burst new numbers (one change-feed row each); the figures are the
longest the loop was held while the node applied them (the ticker's worst lateness) and
the time from COMMIT until every new number is in the index. `--chunk` sets how many
changes are applied between two yields (`registry/feed.py` APPLY_CHUNK; a huge value is
the behaviour before it was chunked); `--fetch-chunk` how many catch-up rows are decoded
at a time (FETCH_CHUNK; a huge value reads each result in one piece, as before).

    .venv/bin/python bench/feed_burst.py [--base 200000] [--burst 50000] [--chunk 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from ringback.registry import feed
from ringback.registry.common import Principal
from ringback.registry.embedded import EmbeddedPostgres
from ringback.registry.feed import IndexSync
from ringback.registry.listing_index import ListingIndex
from ringback.registry.store import Store, create_pool

GC_LIKE_SERVE = True  # --gc on: Python's automatic collection left on, as before
INSERT = (
    "INSERT INTO listings (number, court_id, case_ref, expires_at) "
    "SELECT $3::int8 + n * 7, $1, 'BURST', now() + interval '30 days' "
    "FROM generate_series(1, $2) AS n"
)


class Ticker:
    """Wakes every 1 ms and remembers how late each wake-up was (wall clock), and how
    much CPU this thread used between two wake-ups: on a shared machine a late wake-up
    can be time spent waiting for a CPU; the thread's CPU time is the loop's own work."""

    def __init__(self) -> None:
        self.late_ms: list[float] = []
        self.cpu_ms: list[float] = []
        self.running = True

    async def run(self) -> None:
        while self.running:
            before, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(0.001)
            self.late_ms.append((time.perf_counter() - before - 0.001) * 1000)
            self.cpu_ms.append((time.thread_time() - cpu) * 1000)

    def clear(self) -> None:
        self.late_ms.clear()
        self.cpu_ms.clear()


async def one_burst(dsn: str, court_id: object, base: int, burst: int, start_at: int) -> dict:
    index = ListingIndex(compact_threshold=10 * burst)  # the merge is a separate figure
    sync = IndexSync(dsn, index, heartbeat_s=1.0)
    sync.start()
    try:
        while not sync.loaded:
            await asyncio.sleep(0.05)
        assert len(index) == base, (len(index), base)
        if GC_LIKE_SERVE:  # what `ringback serve` does once started (server._tune_gc)
            gc.collect()
            gc.freeze()
            gc.disable()
        else:
            gc.enable()
        await asyncio.sleep(0.5)
        ticker = Ticker()
        task = asyncio.create_task(ticker.run())
        await asyncio.sleep(0.2)
        conn = await asyncpg.connect(dsn)
        try:
            committed = time.perf_counter()
            await conn.execute(INSERT, court_id, burst, start_at)
            committed = time.perf_counter()  # execute returns after COMMIT (autocommit)
        finally:
            await conn.close()
        ticker.clear()  # only what happens while the node applies the burst
        while len(index) < base + burst:
            await asyncio.sleep(0.001)
        current_s = time.perf_counter() - committed
        await asyncio.sleep(0.05)
        ticker.running = False
        await task
        late, cpu = sorted(ticker.late_ms), sorted(ticker.cpu_ms)
        return {
            "current_s": current_s,
            "max_stall_ms": late[-1],
            "p99_stall_ms": late[int(0.99 * (len(late) - 1))],
            "max_cpu_between_ticks_ms": cpu[-1],
            "ticks": len(late),
        }
    finally:
        await sync.stop()


async def main_async(args: argparse.Namespace) -> list[dict]:
    workdir = Path(tempfile.mkdtemp(prefix="feed-burst-"))
    db = EmbeddedPostgres(workdir / "db")
    dsn = await asyncio.to_thread(db.start)
    try:
        pool = await create_pool(dsn, min_size=1, max_size=2)
        try:
            store = Store(pool)
            await store.migrate()
            court, _, _ = await store.courts.create("Burst Court", Principal("bench", "operator"))
            await pool.execute(INSERT, court["id"], args.base, 8613000000000)
        finally:
            await pool.close()
        results = []
        listed = args.base
        for run in range(args.runs):
            start_at = 8614000000000 + run * 10 * args.burst
            result = await one_burst(dsn, court["id"], listed, args.burst, start_at)
            listed += args.burst
            print(
                f"run {run + 1}: index current {result['current_s']:.2f} s after COMMIT, "
                f"loop held at most {result['max_stall_ms']:.1f} ms "
                f"(p99 {result['p99_stall_ms']:.1f} ms over {result['ticks']} ticks), "
                f"at most {result['max_cpu_between_ticks_ms']:.1f} ms of its own CPU work "
                "between two ticks",
                file=sys.stderr,
            )
            results.append(result)
        return results
    finally:
        await asyncio.to_thread(db.remove)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", type=int, default=200_000, help="listings before the burst")
    ap.add_argument("--burst", type=int, default=50_000, help="changes in one transaction")
    ap.add_argument("--chunk", type=int, default=feed.APPLY_CHUNK, help="feed.APPLY_CHUNK")
    ap.add_argument(
        "--fetch-chunk",
        type=int,
        default=feed.FETCH_CHUNK,
        help="feed.FETCH_CHUNK: catch-up rows decoded at a time (huge: all in one result)",
    )
    ap.add_argument(
        "--gc",
        choices=("serve", "on"),
        default="serve",
        help="serve: the collector as `ringback serve` runs it (frozen, automatic "
        "collection off, one timed collection a minute); on: Python's default",
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    feed.APPLY_CHUNK = args.chunk
    feed.FETCH_CHUNK = args.fetch_chunk
    global GC_LIKE_SERVE
    GC_LIKE_SERVE = args.gc == "serve"
    results = asyncio.run(main_async(args))
    worst = max(r["max_stall_ms"] for r in results)
    worst_cpu = max(r["max_cpu_between_ticks_ms"] for r in results)
    median_current = statistics.median(r["current_s"] for r in results)
    print(
        "| burst | longest loop hold (wall) | median of runs | longest own CPU between "
        "ticks | index current after COMMIT (median) |"
    )
    print("|---|---:|---:|---:|---:|")
    print(
        f"| {args.burst:,} changes, chunk {args.chunk:,}, fetch {args.fetch_chunk:,}, "
        f"gc {args.gc} | "
        f"{worst:.1f} ms | "
        f"{statistics.median(r['max_stall_ms'] for r in results):.1f} ms | "
        f"{worst_cpu:.1f} ms | {median_current:.2f} s |"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"worst_stall_ms": worst, "worst_cpu_ms": worst_cpu, "runs": results}, indent=2
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
