"""Keeps the event loop's pauses short, and measures them (`ringback serve`).

A switch sees every pause of the one event loop as response time. Two things here:

* **Garbage collection in small steps.** Automatic collection is off (a collection at a
  random allocation walked hundreds of thousands of objects: p99 24 ms at 10,000 calls/s).
  Instead the young generation is collected every `GC_YOUNG_EVERY_S`, about a
  millisecond each: most of a call's objects are freed by reference counting, and the
  collection also stops tracking the many tuples that hold only strings and numbers
  (transaction keys, timer entries). Its cost grows with the calls since the last one
  (every 100 ms, it held the loop 4-8 ms at 10,500 calls/s). A full collection runs every
  `GC_FULL_EVERY_S`, over only what survived: the transactions in flight. Before this,
  the once-a-minute full collection walked every timer entry and transaction key of the
  last 32 s: 80-110 ms at 5,000 calls/s. It still walks every transaction in flight (25-95
  ms at 5,000-9,000 calls/s on a shared host, bench/RESULTS.md, issue 14 item 1), so it
  runs every ten minutes: the young collections free the cycles of short-lived objects.
* **A stall histogram.** A ticker due every `TICK_S` records how late it runs
  (`ringback_loop_lag_seconds`): anything that holds the loop — a collection, a burst of
  timers, a slow callback, the host taking the CPU away — shows there. A stall of
  `STALL_LOG_S` or more is also logged (a warning at most every `STALL_LOG_EVERY_S`),
  with how much of it the loop's thread was on a CPU. And `ringback_loop_cpu_wait_seconds`
  (Linux schedstat) adds up the time the thread was ready to run but waited for a CPU:
  the stalls the host causes, on a shared or overcommitted machine, not ringback's code.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from pathlib import Path

from ringback.metrics import Registry

log = logging.getLogger(__name__)

TICK_S = 0.01
STALL_LOG_S = 0.1  # a stall this long is logged (a warning at most every STALL_LOG_EVERY_S)
STALL_LOG_EVERY_S = 10.0
GC_YOUNG_EVERY_S = 0.02
GC_FULL_EVERY_S = 600.0
LAG_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def take_over_gc() -> None:
    """Freeze what start-up made (never scanned again) and turn automatic collection off;
    `LoopWatch` collects from here on."""
    gc.collect()
    gc.freeze()
    gc.disable()


class LoopWatch:
    """The ticker: young collections, full collections, and the loop's lateness."""

    def __init__(self, metrics: Registry) -> None:
        self.lag = metrics.histogram(
            "ringback_loop_lag_seconds",
            f"How late a ticker due every {TICK_S * 1000:g} ms runs: event-loop stalls",
            LAG_BUCKETS,
        )
        self.full_pause = metrics.histogram(
            "ringback_gc_pause_seconds",
            "Pauses of the full garbage collection (every 10 minutes; automatic "
            "collection is off, the young generation is collected every 20 ms)",
            (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
        )

        path = Path(f"/proc/self/task/{threading.get_native_id()}/schedstat")  # this thread
        self.schedstat = path if path.exists() else None
        metrics.gauge(
            "ringback_loop_cpu_wait_seconds",
            "Seconds the event loop's thread was ready to run but waited for a CPU (Linux "
            "schedstat; -1 elsewhere): stalls the host caused",
            self.cpu_wait_s,
        )

    def cpu_wait_s(self) -> float:
        """The loop thread's time on a run queue so far (-1 where the kernel does not say)."""
        if self.schedstat is None:
            return -1.0
        try:
            return int(self.schedstat.read_text().split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            return -1.0

    async def run(self) -> None:
        clock = time.perf_counter
        next_young = clock() + GC_YOUNG_EVERY_S
        next_full = clock() + GC_FULL_EVERY_S
        due = clock() + TICK_S
        gc_pause = 0.0  # of a full collection in the last tick
        logged_at = -STALL_LOG_EVERY_S
        unlogged = 0
        cpu_clock = time.thread_time
        last, last_cpu = clock(), cpu_clock()
        while True:
            await asyncio.sleep(max(0.0, due - clock()))
            now, cpu = clock(), cpu_clock()
            late = now - due
            self.lag.observe(max(0.0, late))
            if late >= STALL_LOG_S:
                unlogged += 1
                if now - logged_at >= STALL_LOG_EVERY_S:
                    log.warning(
                        "event loop stalled for %.0f ms (on a CPU for %.0f ms of the last %.0f "
                        "ms; %d stall(s) of %.0f ms or more since the last report; full garbage "
                        "collection in it: %.0f ms)",
                        late * 1000,
                        (cpu - last_cpu) * 1000,
                        (now - last) * 1000,
                        unlogged,
                        STALL_LOG_S * 1000,
                        gc_pause * 1000,
                    )
                    logged_at, unlogged = now, 0
            last, last_cpu = now, cpu
            gc_pause = 0.0
            # The next tick is due TICK_S from now, whatever a collection here takes: its
            # pause shows in the next tick's lateness too, so the stall histogram has every
            # stall, whatever its cause.
            due = now + TICK_S
            if now >= next_full:
                gc.collect()
                gc_pause = clock() - now
                self.full_pause.observe(gc_pause)
                next_full = now + GC_FULL_EVERY_S
                next_young = now + GC_YOUNG_EVERY_S
            elif now >= next_young:
                gc.collect(0)
                next_young = now + GC_YOUNG_EVERY_S
