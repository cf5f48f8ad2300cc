"""A number with several live listings (two courts, or two cases at one court), on the
real PostgreSQL, through the change feed into every node's index.

A number is warned exactly while at least one of its listings is effective, not expired,
not suspended and not cleared, with the recording of the earliest-listed such listing, and
proof of play is credited to that listing. Each node is checked twice: one that was
running when the listings were made (they arrive by the change feed) and one that starts
afterwards (they arrive with the full load).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from ringback.registry.common import Principal
from ringback.registry.feed import IndexSync
from ringback.registry.listing_index import ListingIndex
from ringback.registry.proof_of_play import PlayRecord, ProofOfPlayWriter
from ringback.registry.store import Store

WHO = Principal("test", "operator")
N = 8613800138000
MINUTE = timedelta(minutes=1)
MakeNode = Callable[[], Awaitable[IndexSync]]


async def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


@pytest.fixture
async def make_node(database: str) -> AsyncIterator[MakeNode]:
    nodes: list[IndexSync] = []

    async def make() -> IndexSync:
        node = IndexSync(database, ListingIndex(), heartbeat_s=0.2, connect_timeout_s=2.0)
        node.start()
        nodes.append(node)
        await eventually(lambda: node.loaded, "the node's full load")
        return node

    yield make
    for node in nodes:
        await node.stop()


async def caught_up(store: Store, *nodes: IndexSync) -> None:
    """Wait until every node has applied every change committed so far."""
    head = await store.pool.fetchval("SELECT last_seq FROM feed_counter")
    await eventually(lambda: all(n.last_seq >= head for n in nodes), "the change feed")


async def court_with_recording(store: Store, name: str) -> tuple[asyncpg.Record, int]:
    court, _, _ = await store.courts.create(name, WHO)
    pcm = bytes([len(name)]) * 16000
    recording = await store.recordings.add(court["id"], f"{name} warning", pcm, WHO)
    return court, int(recording["id"])


def heard(node: IndexSync, at: float) -> tuple[int, int] | None:
    """(listing_id, recording_id) a caller of N hears at `at`, or None (not warned)."""
    entry = node.index.lookup(N, at)
    return None if entry is None else (entry.listing_id, entry.recording_id)


async def test_when_court_a_listing_expires_callers_hear_court_b_credited_to_b(
    store: Store, make_node: MakeNode
) -> None:
    a, rec_a = await court_with_recording(store, "Court A")
    b, rec_b = await court_with_recording(store, "Court B")
    live = await make_node()
    now = datetime.now(UTC)
    la = await store.listings.put(
        a["id"], N, "A-1", now + timedelta(seconds=3), WHO,
        effective_at=now - MINUTE, recording_id=rec_a,
    )  # fmt: skip
    lb = await store.listings.put(
        b["id"], N, "B-1", now + timedelta(days=30), WHO,
        effective_at=now - MINUTE, recording_id=rec_b,
    )  # fmt: skip
    loaded = await make_node()
    await caught_up(store, live, loaded)
    a_expired = la["expires_at"].timestamp() + 1
    for node in (live, loaded):
        assert heard(node, time.time()) == (la["id"], rec_a)  # both effective: first listed
        assert heard(node, a_expired) == (lb["id"], rec_b)
        assert heard(node, lb["expires_at"].timestamp() + 1) is None

    # As time passes, with no further change in the database.
    await asyncio.sleep(max(0.0, a_expired - time.time()))
    entry = live.index.lookup(N, time.time())
    assert entry is not None and (entry.listing_id, entry.recording_id) == (lb["id"], rec_b)
    assert heard(loaded, time.time()) == (lb["id"], rec_b)

    # Proof of play (what the call path records from the entry) is credited to B.
    writer = ProofOfPlayWriter(store.pool, node="test")
    writer.record(
        PlayRecord(entry.listing_id, entry.recording_id, "PCMU", time.time(), time.time() + 1,
                   "completed")
    )  # fmt: skip
    await writer.flush()
    played = await store.pool.fetchrow(
        "SELECT listing_id, court_id, recording_id FROM announcements"
    )
    assert tuple(played) == (lb["id"], b["id"], rec_b)


async def test_not_warned_while_the_only_other_listing_is_in_its_notice_period(
    store: Store, make_node: MakeNode
) -> None:
    a, rec_a = await court_with_recording(store, "Court A")
    b, rec_b = await court_with_recording(store, "Court B")
    live = await make_node()
    now = datetime.now(UTC)
    la = await store.listings.put(
        a["id"], N, "A-1", now + timedelta(seconds=3), WHO,
        effective_at=now - MINUTE, recording_id=rec_a,
    )  # fmt: skip
    lb = await store.listings.put(
        b["id"], N, "B-1", now + timedelta(days=30), WHO,
        effective_at=now + timedelta(days=3), recording_id=rec_b,
    )  # fmt: skip
    loaded = await make_node()
    await caught_up(store, live, loaded)
    a_expired = la["expires_at"].timestamp() + 1
    b_effective = lb["effective_at"].timestamp() + 1
    for node in (live, loaded):
        assert heard(node, time.time()) == (la["id"], rec_a)
        assert heard(node, a_expired) is None  # B is still in its notice period
        assert heard(node, b_effective) == (lb["id"], rec_b)
    await asyncio.sleep(max(0.0, a_expired - time.time()))
    assert heard(live, time.time()) is None
    assert heard(loaded, time.time()) is None


async def test_cleared_listing_leaves_the_number_silent_until_the_other_is_effective(
    store: Store, make_node: MakeNode
) -> None:
    """B listed first but still in its notice period; A listed later with immediate effect.
    A is what callers hear (B is not effective yet); once A is cleared, nothing is heard
    until B's effective_at."""
    a, rec_a = await court_with_recording(store, "Court A")
    b, rec_b = await court_with_recording(store, "Court B")
    live = await make_node()
    now = datetime.now(UTC)
    lb = await store.listings.put(
        b["id"], N, "B-1", now + timedelta(days=30), WHO,
        effective_at=now + timedelta(days=3), recording_id=rec_b,
    )  # fmt: skip
    la = await store.listings.put(
        a["id"], N, "A-1", now + timedelta(days=30), WHO,
        effective_at=now - MINUTE, recording_id=rec_a,
    )  # fmt: skip
    loaded = await make_node()
    await caught_up(store, live, loaded)
    b_effective = lb["effective_at"].timestamp() + 1
    for node in (live, loaded):
        assert heard(node, time.time()) == (la["id"], rec_a)
        assert heard(node, b_effective) == (lb["id"], rec_b)  # both effective: B listed first

    await store.listings.change_status(a["id"], N, "cleared", WHO, reason="paid")
    loaded_after = await make_node()
    await caught_up(store, live, loaded_after)
    for node in (live, loaded_after):
        assert heard(node, time.time()) is None
        assert heard(node, b_effective) == (lb["id"], rec_b)


async def test_two_cases_at_one_court_are_two_listings_paid_one_at_a_time(
    store: Store, make_node: MakeNode
) -> None:
    court, rec = await court_with_recording(store, "Court C")
    live = await make_node()
    now = datetime.now(UTC)
    expires = now + timedelta(days=30)
    first = await store.listings.put(
        court["id"], N, "CASE-1", expires, WHO, effective_at=now - MINUTE
    )
    second = await store.listings.put(
        court["id"], N, "CASE-2", expires, WHO, effective_at=now - MINUTE, recording_id=rec
    )
    assert second["created"] and second["id"] != first["id"]
    again = await store.listings.put(
        court["id"], N, "CASE-2", expires + MINUTE, WHO, recording_id=rec
    )
    assert not again["created"] and again["id"] == second["id"]  # same case: an update
    open_cases = {
        r["case_ref"]: r["id"]
        for r in await store.listings.of_number(N, court["id"])
        if r["status"] == "active"
    }
    assert open_cases == {"CASE-1": first["id"], "CASE-2": second["id"]}
    loaded = await make_node()
    await caught_up(store, live, loaded)
    for node in (live, loaded):
        assert heard(node, time.time()) == (first["id"], 0)  # the court has no default

    result, _ = await store.payments.confirm(
        court["id"], "pay-1", "CASE-1", now, Decimal("100.00"), "CNY"
    )
    assert result["cleared_listing_ids"] == [first["id"]]
    loaded = await make_node()
    await caught_up(store, live, loaded)
    for node in (live, loaded):
        assert heard(node, time.time()) == (second["id"], rec)  # case 2 is still owed

    result, _ = await store.payments.confirm(
        court["id"], "pay-2", "CASE-2", now, Decimal("50.00"), "CNY"
    )
    assert result["cleared_listing_ids"] == [second["id"]]
    loaded = await make_node()
    await caught_up(store, live, loaded)
    for node in (live, loaded):
        assert heard(node, time.time()) is None
        assert node.index.get(N) is None
