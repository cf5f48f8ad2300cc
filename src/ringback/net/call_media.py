"""Carries out every media effect of the call core: warnings through the
:class:`~ringback.net.warnings.WarningPlayer`, ringback-mode relays through the
:class:`~ringback.net.relay.MediaRelay`, and proof of play for bridged calls.

Never raises into the SIP shell: a relay that cannot open is reported as failed, so the
core fails open (302).
"""

from __future__ import annotations

import logging
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
from ringback.net.warnings import WarningPlayer, WarningReports
from ringback.sip.transaction import TxKey

log = logging.getLogger(__name__)


class MediaReports(WarningReports, Protocol):
    def relay_opened(self, key: TxKey, caller_side: Address, callee_side: Address) -> None: ...
    def relay_failed(self, key: TxKey, reason: str) -> None: ...


class CallMedia:
    def __init__(self, player: WarningPlayer, relay: MediaRelay) -> None:
        self.player = player
        self.relay = relay
        # Where each open relay's caller may receive (policy-checked by the core).
        self._caller_destinations: dict[TxKey, tuple[Address, ...]] = {}

    def execute(self, effect: Effect, reports: MediaReports) -> None:
        if isinstance(effect, (StopWarning, FinishWarning, ResumeWarning)):
            self.player.execute(effect, reports)
        elif isinstance(effect, StartWarning):
            lent = self.relay.caller_socket(effect.key) if effect.purpose == RINGBACK else None
            self.player.execute(effect, reports, lent)
        elif isinstance(effect, OpenRelay):
            self._open(effect, reports)
        elif isinstance(effect, Bridge):
            latched = self.player.handover(effect.key)
            session_caller = self._caller_destinations.pop(effect.key, ())
            self.relay.bridge(effect.key, session_caller, latched, effect.callee)
        elif isinstance(effect, RelayTo):
            self.relay.move(effect.key, effect.side, effect.dest)
        elif isinstance(effect, CloseRelay):
            self._caller_destinations.pop(effect.key, None)
            info = self.player.release(effect.key)
            self.relay.close(effect.key)
            if info is not None:
                self.player.record(info, effect.stop_reason, effect.answered)

    def _open(self, effect: OpenRelay, reports: MediaReports) -> None:
        family = 6 if ":" in effect.caller[-1][0] else 4  # the INVITE's, when allowed
        try:
            caller_side, callee_side = self.relay.open(effect.key, family, effect.callee_family)
        except PortsExhausted:
            reports.relay_failed(effect.key, "capacity")
            return
        except Exception:
            log.exception("media relay could not open")
            reports.relay_failed(effect.key, "start_failed")
            return
        self._caller_destinations[effect.key] = effect.caller
        reports.relay_opened(effect.key, caller_side, callee_side)

    async def stop(self) -> None:
        await self.player.stop()
        self.relay.close_all()
