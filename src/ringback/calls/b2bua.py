"""Ringback mode: the warning plays while the debtor's phone rings, then the call connects.

An anchored B2BUA, sans-I/O. For a listed call the caller's INVITE is answered with 100,
then 183 and the warning (on the caller side of a media relay); at the same moment a
callee leg goes to the next hop (the switch) with the loop-marked Request-URI and an offer
of the relay's callee side. The callee's 180/183 are absorbed (the caller keeps hearing the
warning); its 200 stops the warning at a frame boundary (or, with ``answer_after =
"first_play"``, when the first play ends), the caller gets a 200 with the same SDP as the
183, and the relay carries RTP both ways. In-dialog requests are relayed leg to leg with
their SDP anchored on the relay; BYE from either side ends both; CANCEL from the caller
cancels the callee leg; a callee's error reaches the caller when the current play ends.

Fail open: if the relay cannot open, or the next hop never answers the callee leg (not even
a 100 within ``callee_timeout_s``), the caller gets the 302 redirect mode would have sent.

The why of a few choices:
- Both legs use the codec chosen for the warning (and telephone-event): the relay copies
  packets and never transcodes, and the caller's SDP never changes (RFC 3261 §13.2.1).
- The callee's 180 is not passed on: baresip stops playing early media after one
  (INTEROP-NOTES), and the warning is the ringing tone here.
- REFER is refused: a transfer through an anchored relay would let a caller steer it.
"""

from __future__ import annotations

import heapq
import itertools
import secrets
from collections import deque
from dataclasses import dataclass, field

from ringback.calls.effects import (
    RINGBACK,
    Address,
    Bridge,
    CloseRelay,
    Effect,
    FinishWarning,
    OpenRelay,
    RelayTo,
    StartWarning,
)
from ringback.calls.legs import Leg, address_of, caller_leg, confirm_callee_leg
from ringback.calls.metrics import SipMetrics
from ringback.calls.redirect import redirect_headers
from ringback.media.destinations import DestinationPolicy
from ringback.media.offer_answer import Selection
from ringback.media.relay_sdp import anchor, leg_sdp, peer_media
from ringback.registry.listing_index import Entry
from ringback.sip.body import sdp_of
from ringback.sip.client import ClientKey, ClientTimeout, ClientTransactionLayer
from ringback.sip.errors import SipParseError
from ringback.sip.headers import Headers
from ringback.sip.model import Request, Response
from ringback.sip.responses import make_response
from ringback.sip.transaction import ServerTransactionLayer, TxKey, TxState
from ringback.sip.uri import parse_name_addr

ALLOW = "INVITE, ACK, CANCEL, OPTIONS, BYE, PRACK, UPDATE, INFO"
TIMER_SLACK = 4096  # timer entries of ended calls tolerated before `_timers` is rebuilt
# Headers of a relayed in-dialog request or response that describe its body or purpose.
_PASSED = ("Event", "Info-Package", "Subscription-State", "Content-Disposition")
_RELAYED = frozenset(["INVITE", "UPDATE", "INFO", "OPTIONS", "MESSAGE", "NOTIFY"])


@dataclass(frozen=True, slots=True)
class RingbackOptions:
    next_hop: Address | None = None  # None: where the caller's INVITE came from
    to_self: bool = False  # lab mode with no switch: callee legs come back to us
    identity_headers: tuple[str, ...] = ("P-Asserted-Identity", "Privacy")
    answer_after: str = "answer"  # or "first_play"
    max_ring_s: float = 180.0
    max_call_s: float = 7200.0
    callee_timeout_s: float = 4.0  # no response at all from the next hop: fail open


@dataclass(slots=True)
class _Relayed:
    """An in-dialog request we passed from one leg to the other, awaiting its answer."""

    request: Request  # as received
    side: str  # the side it came from
    transport: str


@dataclass(slots=True)
class BridgedCall:
    key: TxKey
    invite: Request
    transport: str
    source: Address
    selection: Selection
    entry: Entry
    contact: str  # the loop-marked Request-URI: the 302's target, the callee leg's R-URI
    reliable: bool  # the caller required 100rel: our 183 goes reliably
    caller: Leg
    answer_after: str
    started_at: float
    state: str = "starting"  # starting | ringing | answered | ended
    callee: Leg | None = None
    callee_invite: Request | None = None
    callee_key: ClientKey | None = None
    callee_transport: str = "udp"
    callee_ack: bytes | None = None
    provisional: bool = False  # the callee leg got a 1xx (CANCEL may go)
    cancel_pending: bool = False
    caller_relay: Address | None = None
    callee_relay: Address | None = None
    caller_sdp: bytes = b""
    warning: str = "pending"  # pending | playing | over; none: bridged without one
    pending_final: tuple[int, str] | None = None
    answer_pending: bool = False  # answered; waiting for the first play to end
    stop_reason: str = ""
    answered: bool = False
    redirects: int = 0  # 3xx followed on the callee leg
    target: Address | None = None  # the callee leg's next hop, when not the configured one
    rang: bool = False  # a 180 went to the caller (calls bridged without a warning)
    deadline: float = 0.0  # max ring, then max call
    callee_deadline: float | None = None  # no answer at all from the next hop
    relayed: dict[ClientKey, _Relayed] = field(default_factory=dict)
    client_keys: list[ClientKey] = field(default_factory=list)  # every request we sent
    # our ACK of a relayed re-INVITE's 2xx, sent again for each retransmitted 2xx (§13.2.2.4)
    acks: dict[ClientKey, tuple[bytes, Address, str]] = field(default_factory=dict)
    destinations: tuple[Address, ...] = ()  # where the caller's RTP may go (policy-checked)
    callee_media: tuple[Address, ...] = ()  # where the callee's may go


class B2bua:
    """Every ringback-mode call of a controller. The controller owns the transaction
    layers and hands over the messages that belong here."""

    def __init__(
        self,
        layers: dict[str, ServerTransactionLayer],
        client: ClientTransactionLayer,
        metrics: SipMetrics,
        options: RingbackOptions,
        *,
        local: dict[str, Address],
        contacts: dict[str, str],
        destinations: DestinationPolicy,
        t1: float = 0.5,
        t2: float = 4.0,
    ) -> None:
        self.layers = layers
        self.client = client
        self.metrics = metrics
        self.options = options
        self.local = local
        self.contacts = contacts
        self.destinations = destinations
        self.t1, self.t2 = t1, t2
        self.calls: dict[TxKey, BridgedCall] = {}
        self.by_call_id: dict[str, tuple[BridgedCall, str]] = {}
        self.by_client: dict[ClientKey, BridgedCall] = {}
        self._out: list[tuple[bytes, Address, str]] = []
        self._effects: list[Effect] = []
        self.outcomes = metrics.b2bua
        self._ended: deque[BridgedCall] = deque()  # over; Call-IDs kept 64*T1, in order
        # (when, n, key): a call to look at no later than `when`. Entries go stale as
        # timers change; a stale one only makes `poll` look at its call early.
        self._timers: list[tuple[float, int, TxKey]] = []
        self._n = itertools.count()
        self._compact_at = TIMER_SLACK  # rebuild `_timers` when it holds more entries

    def __len__(self) -> int:
        return len(self.calls)

    def __contains__(self, key: object) -> bool:
        return key in self.calls

    def owns_call_id(self, call_id: str) -> bool:
        return call_id in self.by_call_id

    def calls_or_ended(self) -> bool:
        """Anything here at all (the controller's hot path asks before anything else)."""
        return bool(self.by_call_id)

    def caller_tag(self, key: TxKey) -> str:
        return _tag_of(self.calls[key].caller.local)

    def take_outgoing(self) -> list[tuple[bytes, Address, str]]:
        out, self._out = self._out, []
        return out

    def take_effects(self) -> list[Effect]:
        effects, self._effects = self._effects, []
        return effects

    # ------------------------------------------------------------------ start
    def start(
        self,
        invite: Request,
        key: TxKey,
        entry: Entry,
        selection: Selection,
        destinations: tuple[Address, ...],
        contact: str,
        source: Address,
        transport: str,
        to_tag: str,
        answer_after: str,
        now: float,
        *,
        warn: bool = True,
        target: Address | None = None,
    ) -> None:
        """Take a listed call: 100 at once, and ask the shell for a relay. Without
        ``warn`` (lab mode: a registered softphone at ``target``) the call is only
        bridged, and the caller hears ringing while the callee rings."""
        requires = invite.headers.get_all("Require")
        call = BridgedCall(
            key,
            invite,
            transport,
            source,
            selection,
            entry,
            contact,
            any(v.lower() == "100rel" for v in requires),
            caller_leg(invite, to_tag, source, transport),
            answer_after,
            now,
        )
        call.caller.sdp_session = secrets.randbelow(2**31)
        call.destinations = destinations
        call.target = target
        if not warn:
            call.warning = "none"
        self.calls[key] = call
        self.by_call_id[invite.call_id] = (call, "caller")
        self._respond(call, invite, 100, now)
        next_hop = self._next_hop(call)
        configured = self.options.next_hop is not None or target is not None
        call.callee_transport = "udp" if configured else transport
        family = 6 if ":" in next_hop[0] else 4
        self._effects.append(OpenRelay(key, destinations, family))

    def relay_opened(
        self, key: TxKey, caller_side: Address, callee_side: Address, now: float
    ) -> None:
        """The relay is there: the callee leg's INVITE goes now, and the warning starts."""
        call = self.calls.get(key)
        if call is None:
            return
        call.caller_relay, call.callee_relay = caller_side, callee_side
        call.caller_sdp = leg_sdp(
            call.selection, caller_side, session=call.caller.sdp_session, version=1
        )
        call.caller.sdp_version = 1
        self._send_callee_invite(call, now)
        call.state = "ringing"
        call.deadline = now + self.options.max_ring_s
        self._arm(call)
        if call.warning == "none":
            return
        self._effects.append(
            StartWarning(
                key,
                call.entry,
                call.selection,
                call.destinations,
                None,
                RINGBACK,
                self.options.max_ring_s,
            )
        )

    def relay_failed(self, key: TxKey, reason: str, now: float) -> None:
        call = self.calls.get(key)
        if call is None:
            return
        self._fail_open(call, f"listed_{reason}", now)

    def _next_hop(self, call: BridgedCall) -> Address:
        if call.target is not None:
            return call.target
        if self.options.to_self:
            return self.local.get(call.transport) or self.local["udp"]
        return self.options.next_hop or call.source

    def _send_callee_invite(self, call: BridgedCall, now: float) -> None:
        invite = call.invite
        transport = call.callee_transport
        local = self.local.get(transport) or self.local["udp"]
        dest = self._next_hop(call)
        leg = Leg(
            call_id=secrets.token_hex(12) + "@ringback",
            local=_with_tag(invite.headers.get("From") or "", secrets.token_hex(6)),
            remote=_without_tag(invite.headers.get("To") or ""),
            remote_target=call.contact,
            routes=[],
            dest=dest,
            transport=transport,
            local_cseq=0,
        )
        leg.sdp_session = secrets.randbelow(2**31)
        leg.sdp_version = 1
        assert call.callee_relay is not None
        offer = leg_sdp(call.selection, call.callee_relay, session=leg.sdp_session, version=1)
        extra: list[tuple[str, str]] = [("Allow", ALLOW)]
        for name in self.options.identity_headers:
            extra.extend((name, v) for v in invite.headers.get_all(name))
        max_forwards = invite.max_forwards
        request = leg.request(
            "INVITE", local, self.contacts.get(transport), body=offer, extra=extra
        )
        if max_forwards is not None:
            request.headers.set("Max-Forwards", str(max(max_forwards - 1, 0)))
        call.callee, call.callee_invite = leg, request
        self.by_call_id[leg.call_id] = (call, "callee")
        call.callee_key = self.client.send(
            request, dest, reliable=transport != "udp", now=now, transport=transport
        )
        self._track(call.callee_key, call)
        call.callee_deadline = now + self.options.callee_timeout_s
        self._arm(call)
        self._flush_client(transport)

    # ------------------------------------------------------ the shell's reports
    def warning_ready(self, key: TxKey, now: float) -> bool:
        call = self.calls.get(key)
        if call is None or call.state != "ringing":
            return False
        if not self._provisional(call, 183, now, body=call.caller_sdp):
            return False
        call.warning = "playing"
        self.metrics.decisions.inc("announced")
        return True

    def warning_ended(self, key: TxKey, outcome: str, now: float) -> None:
        call = self.calls.get(key)
        if call is None:
            return
        was = call.warning
        call.warning = "over"
        if was == "pending":  # it never started: the caller hears ringing instead
            self.metrics.decisions.inc(f"listed_{outcome}")
            if call.state == "ringing":
                self._provisional(call, 180, now)
        if call.pending_final is not None:
            status, reason = call.pending_final
            self._final_to_caller(call, status, reason, now)
        elif call.answer_pending:
            self._connect(call, now)

    # --------------------------------------------------- the callee's responses
    def on_response(self, response: Response, now: float) -> bool:
        """A response the client layer passed up; False if it is not ours."""
        try:
            key: ClientKey = (response.top_via.branch or "", response.cseq[1])
        except SipParseError:
            return False
        call = self.by_client.get(key)
        if call is None:
            return False
        if key == call.callee_key:
            self._callee_invite_response(call, response, now)
        else:
            # a provisional answer (a switch's 100) leaves the request waiting for its final
            relayed = (call.relayed.get if response.status < 200 else call.relayed.pop)(key, None)
            if relayed is not None:
                self._relayed_response(call, relayed, response, now)
            elif key in call.acks and response.status < 300:  # a 2xx again: ACK it again
                self._out.append(call.acks[key])
            if response.status >= 200 and not (
                response.status < 300 and response.cseq[1] == "INVITE"
            ):
                self.by_client.pop(key, None)
        return True

    def _callee_invite_response(self, call: BridgedCall, response: Response, now: float) -> None:
        status = response.status
        call.callee_deadline = None
        leg = call.callee
        assert leg is not None
        if status < 200:
            call.provisional = True
            if call.cancel_pending:
                self._cancel_callee(call, now)
            elif call.warning == "none" and status in (180, 183) and not call.rang:
                call.rang = True  # no warning: the caller hears its own ringing tone
                self._provisional(call, 180, now)
            return  # absorbed: the warning is the ringing tone
        if status >= 300:
            self.by_client.pop(call.callee_key or ("", ""), None)
            if call.state != "ringing":
                return
            if status < 400 and call.redirects < 3 and self._follow(call, response, now):
                return
            self._callee_refused(call, status, response.reason, now)
            return
        # 2xx: confirm the dialog and ACK it (again for each retransmission).
        if call.callee_ack is not None:
            self._out.append((call.callee_ack, leg.dest, leg.transport))
            return
        confirm_callee_leg(leg, response)
        local = self.local.get(leg.transport) or self.local["udp"]
        ack = leg.request("ACK", local, None, cseq=response.cseq[0])
        call.callee_ack = ack.to_bytes()
        self._out.append((call.callee_ack, leg.dest, leg.transport))
        if call.state != "ringing":  # the caller is gone meanwhile: hang the callee up
            self._bye(leg, now)
            return
        try:
            peer = peer_media(response.body)
        except Exception:
            peer = None
        callee_media = self._allowed_media(peer.address if peer else None, leg.dest)
        call.answered = True
        call.stop_reason = "answered"
        call.callee_media = callee_media
        if call.warning == "playing" and call.answer_after == "first_play":
            call.answer_pending = True
            self._effects.append(FinishWarning(call.key, first_only=True))
            return
        self._connect(call, now)

    def _follow(self, call: BridgedCall, response: Response, now: float) -> bool:
        """A 3xx on the callee leg: try its Contact with a new INVITE (RFC 3261 §8.1.3.4);
        the caller never sees the redirect."""
        leg, invite = call.callee, call.callee_invite
        contact = response.headers.get("Contact")
        if leg is None or invite is None or not contact:
            return False
        try:
            target = parse_name_addr(contact.split(",")[0]).uri
        except SipParseError:
            return False
        call.redirects += 1
        leg.remote_target = target
        leg.dest = address_of(target, leg.dest)
        local = self.local.get(leg.transport) or self.local["udp"]
        extra = [
            (n, v)
            for n in ("Allow", *self.options.identity_headers)
            for v in invite.headers.get_all(n)
        ]
        request = leg.request(
            "INVITE",
            local,
            self.contacts.get(leg.transport),
            body=invite.body,
            extra=extra,
        )
        call.callee_invite = request
        call.provisional = False
        call.callee_key = self.client.send(
            request, leg.dest, reliable=leg.transport != "udp", now=now, transport=leg.transport
        )
        self._track(call.callee_key, call)
        call.callee_deadline = now + self.options.callee_timeout_s
        self._arm(call)
        self._flush_client(leg.transport)
        self.outcomes.inc("callee_redirected")
        return True

    def _allowed_media(self, offered: Address | None, signalling: Address) -> tuple[Address, ...]:
        candidates = [a for a in (offered,) if a is not None]
        if offered is not None:
            candidates.append((signalling[0], offered[1]))
        return tuple(dict.fromkeys(a for a in candidates if self.destinations.allows(*a)))

    def _connect(self, call: BridgedCall, now: float) -> None:
        """The 200 to the caller, with the 183's SDP; media flows both ways."""
        call.answer_pending = False
        layer = self.layers[call.transport]
        if layer.invite_state(call.key) is not TxState.PROCEEDING:
            return
        self._effects.append(Bridge(call.key, call.callee_media))
        call.state = "answered"
        call.deadline = now + self.options.max_call_s
        extra = self._dialog_headers(call)
        response = make_response(
            call.invite,
            200,
            to_tag=_tag_of(call.caller.local),
            body=call.caller_sdp,
            content_type="application/sdp",
            extra_headers=extra,
        )
        layer.send_response(call.invite, response, now)
        self.metrics.responses.inc("200")
        dest = layer.destination(call.key) or call.source
        self._flush(layer, call.transport)
        self._hold_ok(call, call.caller, response.to_bytes(), call.invite.cseq[0], dest, now)
        self.outcomes.inc("answered")

    def _hold_ok(
        self, call: BridgedCall, leg: Leg, ok: bytes, cseq: int, dest: Address, now: float
    ) -> None:
        """Resend our 2xx to an INVITE until its ACK (RFC 3261 §13.3.1.4)."""
        leg.pending_ok, leg.pending_ok_cseq, leg.ok_dest = ok, cseq, dest
        leg.ok_interval = self.t1
        leg.ok_resend_at = None if leg.transport != "udp" else now + self.t1
        leg.ok_give_up_at = now + 64 * self.t1
        self._arm(call)

    def _callee_refused(self, call: BridgedCall, status: int, reason: str, now: float) -> None:
        """A final error from the callee: to the caller when the current play ends."""
        call.stop_reason = "callee_refused"
        self.outcomes.inc(f"callee_{status}")
        if status in (401, 407):  # the switch's challenge is not the caller's business
            status, reason = 500, "Server Internal Error"
        if call.warning == "playing":
            call.pending_final = (status, reason)
            self._effects.append(FinishWarning(call.key))
            return
        self._final_to_caller(call, status, reason, now)

    def _final_to_caller(self, call: BridgedCall, status: int, reason: str, now: float) -> None:
        layer = self.layers[call.transport]
        if layer.invite_state(call.key) is TxState.PROCEEDING:
            self._respond(call, call.invite, status, now, reason=reason)
        self._end(call, now)

    # ------------------------------------------------------- caller requests
    def cancel(self, key: TxKey, now: float) -> None:
        """The caller's CANCEL (already answered 200 by the controller): 487, and the
        callee leg is cancelled."""
        call = self.calls.get(key)
        if call is None:
            return
        if call.state in ("starting", "ringing") or call.answer_pending:
            call.stop_reason = "caller_gave_up"
            self.outcomes.inc("caller_cancelled")
            self._respond(call, call.invite, 487, now)
            self._stop_callee(call, now)
            self._end(call, now)

    def on_request(self, request: Request, source: Address, transport: str, now: float) -> None:
        """An in-dialog request on either leg (the server transaction exists, unless it is
        an ACK)."""
        entry = self.by_call_id.get(request.call_id)
        if entry is None:
            return
        call, side = entry
        leg = call.caller if side == "caller" else call.callee
        method = request.method
        if method == "ACK":
            if leg is not None and leg.pending_ok and request.cseq[0] == leg.pending_ok_cseq:
                leg.pending_ok = None
                leg.ok_resend_at = None
            return
        layer = self.layers[transport]
        if call.state == "ended":  # a BYE crossing ours, or a late request
            self._respond_to(layer, request, 200 if method == "BYE" else 481, now, transport)
            return
        if leg is None or request.to_tag != _tag_of(leg.local):
            self._respond_to(layer, request, 481, now, transport)
            return
        leg.remote_cseq = max(leg.remote_cseq, request.cseq[0])
        if method == "BYE":
            self._respond_to(layer, request, 200, now, transport)
            if side == "caller" and call.state in ("starting", "ringing"):
                # a BYE in the early dialog (RFC 3261 §15): the caller is gone
                call.stop_reason = "caller_gave_up"
                self._respond(call, call.invite, 487, now)
                self._stop_callee(call, now)
            else:
                other = call.callee if side == "caller" else call.caller
                if other is not None:
                    self._bye(other, now)
                self.outcomes.inc(f"bye_from_{side}")
            self._end(call, now)
            return
        if call.state != "answered":
            status = 200 if method in ("INFO", "OPTIONS") and not request.body else 491
            self._respond_to(layer, request, status, now, transport)
            return
        if method == "REFER" or method not in _RELAYED:
            extra = (("Allow", ALLOW),)
            self._respond_to(
                layer, request, 405 if method != "REFER" else 603, now, transport, extra=extra
            )
            return
        self._relay_request(call, side, request, source, transport, now)

    def _relay_request(
        self,
        call: BridgedCall,
        side: str,
        request: Request,
        source: Address,
        transport: str,
        now: float,
    ) -> None:
        other = call.callee if side == "caller" else call.caller
        relay_other = call.callee_relay if side == "caller" else call.caller_relay
        assert other is not None and relay_other is not None
        layer = self.layers[transport]
        body = request.body
        content_type = request.headers.get("Content-Type")
        if body and sdp_of(content_type, body) is not None:
            try:
                body, peer = anchor(
                    body, relay_other, session=other.sdp_session, version=other.next_sdp_version()
                )
            except Exception:
                self._respond_to(layer, request, 488, now, transport)
                return
            if not self._move(call, side, peer.address, source, now):
                self._respond_to(layer, request, 488, now, transport)
                return
            content_type = "application/sdp"
        if request.method == "INVITE":  # the other leg may take a while (§17.2.1)
            self._respond_to(layer, request, 100, now, transport)
        local = self.local.get(other.transport) or self.local["udp"]
        extra = [(n, v) for n in _PASSED for v in request.headers.get_all(n)]
        out = other.request(
            request.method,
            local,
            self.contacts.get(other.transport),
            body=body,
            content_type=content_type,
            extra=extra,
        )
        key = self.client.send(
            out, other.dest, reliable=other.transport != "udp", now=now, transport=other.transport
        )
        self._track(key, call)
        call.relayed[key] = _Relayed(request, side, transport)
        self._flush_client(other.transport)

    def _relayed_response(
        self, call: BridgedCall, relayed: _Relayed, response: Response, now: float
    ) -> None:
        request, side = relayed.request, relayed.side
        leg = call.caller if side == "caller" else call.callee
        relay_here = call.caller_relay if side == "caller" else call.callee_relay
        assert leg is not None and relay_here is not None
        other = call.callee if side == "caller" else call.caller
        status = response.status
        if status < 200:
            return  # provisional answers to in-dialog requests stay on their leg
        if request.method == "INVITE" and status < 300 and other is not None:
            # ACK the other leg's 2xx ourselves, at once.
            local = self.local.get(other.transport) or self.local["udp"]
            ack = other.request("ACK", local, None, cseq=response.cseq[0])
            sent = (ack.to_bytes(), other.dest, other.transport)
            self._out.append(sent)
            call.acks[(response.top_via.branch or "", "INVITE")] = sent
        body = response.body
        content_type = response.headers.get("Content-Type")
        if body and sdp_of(content_type, body) is not None:
            try:
                body, peer = anchor(
                    body, relay_here, session=leg.sdp_session, version=leg.next_sdp_version()
                )
                moved = "callee" if side == "caller" else "caller"
                signalling = other.dest if other is not None else leg.dest
                self._move(call, moved, peer.address, signalling, now)
            except Exception:
                body = b""
            content_type = "application/sdp"
        layer = self.layers[relayed.transport]
        extra: list[tuple[str, str]] = [
            (n, v) for n in _PASSED for v in response.headers.get_all(n)
        ]
        if request.method in ("INVITE", "UPDATE") and status < 300:
            contact = self.contacts.get(relayed.transport)
            if contact:
                extra.append(("Contact", contact))
        reply = make_response(
            request,
            status,
            response.reason,
            body=body,
            content_type=content_type if body else None,
            extra_headers=extra,
        )
        try:
            layer.send_response(request, reply, now)
        except KeyError:
            return  # the request's transaction is gone
        self.metrics.responses.inc(str(status))
        dest = layer.destination(layer.key_of(request))
        self._flush(layer, relayed.transport)
        if request.method == "INVITE" and status < 300 and dest is not None:
            self._hold_ok(call, leg, reply.to_bytes(), request.cseq[0], dest, now)

    def _move(
        self, call: BridgedCall, side: str, to: Address | None, signalling: Address, now: float
    ) -> bool:
        """One side's media moved (re-INVITE/UPDATE): False if the policy refuses it. An SDP
        address outside the policy falls back to the signalling peer's address with the SDP's
        port, as for the first offer (linphonec's re-INVITEs name an IPv6 address of the
        host that nobody routes)."""
        if to is not None:
            allowed = self._allowed_media(to, signalling)
            if not allowed:
                return False
            to = allowed[0]
        self._effects.append(RelayTo(call.key, side, to))
        return True

    # ---------------------------------------------------------------- endings
    def _stop_callee(self, call: BridgedCall, now: float) -> None:
        """The caller is gone before the callee answered: CANCEL its leg (once a 1xx has
        come, RFC 3261 §9.1); a 2xx that still arrives is ACKed and hung up."""
        if call.provisional:
            self._cancel_callee(call, now)
        else:
            call.cancel_pending = True

    def _cancel_callee(self, call: BridgedCall, now: float) -> None:
        invite, leg = call.callee_invite, call.callee
        if invite is None or leg is None or call.callee_ack is not None:
            return
        call.cancel_pending = False
        headers = Headers()
        for name in ("Via", "From", "To", "Call-ID"):
            value = invite.headers.get(name)
            if value is not None:
                headers.add(name, value)
        headers.add("Max-Forwards", "70")
        headers.add("CSeq", f"{invite.cseq[0]} CANCEL")
        cancel = Request("CANCEL", invite.uri, headers)
        self.client.send(
            cancel, leg.dest, reliable=leg.transport != "udp", now=now, transport=leg.transport
        )
        self._flush_client(leg.transport)

    def _bye(self, leg: Leg, now: float) -> None:
        local = self.local.get(leg.transport) or self.local["udp"]
        bye = leg.request("BYE", local, None)
        leg.pending_ok = None
        self.client.send(
            bye, leg.dest, reliable=leg.transport != "udp", now=now, transport=leg.transport
        )
        self._flush_client(leg.transport)

    def _end(self, call: BridgedCall, now: float) -> None:
        """Forget the call (its client transactions finish on their own)."""
        if call.state == "ended":
            return
        call.state = "ended"
        self.calls.pop(call.key, None)
        self._effects.append(CloseRelay(call.key, call.stop_reason or "ended", call.answered))
        # Keep the Call-IDs a little: a retransmitted BYE or a late 2xx still finds them.
        call.deadline = now + 64 * self.t1
        self._ended.append(call)

    def _fail_open(self, call: BridgedCall, why: str, now: float) -> None:
        """Nothing of ringback mode can go on: the 302 redirect mode would have sent."""
        self.metrics.decisions.inc(why)
        self.outcomes.inc("failed_open")
        layer = self.layers[call.transport]
        if layer.invite_state(call.key) is TxState.PROCEEDING:
            extra = redirect_headers(call.contact, played=False, why=why)
            response = make_response(
                call.invite, 302, extra_headers=extra, to_tag=_tag_of(call.caller.local)
            )
            layer.send_response(call.invite, response, now)
            self.metrics.responses.inc("302")
            self._flush(layer, call.transport)
        call.stop_reason = "failed_open"
        if call.callee is not None:
            self._stop_callee(call, now)
        self._end(call, now)

    def shutdown(self, now: float) -> None:
        """The drain is over: bridged calls get BYE both ways; ringing ones go on by 302."""
        for call in list(self.calls.values()):
            if call.state == "answered":
                call.stop_reason = call.stop_reason or "shutdown"
                self._bye(call.caller, now)
                if call.callee is not None:
                    self._bye(call.callee, now)
                self._end(call, now)
            else:
                self._fail_open(call, "listed_shutdown", now)

    # -------------------------------------------------------------------- time
    def _arm(self, call: BridgedCall) -> None:
        """Look at ``call`` again at its next timer (call after any timer changes)."""
        times = [call.deadline]
        if call.callee_deadline is not None:
            times.append(call.callee_deadline)
        for leg in (call.caller, call.callee):
            if leg is not None and leg.pending_ok is not None:
                times.append(leg.ok_resend_at or leg.ok_give_up_at)
        heapq.heappush(self._timers, (min(times), next(self._n), call.key))
        if len(self._timers) > self._compact_at:
            self._compact()

    def _compact(self) -> None:
        """Drop the timer entries of calls that are over. They would pile up: an answered
        call's entry waits at its max_call_s deadline (2 hours) long after the call ended,
        1.4 M of them at 200 calls/s, and `next_deadline` popped a run of them at once (a
        212 ms hold at 200 calls/s). Amortised O(1): the heap must double first."""
        self._timers = [entry for entry in self._timers if entry[2] in self.calls]
        heapq.heapify(self._timers)
        self._compact_at = 2 * len(self._timers) + TIMER_SLACK

    def next_deadline(self) -> float | None:
        """The earliest timer: O(1) however many calls are bridged."""
        timers = self._timers
        while timers and timers[0][2] not in self.calls:
            heapq.heappop(timers)  # the call is over
        times = [timers[0][0]] if timers else []
        if self._ended:
            times.append(self._ended[0].deadline)
        return min(times) if times else None

    def poll(self, now: float) -> None:
        """Fire the timers due at ``now``: only the calls they belong to are looked at."""
        while self._ended and self._ended[0].deadline <= now:
            self._forget(self._ended.popleft())
        due: dict[TxKey, BridgedCall] = {}
        while self._timers and self._timers[0][0] <= now:
            key = heapq.heappop(self._timers)[2]
            call = self.calls.get(key)
            if call is not None:
                due[key] = call
        for call in due.values():
            self._poll_call(call, now)
            if call.state != "ended":
                self._arm(call)

    def _forget(self, call: BridgedCall) -> None:
        for call_id in (call.invite.call_id, call.callee.call_id if call.callee else ""):
            if self.by_call_id.get(call_id, (None, ""))[0] is call:
                del self.by_call_id[call_id]
        for key in call.client_keys:
            if self.by_client.get(key) is call:
                del self.by_client[key]

    def _track(self, key: ClientKey, call: BridgedCall) -> None:
        """Responses to our request ``key`` belong to ``call``."""
        self.by_client[key] = call
        call.client_keys.append(key)

    def _poll_call(self, call: BridgedCall, now: float) -> None:
        if call.callee_deadline is not None and call.callee_deadline <= now:
            call.callee_deadline = None
            if not call.provisional and call.state == "ringing":
                self._fail_open(call, "listed_next_hop_silent", now)
                return
        for leg in (call.caller, call.callee):
            if leg is None or leg.pending_ok is None:
                continue
            if leg.ok_give_up_at <= now:  # never ACKed: end the call
                call.stop_reason = call.stop_reason or "no_ack"
                leg.pending_ok = None
                self._hang_up_both(call, now)
                return
            if leg.ok_resend_at is not None and leg.ok_resend_at <= now:
                assert leg.ok_dest is not None
                self._out.append((leg.pending_ok, leg.ok_dest, leg.transport))
                leg.ok_interval = min(leg.ok_interval * 2, self.t2)
                leg.ok_resend_at = now + leg.ok_interval
        if call.state == "ended" or call.deadline > now:
            return
        if call.state == "answered":
            self.outcomes.inc("max_call_duration")
            call.stop_reason = call.stop_reason or "max_call_duration"
            self._hang_up_both(call, now)
        elif call.state == "ringing":
            self.outcomes.inc("max_ring")
            call.stop_reason = "no_answer"
            self._stop_callee(call, now)
            self._final_to_caller(call, 480, "Temporarily Unavailable", now)

    def client_timeout(self, event: ClientTimeout, now: float) -> bool:
        """Timer B/F of one of our requests: False if not ours."""
        call = self.by_client.pop(event.key, None)
        if call is None:
            return False
        relayed = call.relayed.pop(event.key, None)
        if relayed is not None:
            layer = self.layers[relayed.transport]
            self._respond_to(layer, relayed.request, 408, now, relayed.transport)
        elif event.key == call.callee_key and call.state == "ringing":
            self._callee_refused(call, 408, "Request Timeout", now)
        return True

    def _hang_up_both(self, call: BridgedCall, now: float) -> None:
        self._bye(call.caller, now)
        if call.callee is not None:
            self._bye(call.callee, now)
        self._end(call, now)

    # ------------------------------------------------------------------ output
    def _dialog_headers(self, call: BridgedCall) -> list[tuple[str, str]]:
        extra: list[tuple[str, str]] = []
        contact = self.contacts.get(call.transport)
        if contact:
            extra.append(("Contact", contact))
        extra.extend(("Record-Route", v) for v in call.invite.headers.get_all("Record-Route"))
        extra.append(("Allow", ALLOW))
        return extra

    def _provisional(
        self, call: BridgedCall, status: int, now: float, *, body: bytes = b""
    ) -> bool:
        layer = self.layers[call.transport]
        if layer.invite_state(call.key) is not TxState.PROCEEDING:
            return False
        response = make_response(
            call.invite,
            status,
            to_tag=_tag_of(call.caller.local),
            body=body,
            content_type="application/sdp" if body else None,
            extra_headers=self._dialog_headers(call),
        )
        if call.reliable and body:
            layer.send_reliable_provisional(call.invite, response, now)
        else:
            layer.send_response(call.invite, response, now)
        self.metrics.responses.inc(str(status))
        self._flush(layer, call.transport)
        return True

    def _respond(
        self,
        call: BridgedCall,
        request: Request,
        status: int,
        now: float,
        *,
        reason: str | None = None,
    ) -> None:
        layer = self.layers[call.transport]
        tag = _tag_of(call.caller.local) if status > 100 else None
        response = make_response(request, status, reason, to_tag=tag)
        layer.send_response(request, response, now)
        self.metrics.responses.inc(str(status))
        self._flush(layer, call.transport)

    def _respond_to(
        self,
        layer: ServerTransactionLayer,
        request: Request,
        status: int,
        now: float,
        transport: str,
        *,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        layer.send_response(request, make_response(request, status, extra_headers=extra), now)
        self.metrics.responses.inc(str(status))
        self._flush(layer, transport)

    def _flush(self, layer: ServerTransactionLayer, transport: str) -> None:
        for data, dest in layer.take_outgoing():
            self._out.append((data, dest, transport))

    def _flush_client(self, transport: str = "udp") -> None:
        self._out.extend(self.client.take_outgoing_by_transport())


def _tag_of(value: str) -> str:
    marker = ";tag="
    i = value.lower().rfind(marker)
    return value[i + len(marker) :].split(";", 1)[0] if i >= 0 else ""


def _with_tag(value: str, tag: str) -> str:
    return f"{_without_tag(value)};tag={tag}"


def _without_tag(value: str) -> str:
    """A From/To value without its tag parameter (after the name-addr's ``>``)."""
    gt = value.rfind(">")
    head, tail = (value[: gt + 1], value[gt + 1 :]) if gt >= 0 else ("", value)
    params = [p for p in tail.split(";") if p.strip() and not p.strip().lower().startswith("tag=")]
    if gt < 0:
        return ";".join(params)
    return head + "".join(";" + p for p in params)
