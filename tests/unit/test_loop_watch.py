"""The loop watch: stalls land in the histogram, cycles are collected with automatic
collection off, and the full collection is timed."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Iterator

import pytest

from ringback import loop_watch
from ringback.loop_watch import LAG_BUCKETS, LoopWatch
from ringback.metrics import Registry


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def collector_off() -> Iterator[None]:
    """Automatic collection off, as `ringback serve` runs (restored after)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


async def _until(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.005)
    return False


def _bucket(watch: LoopWatch, at_least: float) -> int:
    """Ticks at least `at_least` s late (the histogram's counts above that bound)."""
    return sum(watch.lag.counts[LAG_BUCKETS.index(at_least) :])


async def test_a_blocked_loop_shows_in_the_lag_histogram(collector_off: None) -> None:
    registry = Registry()
    watch = LoopWatch(registry)
    task = asyncio.create_task(watch.run())
    try:
        assert await _until(lambda: watch.lag.count >= 5, 2)
        before = _bucket(watch, 0.05)
        asyncio.get_running_loop().call_soon(time.sleep, 0.12)  # a 120 ms stall
        assert await _until(lambda: _bucket(watch, 0.05) > before, 2)
    finally:
        task.cancel()
    text = registry.render()
    assert 'ringback_loop_lag_seconds_bucket{le="0.05"}' in text
    assert "ringback_gc_pause_seconds_count 0" in text  # no full collection yet


async def test_cycles_are_collected_with_automatic_collection_off(collector_off: None) -> None:
    watch = LoopWatch(Registry())
    cycle = _Cycle()
    gone = weakref.ref(cycle)
    del cycle
    await asyncio.sleep(0.2)
    assert gone() is not None  # nothing collects it by itself
    task = asyncio.create_task(watch.run())
    try:
        # a young collection within GC_YOUNG_EVERY_S (20 ms)
        assert await _until(lambda: gone() is None, 2)
    finally:
        task.cancel()


async def test_the_full_collection_is_timed(
    collector_off: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop_watch, "GC_FULL_EVERY_S", 0.05)
    registry = Registry()
    watch = LoopWatch(registry)
    task = asyncio.create_task(watch.run())
    try:
        assert await _until(lambda: watch.full_pause.count >= 2, 2)
    finally:
        task.cancel()
    assert watch.full_pause.sum > 0


async def test_a_long_stall_is_logged(
    collector_off: None, caplog: pytest.LogCaptureFixture
) -> None:
    watch = LoopWatch(Registry())
    task = asyncio.create_task(watch.run())
    try:
        assert await _until(lambda: watch.lag.count >= 2, 2)
        with caplog.at_level("WARNING", logger="ringback.loop_watch"):
            asyncio.get_running_loop().call_soon(time.sleep, 0.15)
            assert await _until(lambda: "event loop stalled" in caplog.text, 2)
    finally:
        task.cancel()


def test_cpu_wait_is_read_from_the_kernel() -> None:
    registry = Registry()
    watch = LoopWatch(registry)
    assert watch.cpu_wait_s() >= 0  # Linux: /proc/self/task/<tid>/schedstat
    line = next(
        ln for ln in registry.render().splitlines() if ln.startswith("ringback_loop_cpu_wait")
    )
    assert float(line.split()[1]) >= 0
