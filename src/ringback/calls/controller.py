"""The call controller: every SIP request that reaches `ringback`, and every fail-open rule.

INVITE → :class:`~ringback.calls.decision.Decider` → 302 to the loop-marked Request-URI;
for a listed number whose offer we can play, the INVITE is held, a
:class:`~ringback.calls.effects.StartWarning` goes to the shell, and the 302 follows when
the shell reports the warning over. Whatever goes wrong on the way — no offer, no codec,
capacity, a warning that cannot start, an exception here — ends in a 302 (fail open),
counted by reason.

Nothing here touches a socket, a clock or the event loop. The shell feeds
:meth:`~CallController.receive` and :meth:`~CallController.poll`, sends
:meth:`~CallController.take_outgoing`, carries out :meth:`~CallController.take_effects`,
and wakes at :meth:`~CallController.next_deadline`.

One piece (about 600 lines) on purpose: it is where every request is dispatched and every
fail-open rule is applied, so a reader sees all of them together; the parts with their own
state live beside it (decision, redirect, dialog, registrar, media).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from ringback.calls.b2bua import B2bua, RingbackOptions
from ringback.calls.decision import (
    ANNOUNCED,
    INTERNAL_ERROR,
    LISTED_UNANNOUNCED,
    LOOP_MARKED,
    Decider,
    Decision,
)
from ringback.calls.dialog import UasDialog
from ringback.calls.effects import (
    LAB_TONE,
    Address,
    Effect,
    ResumeWarning,
    StartWarning,
    StopWarning,
)
from ringback.calls.fast_path import ABSORBED, COMPILED_ACK_KEY, FastRedirect
from ringback.calls.media import MediaPlan, caller_of, media_plan
from ringback.calls.metrics import SipMetrics
from ringback.calls.redirect import Held, redirect_headers
from ringback.calls.registrar import Registrar
from ringback.media.codecs import G711
from ringback.media.destinations import DestinationPolicy
from ringback.media.offer_answer import SRTP
from ringback.media.precondition import answer_attributes, offer_qos, replace_attributes
from ringback.ratelimit import TokenBuckets
from ringback.registry.listing_index import Entry, ListingIndex
from ringback.registry.numbers import NumberingPlan
from ringback.sip.body import sdp_of
from ringback.sip.client import ClientTransactionLayer
from ringback.sip.errors import SipParseError
from ringback.sip.fast import top_via_value
from ringback.sip.headers import ENCODING, ENCODING_ERRORS, split_list
from ringback.sip.message import Limits, parse_message
from ringback.sip.model import Request, Response
from ringback.sip.responses import error_response, make_response, new_tag
from ringback.sip.sdp import Attribute, SdpError, parse_sdp
from ringback.sip.tags import TAG_KEY_BYTES, derived_tag
from ringback.sip.transaction import AckTimeout, ServerTransactionLayer, TxKey, TxState

ALLOW = "INVITE, ACK, CANCEL, OPTIONS, BYE, PRACK, UPDATE"
SUPPORTED = "100rel, precondition"
PRECONDITION_TIMEOUT_S = 10.0  # for the caller's UPDATE saying its resources are met
ACCEPT = "application/sdp"
_NO_EFFECTS: list[Effect] = []  # returned empty, never filled
# Never rate limited (see `CallController._over_limit`), nor is any request with a To tag.
_NEVER_LIMITED = frozenset(["ACK", "CANCEL", "PRACK", "BYE"])
LOOPBACK = ("127.0.0.0/8", "::1/128")  # where RTP may go when no policy is given
# Methods counted by name; any other (a peer can invent them) counts as "other".
KNOWN_METHODS = frozenset(
    [
        "INVITE",
        "ACK",
        "CANCEL",
        "OPTIONS",
        "BYE",
        "PRACK",
        "REGISTER",
        "UPDATE",
        "INFO",
        "MESSAGE",
        "NOTIFY",
        "SUBSCRIBE",
        "REFER",
        "PUBLISH",
    ]
)


class CallController:
    def __init__(
        self,
        index: ListingIndex,
        plan: NumberingPlan,
        metrics: SipMetrics,
        *,
        index_ready: Callable[[], bool],
        index_staleness: Callable[[], float] = lambda: 0.0,
        max_staleness_s: float = 600.0,
        loop_marker: str = "rbk",
        t1: float = 0.5,
        t2: float = 4.0,
        t4: float = 5.0,
        limits: Limits | None = None,
        warnings: bool = False,
        max_warnings: int = 1000,
        keep_caller: bool = False,
        destinations: DestinationPolicy | None = None,
        trusted: Callable[[str], bool] = lambda host: False,
        test_numbers: dict[int, int] | None = None,
        registrar: Registrar | None = None,
        lab_callee: bool = False,
        codecs: frozenset[str] = G711,
        precondition_timeout_s: float = PRECONDITION_TIMEOUT_S,
        lab_answer_after_s: float = 0.0,
        mode: str = "redirect",
        ringback: RingbackOptions | None = None,
        mode_for: Callable[[Entry], tuple[str, str] | None] | None = None,
        rate_limit: TokenBuckets | None = None,
        tag_key: bytes | None = None,
    ) -> None:
        self.decider = Decider(
            index,
            plan,
            index_ready=index_ready,
            index_staleness=index_staleness,
            max_staleness_s=max_staleness_s,
            loop_marker=loop_marker,
            test_numbers=test_numbers,
        )
        self.metrics = metrics
        self._acks = metrics.requests.cell("ACK")  # bumped per absorbed ACK
        self.limits = limits or Limits()
        self.warnings = warnings  # False: listed numbers are redirected, counted, not warned
        self.max_warnings = max_warnings
        self.keep_caller = keep_caller
        # Per-source request limit (sip.rate_limit_per_source); see `_over_limit`.
        self.rate_limit = rate_limit
        self.draining = False  # shutting down: no new warnings
        self.destinations = destinations or DestinationPolicy(LOOPBACK)
        # One transaction layer per transport: a response goes back the way its request came.
        self.layers = {
            name: ServerTransactionLayer(t1, t2, t4, maddr_allowed=trusted)
            for name in ("udp", "tcp", "tls")
        }
        self.held: dict[TxKey, Held] = {}
        # Lab mode: a registrar for test softphones, and a callee that answers loop-marked
        # INVITEs (the call after the warning) when no switch is there to take them.
        self.registrar = registrar
        self.lab_callee = lab_callee
        self.codecs = codecs  # the encodings warnings are prepared in
        self.lab_answer_after_s = lab_answer_after_s
        self._lab_ringing: dict[TxKey, tuple[float, StartWarning]] = {}  # answer at
        self.client = ClientTransactionLayer(t1, t2, t4)  # our BYEs
        self.dialogs: dict[str, UasDialog] = {}  # by Call-ID
        self._loop_marked_calls: dict[str, float] = {}  # Call-ID -> forget after
        self.t1 = t1
        # `now` is the shell's monotonic clock (timers); listings carry wall-clock times:
        # wall = now + epoch_offset, kept current through `sync_clock`.
        self.epoch_offset = 0.0
        # Our address and Contact per transport: told by the shell once bound.
        self.contacts: dict[str, str] = {}
        self.local: dict[str, Address] = {}
        self._out: list[tuple[bytes, Address, str]] = []
        self._effects: list[Effect] = []
        # Warnings waiting for the caller's preconditions (RFC 3312): give up at this time.
        self._qos_waits: dict[TxKey, float] = {}
        self.precondition_timeout_s = precondition_timeout_s
        # Ringback mode: listed calls bridged while the warning plays (calls/b2bua.py).
        # ``mode`` is the deployment's; ``mode_for`` may name a court's own (mode,
        # answer_after) for a listing.
        self.mode = mode
        self.mode_for = mode_for
        self.ringback = ringback or RingbackOptions()
        self.b2bua = B2bua(
            self.layers,
            self.client,
            metrics,
            self.ringback,
            local=self.local,
            contacts=self.contacts,
            destinations=self.destinations,
            t1=t1,
            t2=t2,
        )
        # The 302's To tag is derived from the INVITE with this key (sip/tags.py): workers
        # sharing it answer any copy of an INVITE identically.
        self.tag_key = tag_key or secrets.token_bytes(TAG_KEY_BYTES)
        self.fast: FastRedirect | None = FastRedirect(
            self.decider,
            metrics,
            self.limits,
            self.tag_key,
            lab=lab_callee or registrar is not None,
        )

    # ------------------------------------------------------------ shell inputs
    def listening(self, transport: str, host: str, port: int) -> None:
        """The shell is bound: our address (Contact, Via of our own requests)."""
        self.local[transport] = (host, port)
        literal = f"[{host}]" if ":" in host else host
        if transport == "tls":  # RFC 3261 §26.2.2: a sips URI (TLS implied, no parameter)
            self.contacts[transport] = f"<sips:{literal}:{port}>"
            return
        suffix = "" if transport == "udp" else f";transport={transport}"
        self.contacts[transport] = f"<sip:{literal}:{port}{suffix}>"

    def sync_clock(self, epoch_offset: float) -> None:
        """Wall-clock time minus the shell's monotonic time."""
        self.epoch_offset = epoch_offset

    def receive(self, data: bytes, source: Address, transport: str, now: float) -> str | None:
        """Handle one datagram or stream frame. Returns the INVITE decision outcome, if any."""
        if data.startswith(b"ACK ") and self._absorbed_ack(data, transport, now):
            return None
        over = self.rate_limit is not None and self._over_limit(data, source, now)
        limited = False
        if self.fast is not None and data.startswith(b"INVITE "):  # calls/fast_path.py
            layer = self.layers[transport]
            fast = self.fast.invite(
                data, source, transport != "udp", layer, now, now + self.epoch_offset
            )
            if fast is not None:  # unlisted: its 302 at once, as over the rate limit too
                if over:
                    self.metrics.rate_limited.inc("INVITE", "redirected")
                self._flush(layer, transport)
                return None if fast == ABSORBED else fast
        try:
            message = parse_message(data, self.limits)
        except SipParseError as exc:
            reply = error_response(exc)
            self.metrics.parse_errors.inc("yes" if reply is not None else "no")
            if reply is not None and exc.method not in (None, "ACK"):
                self._out.append((reply.to_bytes(), source, transport))
            return None
        if isinstance(message, Response):
            response = self.client.receive_response(message, now)
            if response is not None and self.b2bua.calls_or_ended():
                self.b2bua.on_response(response, now)
            self._flush_client()
            return None
        method = message.method
        if over and message.to_tag is None and method not in _NEVER_LIMITED:
            if method != "INVITE":
                self.metrics.rate_limited.inc(_method_label(method), "dropped")
                return None  # a flood of new requests: dropped, nothing sent
            self.metrics.rate_limited.inc("INVITE", "redirected")
            limited = True  # still its 302 at once, never a warning
        self.metrics.requests.inc(method if method in KNOWN_METHODS else "other")
        if method == "ACK" and message.call_id in self.dialogs:
            self.dialogs[message.call_id].acked()  # the ACK of the lab callee's 200
        layer = self.layers[transport]
        try:
            request = layer.receive_request(message, source, transport != "udp", now)
        except SipParseError:  # a header parsed lazily (e.g. the Via) was bad
            self.metrics.parse_errors.inc("no")
            return None
        if request is None:
            self._flush(layer, transport)
            return None  # retransmission or ACK: absorbed by the transaction layer
        if self._in_bridged_dialog(request):
            try:
                self.b2bua.on_request(request, source, transport, now)
            except SipParseError:
                self.metrics.parse_errors.inc("no")
            return None
        try:
            if method == "INVITE":
                return self._invite(request, layer, source, transport, now, limited)
            if method == "ACK":
                return None  # ACK for a 2xx we never send, or a late one: absorb
            max_forwards = request.max_forwards
            if max_forwards is not None and max_forwards <= 0 and method != "CANCEL":
                self._respond(layer, request, 483, now, transport)
            elif method == "OPTIONS":
                self._respond(
                    layer,
                    request,
                    200,
                    now,
                    transport,
                    extra=(("Allow", ALLOW), ("Accept", ACCEPT), ("Supported", SUPPORTED)),
                )
            elif method == "CANCEL":
                self._cancel(request, layer, transport, now)
            elif method == "PRACK":
                matched = layer.prack_match(request)
                self._respond(layer, request, 200 if matched is not None else 481, now, transport)
            elif method == "BYE":
                self._bye(request, layer, transport, now)
            elif method == "UPDATE":
                self._update(request, layer, transport, now)
            elif method == "REGISTER" and self.registrar is not None:
                self._register(request, layer, source, transport, now)
            else:
                self._respond(layer, request, 405, now, transport, extra=(("Allow", ALLOW),))
        except SipParseError as exc:
            self.metrics.parse_errors.inc("yes")
            self._respond(layer, request, exc.status, now, transport, reason=exc.reason)
        return None

    def _over_limit(self, data: bytes, source: Address, now: float) -> bool:
        """Whether this request takes its source over `rate_limit` (the verdict is made
        once it is parsed). Fail open, as a carrier needs it: a new INVITE over the limit
        still gets its 302 at once, only no warning (a 503 would make the switch fail over,
        or fail the call); any other new request is dropped. Responses, ACK, CANCEL, PRACK,
        BYE and every in-dialog request (To tag) are never limited: they finish or carry
        calls already started, and dropping them would only cause retransmissions."""
        space = data.find(b" ", 0, 24)
        method = data[:space] if space > 0 else b""
        if method in (b"SIP/2.0", b"ACK", b"CANCEL") or data.startswith(b"SIP/"):
            return False
        assert self.rate_limit is not None
        return self.rate_limit.take(source[0], now) > 0.0

    def _in_bridged_dialog(self, request: Request) -> bool:
        """A request inside a ringback-mode call's dialog (either leg), for the B2BUA."""
        if request.method in ("CANCEL", "PRACK") or not self.b2bua.owns_call_id(request.call_id):
            return False
        return request.method != "INVITE" or request.to_tag is not None

    def _absorbed_ack(self, data: bytes, transport: str, now: float) -> bool:
        """Every redirected call ends with an ACK; absorbing it from its top Via alone
        halves its cost. Anything unusual goes through the full parser instead."""
        layer, reliable = self.layers[transport], transport != "udp"
        key = COMPILED_ACK_KEY(data) if COMPILED_ACK_KEY is not None else None
        if key is not None:
            absorbed = layer.absorb_ack_key(*key, reliable, now)
        else:
            value = top_via_value(data)
            if value is None:
                return False  # anything unusual takes the long way
            absorbed = layer.absorb_ack(value, reliable, now)
        if absorbed:
            self._acks[0] += 1
        return absorbed

    # ----------------------------------------------------------------- INVITE
    def _invite(
        self,
        invite: Request,
        layer: ServerTransactionLayer,
        source: Address,
        transport: str,
        now: float,
        limited: bool = False,
    ) -> str:
        try:
            max_forwards = invite.max_forwards
            if max_forwards is not None and max_forwards <= 0:
                self._respond(layer, invite, 483, now, transport)
                return "too_many_hops"
            to = invite.headers.get("To") or ""
            if "tag" in to.lower() and invite.to_tag:  # a re-INVITE for a dialog we lack
                self._respond(layer, invite, 481, now, transport)
                return "no_dialog"
            decision = self.decider.decide(invite.uri, now + self.epoch_offset)
        except SipParseError as exc:
            self.metrics.parse_errors.inc("yes")
            self._respond(layer, invite, exc.status, now, transport, reason=exc.reason)
            return "bad_request"
        except Exception:  # fail open: whatever broke, the call goes on
            decision = Decision(INTERNAL_ERROR, self.decider.fallback_contact(invite.uri))
        if decision.outcome == LOOP_MARKED and (self.lab_callee or self.registrar):
            return self._lab_invite(invite, layer, source, transport, now)
        if decision.entry is None:
            self.metrics.decisions.inc(decision.outcome)
            self._redirect(
                layer,
                invite,
                decision.contact,
                now,
                transport,
                played=False if decision.skipped else None,
                why=decision.outcome,
            )
            return decision.outcome
        try:
            ringback = self._mode_of(decision.entry)[0] == "ringback"
            plan = (
                "rate_limited"
                if limited and self.warnings
                else self._warning_plan(invite, source, ringback)
            )
            if isinstance(plan, str):
                skipped: str | None = plan
            else:
                skipped = None
                if ringback:
                    self._ringback_call(invite, decision, layer, plan, source, transport, now)
                else:
                    skipped = self._hold_for_warning(invite, decision, layer, plan, transport)
        except Exception:  # fail open
            skipped = INTERNAL_ERROR
        if skipped is None:
            return ANNOUNCED
        outcome = skipped if skipped == LISTED_UNANNOUNCED else f"listed_{skipped}"
        self.metrics.decisions.inc(outcome)
        self._redirect(layer, invite, decision.contact, now, transport, played=False, why=outcome)
        return outcome

    def _warning_plan(
        self, invite: Request, source: Address, ringback: bool = False
    ) -> MediaPlan | str:
        """What a listed call's warning would play and where, or the reason it will not.
        Ringback mode relays the callee's RTP as it is: no SRTP there (plain RTP only)."""
        if not self.warnings:
            return LISTED_UNANNOUNCED
        if self.draining:
            return "draining"
        if len(self.held) + len(self.b2bua) >= self.max_warnings:
            return "capacity"
        codecs = self.codecs - {SRTP} if ringback else self.codecs
        return media_plan(invite, source, self.destinations, codecs)

    def _hold_for_warning(
        self,
        invite: Request,
        decision: Decision,
        layer: ServerTransactionLayer,
        plan: MediaPlan,
        transport: str,
    ) -> str | None:
        """Hold the INVITE (redirect mode) and ask the shell for its warning; or the
        reason not to (RFC 3312 preconditions without 100rel)."""
        media, destinations = plan
        assert decision.entry is not None
        requires = _tokens(invite, "Require")
        supports = _tokens(invite, "Supported")
        attributes: tuple[Attribute, ...] = ()
        wait = False
        precondition = "precondition" in requires
        if precondition:
            # RFC 3312 §11: preconditions need reliable provisional responses.
            if "100rel" not in requires and "100rel" not in supports:
                return "precondition_without_100rel"
            qos = offer_qos(media.offer, media.offer.media[media.media_index])
            if qos is not None:
                attributes = answer_attributes(qos)
                wait = not qos.met
        key = layer.key_of(invite)
        self.held[key] = Held(
            invite,
            transport,
            decision.contact,
            new_tag(),
            "100rel" in requires or precondition,
            early_media="p-early-media" in supports or "P-Early-Media" in invite.headers,
            precondition=precondition,
            waiting_qos=wait,
        )
        caller = caller_of(invite) if self.keep_caller else None
        self._effects.append(
            StartWarning(
                key,
                decision.entry,
                media,
                destinations,
                caller,
                sdp_attributes=attributes,
                wait=wait,
            )
        )
        return None

    def _mode_of(self, entry: Entry) -> tuple[str, str]:
        """(mode, answer_after) for a listing: its court's, else the deployment's."""
        if self.mode_for is not None:
            court = self.mode_for(entry)
            if court is not None:
                return court
        return self.mode, self.ringback.answer_after

    def _ringback_call(
        self,
        invite: Request,
        decision: Decision,
        layer: ServerTransactionLayer,
        plan: MediaPlan,
        source: Address,
        transport: str,
        now: float,
    ) -> None:
        """Bridge the call while the warning plays (ringback mode)."""
        media, destinations = plan
        assert decision.entry is not None
        self.b2bua.start(
            invite,
            layer.key_of(invite),
            decision.entry,
            media,
            destinations,
            decision.contact,
            source,
            transport,
            new_tag(),
            self._mode_of(decision.entry)[1],
            now,
        )

    # ------------------------------------------------------- the relay's reports
    def relay_opened(
        self, key: TxKey, caller_side: Address, callee_side: Address, now: float
    ) -> None:
        self.b2bua.relay_opened(key, caller_side, callee_side, now)

    def relay_failed(self, key: TxKey, reason: str, now: float) -> None:
        self.b2bua.relay_failed(key, reason, now)

    def _update(
        self, update: Request, layer: ServerTransactionLayer, transport: str, now: float
    ) -> None:
        """An UPDATE in the early dialog of a held INVITE (RFC 3311): the caller tells us its
        preconditions; once its resources are met, the warning starts (RFC 3312 §6)."""
        found = next(
            (
                (k, h)
                for k, h in self.held.items()
                if h.invite.call_id == update.call_id
                and h.to_tag == update.to_tag
                and h.ready
                and h.purpose != LAB_TONE
            ),
            None,
        )
        if found is None:
            self._respond(layer, update, 481, now, transport)
            return
        key, held = found
        offer = sdp_of(update.headers.get("Content-Type"), update.body)
        if offer is None:
            self._respond(layer, update, 200, now, transport, to_tag=held.to_tag)
            return
        try:
            parsed = parse_sdp(offer)
            audio = [m for m in parsed.media if m.media.lower() == "audio" and m.port != 0]
            qos = offer_qos(parsed, audio[0]) if audio else None
            answer = held.sdp
            if qos is not None:
                answer = replace_attributes(held.sdp, answer_attributes(qos))
        except SdpError as exc:
            self._respond(layer, update, 488, now, transport, reason=f"Bad SDP: {exc}"[:100])
            return
        held.sdp = answer
        response = make_response(
            update,
            200,
            to_tag=held.to_tag,
            body=answer,
            content_type="application/sdp",
            extra_headers=self._dialog_headers(held),
        )
        layer.send_response(update, response, now)
        self.metrics.responses.inc("200")
        self._flush(layer, transport)
        if held.waiting_qos and (qos is None or qos.met):
            held.waiting_qos = False
            self._qos_waits.pop(key, None)
            self._effects.append(ResumeWarning(key))

    # -------------------------------------------------------------------- lab
    def _lab_invite(
        self,
        invite: Request,
        layer: ServerTransactionLayer,
        source: Address,
        transport: str,
        now: float,
    ) -> str:
        """The call after the warning, with no switch to take it: to the softphone
        registered for the number, else answered by the lab callee. Never a loop."""
        call_id = invite.call_id
        self._loop_marked_calls = {c: t for c, t in self._loop_marked_calls.items() if t > now}
        if call_id in self._loop_marked_calls:
            self.metrics.decisions.inc("loop_refused")
            self._respond(layer, invite, 482, now, transport)
            return "loop_refused"
        self._loop_marked_calls[call_id] = now + 64 * self.t1
        number = self.decider.number_of(invite.uri)
        binding = None
        if self.registrar is not None and number is not None:
            binding = self.registrar.lookup(number, now)
        if binding is not None:
            self.metrics.decisions.inc("lab_registered")
            if source != self.local.get(transport) and self._bridge_to(
                invite, layer, binding.contact, binding.source, source, transport, now
            ):
                return "lab_registered"
            # our own callee leg (ringback mode) follows the 302 itself
            self._respond(
                layer, invite, 302, now, transport, extra=(("Contact", f"<{binding.contact}>"),)
            )
            return "lab_registered"
        if not self.lab_callee:
            self.metrics.decisions.inc(LOOP_MARKED)
            self._respond(layer, invite, 404, now, transport, reason="Not Registered")
            return "lab_not_registered"
        plan = media_plan(invite, source, self.destinations)
        if isinstance(plan, str):
            self.metrics.decisions.inc("lab_no_media")
            self._respond(layer, invite, 488, now, transport)
            return "lab_no_media"
        media, destinations = plan
        key = layer.key_of(invite)
        self.held[key] = Held(invite, transport, invite.uri, new_tag(), False, purpose=LAB_TONE)
        entry = Entry(0, 0, 0, 0)
        start = StartWarning(key, entry, media, destinations, None, LAB_TONE)
        if self.lab_answer_after_s > 0:  # ring first, like a phone
            self._provisional(self.held[key], key, 180, now)
            self._lab_ringing[key] = (now + self.lab_answer_after_s, start)
        else:
            self._effects.append(start)
        self.metrics.decisions.inc("lab_callee")
        return "lab_callee"

    def _bridge_to(
        self,
        invite: Request,
        layer: ServerTransactionLayer,
        contact: str,
        target: Address,
        source: Address,
        transport: str,
        now: float,
    ) -> bool:
        """Lab mode: put a softphone's call through to the softphone registered for the
        number, as a B2BUA (media relayed), rather than redirect it: a softphone reached
        by a 302 answers from behind its registration (pyVoIP sends its responses to its
        registrar) and would never be heard. False: no media to bridge (then the 302)."""
        plan = media_plan(invite, source, self.destinations)
        if isinstance(plan, str):
            return False
        media, destinations = plan
        self.b2bua.start(
            invite,
            layer.key_of(invite),
            Entry(0, 0, 0, 0),
            media,
            destinations,
            contact,
            source,
            transport,
            new_tag(),
            "answer",
            now,
            warn=False,
            target=target,
        )
        return True

    def _register(
        self,
        request: Request,
        layer: ServerTransactionLayer,
        source: Address,
        transport: str,
        now: float,
    ) -> None:
        assert self.registrar is not None
        answer = self.registrar.register(request, source, transport, now)
        self._respond(
            layer,
            request,
            answer.status,
            now,
            transport,
            extra=answer.headers,
            reason=answer.reason,
        )

    def _bye(self, bye: Request, layer: ServerTransactionLayer, transport: str, now: float) -> None:
        dialog = self.dialogs.get(bye.call_id)
        if dialog is None or bye.to_tag != dialog.local_tag:
            self._respond(layer, bye, 481, now, transport)
            return
        del self.dialogs[bye.call_id]
        self._respond(layer, bye, 200, now, transport)
        self._effects.append(StopWarning(dialog.key))

    def _answer_lab_call(self, held: Held, key: TxKey, sdp: bytes, now: float) -> bool:
        layer = self.layers[held.transport]
        if layer.invite_state(key) is not TxState.PROCEEDING:
            return False
        contact = self.contacts.get(held.transport)
        extra: list[tuple[str, str]] = [("Contact", contact)] if contact else []
        extra.extend(("Record-Route", v) for v in held.invite.headers.get_all("Record-Route"))
        response = make_response(
            held.invite,
            200,
            to_tag=held.to_tag,
            body=sdp,
            content_type="application/sdp",
            extra_headers=extra,
        )
        layer.send_response(held.invite, response, now)
        self.metrics.responses.inc("200")
        dest = layer.destination(key)
        self._flush(layer, held.transport)
        if dest is not None:
            self.dialogs[held.invite.call_id] = UasDialog(
                key,
                held.invite,
                held.transport,
                dest,
                held.to_tag,
                response.to_bytes(),
                None if held.transport != "udp" else now + self.t1,
                self.t1,
                now + 64 * self.t1,
            )
        return True

    def _end_lab_call(self, dialog: UasDialog, now: float) -> None:
        """The lab callee hangs up (its tone is over, or its 200 was never ACKed)."""
        self.dialogs.pop(dialog.call_id, None)
        local = self.local.get(dialog.transport)
        if local is None:
            return
        bye, dest = dialog.bye(local)
        self.client.send(bye, dest, reliable=dialog.transport != "udp", now=now)
        self._flush_client(dialog.transport)

    def _flush_client(self, transport: str = "udp") -> None:
        self._out.extend(self.client.take_outgoing_by_transport())

    def _redirect(
        self,
        layer: ServerTransactionLayer,
        invite: Request,
        contact: str,
        now: float,
        transport: str,
        *,
        played: bool | None = None,
        why: str = "",
        to_tag: str | None = None,
    ) -> None:
        extra = redirect_headers(contact, played=played, why=why)
        if to_tag is None:  # the same tag the lean path derives (worker-independent)
            to_tag = self._derived_tag(invite)
        self._respond(layer, invite, 302, now, transport, extra=extra, to_tag=to_tag)

    def _derived_tag(self, invite: Request) -> str | None:
        try:
            from_tag = invite.from_tag or ""
        except SipParseError:
            return None  # a random tag then
        return derived_tag(
            self.tag_key,
            invite.call_id.encode(ENCODING, ENCODING_ERRORS),
            from_tag.encode(ENCODING, ENCODING_ERRORS),
        )

    # --------------------------------------------------------------- shutdown
    def drain(self) -> None:
        """Shutting down: every new INVITE is redirected at once; warnings already
        playing go on until :meth:`end_warnings`."""
        self.draining = True

    def busy(self) -> bool:
        """Warnings playing or calls bridged: what a drain waits for."""
        return bool(self.held) or len(self.b2bua) > 0

    def end_warnings(self, now: float) -> None:
        """Stop every warning still playing and redirect its INVITE (the drain is over)."""
        for key in list(self.held):
            self._effects.append(StopWarning(key))
            self.warning_ended(key, "shutdown", now)
        self.b2bua.shutdown(now)

    # ------------------------------------------------ the shell's warning reports
    def warning_trying(self, key: TxKey, now: float) -> None:
        """The warning needs a moment (its recording is being fetched): 100 Trying."""
        held = self.held.get(key)
        if held is not None:
            self._provisional(held, key, 100, now)
        # a bridged call has had its 100 already

    def warning_ready(self, key: TxKey, sdp: bytes, now: float) -> bool:
        """The media port and the audio are ready: 183 with ``sdp``. False when the INVITE
        is gone (cancelled meanwhile): the shell then plays nothing."""
        if key in self.b2bua:
            return self.b2bua.warning_ready(key, now)
        held = self.held.get(key)
        if held is not None and held.purpose == LAB_TONE:
            held.ready = self._answer_lab_call(held, key, sdp, now)
            if not held.ready:
                del self.held[key]
            return held.ready
        if held is None or not self._provisional(held, key, 183, now, body=sdp):
            return False
        held.ready = True
        held.sdp = sdp
        if held.waiting_qos:
            self._qos_waits[key] = now + self.precondition_timeout_s
        self.metrics.decisions.inc(ANNOUNCED)
        return True

    def warning_ended(self, key: TxKey, outcome: str, now: float) -> None:
        """The warning is over (``completed``), or could not start or go on (any other
        outcome is the fail-open reason): redirect the held INVITE."""
        if key in self.b2bua:
            self.b2bua.warning_ended(key, outcome, now)
            return
        held = self.held.pop(key, None)
        self._qos_waits.pop(key, None)
        if held is None:
            return  # cancelled by us: already answered
        layer = self.layers[held.transport]
        if held.purpose == LAB_TONE:
            dialog = self.dialogs.get(held.invite.call_id)
            if dialog is not None:
                self._end_lab_call(dialog, now)
            elif not held.ready and layer.invite_state(key) is TxState.PROCEEDING:
                self._respond(layer, held.invite, 500, now, held.transport, to_tag=held.to_tag)
            return
        why = outcome
        if not held.ready:  # it never started: a decision like the ones made at once
            why = f"listed_{outcome}"
            self.metrics.decisions.inc(why)
        if layer.invite_state(key) is TxState.PROCEEDING:
            self._redirect(
                layer,
                held.invite,
                held.contact,
                now,
                held.transport,
                played=outcome == "completed",
                why=why,
                to_tag=held.to_tag,
            )

    def _dialog_headers(self, held: Held) -> list[tuple[str, str]]:
        """Contact and Record-Route of a response that opens (or is in) the early dialog."""
        extra: list[tuple[str, str]] = []
        contact = self.contacts.get(held.transport)
        if contact:
            extra.append(("Contact", contact))
        extra.extend(("Record-Route", v) for v in held.invite.headers.get_all("Record-Route"))
        return extra

    def _provisional(
        self, held: Held, key: TxKey, status: int, now: float, *, body: bytes = b""
    ) -> bool:
        """Send a 1xx on a held INVITE (reliably if it required 100rel). False if gone."""
        layer = self.layers[held.transport]
        if layer.invite_state(key) is not TxState.PROCEEDING:
            return False
        extra: list[tuple[str, str]] = []
        if status > 100:
            # A 1xx with a To tag opens an early dialog (RFC 3261 §12.1.1): it carries our
            # Contact and the request's Record-Route, so a PRACK follows the proxies' route.
            extra = self._dialog_headers(held)
            if held.precondition:
                extra.append(("Require", "precondition"))
            if held.early_media and body:  # RFC 5009: the early media is ours, send-only
                extra.append(("P-Early-Media", "sendonly"))
        response = make_response(
            held.invite,
            status,
            to_tag=held.to_tag,
            body=body,
            content_type="application/sdp" if body else None,
            extra_headers=extra,
        )
        if held.reliable and status > 100:
            layer.send_reliable_provisional(held.invite, response, now)
        else:
            layer.send_response(held.invite, response, now)
        self.metrics.responses.inc(str(status))
        self._flush(layer, held.transport)
        return True

    def _cancel(
        self, cancel: Request, layer: ServerTransactionLayer, transport: str, now: float
    ) -> None:
        key = layer.find_invite_for(cancel)
        if key is None:
            self._respond(layer, cancel, 481, now, transport)
            return
        if key in self.b2bua:
            tag = self.b2bua.caller_tag(key)
            self._respond(layer, cancel, 200, now, transport, to_tag=tag)
            self.b2bua.cancel(key, now)
            return
        held = self.held.pop(key, None)
        self._qos_waits.pop(key, None)
        # RFC 3261 §9.2: the 200 to a CANCEL carries the To tag of the INVITE's responses.
        self._respond(layer, cancel, 200, now, transport, to_tag=held.to_tag if held else None)
        if held is not None and layer.invite_state(key) is TxState.PROCEEDING:
            self._effects.append(StopWarning(key))
            if not held.ready:
                self.metrics.decisions.inc("listed_cancelled")
            self._respond(layer, held.invite, 487, now, transport, to_tag=held.to_tag)

    # ------------------------------------------------------------------ output
    def _respond(
        self,
        layer: ServerTransactionLayer,
        request: Request,
        status: int,
        now: float,
        transport: str,
        *,
        extra: tuple[tuple[str, str], ...] = (),
        reason: str | None = None,
        to_tag: str | None = None,
    ) -> None:
        response = make_response(request, status, reason, extra_headers=extra, to_tag=to_tag)
        layer.send_response(request, response, now)
        self.metrics.responses.inc(str(status))
        self._flush(layer, transport)

    def _flush(self, layer: ServerTransactionLayer, transport: str) -> None:
        for data, dest in layer.take_outgoing():
            self._out.append((data, dest, transport))

    def take_outgoing(self) -> list[tuple[bytes, Address, str]]:
        """Bytes to send: (data, destination, transport)."""
        out, self._out = self._out, []
        if self.b2bua.calls_or_ended():
            out.extend(self.b2bua.take_outgoing())
        return out

    def take_effects(self) -> list[Effect]:
        """Warnings to start or stop, in the order they were decided."""
        if self.b2bua.calls_or_ended():
            self._effects.extend(self.b2bua.take_effects())
        if not self._effects:
            return _NO_EFFECTS  # the common case: no list made per message
        effects, self._effects = self._effects, []
        return effects

    # ------------------------------------------------------------------- time
    def next_deadline(self) -> float | None:
        """When :meth:`poll` next has work (a retransmission or a timeout), or None."""
        deadlines = [
            d for d in (layer.next_deadline() for layer in self.layers.values()) if d is not None
        ]
        if self._qos_waits:
            deadlines.append(min(self._qos_waits.values()))
        if self.dialogs or len(self.client):
            deadlines.extend(d.retransmit_at or d.give_up_at for d in self.dialogs.values())
            client = self.client.next_deadline()
            if client is not None:
                deadlines.append(client)
        if self._lab_ringing:
            deadlines.extend(at for at, _ in self._lab_ringing.values())
        if self.b2bua.calls_or_ended():
            bridged = self.b2bua.next_deadline()
            if bridged is not None:
                deadlines.append(bridged)
        return min(deadlines) if deadlines else None

    def poll(self, now: float) -> None:
        """Fire every transaction timer due at ``now``."""
        if self.dialogs or len(self.client):
            self._poll_dialogs(now)
        for key in [k for k, at in self._qos_waits.items() if at <= now]:
            # The caller never said its resources were met: fail open, the call goes on.
            self._effects.append(StopWarning(key))
            self.warning_ended(key, "preconditions_unmet", now)
        if self.b2bua.calls_or_ended():
            self.b2bua.poll(now)
        for key, (at, start) in list(self._lab_ringing.items()):
            if at <= now:
                del self._lab_ringing[key]
                if key in self.held:  # not cancelled meanwhile
                    self._effects.append(start)
        for transport, layer in self.layers.items():
            layer.poll(now)
            self._flush(layer, transport)
            for event in layer.take_events():
                if isinstance(event, AckTimeout):
                    self.metrics.ack_timeouts.inc()
                elif event.key in self.held:  # PrackTimeout: the 183 was never PRACKed
                    self._effects.append(StopWarning(event.key))
                    self.warning_ended(event.key, "no_prack", now)

    def _poll_dialogs(self, now: float) -> None:
        for dialog in list(self.dialogs.values()):
            if dialog.retransmit_at is not None and dialog.retransmit_at <= now:
                self._out.append((dialog.ok, dialog.source, dialog.transport))
                dialog.interval = min(dialog.interval * 2, 4.0)
                dialog.retransmit_at = now + dialog.interval
                if now >= dialog.give_up_at:  # never ACKed: hang up
                    self.held.pop(dialog.key, None)
                    self._effects.append(StopWarning(dialog.key))
                    self._end_lab_call(dialog, now)
        self.client.poll(now)
        for event in self.client.take_events():
            # ours: a bridged call's request; else a BYE nobody answered (the call is
            # over for us anyway)
            self.b2bua.client_timeout(event, now)
        self._flush_client()

    def transactions(self) -> int:
        return sum(len(layer) for layer in self.layers.values())


def _tokens(request: Request, name: str) -> set[str]:
    """The lower-case option tags of every ``name`` header (Require, Supported)."""
    return {t.strip().lower() for v in request.headers.get_all(name) for t in split_list(v)}


def _method_label(method: str) -> str:
    """A method as a metric label: the known ones by name, invented ones as "other"."""
    return method if method in KNOWN_METHODS else "other"
