"""Scale benchmark for ringback.registry.listing_index.ListingIndex.

Builds an index of N random Chinese mobile numbers (86 13x..19x xxxx xxxx), a fraction of
them (``--several``) with a second listing (another court or case, in the side table),
then reports bytes per number (``nbytes`` and process RSS growth from /proc/self/status),
build time, single-lookup latency percentiles with a 10,000-entry overlay, compaction time
(and how long the event-loop thread is stalled while the merge runs in a worker), and the
same figures for a plain ``dict[int, Entry]``.

    .venv/bin/python bench/index_scale.py [--n 15000000] [--dict-n 15000000]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import threading
import time
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from ringback.registry.listing_index import Entry, ListingIndex, MergedBase

LO, HI = 86_13_0000_0000, 86_19_9999_9999 + 1
NOW = 1_750_000_000.0


def proc_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def rss() -> int:
    """Resident bytes after handing freed heap back to the OS.

    Without malloc_trim, glibc keeps freed temporaries (np.unique, argsort) resident and
    the "growth" would count them.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return proc_kb("VmRSS") * 1024


def make_numbers(n: int, rng: np.random.Generator) -> NDArray[np.int64]:
    nums = np.unique(rng.integers(LO, HI, size=n + n // 50 + 1000, dtype=np.int64))[:n]
    assert nums.size == n
    rng.shuffle(nums)
    return nums


def make_queries(
    keys: NDArray[np.int64], n: int, rng: np.random.Generator
) -> tuple[list[int], float]:
    hits = rng.choice(keys, n // 2)
    misses = rng.integers(LO, HI, size=n - n // 2, dtype=np.int64)
    q = np.concatenate([hits, misses])
    rng.shuffle(q)
    true_hits = float(np.isin(q, keys).mean())
    return q.tolist(), true_hits


def latencies(fn: Callable[[int], object], queries: list[int]) -> tuple[float, float, float]:
    """p50/p99 per call in µs (timer overhead subtracted) and mean µs over a bare loop."""
    pc = time.perf_counter_ns
    for q in queries[:20_000]:  # warm up
        fn(q)
    samples = np.empty(len(queries), dtype=np.int64)
    for i, q in enumerate(queries):
        t0 = pc()
        fn(q)
        samples[i] = pc() - t0
    empty = np.empty(100_000, dtype=np.int64)
    for i in range(100_000):
        t0 = pc()
        empty[i] = pc() - t0
    overhead = float(np.median(empty))
    t0 = pc()
    for q in queries:
        fn(q)
    mean = (pc() - t0) / len(queries) / 1e3
    p50, p99 = np.percentile(samples, [50, 99]) - overhead
    return p50 / 1e3, p99 / 1e3, mean


def loop_stall(work: Callable[[], object]) -> tuple[float, float]:
    """Run ``work`` in a thread; return (its seconds, longest main-thread gap in ms)."""
    done = threading.Event()
    t0 = time.perf_counter()

    def run() -> None:
        work()
        done.set()

    th = threading.Thread(target=run)
    th.start()
    worst = 0.0
    last = time.perf_counter()
    while not done.is_set():
        time.sleep(0)  # let the worker run, like an event loop between callbacks
        now = time.perf_counter()
        worst = max(worst, now - last)
        last = now
    th.join()
    return time.perf_counter() - t0, worst * 1e3


def bench_index(
    n: int, n_lookups: int, overlay: int, several: float, rng: np.random.Generator
) -> list[int]:
    print(f"== ListingIndex, {n:,} numbers")
    rss0 = rss()
    nums = make_numbers(n, rng)
    # A second listing (one row more) for a fraction of the numbers, e.g. a second court.
    nums = np.concatenate([nums, nums[: int(n * several)]])
    m = nums.size
    lid = np.arange(1, m + 1, dtype=np.uint32)
    rid = (np.arange(m) % 7 == 0).astype(np.uint32) * 3
    eff = rng.integers(1_600_000_000, 1_700_000_000, size=m).astype(np.uint32)
    exp = np.where(np.arange(m) % 5 == 0, 1_800_000_000, 2**32 - 1).astype(np.uint32)
    idx = ListingIndex()
    t = time.perf_counter()
    idx.replace_all(nums, lid, rid, eff, exp, several_per_number=True)
    build_unsorted = time.perf_counter() - t
    keys = idx.base_columns()[0]
    t = time.perf_counter()
    sidx = ListingIndex()
    sidx.replace_all(keys, *idx.base_columns()[1:])  # pre-sorted (ORDER BY number)
    build_sorted = time.perf_counter() - t
    del sidx, nums, lid, rid, eff, exp
    gc.collect()
    growth = rss() - rss0
    print(f"build (shuffled input)   {build_unsorted:8.2f} s")
    print(f"build (sorted input)     {build_sorted:8.2f} s")
    print(f"several listings         {idx.side_size:8,} numbers (side table)")
    print(f"nbytes / len             {idx.nbytes / len(idx):8.2f} B/number")
    print(f"RSS growth / len         {growth / len(idx):8.2f} B/number")

    # Overlay: half updates of listed numbers, a quarter removals, a quarter new numbers.
    sample = rng.choice(keys, overlay * 3 // 4, replace=False).tolist()
    for i, k in enumerate(sample):
        idx.upsert(k, None if i % 3 == 2 else Entry(i + 1, 0, 1_600_000_000, 2**32 - 1))
    for k in rng.integers(LO, HI, size=overlay - len(sample)).tolist():
        idx.upsert(k, Entry(9, 0, 1_600_000_000, 2**32 - 1))
    print(f"overlay entries          {idx.overlay_size:8,}")

    queries, hit_rate = make_queries(keys, n_lookups, rng)
    lk = idx.lookup
    p50, p99, mean = latencies(lambda q: lk(q, NOW), queries)
    print(
        f"lookup ({len(queries):,}, {hit_rate:.0%} listed) p50 {p50:.2f} µs  "
        f"p99 {p99:.2f} µs  mean incl. loop {mean:.2f} µs"
    )
    g50, g99, gmean = latencies(idx.get, queries)
    print(f"get (raw)                p50 {g50:.2f} µs  p99 {g99:.2f} µs  mean {gmean:.2f} µs")

    before = len(idx)
    ticket = idx.begin_compaction()
    out: list[MergedBase] = []
    secs, stall = loop_stall(lambda: out.append(idx.merged_arrays(ticket)))
    t = time.perf_counter()
    idx.finish_compaction(out[0])
    swap = time.perf_counter() - t
    assert len(idx) == before and idx.overlay_size == 0
    print(
        f"compaction {overlay:,} in thread {secs:6.2f} s  (loop thread max stall "
        f"{stall:.0f} ms, swap {swap * 1e3:.2f} ms)"
    )
    for k in rng.integers(LO, HI, size=50_000).tolist():
        idx.upsert(k, Entry(9, 0, 0, 2**32 - 1))
    t = time.perf_counter()
    idx.compact()
    print(f"compaction 50,000 sync   {time.perf_counter() - t:8.2f} s")
    print(f"peak RSS so far          {proc_kb('VmHWM') / 1e6:8.2f} GB")
    return queries


def bench_dict(n: int, queries: list[int], rng: np.random.Generator) -> None:
    print(f"== dict[int, Entry], {n:,} entries")
    gc.collect()
    rss0 = rss()
    t = time.perf_counter()
    nums = make_numbers(n, rng).tolist()
    eff = rng.integers(1_600_000_000, 1_700_000_000, size=n).tolist()
    gc.disable()  # otherwise gen-2 collections over 15 M tuples dominate the build
    d = {
        k: Entry(i + 1, 3 if i % 7 == 0 else 0, e, 1_800_000_000 if i % 5 == 0 else 2**32 - 1)
        for i, (k, e) in enumerate(zip(nums, eff, strict=True))
    }
    gc.enable()
    build = time.perf_counter() - t
    del nums, eff
    growth = rss() - rss0
    print(f"build                    {build:8.2f} s")
    print(f"RSS growth / len         {growth / len(d):8.2f} B/entry")
    keys = np.fromiter(d.keys(), dtype=np.int64, count=len(d))
    qs, hit_rate = make_queries(keys, len(queries), rng)
    del keys
    get = d.get

    def lookup(q: int) -> Entry | None:
        e = get(q)
        if e is not None and e.effective_at <= NOW < e.expires_at:
            return e
        return None

    p50, p99, mean = latencies(lookup, qs)
    print(
        f"lookup ({len(qs):,}, {hit_rate:.0%} listed) p50 {p50:.2f} µs  p99 {p99:.2f} µs  "
        f"mean incl. loop {mean:.2f} µs"
    )
    print(f"peak RSS                 {proc_kb('VmHWM') / 1e6:8.2f} GB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=15_000_000)
    ap.add_argument("--dict-n", type=int, default=15_000_000, help="0 to skip the dict")
    ap.add_argument("--lookups", type=int, default=1_000_000)
    ap.add_argument("--overlay", type=int, default=10_000)
    ap.add_argument(
        "--several", type=float, default=0.001, help="fraction of numbers with two listings"
    )
    ap.add_argument("--seed", type=int, default=20240601)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    t = time.perf_counter()
    queries = bench_index(a.n, a.lookups, a.overlay, a.several, rng)
    gc.collect()
    if a.dict_n:
        bench_dict(a.dict_n, queries, rng)
    print(f"total {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
