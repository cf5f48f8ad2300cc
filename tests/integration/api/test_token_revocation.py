"""A revoked token stops working on every node within the change feed's latency, not after
a node's token cache runs out (the HTTP dip caches a token for 5 s)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from court_api_support import SETUP, Api, make_config, until

from ringback.api.lookup import AUTH_CACHE_S
from ringback.server import Service


@pytest.fixture
async def two_nodes(database: str) -> AsyncIterator[tuple[Service, Service]]:
    nodes = [Service(make_config(database)) for _ in range(2)]
    for node in nodes:
        await node.start()
    try:
        for node in nodes:
            assert await until(lambda n=node: n.sync.loaded and n.sync.connected, 10)  # type: ignore[misc]
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            await node.stop()


async def test_revocation_on_one_node_stops_the_token_on_the_other_at_once(
    two_nodes: tuple[Service, Service],
) -> None:
    a, b = two_nodes
    row, switch = await a.store.tokens.issue("switch", None, "switch token", SETUP)
    _, operator = await a.store.tokens.issue("operator", None, "op", SETUP)
    async with aiohttp.ClientSession() as http:
        api_a, api_b = Api(a, http), Api(b, http)
        r = await api_b.get("/v1/lookup/+8613800138000", switch)
        assert r.status == 200, r.body  # node B now holds the token in its cache
        drops = b.store.tokens.cache_drops
        revoked_at = time.monotonic()
        r = await api_a.delete(f"/v1/tokens/{row['id']}")
        assert r.status == 401
        r = await api_a.call("DELETE", f"/v1/tokens/{row['id']}", operator)
        assert r.status == 200 and r.body["revoked_at"] is not None, r.body
        # B hears the revocation (NOTIFY ringback_tokens) and drops its cache ...
        assert await until(lambda: b.store.tokens.cache_drops > drops, AUTH_CACHE_S)
        r = await api_b.get("/v1/lookup/+8613800138000", switch)
        heard_after = time.monotonic() - revoked_at
        # ... so the token is refused there well before the cache would have let it go.
        assert (r.status, r.code) == (401, "unauthenticated"), r.body
        assert heard_after < AUTH_CACHE_S, heard_after


async def test_a_node_cut_off_from_the_feed_does_not_trust_its_cache(
    two_nodes: tuple[Service, Service],
) -> None:
    """Revocations cannot reach a node whose feed connection is down (a revocation made
    then is never announced to it): it forgets its cached tokens and asks the database."""
    a, b = two_nodes
    row, switch = await a.store.tokens.issue("switch", None, "switch token", SETUP)
    async with aiohttp.ClientSession() as http:
        api_b = Api(b, http)
        assert (await api_b.get("/v1/lookup/+8613800138000", switch)).status == 200
        # cut B's feed connection: it is down until its reconnect
        await b.sync._close()
        await a.pool.execute("UPDATE api_tokens SET revoked_at = now() WHERE id = $1", row["id"])
        r = await api_b.get("/v1/lookup/+8613800138000", switch)
        assert (r.status, r.code) == (401, "unauthenticated"), r.body
