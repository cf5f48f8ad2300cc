"""Unit tests for ringback.registry.listing_index."""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringback.registry.index_copy import CopyDecoder
from ringback.registry.listing_index import (
    MAX_U32,
    Columns,
    Entry,
    ListingIndex,
    MergedBase,
    build_base,
    clamp_epoch,
)

FOREVER = MAX_U32
E1 = Entry(1, 0, 100, 200)
E2 = Entry(2, 7, 0, FOREVER)
E3 = Entry(3, 9, 50, 60)


def make_index(rows: dict[int, Entry], threshold: int = 50_000) -> ListingIndex:
    idx = ListingIndex(compact_threshold=threshold)
    nums = np.array(list(rows), dtype=np.int64)
    cols = np.array([tuple(e) for e in rows.values()], dtype=np.int64).reshape(-1, 4)
    idx.replace_all(nums, cols[:, 0], cols[:, 1], cols[:, 2], cols[:, 3])
    return idx


def assert_matches(idx: ListingIndex, model: dict[int, Entry], universe: list[int]) -> None:
    assert len(idx) == len(model)
    for n in universe:
        assert idx.get(n) == model.get(n), n
        for now in (0, 55, 100, 150.5, 199.999, 200, 2**32):
            want = model.get(n)
            if want is not None and not want.effective_at <= now < want.expires_at:
                want = None
            assert idx.lookup(n, now) == want, (n, now)


# ---------------------------------------------------------------- lookup semantics


def test_empty_index() -> None:
    idx = ListingIndex()
    assert len(idx) == 0
    assert idx.get(8613800138000) is None
    assert idx.lookup(8613800138000, 1e9) is None
    assert idx.lookup(-1, 0) is None
    assert idx.lookup(2**80, 0) is None  # out of int64: a miss, not an error


def test_effective_and_expiry_boundaries_base_and_overlay() -> None:
    base = make_index({10: E1})
    over = ListingIndex()
    over.upsert(10, E1)
    for idx in (base, over):
        assert idx.lookup(10, 99.999) is None
        assert idx.lookup(10, 100) == E1  # effective_at inclusive
        assert idx.lookup(10, 199.999) == E1
        assert idx.lookup(10, 200) is None  # expires_at exclusive
        assert idx.get(10) == E1  # raw, ignoring time
        assert idx.lookup(11, 150) is None
    assert type(base.lookup(10, 150)) is Entry
    assert type(base.get(10)) is Entry


def test_overlay_wins_over_base_and_tombstones() -> None:
    idx = make_index({10: E1, 20: E2, 30: E3})
    idx.upsert(20, E3)
    assert idx.get(20) == E3
    assert idx.lookup(20, 55) == E3
    idx.remove(10)
    assert idx.get(10) is None
    assert idx.lookup(10, 150) is None
    assert len(idx) == 2
    idx.upsert(10, E2)  # re-insert after tombstone
    assert idx.get(10) == E2
    assert len(idx) == 3
    idx.upsert(40, E1)
    assert len(idx) == 4
    idx.remove(40)
    idx.remove(40)  # removing an absent number is a no-op
    idx.remove(99)
    assert len(idx) == 3
    assert idx.overlay_size == 2  # 20 and 10 differ from base; 40/99 left nothing behind


def test_upsert_equal_to_base_drops_overlay_slot() -> None:
    idx = make_index({10: E1})
    idx.upsert(10, E2)
    assert idx.overlay_size == 1
    idx.upsert(10, E1)
    assert idx.overlay_size == 0
    assert idx.get(10) == E1


def test_epochs_clamped_ids_validated() -> None:
    assert clamp_epoch(-5) == 0
    assert clamp_epoch(2**40) == MAX_U32
    idx = ListingIndex()
    idx.upsert(1, Entry(1, 0, -10, 2**40))
    assert idx.get(1) == Entry(1, 0, 0, MAX_U32)
    with pytest.raises(ValueError, match="listing_id"):
        idx.upsert(1, Entry(2**32, 0, 0, 1))
    with pytest.raises(ValueError, match="recording_id"):
        idx.upsert(1, Entry(1, -1, 0, 1))
    with pytest.raises(ValueError, match="int64"):
        idx.upsert(2**63, E1)
    idx2 = ListingIndex()
    idx2.replace_all(
        np.array([5, 1]),
        np.array([1, 2]),
        np.array([0, 0]),
        np.array([-3, 7]),
        np.array([2**40, 9]),
    )
    assert idx2.get(5) == Entry(1, 0, 0, MAX_U32)
    assert idx2.get(1) == Entry(2, 0, 7, 9)
    with pytest.raises(ValueError, match="listing_ids out of uint32"):
        idx2.replace_all(
            np.array([1]), np.array([2**32]), np.array([0]), np.array([0]), np.array([1])
        )


def test_replace_all_unsorted_duplicates_and_clears_overlay() -> None:
    rng = np.random.default_rng(0)
    nums = rng.permutation(np.arange(8613000000000, 8613000000000 + 5000 * 3, 3))
    idx = ListingIndex()
    idx.upsert(1, E1)
    idx.replace_all(
        nums,
        np.arange(5000),
        np.zeros(5000, np.int64),
        np.zeros(5000, np.int64),
        np.full(5000, 9, np.int64),
    )
    assert len(idx) == 5000
    assert idx.overlay_size == 0
    assert idx.get(1) is None
    for i in range(0, 5000, 97):
        assert idx.get(int(nums[i])) == Entry(i, 0, 0, 9)
        assert idx.get(int(nums[i]) + 1) is None
    keys = idx.base_columns()[0]
    assert bool(np.all(keys[1:] > keys[:-1]))
    with pytest.raises(ValueError, match="1 duplicate number"):
        idx.replace_all(
            np.array([3, 1, 3]),
            np.array([1, 2, 3]),
            np.zeros(3, np.int64),
            np.zeros(3, np.int64),
            np.ones(3, np.int64),
        )
    assert len(idx) == 5000  # failed replace leaves the index untouched
    with pytest.raises(ValueError, match="same length"):
        build_base(np.array([1, 2]), np.array([1]), np.array([1]), np.array([1]), np.array([1]))


def test_sorted_input_not_aliased() -> None:
    nums = np.array([1, 2, 3], dtype=np.int64)
    base = build_base(
        nums,
        np.ones(3, np.int64),
        np.zeros(3, np.int64),
        np.zeros(3, np.int64),
        np.ones(3, np.int64),
    )
    nums[0] = 99
    assert int(base.keys[0]) == 1


def test_wide_and_negative_key_range() -> None:
    # Spans most of int64: bucket arithmetic must not overflow.
    rows = {-(2**63): E1, -5: E2, 0: E3, 12345: E1, 2**63 - 1: E2}
    idx = make_index(rows)
    assert_matches(idx, rows, [*rows, -4, 1, 2**63 - 2, -(2**63) + 1])


def test_nbytes_about_24_per_entry() -> None:
    n = 100_000
    idx = ListingIndex()
    idx.replace_all(
        np.arange(n) * 7,
        np.ones(n, np.int64),
        np.zeros(n, np.int64),
        np.zeros(n, np.int64),
        np.ones(n, np.int64),
    )
    assert 24 * n <= idx.nbytes <= 25 * n + 4096
    before = idx.nbytes
    idx.upsert(1, E1)
    assert idx.nbytes > before


# ---------------------------------------------------------------- compaction


def test_compact_merges_and_preserves_contents() -> None:
    rows = {n: Entry(n, 0, 0, FOREVER) for n in range(0, 1000, 2)}
    idx = make_index(rows)
    model = dict(rows)
    for n in range(0, 1000, 7):
        if n % 3 == 0:
            idx.remove(n)
            model.pop(n, None)
        else:
            idx.upsert(n, Entry(n + 1, 1, 0, FOREVER))
            model[n] = Entry(n + 1, 1, 0, FOREVER)
    assert idx.overlay_size > 0
    idx.compact()
    assert idx.overlay_size == 0
    assert idx.base_size == len(model)
    assert_matches(idx, model, list(range(-1, 1001)))


def test_auto_compaction_at_threshold() -> None:
    idx = ListingIndex(compact_threshold=10)
    for n in range(10):
        idx.upsert(n, E1)
    assert idx.overlay_size == 10 and idx.base_size == 0
    idx.upsert(10, E1)
    assert idx.overlay_size == 0 and idx.base_size == 11


def test_on_overlay_full_callback_instead_of_sync_compaction() -> None:
    calls: list[int] = []
    idx = ListingIndex(compact_threshold=2, on_overlay_full=lambda: calls.append(1))
    for n in range(4):
        idx.upsert(n, E1)
    assert calls == [1, 1]
    assert idx.overlay_size == 4


def test_compaction_race_changes_during_merge_survive() -> None:
    rows = {n: Entry(n, 0, 0, FOREVER) for n in range(100)}
    idx = make_index(rows)
    model = dict(rows)

    def put(n: int, e: Entry | None) -> None:
        idx.upsert(n, e)
        if e is None:
            model.pop(n, None)
        else:
            model[n] = e

    put(1, E1)  # in the snapshot
    put(2, None)
    put(200, E2)
    put(201, E2)
    ticket = idx.begin_compaction()
    with pytest.raises(RuntimeError):
        idx.begin_compaction()
    # Changes arriving while the merge runs: to snapshot keys, base keys and new keys,
    # including reverting a snapshot change to its base value and deleting a new insert.
    put(1, E3)
    put(2, E2)
    put(200, None)
    put(3, None)
    put(4, rows[4])
    put(300, E1)
    put(5, E1)
    put(5, rows[5])
    merged = idx.merged_arrays(ticket)
    put(201, E3)  # after the merge finished but before the swap
    put(6, None)
    assert_matches(idx, model, list(range(-1, 310)))
    assert idx.finish_compaction(merged)
    assert not idx.compaction_pending
    assert_matches(idx, model, list(range(-1, 310)))
    assert idx.overlay_size <= 8
    idx.compact()
    assert idx.overlay_size == 0
    assert_matches(idx, model, list(range(-1, 310)))


def test_compaction_in_real_thread_with_concurrent_upserts() -> None:
    n = 200_000
    idx = ListingIndex()
    idx.replace_all(
        np.arange(n) * 2,
        np.ones(n, np.int64),
        np.zeros(n, np.int64),
        np.zeros(n, np.int64),
        np.ones(n, np.int64),
    )
    model = {int(k): Entry(1, 0, 0, 1) for k in range(0, 2 * n, 2)}
    for k in range(0, 4000, 4):
        idx.remove(k)
        model.pop(k)
    ticket = idx.begin_compaction()
    out: list[object] = []
    worker = threading.Thread(target=lambda: out.append(idx.merged_arrays(ticket)))
    worker.start()
    k = 1
    while worker.is_alive() or k < 2000:  # keep mutating while the merge runs
        e = Entry(k % 97, 0, 0, FOREVER)
        idx.upsert(k, e)
        model[k] = e
        idx.remove(k + 3)
        model.pop(k + 3, None)
        k += 2
    worker.join()

    merged = out[0]
    assert isinstance(merged, MergedBase)
    assert idx.finish_compaction(merged)
    assert len(idx) == len(model)
    for key in range(0, k + 10):
        assert idx.get(key) == model.get(key), key


def test_replace_all_during_compaction_discards_merge() -> None:
    idx = make_index({1: E1})
    idx.upsert(2, E2)
    ticket = idx.begin_compaction()
    merged = idx.merged_arrays(ticket)
    idx.replace_all(np.array([9]), np.array([3]), np.array([0]), np.array([0]), np.array([1]))
    assert not idx.finish_compaction(merged)
    assert idx.get(1) is None and idx.get(2) is None
    assert idx.get(9) == Entry(3, 0, 0, 1)
    assert len(idx) == 1
    idx.upsert(10, E1)  # no stale dirty tracking left behind
    idx.compact()
    assert idx.get(10) == E1 and len(idx) == 2


async def test_compact_in_thread() -> None:
    idx = make_index({n: E1 for n in range(1000)})
    for n in range(0, 1000, 3):
        idx.upsert(n, E2)
    task = asyncio.create_task(idx.compact_in_thread())
    await asyncio.sleep(0)
    assert idx.compaction_pending
    idx.upsert(1, E3)  # during the merge
    assert not await idx.compact_in_thread()  # already pending
    assert await task
    assert idx.get(1) == E3 and idx.get(0) == E2 and idx.get(2) == E1
    assert len(idx) == 1000


OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"),
            st.integers(0, 40),
            st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 3), st.integers(0, 3)),
        ),
        st.tuples(st.just("del"), st.integers(0, 40), st.none()),
        st.tuples(st.just("compact"), st.none(), st.none()),
        st.tuples(st.just("begin"), st.none(), st.none()),
        st.tuples(st.just("merge"), st.none(), st.none()),
        st.tuples(st.just("finish"), st.none(), st.none()),
        st.tuples(st.just("replace"), st.integers(0, 40), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(OPS, st.integers(1, 8))
def test_behaves_like_dict(ops: list[tuple[str, object, object]], threshold: int) -> None:
    idx = ListingIndex(compact_threshold=threshold)
    model: dict[int, Entry] = {}
    ticket = live = None  # live: the ticket the index still considers pending
    merged = None
    for op, a, b in ops:
        if op == "put":
            assert isinstance(a, int) and isinstance(b, tuple)
            e = Entry(*b)
            idx.upsert(a, e)
            model[a] = e
        elif op == "del":
            assert isinstance(a, int)
            idx.remove(a)
            model.pop(a, None)
        elif op == "compact" and not idx.compaction_pending:
            idx.compact()
            assert idx.overlay_size == 0
        elif op == "begin" and not idx.compaction_pending:
            ticket = live = idx.begin_compaction()
            merged = None
        elif op == "merge" and ticket is not None:
            merged = idx.merged_arrays(ticket)
        elif op == "finish" and merged is not None:
            assert idx.finish_compaction(merged) == (merged.ticket is live)
            ticket = merged = live = None
        elif op == "replace":
            assert isinstance(a, int)
            live = None
            model = {n: Entry(n, 0, n % 3, 2) for n in range(0, a, 3)}
            nums = np.array(list(model)[::-1], dtype=np.int64)
            idx.replace_all(nums, nums, np.zeros_like(nums), nums % 3, np.full_like(nums, 2))
        assert len(idx) == len(model)
    assert_matches(idx, model, list(range(-1, 42)))


# ---------------------------------------------------------------- several listings

A_NOW = Entry(11, 1, 100, 200)  # court A: effective now, expires at 200
B_LATER = Entry(12, 2, 150, 400)  # court B: in its notice period until 150
C_NOW = Entry(13, 3, 0, 300)


def first_effective(entries: Sequence[Entry], now: float) -> Entry | None:
    return next((e for e in entries if e.effective_at <= now < e.expires_at), None)


def test_several_listings_chosen_by_time_earliest_listed_first() -> None:
    built = ListingIndex()
    built.replace_all(
        np.array([7, 5, 7, 9, 7]),
        np.array([11, 1, 12, 2, 13]),
        np.array([1, 0, 2, 0, 3]),
        np.array([100, 0, 150, 0, 0]),
        np.array([200, 9, 400, 9, 300]),
        several_per_number=True,
    )
    upserted = ListingIndex()
    upserted.upsert_listings(7, [A_NOW, B_LATER, C_NOW])
    upserted.upsert(5, Entry(1, 0, 0, 9))
    upserted.upsert_listings(9, [Entry(2, 0, 0, 9)])
    for idx in (built, upserted):
        assert len(idx) == 3 and idx.side_size == 1
        assert idx.entries(7) == (A_NOW, B_LATER, C_NOW)  # in input order
        assert idx.get(7) == A_NOW
        assert idx.entries(5) == (Entry(1, 0, 0, 9),) and idx.entries(6) == ()
        assert idx.lookup(7, 50) == C_NOW  # A and B not yet effective
        assert idx.lookup(7, 100) == A_NOW  # A listed before C
        assert idx.lookup(7, 199) == A_NOW
        assert idx.lookup(7, 200) == B_LATER  # A expired: B, listed before C
        assert idx.lookup(7, 400) is None
        assert idx.lookup(5, 5) == Entry(1, 0, 0, 9)
    assert int(built.base_columns()[0].size) == 3  # one row per number


def test_several_listings_come_and_go() -> None:
    idx = make_index({7: E1, 8: E2})
    idx.upsert_listings(7, [A_NOW, B_LATER])
    assert idx.side_size == 1 and len(idx) == 2
    assert idx.lookup(7, 250) == B_LATER
    idx.compact()  # the SIDE row is merged into the base; the side table stays
    assert idx.overlay_size == 0 and idx.side_size == 1
    assert idx.lookup(7, 250) == B_LATER and idx.lookup(7, 120) == A_NOW
    idx.upsert_listings(7, [B_LATER])  # A cleared
    assert idx.side_size == 0 and idx.entries(7) == (B_LATER,)
    assert idx.lookup(7, 120) is None  # B is still in its notice period
    idx.upsert_listings(8, [C_NOW, A_NOW])
    idx.upsert(8, E3)  # a single entry replaces every listing of the number
    assert idx.side_size == 0 and idx.entries(8) == (E3,)
    idx.upsert_listings(8, [A_NOW, C_NOW])
    idx.upsert_listings(8, [])
    assert idx.side_size == 0 and idx.get(8) is None and len(idx) == 1
    idx.upsert_listings(9, [A_NOW, C_NOW])
    idx.replace_all(np.array([1]), np.array([1]), np.array([0]), np.array([0]), np.array([9]))
    assert idx.side_size == 0 and idx.get(9) is None
    with pytest.raises(ValueError, match="listing_id"):
        idx.upsert_listings(9, [A_NOW, Entry(2**32, 0, 0, 1)])


def test_side_table_keeps_about_24_bytes_per_number() -> None:
    n = 100_000
    nums = np.repeat(np.arange(n) * 7, 1 + (np.arange(n) % 1000 == 0))  # 0.1 % have two
    idx = ListingIndex()
    m = nums.size
    idx.replace_all(
        nums,
        np.arange(m),
        np.zeros(m, np.int64),
        np.zeros(m, np.int64),
        np.ones(m, np.int64),
        several_per_number=True,
    )
    assert len(idx) == n and idx.side_size == 100
    assert 24 * n <= idx.nbytes <= 25 * n + 4096 + 100 * 500


SEVERAL_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"),
            st.integers(0, 20),
            st.lists(
                st.tuples(
                    st.integers(1, 3), st.integers(0, 2), st.integers(0, 3), st.integers(0, 3)
                ),
                max_size=3,
            ),
        ),
        st.tuples(st.just("compact"), st.none(), st.none()),
        st.tuples(st.just("begin"), st.none(), st.none()),
        st.tuples(st.just("finish"), st.none(), st.none()),
        st.tuples(st.just("reload"), st.none(), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(SEVERAL_OPS, st.integers(1, 8))
def test_several_listings_behave_like_a_dict_of_tuples(
    ops: list[tuple[str, object, object]], threshold: int
) -> None:
    idx = ListingIndex(compact_threshold=threshold)
    model: dict[int, tuple[Entry, ...]] = {}
    ticket = None
    for op, a, b in ops:
        if op == "put":
            assert isinstance(a, int) and isinstance(b, list)
            entries = tuple(Entry(*t) for t in b)
            idx.upsert_listings(a, entries)
            if entries:
                model[a] = entries
            else:
                model.pop(a, None)
        elif op == "compact" and not idx.compaction_pending:
            idx.compact()
        elif op == "begin" and not idx.compaction_pending:
            ticket = idx.begin_compaction()
        elif op == "finish" and ticket is not None:
            idx.finish_compaction(idx.merged_arrays(ticket))
            ticket = None
        elif op == "reload":  # a full load of the model, rows in listing order
            ticket = None
            rows = [(n, *e) for n, es in sorted(model.items()) for e in es]
            cols = np.array(rows, dtype=np.int64).reshape(-1, 5).T
            idx.replace_all(*cols, several_per_number=True)
        assert len(idx) == len(model)
    assert idx.side_size == sum(len(es) > 1 for es in model.values())
    for n in range(-1, 22):
        want = model.get(n, ())
        assert idx.entries(n) == want, n
        for now in (0, 1, 2, 3, 4):
            assert idx.lookup(n, now) == first_effective(want, now), (n, now)


# ---------------------------------------------------------------- COPY decoder

SIG = b"PGCOPY\n\xff\r\n\x00"


def copy_stream(rows: Sequence[Sequence[int]], ext: bytes = b"", flags: int = 0) -> bytes:
    out = [SIG, struct.pack(">ii", flags, len(ext)), ext]
    for row in rows:
        out.append(struct.pack(">h", len(row)))
        for v in row:
            out.append(struct.pack(">iq", 8, v))
    out.append(struct.pack(">h", -1))
    return b"".join(out)


def at(epoch_s: float) -> int:
    """A time as PostgreSQL's binary COPY sends a timestamptz: µs since 2000-01-01 UTC."""
    return round((epoch_s - 946_684_800) * 1_000_000)


INFINITY, MINUS_INFINITY = 2**63 - 1, -(2**63)  # timestamptz 'infinity', '-infinity'

ROWS = [
    (8613800138000, 1, 0, at(1_700_000_000), at(1_800_000_000)),
    (8613900000001, 2**32 - 1, 5, MINUS_INFINITY, INFINITY),
    (1, 3, 2**32 - 1, at(0), at(-1)),
]


def check_columns(cols: Columns) -> None:
    nums, lid, rid, eff, exp = cols
    assert nums.dtype == np.int64 and lid.dtype == np.uint32 and exp.dtype == np.uint32
    assert nums.tolist() == [8613800138000, 8613900000001, 1]
    assert lid.tolist() == [1, 2**32 - 1, 3]
    assert rid.tolist() == [0, 5, 2**32 - 1]
    assert eff.tolist() == [1_700_000_000, 0, 0]
    assert exp.tolist() == [1_800_000_000, MAX_U32, 0]


def test_copy_decoder_rounds_times_outward_to_whole_epoch_seconds() -> None:
    """Effective from the second it starts in (down), expired at the second after (up),
    to the microsecond and before 2000 too (floor, not truncation towards zero)."""
    rows = [
        (1, 1, 0, at(1_700_000_000) + 999_999, at(1_800_000_000) + 1),
        (2, 2, 0, at(1_700_000_000), at(1_800_000_000)),
        (3, 3, 0, at(1_700_000_000) + 1, at(1_800_000_000) - 1),
        (4, 4, 0, at(900_000_000) - 1, at(900_000_000) + 1),  # 1998: negative since 2000
        (5, 5, 0, at(2**32 - 1) + 1, at(2**32 - 1) + 1),  # past 2106: the uint32 end
    ]
    dec = CopyDecoder()
    dec.feed(copy_stream(rows))
    _, _, _, eff, exp = dec.finish()
    assert eff.tolist() == [1_700_000_000, 1_700_000_000, 1_700_000_000, 899_999_999, MAX_U32]
    assert exp.tolist() == [1_800_000_001, 1_800_000_000, 1_800_000_000, 900_000_001, MAX_U32]


def test_copy_decoder_every_split() -> None:
    data = copy_stream(ROWS, ext=b"abc")
    for i in range(len(data) + 1):
        dec = CopyDecoder()
        dec.feed(data[:i])
        dec.feed(data[i:])
        check_columns(dec.finish())


def test_copy_decoder_every_two_splits_and_single_bytes() -> None:
    data = copy_stream(ROWS[:2])
    for i in range(0, len(data) + 1, 3):
        for j in range(i, len(data) + 1, 5):
            dec = CopyDecoder()
            for part in (data[:i], data[i:j], data[j:]):
                dec.feed(part)
            nums = dec.finish()[0]
            assert nums.tolist() == [8613800138000, 8613900000001]
    dec = CopyDecoder()
    for byte in copy_stream(ROWS):
        dec.feed(bytes([byte]))
    check_columns(dec.finish())
    assert dec.rows == 3


def test_copy_decoder_empty_and_large() -> None:
    dec = CopyDecoder()
    dec.feed(copy_stream([]))
    assert all(c.size == 0 for c in dec.finish())
    rows = [(n, n % 1000, 0, at(n), at(n + 1)) for n in range(10_000)]
    data = copy_stream(rows)
    dec = CopyDecoder()
    for i in range(0, len(data), 4099):
        dec.feed(memoryview(data)[i : i + 4099])
    nums, lid, _, eff, exp = dec.finish()
    assert nums.tolist() == list(range(10_000))
    assert lid[1234] == 234 and eff[9999] == 9999 and exp[9999] == 10_000
    idx = ListingIndex()
    idx.replace_all(*dec.finish())
    assert idx.get(777) == Entry(777, 0, 777, 778)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PGCOPX\n\xff\r\n\x00" + bytes(8), "bad signature"),
        (b"hello", "bad signature"),
        (copy_stream(ROWS, flags=1 << 16), "OIDs"),
        (copy_stream(ROWS, flags=1 << 20), "unknown critical flags"),
        (SIG + struct.pack(">ii", 0, -1), "negative COPY header extension"),
        (copy_stream([(1, 2, 3, 4)]), "tuple 0 at byte 19: expected 5 fields, got 4"),
        (copy_stream([*ROWS, (1, 2, 3, 4, 5, 6)]), "tuple 3 .*expected 5 fields, got 6"),
        (copy_stream([(1, 2, 3, 4, 5)]) + b"\x00", "data after COPY trailer"),
        (copy_stream([(1, -1, 3, 4, 5)]), r"tuple 0 field 1 \(listing_id\): -1 does not fit"),
        (copy_stream([(1, 2, 2**32, 4, 5)]), r"field 2 \(recording_id\)"),
    ],
)
def test_copy_decoder_errors(data: bytes, message: str) -> None:
    dec = CopyDecoder()
    with pytest.raises(ValueError, match=message):
        dec.feed(data)
        dec.finish()


def test_copy_decoder_null_and_bad_length() -> None:
    good = copy_stream([ROWS[0]])
    body = bytearray(good)
    struct.pack_into(">i", body, 19 + 2 + 12, -1)  # field 1 length -> NULL
    with pytest.raises(ValueError, match=r"tuple 0 field 1 \(listing_id\): NULL"):
        CopyDecoder().feed(bytes(body))
    body = bytearray(good)
    struct.pack_into(">i", body, 19 + 2, 4)  # field 0 length 4
    with pytest.raises(ValueError, match=r"field 0 \(number\): length 4"):
        CopyDecoder().feed(bytes(body))


def test_copy_decoder_truncated_and_data_after_trailer() -> None:
    data = copy_stream(ROWS)
    dec = CopyDecoder()
    dec.feed(data[:-1])
    with pytest.raises(ValueError, match="no trailer after 3 tuples"):
        dec.finish()
    dec = CopyDecoder()
    dec.feed(data[:12])
    with pytest.raises(ValueError, match="incomplete header"):
        dec.finish()
    dec = CopyDecoder()
    dec.feed(data)
    with pytest.raises(ValueError, match="data after COPY trailer"):
        dec.feed(b"x")
    dec.feed(b"")
    check_columns(dec.finish())
