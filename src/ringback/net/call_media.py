"""Carries out every media effect of the call core: warnings through the
:class:`~ringback.net.warnings.WarningPlayer`, ringback-mode relays through the
:class:`~ringback.net.relay.MediaRelay` (or rtpengine, :mod:`ringback.net.rtpengine`), and
proof of play for bridged calls.

Never raises into the SIP shell: a relay that cannot open is reported as failed, so the
core fails open (302).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Protocol

from ringback.calls.effects import (
    RINGBACK,
    Address,
    Bridge,
    CloseRelay,
    Effect,
    FinishWarning,
    OpenRelay,
    RelayTo,
    ResumeWarning,
    StartWarning,
    StopWarning,
)
from ringback.net.relay import MediaRelay, PortsExhausted
from ringback.net.rtpengine import RtpengineRelay
from ringback.net.warnings import WarningPlayer, WarningReports
from ringback.sip.transaction import TxKey

log = logging.getLogger(__name__)


class MediaReports(WarningReports, Protocol):
    def relay_opened(self, key: TxKey, caller_side: Address, callee_side: Address) -> None: ...
    def relay_failed(self, key: TxKey, reason: str) -> None: ...


class CallMedia:
    def __init__(self, player: WarningPlayer, relay: MediaRelay | RtpengineRelay) -> None:
        self.player = player
        self.relay = relay
        # Where each open relay's caller may receive (policy-checked by the core).
        self._caller_destinations: dict[TxKey, tuple[Address, ...]] = {}
        # rtpengine: calls being opened (True once the call ended meanwhile)
        self._opening: dict[TxKey, bool] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def execute(self, effect: Effect, reports: MediaReports) -> None:
        if isinstance(effect, (StopWarning, FinishWarning, ResumeWarning)):
            self.player.execute(effect, reports)
        elif isinstance(effect, StartWarning):
            lent = self.relay.caller_socket(effect.key) if effect.purpose == RINGBACK else None
            if lent is not None:
                where = self.relay.warning_destinations(effect.key, effect.destinations)
                effect = replace(effect, destinations=where)
            self.player.execute(effect, reports, lent)
        elif isinstance(effect, OpenRelay):
            if isinstance(self.relay, RtpengineRelay):
                self._opening[effect.key] = False
                task = asyncio.get_running_loop().create_task(
                    self._open_remote(self.relay, effect, reports)
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                self._open(self.relay, effect, reports)
        elif isinstance(effect, Bridge):
            latched = self.player.handover(effect.key)
            session_caller = self._caller_destinations.pop(effect.key, ())
            self.relay.bridge(effect.key, session_caller, latched, effect.callee)
        elif isinstance(effect, RelayTo):
            self.relay.move(effect.key, effect.side, effect.dest)
        elif isinstance(effect, CloseRelay):
            if effect.key in self._opening:
                self._opening[effect.key] = True  # closed when its open completes
            self._caller_destinations.pop(effect.key, None)
            info = self.player.release(effect.key)
            self.relay.close(effect.key)
            if info is not None:
                self.player.record(info, effect.stop_reason, effect.answered)

    def _open(self, relay: MediaRelay, effect: OpenRelay, reports: MediaReports) -> None:
        family = 6 if ":" in effect.caller[-1][0] else 4  # the INVITE's, when allowed
        try:
            caller_side, callee_side = relay.open(effect.key, family, effect.callee_family)
        except PortsExhausted:
            reports.relay_failed(effect.key, "capacity")
            return
        except Exception:
            log.exception("media relay could not open")
            reports.relay_failed(effect.key, "start_failed")
            return
        self._caller_destinations[effect.key] = effect.caller
        reports.relay_opened(effect.key, caller_side, callee_side)

    async def _open_remote(
        self, relay: RtpengineRelay, effect: OpenRelay, reports: MediaReports
    ) -> None:
        family = 6 if ":" in effect.caller[-1][0] else 4
        try:
            caller_side, callee_side = await relay.open(effect.key, effect.caller, family)
        except PortsExhausted:
            self._opening.pop(effect.key, None)
            reports.relay_failed(effect.key, "capacity")
            return
        except Exception as exc:
            self._opening.pop(effect.key, None)
            log.warning("rtpengine could not open a call: %s", exc)
            reports.relay_failed(effect.key, "start_failed")
            return
        if self._opening.pop(effect.key, False):  # the call ended while it opened
            relay.close(effect.key)
            return
        self._caller_destinations[effect.key] = effect.caller
        reports.relay_opened(effect.key, caller_side, callee_side)

    async def stop(self) -> None:
        await self.player.stop()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)
        self.relay.close_all()
        if isinstance(self.relay, RtpengineRelay):
            await self.relay.drain()
