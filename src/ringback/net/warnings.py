"""Carries out the call core's warning effects: RTP port, SDP answer, audio, proof of play.

Recordings are prepared once (8 kHz PCM → 20 ms μ-law/A-law frames) and cached; a
recording not yet in memory is read (from the node's local recording cache, or failing
that the database) off the call path while the INVITE waits with a 100 Trying. Every
outcome — including any exception while starting — is reported to the core,
which answers the held INVITE (fail open).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from ringback.calls.effects import LAB_TONE, Effect, StartWarning, StopWarning
from ringback.media.lab_tone import lab_tone_pcm
from ringback.media.offer_answer import answer_sdp
from ringback.media.prepared import PreparedAudio, PreparedCache
from ringback.media.rtp import RtpStream
from ringback.metrics import Registry
from ringback.net.rtp_pacer import Outcome, PortsExhausted, RtpPacer, RtpPortPool, RtpSocket
from ringback.registry.proof_of_play import PlayRecord, ProofOfPlayWriter
from ringback.sip.transaction import TxKey

log = logging.getLogger(__name__)

LoadPcm = Callable[[int], Awaitable[bytes | None]]


class WarningReports(Protocol):
    """Where the player reports (the shell around the call controller)."""

    def warning_trying(self, key: TxKey) -> None: ...
    def warning_ready(self, key: TxKey, sdp: bytes) -> bool: ...
    def warning_ended(self, key: TxKey, outcome: str) -> None: ...


@dataclass(slots=True)
class _Playing:
    start: StartWarning
    rtp: RtpSocket
    sdp: bytes
    started_at: float
    stream_id: int = 0
    destination: tuple[str, int] | None = None  # where the audio goes (after any latch)


class WarningPlayer:
    def __init__(
        self,
        pools: dict[int, RtpPortPool],
        pacer: RtpPacer,
        load_pcm: LoadPcm,
        *,
        default_pcm: bytes,
        registry: Registry,
        proof: ProofOfPlayWriter | None,
        repeat: int = 1,
        gap_ms: int = 500,
        lab_tone_s: float = 20.0,
    ) -> None:
        self.pools = pools  # by IP version of the caller
        self.pacer = pacer
        self.load_pcm = load_pcm
        self.default_pcm = default_pcm
        self.cache = PreparedCache()
        self.proof = proof
        self.repeat = repeat
        self.gap_ms = gap_ms
        self.playing: dict[TxKey, _Playing] = {}
        self.lab_tone = PreparedAudio.from_pcm(lab_tone_pcm(lab_tone_s))
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

    def execute(self, effect: Effect, reports: WarningReports) -> None:
        """Carry out one effect of the call core. Never raises: a warning that cannot
        start is reported as ended with ``start_failed``, so the call goes on."""
        if isinstance(effect, StopWarning):
            self._stop(effect.key)
            return
        try:
            self._start(effect, reports)
        except Exception:
            log.exception("warning could not start")
            playing = self.playing.pop(effect.key, None)
            if playing is not None:
                playing.rtp.close()
            self.outcomes.inc("start_failed")
            reports.warning_ended(effect.key, "start_failed")

    def _start(self, start: StartWarning, reports: WarningReports) -> None:
        family = 6 if ":" in start.destinations[-1][0] else 4  # the INVITE's, when allowed
        pool = self.pools.get(family) or next(iter(self.pools.values()))
        try:
            rtp = pool.allocate()
        except PortsExhausted:
            self.outcomes.inc("capacity")
            reports.warning_ended(start.key, "capacity")
            return
        playing = self.playing[start.key] = _Playing(start, rtp, b"", time.time())
        playing.sdp = answer_sdp(
            start.media,
            local_ip=pool.local_ip,
            local_port=rtp.port,
            session_id=secrets.randbelow(2**31),
            direction="sendrecv" if start.purpose == LAB_TONE else "sendonly",
        )
        if start.purpose == LAB_TONE:
            audio: PreparedAudio | None = self.lab_tone
        else:
            audio = self.cache.get(start.entry.recording_id, self.repeat, self.gap_ms)
        if audio is not None:
            self._begin(start.key, audio, reports)
            return
        reports.warning_trying(start.key)  # the recording comes from the database first
        task = asyncio.get_running_loop().create_task(self._load_then_begin(start.key, reports))
        self._loading.add(task)
        task.add_done_callback(self._loading.discard)

    def _stop(self, key: TxKey) -> None:
        playing = self.playing.get(key)
        if playing is not None and playing.stream_id:
            self.pacer.stop(playing.stream_id)  # calls _done("cancelled") synchronously
        elif playing is not None:  # still loading: the load task sees it gone
            del self.playing[key]
            playing.rtp.close()

    async def _load_then_begin(self, key: TxKey, reports: WarningReports) -> None:
        playing = self.playing[key]
        recording_id = playing.start.entry.recording_id
        try:
            pcm = self.default_pcm if recording_id == 0 else await self.load_pcm(recording_id)
        except Exception as exc:  # database away: fail open
            log.warning("recording %d could not be loaded: %s", recording_id, exc)
            pcm = None
        if self.playing.get(key) is not playing:  # cancelled meanwhile
            return
        try:
            if not pcm:
                del self.playing[key]
                playing.rtp.close()
                self.outcomes.inc("recording_missing")
                reports.warning_ended(key, "recording_missing")
                return
            audio = PreparedAudio.from_pcm(pcm, repeat=self.repeat, gap_ms=self.gap_ms)
            self.cache.put(recording_id, self.repeat, self.gap_ms, audio)
            self._begin(key, audio, reports)
        except Exception:
            log.exception("warning could not start")
            if self.playing.pop(key, None) is not None:
                playing.rtp.close()
            self.outcomes.inc("start_failed")
            reports.warning_ended(key, "start_failed")

    def _begin(self, key: TxKey, audio: PreparedAudio, reports: WarningReports) -> None:
        playing = self.playing[key]
        if not reports.warning_ready(key, playing.sdp):
            del self.playing[key]
            playing.rtp.close()
            return
        media = playing.start.media
        stream = RtpStream(audio.frames(media.codec), media.payload_type)
        playing.started_at = time.time()
        destinations = playing.start.destinations
        playing.stream_id = self.pacer.start(
            stream,
            destinations[0],
            playing.rtp,
            on_done=lambda outcome: self._done(key, outcome, reports),
            fallback_host=destinations[-1][0],
            on_latch=lambda where: setattr(playing, "destination", where),
        )
        playing.destination = self.pacer.destination_of(playing.stream_id)

    def _done(self, key: TxKey, outcome: Outcome, reports: WarningReports) -> None:
        playing = self.playing.pop(key, None)
        if playing is None:
            return
        if playing.start.purpose == LAB_TONE:
            reports.warning_ended(key, outcome)
            return
        self.outcomes.inc(outcome)
        if self.proof is not None and playing.start.entry.listing_id:  # not a test number
            start = playing.start
            self.proof.record(
                PlayRecord(
                    start.entry.listing_id,
                    start.entry.recording_id,
                    start.media.codec,
                    playing.started_at,
                    time.time(),
                    outcome,
                    start.caller,
                    _address(playing.destination),
                )
            )
        reports.warning_ended(key, outcome)

    async def stop(self) -> None:
        for task in list(self._loading):
            task.cancel()
        for key in list(self.playing):
            self._stop(key)


def _address(destination: tuple[str, int] | None) -> str | None:
    if destination is None:
        return None
    host, port = destination[0], destination[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
