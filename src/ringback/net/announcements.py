"""Plays court warnings: SDP answer, RTP stream, proof of play (the `Announcer` of calls.py).

Recordings are prepared once (8 kHz PCM → 20 ms μ-law/A-law frames) and cached; a
recording not yet in memory is fetched from the database off the call path while the
INVITE waits with a 100 Trying. Every failure ends in a 302 without the warning.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ringback.calls import Address, CallController
from ringback.media.offer_answer import Answer, NoAnswer, negotiate
from ringback.media.prepared import PreparedAudio, PreparedCache
from ringback.media.rtp import RtpStream
from ringback.metrics import Registry
from ringback.net.rtp_pacer import Outcome, PortsExhausted, RtpPacer, RtpPortPool, RtpSocket
from ringback.registry.listing_index import Entry
from ringback.registry.proof_of_play import PlayRecord, ProofOfPlayWriter
from ringback.sip.message import Request
from ringback.sip.transaction import TxKey

log = logging.getLogger(__name__)

LoadPcm = Callable[[int], Awaitable[bytes | None]]


@dataclass(slots=True)
class _Playing:
    entry: Entry
    codec: str
    started_at: float
    stream_id: int = 0
    caller: str | None = None


class Announcements:
    def __init__(
        self,
        pools: dict[int, RtpPortPool],
        pacer: RtpPacer,
        load_pcm: LoadPcm,
        *,
        default_pcm: bytes,
        registry: Registry,
        proof: ProofOfPlayWriter | None,
        clock: Callable[[], float],
        flush: Callable[[], None],
        repeat: int = 1,
        gap_ms: int = 500,
        max_concurrent: int = 1000,
        store_caller: bool = False,
    ) -> None:
        self.pools = pools  # by IP version of the caller
        self.pacer = pacer
        self.load_pcm = load_pcm
        self.default_pcm = default_pcm
        self.cache = PreparedCache()
        self.proof = proof
        self.clock = clock
        self.flush = flush
        self.repeat = repeat
        self.gap_ms = gap_ms
        self.max_concurrent = max_concurrent
        self.store_caller = store_caller
        self.playing: dict[TxKey, _Playing] = {}
        self._loading: set[asyncio.Task[None]] = set()
        self.outcomes = registry.counter(
            "ringback_announcements_total", "Warnings played, by outcome", ("outcome",)
        )
        registry.gauge(
            "ringback_announcements_active", "Warnings playing now", lambda: len(self.playing)
        )
        registry.gauge("ringback_rtp_packets_sent", "RTP packets sent", lambda: pacer.packets_sent)
        registry.gauge(
            "ringback_rtp_late_wakes",
            "Pacer wakes later than half a tick",
            lambda: pacer.late_wakes,
        )

    # ------------------------------------------------------------ Announcer API
    def start(
        self,
        controller: CallController,
        invite: Request,
        key: TxKey,
        entry: Entry,
        source: Address,
        now: float,
    ) -> str | None:
        if len(self.playing) >= self.max_concurrent:
            return "capacity"
        content_type = (invite.headers.get("Content-Type") or "").lower()
        if not invite.body or "application/sdp" not in content_type:
            return "no_sdp"
        pool = self.pools.get(6 if ":" in source[0] else 4) or next(iter(self.pools.values()))
        try:
            rtp = pool.allocate()
        except PortsExhausted:
            return "capacity"
        answer = negotiate(
            invite.body,
            local_ip=pool.local_ip,
            local_port=rtp.port,
            session_id=secrets.randbelow(2**31),
        )
        if isinstance(answer, NoAnswer):
            rtp.close()
            return answer.reason
        caller = self._caller(invite) if self.store_caller else None
        self.playing[key] = _Playing(entry, answer.codec, time.time(), caller=caller)
        audio = self.cache.get(entry.recording_id, self.repeat, self.gap_ms)
        if audio is not None:
            self._begin(controller, key, answer, audio, rtp, source, now)
            return None
        controller.provisional(key, 100, now)  # the recording comes from the database first
        task = asyncio.get_running_loop().create_task(
            self._load_then_begin(controller, key, answer, rtp, source)
        )
        self._loading.add(task)
        task.add_done_callback(self._loading.discard)
        return None

    def cancel(self, key: TxKey) -> None:
        playing = self.playing.get(key)
        if playing is not None and playing.stream_id:
            self.pacer.stop(playing.stream_id)  # calls _done("cancelled") synchronously
        else:
            self.playing.pop(key, None)  # still loading: the load task sees it gone

    # ---------------------------------------------------------------- internals
    async def _load_then_begin(
        self,
        controller: CallController,
        key: TxKey,
        answer: Answer,
        rtp: RtpSocket,
        source: Address,
    ) -> None:
        playing = self.playing.get(key)
        assert playing is not None
        recording_id = playing.entry.recording_id
        try:
            pcm = self.default_pcm if recording_id == 0 else await self.load_pcm(recording_id)
        except Exception as exc:  # database away: fail open
            log.warning("recording %d could not be loaded: %s", recording_id, exc)
            pcm = None
        if key not in self.playing:  # cancelled meanwhile
            rtp.close()
            return
        if not pcm:
            rtp.close()
            self.playing.pop(key, None)
            self.outcomes.inc("recording_missing")
            controller.finish_invite(key, self.clock(), played=False, why="recording_missing")
            self.flush()
            return
        audio = PreparedAudio.from_pcm(pcm, repeat=self.repeat, gap_ms=self.gap_ms)
        self.cache.put(recording_id, self.repeat, self.gap_ms, audio)
        self._begin(controller, key, answer, audio, rtp, source, self.clock())
        self.flush()

    def _begin(
        self,
        controller: CallController,
        key: TxKey,
        answer: Answer,
        audio: PreparedAudio,
        rtp: RtpSocket,
        source: Address,
        now: float,
    ) -> None:
        if not controller.provisional(
            key, 183, now, body=answer.sdp, content_type="application/sdp"
        ):
            rtp.close()
            self.playing.pop(key, None)
            return
        stream = RtpStream(audio.frames(answer.codec), answer.payload_type)
        playing = self.playing[key]
        playing.started_at = time.time()
        playing.stream_id = self.pacer.start(
            stream,
            answer.remote_addr,
            rtp,
            on_done=lambda outcome: self._done(controller, key, outcome),
            fallback_host=source[0],
        )

    def _done(self, controller: CallController, key: TxKey, outcome: Outcome) -> None:
        playing = self.playing.pop(key, None)
        if playing is None:
            return
        self.outcomes.inc(outcome)
        if self.proof is not None:
            entry = playing.entry
            self.proof.record(
                PlayRecord(
                    entry.listing_id,
                    entry.recording_id,
                    playing.codec,
                    playing.started_at,
                    time.time(),
                    outcome,
                    playing.caller,
                )
            )
        if outcome != "cancelled":
            controller.finish_invite(key, self.clock(), played=outcome == "completed", why=outcome)
            self.flush()

    @staticmethod
    def _caller(invite: Request) -> str | None:
        from ringback.sip.message import parse_name_addr

        value = invite.headers.get("P-Asserted-Identity") or invite.headers.get("From")
        if value is None:
            return None
        try:
            uri = parse_name_addr(value).uri
        except Exception:
            return None
        return uri[:200]

    async def stop(self) -> None:
        for task in list(self._loading):
            task.cancel()
        for key in list(self.playing):
            self.cancel(key)
