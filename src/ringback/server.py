"""Composition root: wires the database, the index, HTTP (and SIP) together."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from pathlib import Path

import asyncpg
from aiohttp import web

from ringback.api.app import bound_port, build_app, start_http
from ringback.api.context import ApiContext
from ringback.api.slow_clients import ReceiveLimits
from ringback.api.tls import server_tls_context
from ringback.calls import CallController, SipMetrics
from ringback.calls.b2bua import RingbackOptions
from ringback.calls.decision import Decider
from ringback.calls.registrar import Registrar
from ringback.config import Config
from ringback.event_destinations import WebhookPolicy
from ringback.loop_watch import LoopWatch, take_over_gc
from ringback.media import srtp
from ringback.media.codecs import G711
from ringback.media.destinations import DestinationPolicy
from ringback.media.encode import available_encodings
from ringback.media.offer_answer import SRTP
from ringback.media.shipped import default_warning
from ringback.metrics import Counter, Registry
from ringback.net.call_media import CallMedia
from ringback.net.court_modes import CourtModes
from ringback.net.relay import MediaRelay
from ringback.net.rtp_pacer import RtpPacer, RtpPortPool
from ringback.net.rtpengine import NgClient, RtpengineRelay
from ringback.net.sip_tls import sip_tls_context
from ringback.net.sip_transport import SipEndpoint, TrustedSources
from ringback.net.warnings import WarningPlayer
from ringback.ratelimit import TokenBuckets
from ringback.registry.announcement_days import AnnouncementDays
from ringback.registry.checkpoints import Checkpoint, export_checkpoint
from ringback.registry.common import DATABASE_ERRORS
from ringback.registry.embedded import EmbeddedPostgres
from ringback.registry.feed import IndexSync
from ringback.registry.listing_index import ListingIndex
from ringback.registry.migrate import migrate_as_owner
from ringback.registry.proof_of_play import ProofOfPlayWriter
from ringback.registry.recording_cache import RecordingCache, RecordingSync
from ringback.registry.roles import RUNTIME_LOGIN, as_user
from ringback.registry.store import Store, create_pool
from ringback.sip.message import Limits
from ringback.webhooks import EventWorker
from ringback.workers import WorkerCounters, WorkerRole

log = logging.getLogger(__name__)


class Service:
    """One ringback node. `start()` never fails because the database is away (fail open)."""

    def __init__(self, config: Config, *, worker: WorkerRole | None = None) -> None:
        self.config = config
        self.worker = worker  # one of `ringback serve --workers N` (see workers.py)
        self.worker_counters: WorkerCounters | None = None
        self.embedded: EmbeddedPostgres | None = None
        self.dsn = config.database.url
        self.owner_dsn = config.database.owner_url or config.database.url
        self.checkpoint: Checkpoint | None = None  # the audit chain's last exported head
        self.index = ListingIndex(compact_threshold=config.index.compact_threshold)
        self.metrics = Registry()
        self.sync: IndexSync
        self.pool: asyncpg.Pool
        self.store: Store
        self.http_runner: web.AppRunner | None = None
        self.http_port = 0
        self.sip: SipEndpoint | None = None
        self.sip_port = 0
        self.controller: CallController | None = None
        self.player: WarningPlayer | None = None
        self.encodings: frozenset[str] = G711
        self.pacer: RtpPacer | None = None
        self.proof: ProofOfPlayWriter | None = None
        self.announcement_days: AnnouncementDays | None = None
        self.event_worker: EventWorker | None = None
        self.recordings: RecordingCache
        self.recording_sync: RecordingSync
        self._running = contextlib.AsyncExitStack()  # how to stop what start() started
        self._tasks: list[asyncio.Task[None]] = []
        self._warming: asyncio.Task[None] | None = None  # recordings prepared in turn
        self._warmed: set[tuple[int, tuple[int, int]]] = set()
        self._db_check: tuple[float, bool] = (0.0, False)

    async def start(self) -> None:
        """Start every part; each registers how it stops, so `stop()` undoes exactly what
        was started, even when `start()` failed half-way."""
        stack = self._running
        if not self.dsn:
            embedded = self.embedded = EmbeddedPostgres(Path(self.config.database.data_dir))
            # Two roles here too: migrations as the cluster's owner, the service as a
            # member of ringback_runtime (see ringback.registry.roles).
            self.owner_dsn = await asyncio.to_thread(embedded.start)
            self.dsn = as_user(self.owner_dsn, RUNTIME_LOGIN)
            stack.push_async_callback(asyncio.to_thread, embedded.stop)
        # Writes (and migrations) to database.write_url when the node follows a standby.
        write_dsn = self.config.database.write_url or self.dsn
        self.pool = await create_pool(write_dsn, min_size=0, max_size=self.config.database.pool_max)
        stack.push_async_callback(_close_pool, self.pool)
        self.store = Store(self.pool)
        self.store.imports.lease_s = self.config.imports.lease_s
        self.store.imports.node = f"{socket.gethostname()}:{self.config.http.port}"
        await self._migrate_or_retry()
        sweeper = asyncio.create_task(self._fail_abandoned_imports(), name="imports")
        stack.push_async_callback(_cancel, sweeper)
        if self.worker is None or self.worker.index == 0:
            # proof of play's day partitions: made ahead, dropped past retention
            days = self.config.announcements
            self.announcement_days = AnnouncementDays(
                self.pool,
                retention_days=days.retention_days,
                ahead_days=days.partitions_ahead_days,
            )
            self.announcement_days.start()
            stack.push_async_callback(self.announcement_days.stop)
        self.sync = IndexSync(
            self.dsn,
            self.index,
            heartbeat_s=self.config.index.heartbeat_s,
            retention_days=self.config.index.feed_retention_days,
            connect_timeout_s=self.config.database.connect_timeout_s,
            mode=self.config.index.feed,
            poll_interval_s=self.config.index.poll_interval_s,
            on_tokens_revoked=self.store.tokens.forget_cached,
            snapshot_dir=self.config.cache.path(self.config.database.data_dir)
            if self.config.index.snapshot
            else None,
        )
        sync = self.sync
        # A node polling the feed (a hot standby) hears no revocations: no token cache.
        self.store.tokens.revocations_heard = lambda: sync.connected and not sync.polling
        self.sync.start()
        stack.push_async_callback(self.sync.stop)
        await self._start_recording_cache()
        self._register_metrics()
        await self._start_sip()
        http = self.config.http
        tls = server_tls_context(http.tls_cert, http.tls_key) if http.tls_cert else None
        self.http_runner = await start_http(
            build_app(self._api_context(), check_answers=http.check_answers),
            http.host,
            http.port,
            ssl_context=tls,
            reuse_port=self.worker is not None,
            limits=ReceiveLimits(http.head_timeout_s, http.body_timeout_s, http.body_min_rate),
            on_slow_client=self.metrics.counter(
                "ringback_http_slow_clients_total",
                "HTTP connections closed because the request arrived too slowly",
                ("phase",),
            ).inc,
        )
        stack.push_async_callback(self.http_runner.cleanup)
        self.http_port = await bound_port(self.http_runner)
        log.info("HTTP%s listening on %s:%d", "S" if tls else "", http.host, self.http_port)
        if self.worker is not None:
            self._start_worker_counters(self.worker)
        if self.config.events.enabled and (self.worker is None or self.worker.index == 0):
            self.event_worker = EventWorker(self.pool, self.config.events)
            self.event_worker.start()
            stack.push_async_callback(self.event_worker.stop)
        self._tasks.append(asyncio.create_task(self._export_checkpoints(), name="checkpoints"))

    async def _start_recording_cache(self) -> None:
        """Recordings on local disk, fetched on their own pool: a bulk import holding the
        main pool for a minute cannot delay a warning."""
        cache = self.config.cache
        pool = await create_pool(self.dsn, min_size=0, max_size=2)
        self._running.push_async_callback(_close_pool, pool)
        directory = cache.path(self.config.database.data_dir) / "recordings"
        self.recordings = RecordingCache(directory, pool, timeout_s=cache.load_timeout_s)
        self.recording_sync = RecordingSync(
            self.recordings, poll_s=cache.poll_s, on_synced=self._warm_cached_recordings
        )
        self.sync.on_change = self.recording_sync.wake
        self.recording_sync.start()
        self._running.push_async_callback(self.recording_sync.stop)

    async def _start_sip(self) -> None:
        sip, a = self.config.sip, self.config.announcement
        metrics = SipMetrics(self.metrics)
        sync = self.sync
        trusted = TrustedSources(sip.trusted_sources)
        # The encodings this machine's ffmpeg can prepare (G.711 always): asked once.
        self.encodings = await asyncio.to_thread(available_encodings)
        if srtp.available():  # SDES-SRTP offers can be answered (libsrtp)
            self.encodings |= {SRTP}
        log.info("warnings are prepared in %s", ", ".join(sorted(self.encodings)))
        controller = self.controller = CallController(
            self.index,
            self.config.numbering.plan(),
            metrics,
            index_ready=lambda: sync.loaded,
            index_staleness=lambda: sync.staleness_s,
            max_staleness_s=self.config.index.max_warn_staleness_s,
            loop_marker=sip.loop_marker,
            t1=sip.t1_ms / 1000,
            t2=sip.t2_ms / 1000,
            t4=sip.t4_ms / 1000,
            limits=Limits(max_message_size=sip.max_message_bytes),
            warnings=True,
            max_warnings=a.max_concurrent,
            keep_caller=a.store_caller,
            destinations=DestinationPolicy(a.allowed_destinations or sip.trusted_sources),
            trusted=trusted,
            test_numbers=_test_numbers(a.test_numbers),
            registrar=self._registrar(),
            lab_callee=self.config.lab.enabled,
            lab_answer_after_s=self.config.lab.answer_after_s,
            mode=self.config.ringback.mode,
            ringback=self._ringback_options(),
            mode_for=self._court_modes(),
            rate_limit=TokenBuckets(sip.rate_limit_per_source, sip.rate_limit_burst)
            if sip.rate_limit_per_source > 0
            else None,
            codecs=self.encodings,
            precondition_timeout_s=a.precondition_timeout_s,
            tag_key=self.worker.tag_key if self.worker else None,
        )
        player = await self._call_media()
        assert self.player is not None
        self.player.warm(0)  # the shipped default, in every encoding, off the event loop
        self._warm_cached_recordings()  # and those on disk (the rest as the cache syncs)
        self.sip = SipEndpoint(
            controller,
            metrics,
            trusted,
            player=player,
            tcp_idle_s=sip.tcp_idle_s,
            max_message_bytes=sip.max_message_bytes,
            max_receive_age_s=sip.max_receive_age_ms / 1000,
            tls=sip_tls_context(sip.tls_cert, sip.tls_key, sip.tls_client_ca)
            if sip.tls_cert
            else None,
            reuse_port_workers=self.worker.count if self.worker else 0,
        )
        self.sip_port = await self.sip.start(sip.listen, sip.port, sip.tls_port)
        self._running.push_async_callback(self.sip.stop)
        self._running.push_async_callback(player.stop)
        self.metrics.gauge(
            "ringback_sip_transactions",
            "SIP server transactions in memory",
            controller.transactions,
        )
        log.info("SIP listening on %s port %d (UDP and TCP)", ", ".join(sip.listen), self.sip_port)
        if self.sip.tls is not None:
            log.info(
                "SIP over TLS listening on port %d%s",
                self.sip.tls_port,
                " (client certificates required)" if sip.tls_client_ca else "",
            )

    def _start_worker_counters(self, worker: WorkerRole) -> None:
        counters = self.worker_counters = WorkerCounters(worker.counters_path, worker.count)
        self._running.callback(counters.close)
        self.metrics.extra.append(counters.render)
        sip = self.sip
        assert sip is not None

        def sum_of(counter: Counter) -> int:
            return int(counter.total())

        def update() -> None:
            m = sip.metrics
            cpu = time.process_time()
            counters.write(
                worker.index,
                [
                    sum_of(m.requests),
                    sum_of(m.decisions),
                    sum_of(m.responses),
                    int(cpu * 1000),
                ],
            )

        async def every_second() -> None:
            while True:
                update()
                await asyncio.sleep(1.0)

        self._tasks.append(asyncio.create_task(every_second(), name="worker-counters"))

    def _registrar(self) -> Registrar | None:
        lab = self.config.lab
        if not lab.enabled:
            return None
        users = {}
        for item in lab.users:
            number, _, password = item.partition(":")
            users[int(number[1:])] = password
        decider = Decider(self.index, self.config.numbering.plan(), index_ready=lambda: True)
        return Registrar(users, decider.number_of, realm=lab.realm)

    def _court_modes(self) -> CourtModes:
        r = self.config.ringback
        modes = self.court_modes = CourtModes(
            self.store.courts.call_modes, mode=r.mode, answer_after=r.answer_after
        )
        modes.start()
        self._running.push_async_callback(modes.stop)
        return modes

    def _ringback_options(self) -> RingbackOptions:
        r = self.config.ringback
        return RingbackOptions(
            next_hop=r.next_hop_address(),
            to_self=r.next_hop == "self",
            identity_headers=tuple(r.identity_headers),
            answer_after=r.answer_after,
            max_ring_s=r.max_ring_s,
            max_call_s=r.max_call_s,
            callee_timeout_s=r.callee_timeout_s,
        )

    async def _call_media(self) -> CallMedia:
        player = self._warning_player()
        r = self.config.ringback
        relay: MediaRelay | RtpengineRelay
        if r.media == "rtpengine":
            ng = NgClient(r.rtpengine_address(), timeout_s=r.rtpengine_timeout_s)
            await ng.start()
            self._running.callback(ng.close)
            relay = RtpengineRelay(player.pools, ng)
            log.info("ringback-mode media through rtpengine at %s", r.rtpengine_ng)
        else:
            relay = MediaRelay(player.pools, asyncio.get_running_loop())
        self.metrics.gauge(
            "ringback_relay_calls", "Bridged calls with a media relay", relay.__len__
        )
        self.metrics.gauge(
            "ringback_relay_packets", "RTP packets relayed", lambda: relay.packets_relayed
        )
        self.metrics.gauge(
            "ringback_relay_packets_refused",
            "RTP packets to a relay from a source it may not take them from",
            lambda: relay.packets_refused,
        )
        return CallMedia(player, relay)

    def _warning_player(self) -> WarningPlayer:
        a = self.config.announcement
        addresses = [a.media_ip] if a.media_ip else self.config.sip.listen
        pools: dict[int, RtpPortPool] = {}
        for address in addresses:
            version = ipaddress.ip_address(address).version
            pools.setdefault(version, RtpPortPool(address, a.rtp_port_min, a.rtp_port_max))
        self.pacer = RtpPacer(asyncio.get_running_loop())
        proof = self.proof = ProofOfPlayWriter(self.pool)
        self.proof.start()
        self.metrics.gauge(
            "ringback_proof_of_play_pending",
            "Proof-of-play records waiting to be written",
            lambda: len(proof.queue),
        )
        self.metrics.gauge(
            "ringback_proof_of_play_written",
            "Proof-of-play records written since start",
            lambda: proof.written,
        )
        self.metrics.gauge(
            "ringback_proof_of_play_dropped",
            "Proof-of-play records dropped since start (queue full while the database was away)",
            lambda: proof.dropped,
        )
        self._running.push_async_callback(self.proof.stop)  # flushed after the pacer stops
        self._running.callback(self.pacer.close)
        default_pcm, default_rate = default_warning()
        self.player = WarningPlayer(
            pools,
            self.pacer,
            self.recordings.audio,
            default_pcm=default_pcm,
            default_rate=default_rate,
            encodings=self.encodings,
            registry=self.metrics,
            proof=self.proof,
            repeat=a.repeat,
            gap_ms=a.gap_ms,
            lab_tone_s=self.config.lab.callee_tone_s,
        )
        return self.player

    async def _migrate(self) -> list[str]:
        """Migrations as the owner role; the embedded database's runtime login too."""
        login = RUNTIME_LOGIN if self.embedded is not None else None
        return await migrate_as_owner(self.owner_dsn, runtime_login=login)

    async def _export_checkpoints(self) -> None:
        """Export the audit chain's head every `audit.checkpoint_interval_s` (the first
        one an interval after start: a restart exports nothing new)."""
        while True:
            await asyncio.sleep(self.config.audit.checkpoint_interval_s)
            try:
                point, new = await export_checkpoint(self.pool)
                if point is not None:
                    self.checkpoint = point
                    if new:
                        log.info("audit checkpoint %s", point)
            except DATABASE_ERRORS as exc:
                log.warning("audit checkpoint: database unavailable (%s)", exc)

    async def _migrate_or_retry(self) -> None:
        try:
            applied = await asyncio.wait_for(
                self._migrate(), self.config.database.connect_timeout_s
            )
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("database unavailable at start (%s); will migrate when it returns", exc)
            self._tasks.append(asyncio.create_task(self._migrate_later()))

    async def _migrate_later(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            try:
                await self._migrate()
                log.info("database back: migrations checked")
                return
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                continue

    async def _fail_abandoned_imports(self) -> None:
        """At start: this node's unfinished import jobs (it died running them); then, every
        half lease, any node's whose lease ran out."""
        mine_too = True
        while True:
            try:
                await self.store.imports.fail_abandoned(mine_too=mine_too)
                mine_too = False
            except DATABASE_ERRORS as exc:  # away, or not migrated yet: next round
                log.debug("abandoned imports not checked: %s", exc)
            await asyncio.sleep(2.0 if mine_too else self.config.imports.lease_s / 2)

    async def database_reachable(self) -> bool:
        """A cheap `SELECT 1`, cached for a second so probes cannot load the database."""
        checked_at, ok = self._db_check
        now = time.monotonic()
        if now - checked_at < 1.0:
            return ok
        try:
            await asyncio.wait_for(self.pool.fetchval("SELECT 1"), timeout=1.0)
            ok = True
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            ok = False
        self._db_check = (time.monotonic(), ok)
        return ok

    def _api_context(self) -> ApiContext:
        store, config = self.store, self.config
        return ApiContext(
            courts=store.courts,
            tokens=store.tokens,
            listings=store.listings,
            recordings=store.recordings,
            payments=store.payments,
            imports=store.imports,
            events=store.events,
            audit=store.audit,
            numbering=config.numbering.plan(),
            listing_rules=config.listings,
            recording_rules=config.recordings,
            import_rules=config.imports,
            import_options=config.import_options(),
            index=self.index,
            index_status=self.sync,
            ready_max_staleness_s=config.index.ready_max_staleness_s,
            metrics=self.metrics,
            database_reachable=self.database_reachable,
            sessions=store.sessions,
            plays=store.plays,
            portal_rules=config.portal,
            http_rules=config.http,
            event_destinations=WebhookPolicy(config.events.allowed_destinations),
            recording_added=self._warm_recording,
        )

    def _warm_recording(self, recording_id: int) -> None:
        if self.player is not None:
            self.player.warm(recording_id)

    def _warm_cached_recordings(self) -> None:
        """Every recording this node holds is prepared in every codec ahead of its first
        call (at start, and as the cache fetches new ones), one at a time in the
        background: never per call, and never competing with calls in a burst."""
        a = self.config.announcement
        layouts = {(a.repeat, a.gap_ms)}
        if self.config.ringback.mode == "ringback":
            layouts.add((1, a.gap_ms))  # looped while the callee rings
        todo = [(r, lay) for r in sorted(self.recordings.files) for lay in sorted(layouts)]
        todo = [item for item in todo if item not in self._warmed]
        if todo and (self._warming is None or self._warming.done()):
            self._warming = asyncio.get_running_loop().create_task(self._warm_in_turn(todo))

    async def _warm_in_turn(self, todo: list[tuple[int, tuple[int, int]]]) -> None:
        for recording_id, layout in todo:
            if self.player is None:
                return
            self._warmed.add((recording_id, layout))
            await self.player.warm(recording_id, layout)

    def take_over_gc(self) -> None:
        """For a process that is only this service (`ringback serve`): the collector is
        driven from a ticker that also records the event loop's stalls (`loop_watch`)."""
        take_over_gc()
        self._tasks.append(asyncio.create_task(LoopWatch(self.metrics).run(), name="loop-watch"))

    def _register_metrics(self) -> None:
        m, sync, index = self.metrics, self.sync, self.index
        m.gauge(
            "ringback_index_listings",
            "Numbers currently in the in-memory index",
            lambda: len(index),
        )
        m.gauge("ringback_index_bytes", "Memory held by the in-memory index", lambda: index.nbytes)
        m.gauge(
            "ringback_index_loaded",
            "1 once the index has been loaded from the database",
            lambda: float(sync.loaded),
        )
        m.gauge(
            "ringback_index_staleness_seconds",
            "Seconds since the index was last confirmed current (-1: never)",
            lambda: -1.0 if sync.staleness_s == float("inf") else sync.staleness_s,
        )
        m.gauge(
            "ringback_feed_last_seq", "Last change-feed sequence applied", lambda: sync.last_seq
        )
        m.gauge("ringback_feed_lag", "Changes notified but not yet applied", lambda: sync.feed_lag)
        m.gauge("ringback_feed_full_loads", "Full index loads since start", lambda: sync.full_loads)
        m.gauge(
            "ringback_index_snapshot_loads",
            "Index bases taken from the host's shared snapshot file since start",
            lambda: sync.snapshot_loads,
        )
        m.gauge(
            "ringback_index_snapshot_writes",
            "Index snapshot files written by this process since start",
            lambda: sync.snapshot_writes,
        )
        m.gauge(
            "ringback_index_snapshot_seq",
            "Change-feed sequence of the index's base arrays (the snapshot's, when shared)",
            lambda: sync.base_seq,
        )
        m.gauge(
            "ringback_feed_reconnects", "Feed reconnections since start", lambda: sync.reconnects
        )
        cache = self.recordings
        m.gauge(
            "ringback_recordings_cached",
            "Recordings held in the node's local cache",
            lambda: len(cache.files),
        )
        m.gauge(
            "ringback_recording_load_failures",
            "Recordings needed for a call that were neither cached nor loadable",
            lambda: cache.load_failures,
        )
        m.gauge(
            "ringback_recording_cache_corrupt",
            "Cached recordings removed because they no longer matched their digest",
            lambda: cache.corrupt,
        )
        m.gauge(
            "ringback_audit_checkpoint_seq",
            "Sequence (event id) of the audit chain head last exported as a checkpoint",
            lambda: 0 if self.checkpoint is None else self.checkpoint.seq,
        )
        m.gauge(
            "ringback_database_up",
            "1 when the feed connection to the database is up",
            lambda: float(sync.connected),
        )

    async def drain(self) -> None:
        """SIGTERM: new INVITEs get their 302 at once; warnings playing finish, up to
        `shutdown.drain_s`; then every held INVITE gets its 302. Call before `stop()`."""
        if self.sip is not None:
            log.info(
                "draining: warnings in progress get up to %.0f s", self.config.shutdown.drain_s
            )
            await self.sip.drain(self.config.shutdown.drain_s)

    async def stop(self) -> None:
        for task in [*self._tasks, self._warming]:
            if task is not None:
                task.cancel()
        await self._running.aclose()


def _test_numbers(items: list[str]) -> dict[int, int]:
    """``+E164[:recording_id]`` → number → recording id (0: the shipped recording)."""
    out = {}
    for item in items:
        number, _, recording = item.partition(":")
        out[int(number[1:])] = int(recording or 0)
    return out


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel a background task and give it up to 5 s to finish (a query cancelled
    mid-flight waits for the server's answer)."""
    task.cancel()
    await asyncio.wait({task}, timeout=5.0)


async def _close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), timeout=5)
    except (TimeoutError, OSError):
        pool.terminate()
