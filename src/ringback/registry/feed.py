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
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from ringback.registry.common import DATABASE_ERRORS
from ringback.registry.index_copy import CopyDecoder
from ringback.registry.listing_index import Entry, ListingIndex, build_base

log = logging.getLogger(__name__)

_ENTRY_QUERY = (
    "SELECT number::int8, listing_id::int8, recording_id::int8, "
    "effective_epoch::int8, expires_epoch::int8 FROM index_entries"
)
#: A number's listings in the order the index chooses among them: earliest-listed first.
_ENTRY_ORDER = " ORDER BY number, listed_at, listing_id"

PRUNE_EVERY_S = 600.0
APPLY_CHUNK = 1000  # changes applied between two yields to the event loop (~2-5 ms)


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
    ) -> None:
        self.dsn = dsn
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
            await asyncio.wait_for(self._sync(conn), timeout=max(30.0, self.heartbeat_s * 10))
            await self._reload_if_wanted(conn)

    async def _reload_if_wanted(self, conn: asyncpg.Connection) -> None:
        """A full reload a catch-up asked for. Not bounded like a catch-up: reloading 15 M
        numbers (after a national import) can take longer, and a timeout would only start
        it over."""
        if self._reload_wanted:
            self._reload_wanted = False
            await self._full_load(conn)

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
            await self._full_load(conn)
            return
        head = await conn.fetchval("SELECT last_seq FROM feed_counter")
        if head == self.last_seq:
            self._synced()
            return
        if head < self.last_seq or head - self.last_seq > self.full_reload_threshold:
            # A different database, or so far behind that a reload is cheaper.
            await self._full_load(conn)
            return
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            head = await conn.fetchval("SELECT last_seq FROM feed_counter")
            changes = await conn.fetch(
                "SELECT seq, number, import_id FROM change_feed WHERE seq > $1 AND seq <= $2",
                self.last_seq,
                head,
            )
            complete = len(changes) == head - self.last_seq  # the sequence has no gaps
            numbers = {r[1] for r in changes if r[1] is not None}
            imports = [r[2] for r in changes if r[2] is not None]
            if imports and complete:
                imported = await _imported_numbers(conn, imports, self.full_reload_threshold)
                if imported is None:  # a big import: reloading everything is cheaper
                    complete = False
                    self.import_reloads += 1
                else:
                    numbers.update(imported)
            changed = list(numbers)
            rows = (
                await conn.fetch(
                    _ENTRY_QUERY + " WHERE number = ANY($1::int8[])" + _ENTRY_ORDER, changed
                )
                if complete
                else []
            )
        if not complete:
            # Pruned past our position (a node away longer than the retention), or an
            # import bigger than a reload: start over (the caller reloads, untimed).
            self._reload_wanted = True
            return
        await self._apply(changed, rows)
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
            await self.index.compact_in_thread()

    async def _apply(self, changed: list[int], rows: list[asyncpg.Record]) -> None:
        """Replace the listings of every changed number, yielding to the event loop every
        :data:`APPLY_CHUNK` numbers: a burst of 50,000 changes in one go held the loop (and
        every call) for about 270 ms. Lookups meanwhile see each number either as it was or
        as it is now, as they do between two batches of the feed."""
        found: dict[int, list[Entry]] = {}
        for start in range(0, len(rows), APPLY_CHUNK):
            if start:
                await asyncio.sleep(0)
            for r in rows[start : start + APPLY_CHUNK]:
                found.setdefault(r[0], []).append(Entry(r[1], r[2], r[3], r[4]))
        upsert = self.index.upsert_listings
        for start in range(0, len(changed), APPLY_CHUNK):
            if start:
                await asyncio.sleep(0)
            for number in changed[start : start + APPLY_CHUNK]:
                upsert(number, found.get(number, ()))

    async def _full_load(self, conn: asyncpg.Connection) -> None:
        started = time.perf_counter()
        decoder = CopyDecoder()

        async def sink(chunk: bytes) -> None:
            decoder.feed(chunk)

        async with conn.transaction(isolation="repeatable_read", readonly=True):
            head = await conn.fetchval("SELECT last_seq FROM feed_counter")
            # Sorted by number, the arrays need no sort on our side (0.3 s vs 4.5 s at 15 M).
            await conn.copy_from_query(_ENTRY_QUERY + _ENTRY_ORDER, output=sink, format="binary")
        base = await asyncio.to_thread(
            functools.partial(build_base, *decoder.finish(), several_per_number=True)
        )
        self.index.install_base(base)
        self.last_seq = head
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

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("index sync: change listener failed")

    def _synced(self) -> None:
        self._last_sync = self._monotonic()
        self.notified_seq = max(self.notified_seq, self.last_seq)


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
