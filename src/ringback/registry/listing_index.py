"""In-memory index of listed (judgment-debtor) numbers, consulted on every INVITE.

Layout (≈24 B per number, vs ~100–250 B for a dict of Python objects):

* **base** — immutable, sorted numpy arrays: ``keys`` int64 (8 B) and ``fields`` uint32
  of shape (n, 4) = listing_id, recording_id, effective_at, expires_at (16 B). The four
  fields are interleaved so a hit touches one cache line instead of four. A small
  *bucket directory* (uint32 offsets, ~0.25 B per number) maps the high bits of
  ``number - min`` to a slice of ``keys``, so a lookup bisects ~16 keys instead of 15 M.
* **overlay** — a dict ``{number: Entry | None}`` of changes since the last compaction
  (``None`` is a tombstone for a number present in the base).
* **side table** — a dict ``{number: (Entry, ...)}`` for the rare numbers with more than
  one live listing (several courts, or several cases at one court), earliest-listed
  first. Such a number's row in the base or overlay is the marker ``SIDE`` (effective
  2106, expires 1970: never effective on its own), so misses and ordinary hits never
  probe the side table; only when a row fails its time check and is the marker does
  ``lookup(number, now)`` walk the number's entries and answer the first effective one.
  The choice is made at lookup time, so a listing's expiry or end of notice period
  changes what callers hear without any change reaching the index. Keeping every
  listing in the arrays instead (several rows per key) would cost every number a
  per-key count or a second array; numbers with several listings are rare, so a dict
  of a few hundred bytes each costs less.

One module (about 650 lines) on purpose: the base arrays, the overlay and the side table
are read together on the hot path and swapped together, and splitting them would put
the lookup's three probes in different modules.

The base arrays, the bucket directory, the overlay dict, the side table and the entry
count live in one ``_State`` object; ``replace_all`` and compaction build a complete new
state and swap the single ``_state`` attribute, so a lookup never sees a half-built index.

Threading model: lookups, upserts, ``install_base`` and ``finish_compaction`` run on one
thread (the event loop). ``build_base`` and ``merged_arrays`` are pure functions of
immutable inputs and may run in a worker thread::

    ticket = index.begin_compaction()                             # loop thread, O(overlay)
    merged = await asyncio.to_thread(index.merged_arrays, ticket)  # heavy, vectorised
    index.finish_compaction(merged)                               # loop thread, O(changes)

Upserts made between ``begin_compaction`` and ``finish_compaction`` are recorded and
survive the swap (see ``compact_in_thread``). The side table is not part of compaction:
the marker rows are merged like any entry and the side table stays as it is.
"""

from __future__ import annotations

import asyncio
import sys
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Final, NamedTuple, TypeAlias

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "MAX_U32",
    "SIDE",
    "Columns",
    "CompactionTicket",
    "Entry",
    "ListingIndex",
    "MergedBase",
    "PreparedBase",
    "build_base",
    "clamp_epoch",
    "collapse_sorted",
]

MAX_U32: Final = 2**32 - 1
_MAX_I64: Final = 2**63 - 1
_MIN_I64: Final = -(2**63)

#: numbers int64, then listing_id, recording_id, effective_at, expires_at as uint32.
Columns: TypeAlias = tuple[
    NDArray[np.int64],
    NDArray[np.uint32],
    NDArray[np.uint32],
    NDArray[np.uint32],
    NDArray[np.uint32],
]


class Entry(NamedTuple):
    """One listing. ``recording_id`` 0 means the shipped default; times are epoch seconds."""

    listing_id: int
    recording_id: int
    effective_at: int
    expires_at: int


_new_entry: Final = tuple.__new__  # ~2x faster than Entry(...) on the lookup hot path
#: Overlay-miss sentinel, compared by identity; an Entry so the hot path needs no casts.
_MISSING: Final = Entry(-1, -1, -1, -1)
#: The row of a number whose listings are in the side table: never effective on its own
#: (expires before it is effective), so only a failed time check looks further.
SIDE: Final = Entry(0, 0, MAX_U32, 0)
#: Rough per-entry cost of an overlay slot: dict slot + int key + Entry tuple + its ints.
_OVERLAY_ENTRY_BYTES: Final = 220
#: Rough cost of a side-table number (dict slot, int key, tuple) and of each entry in it.
_SIDE_NUMBER_BYTES: Final = 160
_SIDE_ENTRY_BYTES: Final = 160
#: Average number of keys per bucket of the directory (bisect depth ≈ log2 of this).
_BUCKET_TARGET: Final = 16


def clamp_epoch(value: int) -> int:
    """Clamp an epoch to uint32: negative → 0, beyond 2106 → 2**32-1 ("never")."""
    return 0 if value < 0 else MAX_U32 if value > MAX_U32 else value


def _normalise(entry: Entry) -> Entry:
    """Validate ids and clamp times so an overlay entry equals what the base would hold."""
    lid, rid, eff, exp = (int(x) for x in entry)
    if not 0 <= lid <= MAX_U32:
        raise ValueError(f"listing_id {lid} does not fit in uint32")
    if not 0 <= rid <= MAX_U32:
        raise ValueError(f"recording_id {rid} does not fit in uint32")
    return _new_entry(Entry, (lid, rid, clamp_epoch(eff), clamp_epoch(exp)))


def _check_number(number: int) -> int:
    n = int(number)
    if not _MIN_I64 <= n <= _MAX_I64:
        raise ValueError(f"number {n} does not fit in int64")
    return n


# --------------------------------------------------------------------------- base


class PreparedBase:
    """Immutable sorted arrays plus their bucket directory, ready to be installed.

    Built off the event loop by :func:`build_base` or :meth:`ListingIndex.merged_arrays`.
    ``side`` holds the entries of the numbers whose row is :data:`SIDE` (a full load's
    side table; :meth:`ListingIndex.install_base` takes it over, compaction leaves it
    empty because the index keeps its own).
    """

    __slots__ = (
        "_fmv",
        "_kmv",
        "_offmv",
        "fields",
        "hi",
        "keys",
        "lo",
        "n",
        "offsets",
        "shift",
        "side",
    )

    def __init__(
        self,
        keys: NDArray[np.int64],
        fields: NDArray[np.uint32],
        side: dict[int, tuple[Entry, ...]] | None = None,
    ) -> None:
        """Take ownership of ``keys`` (sorted, unique), ``fields`` (n x 4) and ``side``."""
        n = int(keys.shape[0])
        if fields.shape != (n, 4):
            raise ValueError(f"fields shape {fields.shape} != ({n}, 4)")
        if n >= MAX_U32:
            raise ValueError("too many entries for uint32 bucket offsets")
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        fields = np.ascontiguousarray(fields, dtype=np.uint32)
        keys.flags.writeable = False
        fields.flags.writeable = False
        self.keys = keys
        self.fields = fields
        self.n = n
        if n:
            lo = int(keys[0])
            span = int(keys[-1]) - lo + 1
            bits = max(1, (n // _BUCKET_TARGET).bit_length())
            shift = max(0, (span - 1).bit_length() - bits)
            nb = ((span - 1) >> shift) + 1
            # Bucket b holds keys in [lo + b<<shift, lo + (b+1)<<shift); offsets[b] is the
            # first index >= that bound, offsets[nb] = n. Every bound below nb is <= the
            # largest key, so it fits int64; uint64 wrap-around makes the sum exact.
            bounds = np.arange(nb, dtype=np.uint64) << np.uint64(shift)
            bounds += np.uint64(lo % 2**64)
            offsets = np.empty(nb + 1, dtype=np.uint32)
            offsets[:nb] = np.searchsorted(keys, bounds.view(np.int64), side="left")
            offsets[nb] = n
            self.lo = lo
            self.hi = lo + span
        else:
            shift = 0
            offsets = np.zeros(2, dtype=np.uint32)
            self.lo = self.hi = 0
        offsets.flags.writeable = False
        self.shift = shift
        self.offsets = offsets
        self.side: dict[int, tuple[Entry, ...]] = side if side is not None else {}
        # memoryview item access yields Python ints ~2x faster than numpy scalar indexing.
        self._kmv: memoryview = keys.data
        self._fmv: memoryview = fields.reshape(-1).data
        self._offmv: memoryview = offsets.data

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.fields.nbytes + self.offsets.nbytes)

    def index_of(self, number: int) -> int:
        """Position of ``number`` in ``keys`` or -1."""
        if number < self.lo or number >= self.hi:
            return -1
        b = (number - self.lo) >> self.shift
        end = self._offmv[b + 1]
        i = bisect_left(self._kmv, number, self._offmv[b], end)
        return i if i != end and self._kmv[i] == number else -1

    def get(self, number: int) -> Entry | None:
        i = self.index_of(number)
        if i < 0:
            return None
        j = i << 2
        f = self._fmv
        return _new_entry(Entry, (f[j], f[j + 1], f[j + 2], f[j + 3]))

    def columns(self) -> Columns:
        """Read-only views: numbers, listing_ids, recording_ids, effective_at, expires_at."""
        f = self.fields
        return self.keys, f[:, 0], f[:, 1], f[:, 2], f[:, 3]


def _as_u32_ids(name: str, a: NDArray[np.integer]) -> NDArray[np.uint32]:
    a = np.asarray(a)
    if a.size and (int(a.min()) < 0 or int(a.max()) > MAX_U32):
        raise ValueError(f"{name} out of uint32 range [{int(a.min())}, {int(a.max())}]")
    return a.astype(np.uint32, copy=False)


def _as_u32_epochs(a: NDArray[np.integer]) -> NDArray[np.uint32]:
    a = np.asarray(a)
    if a.dtype == np.uint32:
        return a.astype(np.uint32, copy=False)
    return np.clip(a.astype(np.int64, copy=False), 0, MAX_U32).astype(np.uint32)


def build_base(
    numbers: NDArray[np.integer],
    listing_ids: NDArray[np.integer],
    recording_ids: NDArray[np.integer],
    effective_at: NDArray[np.integer],
    expires_at: NDArray[np.integer],
    *,
    several_per_number: bool = False,
) -> PreparedBase:
    """Build a base from columns in any order. Pure; safe in a worker thread.

    Ids must fit uint32 (ValueError otherwise); epochs are clamped to uint32. Already-sorted
    input (``ORDER BY number``) skips the O(n log n) sort.

    With ``several_per_number``, the rows of one number are its listings in priority order
    (earliest-listed first; the sort is stable, so input order decides): a number with one
    row goes to the arrays, a number with several goes to the side table behind a
    :data:`SIDE` row. Without it, duplicate numbers raise ValueError: the caller promised
    one row per number, so a duplicate means a broken query and silently picking one row
    would hide it.
    """
    keys = np.asarray(numbers)
    n = keys.shape[0]
    cols = [listing_ids, recording_ids, effective_at, expires_at]
    if keys.ndim != 1 or any(np.shape(c) != (n,) for c in cols):
        raise ValueError("all columns must be 1-D arrays of the same length")
    if keys.dtype.kind not in "iu" or any(np.asarray(c).dtype.kind not in "iu" for c in cols):
        raise ValueError("columns must have integer dtypes")
    if keys.dtype != np.int64:
        if n and keys.dtype.kind == "u" and int(keys.max()) > _MAX_I64:
            raise ValueError("number does not fit in int64")
        keys = keys.astype(np.int64)
    fields = np.empty((n, 4), dtype=np.uint32)
    fields[:, 0] = _as_u32_ids("listing_ids", listing_ids)
    fields[:, 1] = _as_u32_ids("recording_ids", recording_ids)
    fields[:, 2] = _as_u32_epochs(effective_at)
    fields[:, 3] = _as_u32_epochs(expires_at)
    if n > 1 and not bool(np.all(keys[1:] > keys[:-1])):
        if not bool(np.all(keys[1:] >= keys[:-1])):
            order = np.argsort(keys, kind="stable")
            keys = keys[order]
            fields = fields[order]
        dup = np.flatnonzero(keys[1:] == keys[:-1])
        if dup.size and not several_per_number:
            raise ValueError(f"{dup.size} duplicate number(s), e.g. {int(keys[dup[0]])}")
        if dup.size:
            return _with_side_table(keys, fields)
    if keys is numbers:
        keys = keys.copy()  # never alias the caller's array
    return PreparedBase(keys, fields)


def _with_side_table(keys: NDArray[np.int64], fields: NDArray[np.uint32]) -> PreparedBase:
    """Sorted rows with repeated numbers: one row per number, the repeated ones moved to
    the side table (in their row order) behind a SIDE row. Python work only for those."""
    return PreparedBase(*collapse_sorted(keys, fields))


def collapse_sorted(
    keys: NDArray[np.int64], fields: NDArray[np.uint32]
) -> tuple[NDArray[np.int64], NDArray[np.uint32], dict[int, tuple[Entry, ...]]]:
    """Rows sorted by number (a number's rows in priority order) → one row per number,
    a number with several rows as a :data:`SIDE` row plus its side-table entries.
    Pure; the arrays returned may be the ones given when no number repeats."""
    n = keys.shape[0]
    if n < 2:
        return keys, fields, {}
    first = np.empty(n, dtype=bool)
    first[0] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    if starts.size == n:
        return keys, fields, {}
    ends = np.append(starts[1:], n)
    several = np.flatnonzero(ends - starts > 1)
    side: dict[int, tuple[Entry, ...]] = {}
    for s, e in zip(starts[several].tolist(), ends[several].tolist(), strict=True):
        side[int(keys[s])] = tuple(_new_entry(Entry, tuple(row)) for row in fields[s:e].tolist())
    out_fields = fields[starts]  # a copy
    out_fields[several] = SIDE
    return keys[starts], out_fields, side


# --------------------------------------------------------------------------- index


class _State:
    """Everything a lookup reads, swapped as one attribute."""

    __slots__ = ("base", "count", "overlay", "side")

    def __init__(
        self,
        base: PreparedBase,
        overlay: dict[int, Entry | None],
        count: int,
        side: dict[int, tuple[Entry, ...]],
    ):
        self.base = base
        self.overlay = overlay
        self.count = count  # numbers present: base - tombstones + overlay inserts
        self.side = side  # numbers with several live listings (their row is SIDE)


class CompactionTicket:
    """Snapshot taken by :meth:`ListingIndex.begin_compaction`."""

    __slots__ = ("base", "overlay")

    def __init__(self, base: PreparedBase, overlay: dict[int, Entry | None]) -> None:
        self.base = base
        self.overlay = overlay  # private copy, never mutated


class MergedBase:
    """Result of :meth:`ListingIndex.merged_arrays`, to pass to ``finish_compaction``."""

    __slots__ = ("prepared", "ticket")

    def __init__(self, ticket: CompactionTicket, prepared: PreparedBase) -> None:
        self.ticket = ticket
        self.prepared = prepared


class ListingIndex:
    """Number → its live listings: sorted numpy base + dict overlay + side table.

    ``compact_threshold``: overlay size that triggers a compaction. ``on_overlay_full``:
    called (instead of a synchronous :meth:`compact`) when it is exceeded and no
    compaction is pending; an async shell passes something that schedules
    :meth:`compact_in_thread`, because a synchronous merge of 15 M entries blocks the
    loop for a few hundred ms.
    """

    def __init__(
        self,
        compact_threshold: int = 50_000,
        on_overlay_full: Callable[[], object] | None = None,
    ) -> None:
        if compact_threshold < 1:
            raise ValueError("compact_threshold must be >= 1")
        self.compact_threshold = compact_threshold
        self.on_overlay_full = on_overlay_full
        empty = PreparedBase(np.empty(0, np.int64), np.empty((0, 4), np.uint32))
        self._state = _State(empty, {}, 0, {})
        self._pending: CompactionTicket | None = None
        self._dirty: set[int] | None = None  # numbers upserted while a compaction runs

    # ---- reads (hot path)

    def lookup(self, number: int, now: float) -> Entry | None:
        """The listing callers of ``number`` hear at ``now``: the earliest-listed of its
        entries with ``effective_at <= now < expires_at``, or None (not warned)."""
        st = self._state
        e = st.overlay.get(number, _MISSING)
        if e is _MISSING:
            b = st.base
            if number < b.lo or number >= b.hi:
                return None
            k = (number - b.lo) >> b.shift
            off = b._offmv
            end = off[k + 1]
            keys = b._kmv
            i = bisect_left(keys, number, off[k], end)
            if i == end or keys[i] != number:
                return None
            f = b._fmv
            j = i << 2
            eff = f[j + 2]
            exp = f[j + 3]
            if eff <= now < exp:
                return _new_entry(Entry, (f[j], f[j + 1], eff, exp))
            if exp < eff:  # the SIDE row: several listings
                return _first_effective(st.side.get(number), now)
            return None
        if e is not None:
            if e.effective_at <= now < e.expires_at:
                return e
            if e.expires_at < e.effective_at:
                return _first_effective(st.side.get(number), now)
        return None

    def get(self, number: int) -> Entry | None:
        """The earliest-listed entry of ``number`` regardless of effective/expiry times."""
        entries = self.entries(number)
        return entries[0] if entries else None

    def entries(self, number: int) -> tuple[Entry, ...]:
        """Every entry of ``number``, earliest-listed first, regardless of times."""
        st = self._state
        e = st.overlay.get(number, _MISSING)
        if e is _MISSING:
            e = st.base.get(number)
        if e is None:
            return ()
        if e.expires_at < e.effective_at:
            several = st.side.get(number)
            if several is not None:
                return several
        return (e,)

    def __len__(self) -> int:
        return self._state.count

    @property
    def overlay_size(self) -> int:
        return len(self._state.overlay)

    @property
    def base_size(self) -> int:
        return self._state.base.n

    @property
    def side_size(self) -> int:
        """Numbers with several live listings (held in the side table)."""
        return len(self._state.side)

    @property
    def nbytes(self) -> int:
        """Base arrays plus an estimate of the overlay and side dicts and their objects."""
        st = self._state
        ov = st.overlay
        side = st.side
        return (
            st.base.nbytes
            + sys.getsizeof(ov)
            + len(ov) * _OVERLAY_ENTRY_BYTES
            + sys.getsizeof(side)
            + len(side) * _SIDE_NUMBER_BYTES
            + sum(len(v) for v in side.values()) * _SIDE_ENTRY_BYTES
        )

    @property
    def compaction_pending(self) -> bool:
        return self._pending is not None

    @property
    def base(self) -> PreparedBase:
        """The current base arrays (immutable; the overlay and side table are not in it)."""
        return self._state.base

    def side_table(self) -> dict[int, tuple[Entry, ...]]:
        """A copy of the side table (numbers with several live listings)."""
        return dict(self._state.side)

    def base_columns(self) -> Columns:
        """Read-only views of the current base (excluding the overlay; a number in the side
        table has a :data:`SIDE` row)."""
        return self._state.base.columns()

    # ---- writes (event-loop thread)

    def upsert(self, number: int, entry: Entry | None) -> None:
        """Make ``entry`` the only listing of ``number`` (or remove it when None)."""
        number = _check_number(number)
        if entry is not None:
            entry = _normalise(entry)
        self._state.side.pop(number, None)
        self._put_row(number, entry)

    def upsert_listings(self, number: int, entries: Sequence[Entry]) -> None:
        """Make ``entries`` (earliest-listed first) the live listings of ``number``; none
        removes it. Several go to the side table behind a :data:`SIDE` row."""
        if len(entries) < 2:
            self.upsert(number, entries[0] if entries else None)
            return
        number = _check_number(number)
        several = tuple(_normalise(e) for e in entries)
        self._state.side[number] = several
        self._put_row(number, SIDE)

    def _put_row(self, number: int, entry: Entry | None) -> None:
        st = self._state
        ov = st.overlay
        base_entry = st.base.get(number)
        prev = ov.get(number, _MISSING)
        was_present = (base_entry if prev is _MISSING else prev) is not None
        if self._dirty is not None:
            # A compaction is merging a snapshot; record every change so it survives.
            ov[number] = entry
            self._dirty.add(number)
        elif entry == base_entry:
            ov.pop(number, None)  # same as base (incl. removing an absent number)
        else:
            ov[number] = entry
        st.count += (entry is not None) - was_present
        if len(ov) > self.compact_threshold and self._pending is None:
            if self.on_overlay_full is not None:
                self.on_overlay_full()
            else:
                self.compact()

    def remove(self, number: int) -> None:
        """Same as ``upsert(number, None)``."""
        self.upsert(number, None)

    def replace_all(
        self,
        numbers: NDArray[np.integer],
        listing_ids: NDArray[np.integer],
        recording_ids: NDArray[np.integer],
        effective_at: NDArray[np.integer],
        expires_at: NDArray[np.integer],
        *,
        several_per_number: bool = False,
    ) -> None:
        """Replace the whole index (columns in any order) and clear the overlay; see
        :func:`build_base` for ``several_per_number``.

        For 15 M rows prefer ``install_base(await asyncio.to_thread(build_base, ...))``.
        """
        self.install_base(
            build_base(
                numbers,
                listing_ids,
                recording_ids,
                effective_at,
                expires_at,
                several_per_number=several_per_number,
            )
        )

    def install_base(self, base: PreparedBase) -> None:
        """Swap in a full new base with an empty overlay; abandons a pending compaction.

        Changes upserted before this call are dropped: the caller replays its change
        feed from the sequence number the full load was taken at.
        """
        self._pending = None
        self._dirty = None
        self._state = _State(base, {}, base.n, dict(base.side))

    def adopt(self, other: ListingIndex) -> None:
        """Take over ``other``'s whole state in one swap (e.g. a snapshot with the feed
        applied on top of it, built off to the side so lookups never see it half-way);
        abandons a pending compaction. ``other`` must not be used afterwards."""
        self._pending = None
        self._dirty = None
        self._state = other._state

    def share_base(self, base: PreparedBase) -> None:
        """Swap the base for one with the same contents (the same arrays mapped from a
        snapshot file, shared with the host's other processes); the overlay stays."""
        if base.n != self._state.base.n:
            raise ValueError("share_base needs a base with the same contents")
        st = self._state
        self._state = _State(base, st.overlay, st.count, st.side)

    # ---- compaction

    def begin_compaction(self) -> CompactionTicket:
        """Snapshot the overlay (loop thread). Raises RuntimeError if one is pending."""
        if self._pending is not None:
            raise RuntimeError("a compaction is already pending")
        st = self._state
        ticket = CompactionTicket(st.base, dict(st.overlay))
        self._pending = ticket
        self._dirty = set()
        return ticket

    def merged_arrays(self, ticket: CompactionTicket) -> MergedBase:
        """Merge the ticket's overlay into its base. Pure, vectorised, thread-safe."""
        return MergedBase(ticket, _merge(ticket.base, ticket.overlay))

    def finish_compaction(self, merged: MergedBase) -> bool:
        """Install a merge (loop thread); keeps changes made since ``begin_compaction``.

        Returns False (and changes nothing) if the ticket was superseded by
        ``install_base``/``replace_all``.
        """
        if merged.ticket is not self._pending:
            return False
        st = self._state
        dirty = self._dirty or set()
        new = merged.prepared
        overlay: dict[int, Entry | None] = {}
        for number in dirty:
            e = st.overlay[number]
            if e != new.get(number):
                overlay[number] = e
        self._pending = None
        self._dirty = None
        # The logical contents did not change, so neither does the count or the side table.
        self._state = _State(new, overlay, st.count, st.side)
        return True

    def abort_compaction(self) -> None:
        """Forget a pending compaction (e.g. the worker failed); the overlay stays valid."""
        self._pending = None
        self._dirty = None

    def compact(self) -> None:
        """Synchronously merge the overlay into a new base."""
        if self._pending is not None:
            raise RuntimeError("a compaction is already pending")
        ticket = self.begin_compaction()
        try:
            merged = self.merged_arrays(ticket)
        except BaseException:
            self.abort_compaction()
            raise
        self.finish_compaction(merged)

    async def compact_in_thread(self) -> bool:
        """Merge in a worker thread and swap on the loop; False if nothing was done."""
        if self._pending is not None:
            return False
        ticket = self.begin_compaction()
        try:
            merged = await asyncio.to_thread(self.merged_arrays, ticket)
        except BaseException:
            if self._pending is ticket:
                self.abort_compaction()
            raise
        return self.finish_compaction(merged)


def _first_effective(entries: tuple[Entry, ...] | None, now: float) -> Entry | None:
    if entries is not None:
        for e in entries:
            if e.effective_at <= now < e.expires_at:
                return e
    return None


_ROW: Final = np.dtype("V16")


def _merge(base: PreparedBase, overlay: dict[int, Entry | None]) -> PreparedBase:
    """New base = base with overlay applied; O(n) numpy work, Python loop only over overlay."""
    m = len(overlay)
    if m == 0:
        return base
    ok = np.fromiter(overlay.keys(), dtype=np.int64, count=m)
    present = [e is not None for e in overlay.values()]
    pmask = np.array(present, dtype=bool)
    vals = np.array(
        [e if e is not None else (0, 0, 0, 0) for e in overlay.values()], dtype=np.uint32
    ).reshape(m, 4)
    order = np.argsort(ok)
    ok, pmask, vals = ok[order], pmask[order], vals[order]

    keys = base.keys
    # Rows as opaque 16-byte items: 1-D boolean indexing / np.insert on them is several
    # times faster than on the (n, 4) uint32 array.
    rows = base.fields.view(_ROW).reshape(-1)
    pos = np.searchsorted(keys, ok)
    hit = pos < base.n
    hit[hit] = keys[pos[hit]] == ok[hit]
    if hit.any():
        keep = np.ones(base.n, dtype=bool)
        keep[pos[hit]] = False  # updated or removed: drop, updates come back as inserts
        keys = keys[keep]
        rows = rows[keep]
    ins_k = ok[pmask]
    if ins_k.size:
        ins_v = np.ascontiguousarray(vals[pmask]).view(_ROW).reshape(-1)
        at = np.searchsorted(keys, ins_k)
        keys = np.insert(keys, at, ins_k)
        rows = np.insert(rows, at, ins_v)
    elif keys is base.keys:
        return base
    return PreparedBase(keys, rows.view(np.uint32).reshape(-1, 4))
