"""Token buckets: the limit, the refill, the wait they report, and bounded memory."""

from __future__ import annotations

import pytest

from ringback.ratelimit import TokenBuckets


def test_burst_then_refill_at_the_rate() -> None:
    buckets = TokenBuckets(rate=10, burst=3)
    assert [buckets.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", 0.0) == pytest.approx(0.1)  # one token comes back in 1/rate
    assert buckets.take("a", 0.05) == pytest.approx(0.05)  # half of it is there
    assert buckets.take("a", 0.1) == 0.0
    assert buckets.take("a", 0.1) > 0
    # refilled only up to the burst, however long it rested
    assert [buckets.take("a", 100.0) for _ in range(4)][-1] > 0


def test_keys_are_independent_and_burst_defaults_to_one_second() -> None:
    buckets = TokenBuckets(rate=2)
    assert buckets.burst == 2
    assert [buckets.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.5]
    assert buckets.take("b", 0.0) == 0.0


def test_memory_is_bounded_idle_buckets_go_first() -> None:
    buckets = TokenBuckets(rate=1, burst=2, max_keys=4)
    buckets.take("busy", 0.0)
    buckets.take("busy", 0.0)
    for i in range(3):
        buckets.take(f"idle{i}", 0.0)
    assert len(buckets) == 4
    buckets.take("new", 1.0)  # the idle ones are full again by now: forgotten
    assert len(buckets) <= 4
    assert buckets.take("busy", 1.0) == 0.0  # one token refilled: still tracked
    assert buckets.take("busy", 1.0) > 0


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TokenBuckets(rate=0)
