"""Token buckets by key (a SIP source address, an API token's digest): pure, clock given.

Each key's bucket holds at most `burst` tokens and refills at `rate` per second; a request
takes one. Buckets are two floats in a dict; when more than `max_keys` exist, full (idle)
buckets are forgotten first, and if that is not enough every bucket is (a limiter must
never grow without bound: forgetting only lets a source start again from a full bucket).
"""

from __future__ import annotations


class TokenBuckets:
    def __init__(self, rate: float, burst: float = 0.0, *, max_keys: int = 65536) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.burst = burst if burst > 0 else max(rate, 1.0)
        self.max_keys = max_keys
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, at]

    def take(self, key: str, now: float) -> float:
        """Take one token for `key` at `now` (seconds, any monotonic clock): 0.0 when
        allowed, else the seconds until one token will be there (nothing is taken)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget(now)
            self._buckets[key] = [self.burst - 1.0, now]
            return 0.0
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def _forget(self, now: float) -> None:
        full = [
            key
            for key, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)
