"""Per-token API limit (`http.rate_limit_per_token`) on a live Service over real HTTP: 429
with Retry-After as /openapi.json documents it, per token, counted in /metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from court_api_support import SETUP, Api, make_config

from ringback.server import Service


@pytest.fixture
async def service(database: str) -> AsyncIterator[Service]:
    config = make_config(database)  # check_answers on: a 429 must be documented
    config.http.rate_limit_per_token = 2.0
    config.http.rate_limit_burst = 3.0
    service = Service(config)
    await service.start()
    yield service
    await service.stop()


async def test_a_token_over_its_limit_gets_429_with_retry_after_and_others_do_not(
    api: Api, service: Service, operator: str
) -> None:
    _, other = await service.store.tokens.issue("operator", None, "second operator", SETUP)
    statuses = [(await api.get("/v1/courts", operator)).status for _ in range(3)]
    assert statuses == [200, 200, 200]  # the burst
    refused = await api.get("/v1/courts", operator)
    assert refused.status == 429, refused.body
    assert refused.code == "rate_limited"
    assert refused.headers["Retry-After"] == "1"  # 1/rate = 0.5 s, in whole seconds
    assert "retry after 1 s" in refused.body["error"]["message"]
    assert operator not in refused.raw.decode()  # never the token itself
    # nothing was done: a POST refused the same way creates no court
    refused_post = await api.post("/v1/courts", operator, {"name": "Should not exist"})
    assert refused_post.status == 429
    # another token has its own bucket; a request without a token is not limited here
    assert (await api.get("/v1/courts", other)).status == 200
    assert (await api.get("/v1/courts")).status == 401
    # the token works again once Retry-After has passed
    deadline = time.monotonic() + 3.0
    while (answer := await api.get("/v1/courts", operator)).status == 429:
        assert time.monotonic() < deadline, "the token never recovered"
        await asyncio.sleep(0.1)
    assert answer.status == 200
    assert all(c["name"] != "Should not exist" for c in answer.body["items"])
    metrics = await api.get("/metrics")
    text = metrics.raw.decode()
    counted = [line for line in text.splitlines() if line.startswith("ringback_http_rate_limited")]
    assert counted and float(counted[0].split()[-1]) >= 2


async def test_the_limit_is_documented_in_openapi(api: Api) -> None:
    description = (await api.get("/openapi.json")).body
    courts = description["paths"]["/v1/courts"]["get"]["responses"]
    assert "429" in courts
    assert "429" not in description["paths"]["/healthz"]["get"]["responses"]
