"""Keeps a node's `ListingIndex` current from PostgreSQL.

Start: one consistent snapshot of `index_entries` (one row per live listing, a number's
listings earliest-listed first) streamed with binary COPY. Then: the change feed. Every
committed change to listings appends `(seq, number)` rows with a gapless sequence in
commit order and NOTIFYs `ringback_feed`; the notification only wakes us, and we always
read every change after the last sequence we applied, so a lost notification, a reconnect
or a gap is handled by the same catch-up; a changed number's live listings are read again
and replace what the index held for it. A heartbeat query every `heartbeat_s` proves we
are current even when nothing changes; `staleness_s` is the time since the last such
proof. While the database is away the index keeps its last state.

Where LISTEN is refused (a hot standby: "cannot execute LISTEN during recovery") or
`index.feed = "poll"` (PgBouncer in transaction mode takes LISTEN but never delivers), the
same catch-up runs every `index.poll_interval_s` instead of on NOTIFY. Nothing else
changes: the feed's sequence is gapless and in commit order because every writer takes
the one `feed_counter` row lock to number its changes (a later sequence value can never
commit before an earlier one), and a catch-up reads the head and the rows in one
snapshot, so polling never skips a change.

With a ``snapshot_dir`` (``<cache.dir>``), the compact arrays are shared by every process
of the host through one memory-mapped file (:mod:`ringback.registry.index_snapshot`):
the process that loads from PostgreSQL or merges its overlay writes it, under a file lock
the others wait on; they map it and catch up from its sequence into their own overlay. A
node (re)started while the database is down serves from the snapshot, its staleness
counting the snapshot's age; a snapshot is only used with the database up once checked
to be of that database (the change at its sequence has the same commit time), and a node
that started from one while the database was down checks it the same way on connecting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import numpy as np
from numpy.typing import NDArray

from ringback.registry.common import DATABASE_ERRORS
from ringback.registry.index_copy import CopyDecoder
from ringback.registry.index_snapshot import (
    FILE_NAME,
    Snapshot,
    SnapshotError,
    SnapshotLock,
    SnapshotWriter,
    SortedRows,
    populate,
    read_header,
    read_snapshot,
    write_merged,
    write_snapshot,
)
from ringback.registry.listing_index import (
    Columns,
    CompactionTicket,
    Entry,
    ListingIndex,
    MergedBase,
    PreparedBase,
    build_base,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_ENTRY_QUERY = (
    "SELECT number::int8, listing_id::int8, recording_id::int8, "
    "effective_epoch::int8, expires_epoch::int8 FROM index_entries"
)
#: A number's listings in the order the index chooses among them: earliest-listed first
#: (the order of the index `listings_number_listed`: a full load needs no sort, migration 016).
_ENTRY_ORDER = " ORDER BY number, listed_at, listing_id"
#: A full load: the same rows, the times as PostgreSQL holds them (CopyDecoder rounds them).
_COPY_QUERY = (
    "SELECT number::int8, listing_id::int8, recording_id::int8, effective_at, expires_at "
    "FROM index_entries" + _ENTRY_ORDER
)

#: The commit time of the change at a sequence (µs): tells one database's feed from another's.
_SEQ_AT = "SELECT (extract(epoch FROM at) * 1000000)::int8 FROM change_feed WHERE seq = $1"

PRUNE_EVERY_S = 600.0
APPLY_CHUNK = 500  # changes applied between two yields to the event loop (~1-3 ms)
FETCH_CHUNK = 1000  # catch-up rows decoded at a time (one cursor fetch or one query)
STREAM_BLOCK = 1 << 18  # rows of a streamed full load written at a time (6 MB)
LOCK_POLL_S = 0.05  # how often a process waiting for the snapshot lock tries again
COPY_SMALL_READ = 1 << 16  # a full load's read smaller than this waits for more (bytes)
COPY_FILL_PAUSE_S = 0.002  # how long it waits for the socket to fill


async def _let_the_socket_fill(chunk: bytes) -> None:
    """After a small read of a full load, give the socket 2 ms to fill. Keeping up with
    PostgreSQL, each read brings about 8 KB and costs asyncpg a pause and resume and the
    decoder a call: 2 s of CPU per 3 M rows for the reading alone. Reads of about 100 KB
    take a third of that, in the same wall time (PostgreSQL sets the pace), and leave
    the loop to calls meanwhile."""
    if len(chunk) < COPY_SMALL_READ:
        await asyncio.sleep(COPY_FILL_PAUSE_S)


async def prune_feed(conn: asyncpg.Connection, retention_days: int) -> int:
    """Delete change-feed rows older than the retention; returns how many. Any node may
    run it; a node that was away longer than the retention reloads in full."""
    status = await conn.execute(
        "DELETE FROM change_feed WHERE at < now() - make_interval(days => $1)", retention_days
    )
    return int(status.split()[-1])


class IndexSync:
    def __init__(
        self,
        dsn: str,
        index: ListingIndex,
        *,
        heartbeat_s: float = 1.0,
        full_reload_threshold: int = 50_000,
        connect_timeout_s: float = 5.0,
        retention_days: int = 7,
        monotonic: Callable[[], float] = time.monotonic,
        mode: str = "auto",
        poll_interval_s: float = 0.25,
        on_tokens_revoked: Callable[[], object] | None = None,
        snapshot_dir: str | Path | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.dsn = dsn
        # Where the host's shared index snapshot lives (None: this process keeps its own).
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir else None
        self._lock = SnapshotLock(self.snapshot_dir) if self.snapshot_dir else None
        self._wall = wall
        self.base_seq = 0  # the sequence the base arrays in use reflect
        self.snapshot_loads = 0  # bases taken from the snapshot file
        self.snapshot_writes = 0
        self.snapshot_tried = False  # served from the snapshot while the database was away
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        # (seq, seq_at) of a snapshot served before the database could confirm it is its own
        self._unverified: tuple[int, int | None] | None = None
        # Told on every token revocation (NOTIFY ringback_tokens) and on every (re)connect,
        # when revocations may have been missed: caches of tokens are dropped then.
        self.on_tokens_revoked = on_tokens_revoked
        self.index = index
        self.heartbeat_s = heartbeat_s
        self.full_reload_threshold = full_reload_threshold
        self.connect_timeout_s = connect_timeout_s
        # "auto": LISTEN, and poll by sequence where LISTEN is refused (a hot standby);
        # "poll": always poll (PgBouncer in transaction mode accepts LISTEN, never delivers).
        if mode not in ("auto", "poll"):
            raise ValueError(f"feed mode must be auto or poll, not {mode!r}")
        self.mode = mode
        self.poll_interval_s = poll_interval_s
        self.polling = mode == "poll"
        self._monotonic = monotonic
        self.retention_days = retention_days
        self._next_prune = 0.0
        self.loaded = False
        self.connected = False
        self.last_seq = 0
        self.notified_seq = 0
        self.full_loads = 0
        self.catch_ups = 0
        self.import_reloads = 0  # full reloads because a bulk import's marker was too big
        self.reconnects = 0
        self._last_sync: float | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._compact_wanted = False
        self._reload_wanted = False
        # Called after changes were applied (e.g. to fetch a recording a listing now names).
        self.on_change: Callable[[], None] | None = None
        # Merging 15 M entries takes a few hundred ms: never on the loop; we do it in a
        # thread after the batch of changes that filled the overlay.
        index.on_overlay_full = self._want_compaction

    def _want_compaction(self) -> None:
        self._compact_wanted = True

    # ------------------------------------------------------------------ state
    @property
    def staleness_s(self) -> float:
        """Seconds since the index was last known to match the database (inf: never)."""
        if self._last_sync is None:
            return math.inf
        return self._monotonic() - self._last_sync

    @property
    def feed_lag(self) -> int:
        """Changes announced by NOTIFY but not yet applied."""
        return max(0, self.notified_seq - self.last_seq)

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="index-sync")

    async def stop(self) -> None:
        task, self._task = self._task, None
        # Close the connection first: a query cancelled mid-flight makes asyncpg ask the
        # server to cancel it and wait for the answer, which could hold stop() forever;
        # with the socket closed every pending operation fails at once.
        await self._close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
                await asyncio.wait_for(task, timeout=5.0)
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        self.connected = False
        self._tokens_revoked()  # no revocation can reach us now: trust no cached token
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except DATABASE_ERRORS as exc:
                log.warning("index sync: database unavailable (%s); retrying", _brief(exc))
            except Exception:
                log.exception("index sync: unexpected error; retrying")
            if not self.loaded and self.snapshot_dir is not None and not self.snapshot_tried:
                # The database did not answer: serve from the host's snapshot meanwhile
                # (with it up, the snapshot is only used once checked to be its own).
                self.snapshot_tried = True
                await self._start_from_snapshot()
            await self._close()
            self.reconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            if self.connected:
                backoff = 0.2

    async def _session(self) -> None:
        conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout_s)
        self._conn = conn
        self._lost.clear()
        conn.add_termination_listener(lambda _c: self._lost.set())
        if self.mode == "auto":
            try:
                await conn.add_listener("ringback_feed", self._on_notify)
                await conn.add_listener("ringback_tokens", self._on_token_revoked)
                self.polling = False
            except (asyncpg.ReadOnlySQLTransactionError, asyncpg.FeatureNotSupportedError) as e:
                # "cannot execute LISTEN during recovery": a hot standby. The feed is read
                # by sequence all the same; only the wake-up is a timer instead. Token
                # revocations cannot be heard: `revocations_heard` is then False and the
                # token cache is not used (see server.py).
                log.info("index sync: LISTEN refused (%s); polling the feed", _brief(e))
                self.polling = True
        self._tokens_revoked()  # whatever was revoked while we were away
        self.connected = True
        log.info("index sync: connected%s", " (polling)" if self.polling else "")
        await self._sync(conn)
        await self._reload_if_wanted(conn)
        while True:
            waiter = asyncio.ensure_future(self._wake.wait())
            lost = asyncio.ensure_future(self._lost.wait())
            wait_s = min(self.heartbeat_s, self.poll_interval_s) if self.polling else None
            try:
                await asyncio.wait(
                    {waiter, lost},
                    timeout=wait_s or self.heartbeat_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                waiter.cancel()
                lost.cancel()
            if self._lost.is_set():
                raise ConnectionError("feed connection lost")
            self._wake.clear()
            # Bounded (a connection that hangs must not stall the feed forever), with room
            # for a full reload at 15 M numbers that first waits for another process's.
            await asyncio.wait_for(self._sync(conn), timeout=max(120.0, self.heartbeat_s * 10))
            await self._reload_if_wanted(conn)

    async def _reload_if_wanted(self, conn: asyncpg.Connection) -> None:
        """A full reload a catch-up asked for. Not bounded like a catch-up: reloading 15 M
        numbers (after a national import) can take longer, and a timeout would only start
        it over. Through the host's snapshot: another worker may have written a newer one."""
        if self._reload_wanted:
            self._reload_wanted = False
            await self._reload(conn)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self.notified_seq = max(self.notified_seq, int(payload))
        self._wake.set()

    def _on_token_revoked(self, _conn: Any, _pid: int, _channel: str, _payload: str) -> None:
        self._tokens_revoked()

    def _tokens_revoked(self) -> None:
        if self.on_tokens_revoked is not None:
            self.on_tokens_revoked()

    # ------------------------------------------------------------------- sync
    async def _sync(self, conn: asyncpg.Connection) -> None:
        """Bring the index up to the database's current sequence."""
        if not self.loaded:
            await self._reload(conn)
            return
        head = await conn.fetchval("SELECT last_seq FROM feed_counter")
        if self._unverified is not None:
            seq, seq_at = self._unverified
            if head < seq or not await self._same_database(conn, seq, seq_at):
                log.warning(
                    "index sync: the index snapshot (seq %d) is not of this database; "
                    "loading from PostgreSQL",
                    seq,
                )
                await self._reload(conn, snapshot=False)
                return
            self._unverified = None
        if head == self.last_seq:
            self._synced()
            if self._compact_wanted:  # e.g. another process held the lock last time
                self._compact_wanted = False
                await self._compact(conn)
            return
        if head < self.last_seq or head - self.last_seq > self.full_reload_threshold:
            # A different database (no snapshot of ours can help then), or so far behind
            # that a reload is cheaper.
            await self._reload(conn, snapshot=head > self.last_seq)
            return
        got = await self._fetch_changes(conn, self.last_seq)
        if got is None:
            # Pruned past our position (a node away longer than the retention), or an
            # import bigger than a reload: start over (the caller reloads, untimed).
            self._reload_wanted = True
            return
        head, changed, found = got
        await self._apply(self.index, changed, found)
        self.last_seq = head
        self.catch_ups += 1
        self._synced()
        self._changed()
        if self.retention_days and self._monotonic() >= self._next_prune:
            self._next_prune = self._monotonic() + PRUNE_EVERY_S
            try:
                await prune_feed(conn, self.retention_days)
            except (asyncpg.InsufficientPrivilegeError, asyncpg.ReadOnlySQLTransactionError):
                log.info("index sync: read-only database; another node prunes the feed")
                self.retention_days = 0
        if self._compact_wanted:
            self._compact_wanted = False
            await self._compact(conn)

    async def _fetch_changes(
        self, conn: asyncpg.Connection, since: int
    ) -> tuple[int, list[int], dict[int, list[Entry]]] | None:
        """The numbers changed after ``since`` up to the head, and their live listings, from
        one snapshot; None when the feed no longer reaches back to ``since`` or a bulk
        import in it is bigger than a full reload (the caller reloads then).

        Read in pieces of :data:`FETCH_CHUNK` rows (a cursor over the feed, then one
        query per piece of numbers), each decoded as it arrives and the loop free while
        the next is on its way: a burst of 50,000 changes decoded in one result held the
        loop for about 40 ms."""
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            head = await conn.fetchval("SELECT last_seq FROM feed_counter")
            seen: dict[int, None] = {}  # insertion-ordered set
            imports: list[Any] = []  # bulk imports' markers (number NULL, migration 014)
            rows = 0
            feed_query = "SELECT number, import_id FROM change_feed WHERE seq > $1 AND seq <= $2"

            def take(batch: list[asyncpg.Record]) -> int:
                seen.update(dict.fromkeys(r[0] for r in batch if r[0] is not None))
                imports.extend(r[1] for r in batch if r[1] is not None)
                return len(batch)

            if head - since <= FETCH_CHUNK:  # the usual case: one round trip
                rows = take(await conn.fetch(feed_query, since, head))
            else:
                cursor = await conn.cursor(feed_query, since, head)
                while batch := await cursor.fetch(FETCH_CHUNK):
                    rows += take(batch)
            if rows != head - since:  # the sequence has no gaps
                return None
            if imports:
                imported = await _imported_numbers(conn, imports, self.full_reload_threshold)
                if imported is None:  # a big import: reloading everything is cheaper
                    self.import_reloads += 1
                    return None
                seen.update(dict.fromkeys(imported))
            changed = list(seen)
            found: dict[int, list[Entry]] = {}
            query = _ENTRY_QUERY + " WHERE number = ANY($1::int8[])" + _ENTRY_ORDER
            for start in range(0, len(changed), FETCH_CHUNK):
                for r in await conn.fetch(query, changed[start : start + FETCH_CHUNK]):
                    found.setdefault(r[0], []).append(Entry(r[1], r[2], r[3], r[4]))
        return head, changed, found

    async def _apply(
        self, index: ListingIndex, changed: list[int], found: dict[int, list[Entry]]
    ) -> None:
        """Replace the listings of every changed number, yielding to the event loop every
        :data:`APPLY_CHUNK` numbers: a burst of 50,000 changes in one go held the loop (and
        every call) for about 270 ms. Lookups meanwhile see each number either as it was or
        as it is now, as they do between two batches of the feed."""
        upsert = index.upsert_listings
        for start in range(0, len(changed), APPLY_CHUNK):
            if start:
                await asyncio.sleep(0)
            for number in changed[start : start + APPLY_CHUNK]:
                upsert(number, found.get(number, ()))

    async def _same_database(self, conn: asyncpg.Connection, seq: int, seq_at: int | None) -> bool:
        """Whether the change at ``seq`` committed at ``seq_at`` (µs) here: the snapshot
        was written from this database's feed (0: an empty feed, nothing to tell apart)."""
        if seq == 0:
            return True
        return seq_at is not None and await conn.fetchval(_SEQ_AT, seq) == seq_at

    # -------------------------------------------------------- full loads, snapshots
    async def _reload(self, conn: asyncpg.Connection, *, snapshot: bool = True) -> None:
        """A whole new base: the host's snapshot plus the feed after it when it is of this
        database and recent enough, else a full load from PostgreSQL (then written as the
        new snapshot). One process of the host at a time; the others wait, then usually
        find the snapshot the first one wrote."""
        if self._lock is None or not await self._wait_for_lock():
            await self._load_from_database(conn)
            return
        assert self._lock is not None
        try:
            if snapshot:
                started = time.perf_counter()
                snap = await self._read_snapshot()
                if snap is not None and await self._adopt(conn, snap, started):
                    return
            if await self._load_streamed(conn):
                return
            await self._load_from_database(conn)
            shared = await self._write_snapshot(conn, self.index.base, self.index.side_table())
            if shared is not None:
                self.index.share_base(shared.base)  # the private copy is freed
                _trim_heap()
        finally:
            self._lock.release()

    async def _in_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Snapshot file work on a thread of its own: at start-up the default pool is
        busy preparing recordings in every codec, and the index should not queue
        behind that."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="index-snapshot"
            )
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _try_lock(self) -> bool | None:
        """Take the host's snapshot lock if free; None if the folder is unusable (the
        process then keeps its own copy of the index, as with no snapshot at all)."""
        assert self._lock is not None
        try:
            return self._lock.try_acquire()
        except OSError as exc:
            log.warning("index sync: index snapshot folder unusable (%s); not shared", exc)
            return None

    async def _wait_for_lock(self) -> bool:
        """Wait while another process of the host loads or merges; False if unusable."""
        while True:
            got = self._try_lock()
            if got is not False:
                return bool(got)
            await asyncio.sleep(LOCK_POLL_S)

    async def _load_streamed(self, conn: asyncpg.Connection) -> bool:
        """A full load written straight into a new snapshot file as the COPY arrives
        (a few MB at a time), then mapped: the process never holds a private copy of the
        arrays next to the ones it serves from. False if the file cannot be written."""
        assert self.snapshot_dir is not None
        started = time.perf_counter()
        decoder = CopyDecoder()
        writer: SnapshotWriter | None = None
        rows: SortedRows | None = None

        async def push(parts: list[Columns], last: bool) -> None:
            assert rows is not None
            keys, fields = _stacked(parts)
            await self._in_thread(functools.partial(rows.push, keys, fields, last=last))

        async def sink(chunk: bytes) -> None:
            decoder.feed(chunk)
            if decoder.pending >= STREAM_BLOCK:
                await push(decoder.take(), False)
            await _let_the_socket_fill(chunk)

        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                head = await conn.fetchval("SELECT last_seq FROM feed_counter")
                seq_at = await conn.fetchval(_SEQ_AT, head) if head else None
                writer = SnapshotWriter(
                    self.snapshot_dir, seq=head, seq_at=seq_at, synced_at=self._wall()
                )
                rows = SortedRows(writer)
                await conn.copy_from_query(_COPY_QUERY, output=sink, format="binary")
            await push([decoder.finish()], True)
            path = await self._in_thread(rows.commit)
            snap = await self._in_thread(functools.partial(read_snapshot, path, verify=False))
        except (OSError, ValueError, SnapshotError) as exc:
            if writer is not None:
                writer.abort()
            if isinstance(exc, ConnectionError):
                raise
            log.warning(
                "index sync: could not write the index snapshot (%s); loading into memory", exc
            )
            return False
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        self.index.install_base(snap.base)  # the previous base is let go here
        self.last_seq = self.base_seq = head
        self._unverified = None
        self.loaded = True
        self.full_loads += 1
        self.snapshot_writes += 1
        self._synced()
        self._changed()
        log.info(
            "index sync: loaded %d numbers at seq %d in %.2f s (into the host's snapshot)",
            len(self.index),
            head,
            time.perf_counter() - started,
        )
        _trim_heap()
        # Pages are faulted in as lookups need them (they are in the page cache: we just
        # wrote them), not all at once: another worker may still map the previous file.
        return True

    async def _load_from_database(self, conn: asyncpg.Connection) -> None:
        started = time.perf_counter()
        decoder = CopyDecoder()

        async def sink(chunk: bytes) -> None:
            decoder.feed(chunk)
            await _let_the_socket_fill(chunk)

        async with conn.transaction(isolation="repeatable_read", readonly=True):
            head = await conn.fetchval("SELECT last_seq FROM feed_counter")
            # Sorted by number, the arrays need no sort on our side (0.3 s vs 4.5 s at 15 M).
            await conn.copy_from_query(_COPY_QUERY, output=sink, format="binary")
        columns = decoder.finish()
        decoder = CopyDecoder()  # drop its pieces: the columns are all that is needed now
        base = await asyncio.to_thread(
            functools.partial(build_base, *columns, several_per_number=True)
        )
        del columns
        self.index.install_base(base)
        self.last_seq = self.base_seq = head
        self._unverified = None
        self.loaded = True
        self.full_loads += 1
        self._synced()
        self._changed()
        log.info(
            "index sync: loaded %d numbers at seq %d in %.2f s",
            len(self.index),
            head,
            time.perf_counter() - started,
        )

    async def _start_from_snapshot(self) -> None:
        """Serve from the host's snapshot before the database answers (it may be down):
        the index is as old as the snapshot, and the staleness says so."""
        started = time.perf_counter()
        snap = await self._read_snapshot()
        if snap is None:
            return
        age = max(0.0, self._wall() - snap.header.synced_at)
        self.index.install_base(snap.base)
        await self._in_thread(populate, snap.base)
        self.last_seq = self.base_seq = snap.seq
        self._unverified = (snap.seq, snap.header.seq_at)
        self.loaded = True
        self.snapshot_loads += 1
        self._last_sync = self._monotonic() - age
        self._changed()
        log.info(
            "index sync: %d numbers from the snapshot at seq %d (%.0f s old) in %.2f s",
            len(self.index),
            snap.seq,
            age,
            time.perf_counter() - started,
        )

    async def _adopt(self, conn: asyncpg.Connection, snap: Snapshot, started: float) -> bool:
        """Make ``snap`` plus the feed after it the index, in one swap; False (nothing
        changed) if it is not of this database or too far behind. ``started``: when
        reading the file began (perf_counter), for the log line."""
        head = await conn.fetchval("SELECT last_seq FROM feed_counter")
        if snap.seq > head or head - snap.seq > self.full_reload_threshold:
            return False
        if not await self._same_database(conn, snap.seq, snap.header.seq_at):
            log.info("index sync: the index snapshot (seq %d) is of another database", snap.seq)
            return False
        got = await self._fetch_changes(conn, snap.seq)
        if got is None:
            return False
        head, changed, found = got
        # Built off to the side: lookups never see the snapshot without the changes after
        # it (which they may already have seen here).
        staged = ListingIndex(compact_threshold=2**62)
        staged.install_base(snap.base)
        await self._apply(staged, changed, found)
        overlay = staged.overlay_size
        self.index.adopt(staged)  # the previous base is let go here
        await self._in_thread(populate, snap.base)
        self.last_seq, self.base_seq = head, snap.seq
        self._unverified = None
        self.loaded = True
        self.snapshot_loads += 1
        self._compact_wanted = overlay > self.index.compact_threshold
        self._synced()
        self._changed()
        log.info(
            "index sync: %d numbers from the snapshot at seq %d and %d changes up to seq %d "
            "in %.2f s",
            len(self.index),
            snap.seq,
            len(changed),
            head,
            time.perf_counter() - started,
        )
        return True

    async def _read_snapshot(self) -> Snapshot | None:
        assert self.snapshot_dir is not None
        path = self.snapshot_dir / FILE_NAME
        try:
            return await self._in_thread(read_snapshot, path)
        except SnapshotError as exc:
            if path.exists():
                log.warning("index snapshot ignored: %s; loading from PostgreSQL", exc)
        except Exception:
            log.exception("index snapshot ignored: unexpected error; loading from PostgreSQL")
        return None

    async def _write_snapshot(
        self,
        conn: asyncpg.Connection,
        base: PreparedBase,
        side: dict[int, tuple[Entry, ...]],
    ) -> Snapshot | None:
        """Write the current base (overlay empty) as the host's snapshot and map it back."""
        seq = self.last_seq
        seq_at = await conn.fetchval(_SEQ_AT, seq) if seq else None
        synced_at = self._wall() - (0.0 if math.isinf(self.staleness_s) else self.staleness_s)
        try:
            snap = await self._in_thread(
                _write_and_map, self.snapshot_dir, base, side, seq, seq_at, synced_at
            )
        except (OSError, SnapshotError, ValueError) as exc:
            log.warning(
                "index sync: could not write the index snapshot (%s); this process keeps "
                "its own copy",
                exc,
            )
            return None
        self.snapshot_writes += 1
        return snap

    async def _compact(self, conn: asyncpg.Connection) -> None:
        """Merge the overlay into new base arrays; with a snapshot directory, take the
        snapshot another process of the host merged meanwhile instead, or write ours as
        the host's new snapshot and map it."""
        if self._lock is None:
            await self.index.compact_in_thread()
            return
        got = self._try_lock()
        if got is None:  # no usable snapshot folder: merge privately
            await self.index.compact_in_thread()
            return
        if not got:
            self._compact_wanted = True  # another process is writing one: take it next time
            return
        try:
            newer = await self._in_thread(_snapshot_seq, self.snapshot_dir)
            if newer is not None and newer > self.base_seq:
                started = time.perf_counter()
                snap = await self._read_snapshot()
                if snap is not None and await self._adopt(conn, snap, started):
                    return
            seq = self.last_seq
            seq_at = await conn.fetchval(_SEQ_AT, seq) if seq else None
            synced_at = self._wall() - self.staleness_s
            ticket = self.index.begin_compaction()
            side = self.index.side_table()  # as of this sequence, like the ticket
            try:
                merged, wrote = await self._in_thread(
                    _merge_write_map,
                    self.index,
                    ticket,
                    self.snapshot_dir,
                    side,
                    (seq, seq_at, synced_at),
                )
            except BaseException:
                if self.index.compaction_pending:
                    self.index.abort_compaction()
                raise
            self.snapshot_writes += wrote
            if self.index.finish_compaction(merged):
                self.base_seq = seq
            del merged, ticket  # the old base (and its mapping) goes now
            _trim_heap()  # the new file's pages come in as lookups need them (see above)
        finally:
            self._lock.release()

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("index sync: change listener failed")

    def _synced(self) -> None:
        self._last_sync = self._monotonic()
        self.notified_seq = max(self.notified_seq, self.last_seq)


def _write_and_map(
    directory: Path | None,
    base: PreparedBase,
    side: dict[int, tuple[Entry, ...]],
    seq: int,
    seq_at: int | None,
    synced_at: float,
) -> Snapshot:
    """Write a snapshot and map it back (no checksum pass: we just wrote it). Thread."""
    assert directory is not None
    path = write_snapshot(directory, base, side, seq=seq, seq_at=seq_at, synced_at=synced_at)
    return read_snapshot(path, verify=False)


def _merge_write_map(
    index: ListingIndex,
    ticket: CompactionTicket,
    directory: Path | None,
    side: dict[int, tuple[Entry, ...]],
    at: tuple[int, int | None, float],
) -> tuple[MergedBase, bool]:
    """In a worker thread: merge the ticket's overlay into its base straight into a new
    snapshot file, piece by piece, and return it mapped and True; if it cannot be
    written, a private merge and False."""
    assert directory is not None
    seq, seq_at, synced_at = at
    try:
        path = write_merged(
            directory,
            ticket.base,
            ticket.overlay,
            side,
            seq=seq,
            seq_at=seq_at,
            synced_at=synced_at,
        )
        return MergedBase(ticket, read_snapshot(path, verify=False).base), True
    except (OSError, SnapshotError, ValueError) as exc:
        log.warning("index sync: could not write the index snapshot (%s)", exc)
        return index.merged_arrays(ticket), False


def _stacked(parts: list[Columns]) -> tuple[NDArray[np.int64], NDArray[np.uint32]]:
    """Decoded COPY pieces as the base's keys and (n, 4) fields."""
    n = sum(int(p[0].shape[0]) for p in parts)
    keys = np.empty(n, dtype=np.int64)
    fields = np.empty((n, 4), dtype=np.uint32)
    at = 0
    for p in parts:
        m = int(p[0].shape[0])
        keys[at : at + m] = p[0]
        for i in range(4):
            fields[at : at + m, i] = p[i + 1]
        at += m
    return keys, fields


def _snapshot_seq(directory: Path | None) -> int | None:
    assert directory is not None
    try:
        return read_header(directory / FILE_NAME).seq
    except SnapshotError:
        return None


def _trim_heap() -> None:
    """Hand freed heap back to the OS after a load or merge (glibc keeps it otherwise)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


async def _imported_numbers(
    conn: asyncpg.Connection, imports: list[Any], limit: int
) -> list[int] | None:
    """The numbers of the listings the bulk imports wrote (their feed markers, migration
    014), or None when they are more than `limit` (then a full reload is cheaper)."""
    size = await conn.fetchval(
        "SELECT coalesce(sum(coalesce(listed, 0) + coalesce(updated, 0)), 0) "
        "FROM imports WHERE id = ANY($1::uuid[])",
        imports,
    )
    if size > limit:
        return None
    rows = await conn.fetch(
        "SELECT DISTINCT l.number FROM import_listings il "
        "JOIN listings l ON l.id = il.listing_id WHERE il.import_id = ANY($1::uuid[])",
        imports,
    )
    return [r[0] for r in rows]


def _brief(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
