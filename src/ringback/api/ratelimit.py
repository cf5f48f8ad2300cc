"""Per-token API limit (`http.rate_limit_per_token`): 429 with Retry-After, counted.

Checked before the token is looked up, so a client hammering the API with a valid token
costs no database round trip once it is over its limit. Buckets are keyed by a digest
of the token (the token itself is never kept or logged). Operations without a token
(health, readiness, metrics, the signed payment hook, the portal's cookie sessions) are
not limited here.
"""

from __future__ import annotations

import hashlib
import math
import time

from aiohttp import web

from ringback.api.errors import error
from ringback.metrics import Counter
from ringback.ratelimit import TokenBuckets


class ApiRateLimit:
    def __init__(self, buckets: TokenBuckets | None, counter: Counter) -> None:
        self.buckets = buckets
        self.counter = counter
        self.clock = time.monotonic

    def refuse(self, request: web.Request) -> web.Response | None:
        """A 429 when the request's bearer token is over its limit, else None."""
        if self.buckets is None:
            return None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None  # no token: the route answers 401 itself
        key = hashlib.sha256(token.encode()).hexdigest()[:32]
        wait = self.buckets.take(key, self.clock())
        if wait == 0.0:
            return None
        self.counter.inc()
        retry_after = max(1, math.ceil(wait))
        answer = error(
            429,
            "rate_limited",
            f"more than {self.buckets.rate:g} requests per second with this token; "
            f"retry after {retry_after} s",
        )
        answer.headers["Retry-After"] = str(retry_after)
        return answer


RATE_LIMIT: web.AppKey[ApiRateLimit] = web.AppKey("rate_limit", ApiRateLimit)
