"""Carries out the call core's warning effects: RTP port, SDP answer, audio, proof of play.

Recordings are prepared once in every available encoding (G.711 with numpy; G.722, Opus,
AMR, AMR-WB with ffmpeg in a worker thread, never on the event loop) and cached; the
shipped default is prepared at start (:meth:`WarningPlayer.warm`), an uploaded one when
it is uploaded on this node or at its first call (read from the node's local recording
cache, or failing that the database), while the INVITE waits with a 100 Trying
(several calls waiting for one recording share one preparation; G.711 calls of an 8 kHz
recording start at once). Every outcome — including any exception while starting — is
reported to the core, which answers the held INVITE (fail open).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from ringback.calls.effects import (
    LAB_TONE,
    RINGBACK,
    Effect,
    FinishWarning,
    ResumeWarning,
    StartWarning,
    StopWarning,
)
from ringback.media.codecs import ENCODINGS, G711
from ringback.media.encode import prepare_all
from ringback.media.lab_tone import lab_tone_pcm
from ringback.media.looping import Looped
from ringback.media.offer_answer import answer_sdp
from ringback.media.prepared import FRAME_MS, PreparedAudio, PreparedCache
from ringback.media.rtp import RtpStream
from ringback.media.srtp import Crypto, SrtpStream, new_crypto
from ringback.metrics import Registry
from ringback.net.rtp_pacer import Outcome, PortsExhausted, RtpPacer, RtpPortPool, RtpSocket
from ringback.registry.proof_of_play import PlayRecord, ProofOfPlayWriter
from ringback.sip.transaction import TxKey

log = logging.getLogger(__name__)

# A recording's PCM (mono s16le) and its sample rate, or None if there is no such recording.
LoadPcm = Callable[[int], Awaitable[tuple[bytes, int] | None]]
Layout = tuple[int, int]  # (repeat, gap_ms) a recording is laid out with


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
    borrowed: bool = False  # the socket is a relay's (ringback mode): not ours to close
    looped: Looped | None = None
    outcome: str = ""
    parked: PreparedAudio | None = None  # ready, waiting for the caller's preconditions
    crypto: Crypto | None = None  # SDES-SRTP: the key our answer gave


@dataclass(frozen=True, slots=True)
class PlayInfo:
    """What a ringback-mode warning did, for proof of play when its call ends."""

    start: StartWarning
    started_at: float
    finished_at: float
    outcome: str
    destination: tuple[str, int] | None


class WarningPlayer:
    def __init__(
        self,
        pools: dict[int, RtpPortPool],
        pacer: RtpPacer,
        load_pcm: LoadPcm,
        *,
        default_pcm: bytes,
        default_rate: int = 8000,
        encodings: frozenset[str] = G711,
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
        self.default_rate = default_rate
        self.encodings = encodings
        self.cache = PreparedCache(256 * 1024 * 1024)  # six encodings of each recording
        self._preparing: dict[tuple[int, Layout], asyncio.Future[PreparedAudio | None]] = {}
        # calls waiting for a recording: (recording id, layout, reports), started by
        # whichever of the G.711 and the full preparation can play their codec first
        self._waiting: dict[TxKey, tuple[int, Layout, WarningReports]] = {}
        self.proof = proof
        self.repeat = repeat
        self.gap_ms = gap_ms
        self.playing: dict[TxKey, _Playing] = {}
        self.played: dict[TxKey, PlayInfo] = {}  # ringback mode: kept until the call ends
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
            "ringback_recordings_preparing",
            "Recordings being prepared in every codec now (at start, after an upload)",
            lambda: len(self._preparing),
        )
        registry.gauge(
            "ringback_rtp_late_wakes",
            "Pacer wakes later than half a tick",
            lambda: pacer.late_wakes,
        )

    def execute(
        self, effect: Effect, reports: WarningReports, rtp: RtpSocket | None = None
    ) -> None:
        """Carry out one warning effect of the call core. Never raises: a warning that
        cannot start is reported as ended with ``start_failed``, so the call goes on.
        ``rtp``: the relay's caller-side socket, for a ringback-mode warning."""
        if isinstance(effect, StopWarning):
            self._stop(effect.key)
            return
        if isinstance(effect, FinishWarning):
            self._finish(effect, reports)
            return
        if isinstance(effect, ResumeWarning):
            self._resume(effect.key, reports)
            return
        if not isinstance(effect, StartWarning):
            return
        try:
            self._start(effect, reports, rtp)
        except Exception:
            log.exception("warning could not start")
            playing = self.playing.pop(effect.key, None)
            if playing is not None and not playing.borrowed:
                playing.rtp.close()
            self.outcomes.inc("start_failed")
            reports.warning_ended(effect.key, "start_failed")

    def _start(self, start: StartWarning, reports: WarningReports, lent: RtpSocket | None) -> None:
        family = 6 if ":" in start.destinations[-1][0] else 4  # the INVITE's, when allowed
        pool = self.pools.get(family) or next(iter(self.pools.values()))
        if lent is not None:
            rtp = lent
        elif start.purpose == RINGBACK:  # the relay is gone already
            reports.warning_ended(start.key, "start_failed")
            return
        else:
            try:
                rtp = pool.allocate()
            except PortsExhausted:
                self.outcomes.inc("capacity")
                reports.warning_ended(start.key, "capacity")
                return
        playing = self.playing[start.key] = _Playing(start, rtp, b"", time.time())
        playing.borrowed = lent is not None
        if start.media.crypto is not None:
            playing.crypto = new_crypto(*start.media.crypto)
        playing.sdp = answer_sdp(
            start.media,
            local_ip=pool.local_ip,
            local_port=rtp.port,
            session_id=secrets.randbelow(2**31),
            direction="sendrecv" if start.purpose == LAB_TONE else "sendonly",
            extra=start.sdp_attributes,
            crypto=playing.crypto,
        )
        if start.purpose == LAB_TONE:
            audio: PreparedAudio | None = self.lab_tone
        else:
            audio = self.cache.get(start.entry.recording_id, *self._layout(start))
        if audio is not None and audio.has(start.media.frames):
            self._begin(start.key, audio, reports)
            return
        reports.warning_trying(start.key)  # the recording comes from the database first
        task = asyncio.get_running_loop().create_task(self._load_then_begin(start.key, reports))
        self._loading.add(task)
        task.add_done_callback(self._loading.discard)

    def _layout(self, start: StartWarning) -> tuple[int, int]:
        """(repeat, gap_ms) the audio is prepared with: a ringback-mode warning is
        prepared once and looped (:class:`Looped`)."""
        return (1, self.gap_ms) if start.purpose == RINGBACK else (self.repeat, self.gap_ms)

    def _resume(self, key: TxKey, reports: WarningReports) -> None:
        playing = self.playing.get(key)
        if playing is None or playing.parked is None:
            return
        audio, playing.parked = playing.parked, None
        try:
            self._play(key, playing, audio, reports)
        except Exception:
            log.exception("warning could not start")
            if self.playing.pop(key, None) is not None and not playing.borrowed:
                playing.rtp.close()
            self.outcomes.inc("start_failed")
            reports.warning_ended(key, "start_failed")

    def _stop(self, key: TxKey) -> None:
        playing = self.playing.get(key)
        if playing is not None and playing.stream_id:
            self.pacer.stop(playing.stream_id)  # calls _done("cancelled") synchronously
        elif playing is not None:  # still loading: the load task sees it gone
            del self.playing[key]
            if not playing.borrowed:
                playing.rtp.close()

    def _finish(self, finish: FinishWarning, reports: WarningReports) -> None:
        """End the warning when its current (or first) play ends."""
        playing = self.playing.get(finish.key)
        if playing is None or not playing.stream_id or playing.looped is None:
            if playing is not None:
                self._stop(finish.key)
            reports.warning_ended(finish.key, "completed")
            return
        schedule = self.pacer.schedule_of(playing.stream_id)
        done = schedule.due_count(asyncio.get_running_loop().time()) if schedule else 0
        end = playing.looped.end_of_play(done, first_only=finish.first_only)
        if end <= done:
            playing.outcome = "completed"
            self.pacer.stop(playing.stream_id)
        else:
            self.pacer.shorten(playing.stream_id, end)

    def handover(self, key: TxKey) -> tuple[str, int] | None:
        """The callee answered: stop the warning now (between two packets), leave the
        socket to the relay; where the caller's RTP latched, if it did."""
        playing = self.playing.get(key)
        if playing is None:
            return None
        destination = playing.destination
        self._stop(key)
        return destination

    def release(self, key: TxKey) -> PlayInfo | None:
        """A ringback-mode call is over: stop its warning if it still plays; what it did."""
        self._stop(key)
        return self.played.pop(key, None)

    def warm(
        self, recording_id: int, layout: Layout | None = None
    ) -> asyncio.Future[PreparedAudio | None]:
        """Prepare a recording in every encoding in the background (at start for the
        shipped default, ``recording_id`` 0; after an upload), unless already cached.
        The future is done once every encoding is ready (None: no such recording)."""
        layout = layout or (self.repeat, self.gap_ms)
        audio = self.cache.get(recording_id, *layout)
        if audio is not None and not self._missing(audio):
            done: asyncio.Future[PreparedAudio | None] = asyncio.get_running_loop().create_future()
            done.set_result(audio)
            return done
        key = (recording_id, layout)
        future = self._preparing.get(key)
        if future is None:
            future = asyncio.ensure_future(self._prepare(recording_id, layout))
            self._preparing[key] = future
            future.add_done_callback(lambda _: self._preparing.pop(key, None))
        return future

    def _missing(self, audio: PreparedAudio) -> bool:
        """Whether ``audio`` lacks an encoding this node prepares (only G.711 so far)."""
        keys = audio.keys
        wanted = (e for k, e in ENCODINGS.items() if k in self.encodings)
        return any(not keys.issuperset(e.frames_keys()) for e in wanted)

    async def _prepare(self, recording_id: int, layout: Layout) -> PreparedAudio | None:
        """Load and prepare one recording; None if it does not exist or cannot be loaded.

        G.711 first (numpy, at once for an 8 kHz recording), cached so that G.711 calls
        can start while ffmpeg makes the other encodings; then every encoding."""
        repeat, gap_ms = layout
        try:
            if recording_id == 0:
                loaded: tuple[bytes, int] | None = (self.default_pcm, self.default_rate)
            else:
                loaded = await self.load_pcm(recording_id)
        except Exception as exc:  # database away: fail open
            log.warning("recording %d could not be loaded: %s", recording_id, exc)
            return None
        if not loaded or not loaded[0]:
            return None
        pcm, rate = loaded
        started = time.monotonic()
        if rate == 8000 and self.cache.get(recording_id, repeat, gap_ms) is None:
            quick = PreparedAudio.from_pcm(pcm, repeat=repeat, gap_ms=gap_ms)
            self.cache.put(recording_id, repeat, gap_ms, quick)
            self._ready(recording_id, layout, quick)
        try:
            audio = await asyncio.to_thread(
                prepare_all, pcm, rate, self.encodings, repeat=repeat, gap_ms=gap_ms
            )
        except Exception:
            log.exception("recording %d: preparing every codec failed; G.711 only", recording_id)
            if rate != 8000:
                raise
            audio = PreparedAudio.from_pcm(pcm, repeat=repeat, gap_ms=gap_ms)
        log.info(
            "recording %d prepared in %s in %.2f s",
            recording_id,
            ", ".join(sorted(audio.keys)),
            time.monotonic() - started,
        )
        self.cache.put(recording_id, repeat, gap_ms, audio)
        return audio

    def _ready(self, recording_id: int, layout: Layout, audio: PreparedAudio) -> None:
        """Start the waiting calls of a recording that ``audio`` can already play."""
        for key, (rid, lay, reports) in list(self._waiting.items()):
            playing = self.playing.get(key)
            if playing is None or (rid, lay) != (recording_id, layout):
                continue
            if not audio.has(playing.start.media.frames):
                continue
            del self._waiting[key]
            if playing.stream_id or playing.parked is not None:
                continue
            try:
                self._begin(key, audio, reports)
            except Exception:
                log.exception("warning could not start")
                if self.playing.pop(key, None) is not None and not playing.borrowed:
                    playing.rtp.close()
                self.outcomes.inc("start_failed")
                reports.warning_ended(key, "start_failed")

    async def _load_then_begin(self, key: TxKey, reports: WarningReports) -> None:
        playing = self.playing[key]
        recording_id = playing.start.entry.recording_id
        layout = self._layout(playing.start)
        self._waiting[key] = (recording_id, layout, reports)
        try:
            audio = await self.warm(recording_id, layout)
        except Exception:
            log.exception("recording %d could not be prepared", recording_id)
            audio = None
        if self._waiting.pop(key, None) is None:  # started from the G.711 preparation
            return
        if self.playing.get(key) is not playing:  # cancelled meanwhile
            return
        try:
            if audio is None:
                del self.playing[key]
                if not playing.borrowed:
                    playing.rtp.close()
                self.outcomes.inc("recording_missing")
                reports.warning_ended(key, "recording_missing")
                return
            self._begin(key, audio, reports)
        except Exception:
            log.exception("warning could not start")
            if self.playing.pop(key, None) is not None and not playing.borrowed:
                playing.rtp.close()
            self.outcomes.inc("start_failed")
            reports.warning_ended(key, "start_failed")

    def _begin(self, key: TxKey, audio: PreparedAudio, reports: WarningReports) -> None:
        playing = self.playing[key]
        if not reports.warning_ready(key, playing.sdp):
            del self.playing[key]
            if not playing.borrowed:
                playing.rtp.close()
            return
        if playing.start.wait:  # RFC 3312: the 183 is out; the audio waits for the UPDATE
            audio.frames(playing.start.media.frames)  # fail now if the codec is missing
            playing.parked = audio
            return
        self._play(key, playing, audio, reports)

    def _play(
        self, key: TxKey, playing: _Playing, audio: PreparedAudio, reports: WarningReports
    ) -> None:
        start = playing.start
        media = start.media
        frames: list[bytes] | Looped = audio.frames(media.frames)
        if start.purpose == RINGBACK:
            playing.looped = frames = Looped(
                frames,
                audio.gap_frames,
                audio.silence(media.frames),
                int(start.fill_s * 1000 / FRAME_MS),
            )
        step = media.samples_per_packet
        if playing.crypto is not None:
            stream: RtpStream = SrtpStream(
                frames,  # type: ignore[arg-type]
                media.payload_type,
                playing.crypto,
                samples_per_packet=step,
            )
        else:
            stream = RtpStream(frames, media.payload_type, samples_per_packet=step)  # type: ignore[arg-type]
        playing.started_at = time.time()
        destinations = playing.start.destinations
        playing.stream_id = self.pacer.start(
            stream,
            destinations[0],
            playing.rtp,
            on_done=lambda outcome: self._done(key, outcome, reports),
            fallback_host=destinations[-1][0],
            on_latch=lambda where: setattr(playing, "destination", where),
            owns_socket=not playing.borrowed,
        )
        playing.destination = self.pacer.destination_of(playing.stream_id)

    def _done(self, key: TxKey, outcome: Outcome, reports: WarningReports) -> None:
        playing = self.playing.pop(key, None)
        if playing is None:
            return
        if playing.start.purpose == LAB_TONE:
            reports.warning_ended(key, outcome)
            return
        if playing.start.purpose == RINGBACK:  # proof of play when the call ends
            final = playing.outcome or outcome
            self.outcomes.inc(final)
            self.played[key] = PlayInfo(
                playing.start, playing.started_at, time.time(), final, playing.destination
            )
            reports.warning_ended(key, final)
            return
        self.outcomes.inc(outcome)
        info = PlayInfo(
            playing.start, playing.started_at, time.time(), outcome, playing.destination
        )
        self.record(info)
        reports.warning_ended(key, outcome)

    async def stop(self) -> None:
        for task in list(self._loading):
            task.cancel()
        for future in list(self._preparing.values()):
            future.cancel()
        for key in list(self.playing):
            self._stop(key)
        self.played.clear()

    def record(
        self, info: PlayInfo, stop_reason: str | None = None, answered: bool | None = None
    ) -> None:
        """Proof of play for one warning (never for a test number)."""
        start = info.start
        if self.proof is None or not start.entry.listing_id:
            return
        self.proof.record(
            PlayRecord(
                start.entry.listing_id,
                start.entry.recording_id,
                start.media.codec,
                info.started_at,
                info.finished_at,
                info.outcome,
                start.caller,
                _address(info.destination),
                mode="ringback" if start.purpose == RINGBACK else "redirect",
                stop_reason=stop_reason,
                answered=answered,
            )
        )


def _address(destination: tuple[str, int] | None) -> str | None:
    if destination is None:
        return None
    host, port = destination[0], destination[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
