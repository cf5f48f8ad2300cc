"""The call policy, sans-I/O: SIP bytes and times in, SIP bytes and timer deadlines out.

INVITE → callee from the Request-URI → E.164 → in-memory index → 302 to the loop-marked
Request-URI (for a listed number, after the warning: see `announcer`). Everything that can
go wrong on the way ends in a 302 as well (fail open), counted by reason. Nothing here
touches a socket or a clock; the asyncio shell in `net/` feeds it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ringback.metrics import Registry
from ringback.registry.listing_index import Entry, ListingIndex
from ringback.registry.numbers import NumberError, NumberingPlan, normalize
from ringback.sip.message import (
    Limits,
    Request,
    Response,
    SipParseError,
    SipUri,
    TelUri,
    error_response,
    make_response,
    new_tag,
    parse_message,
    parse_uri,
)
from ringback.sip.transaction import AckTimeout, ServerTransactionLayer, TxKey, TxState

Address = tuple[str, int]

ALLOW = "INVITE, ACK, CANCEL, OPTIONS, BYE, PRACK"
SUPPORTED = "100rel"
ACCEPT = "application/sdp"
WARNING_HEADER = "X-Ringback-Warning"

# Decision outcomes (label values of ringback_sip_decisions_total).
NOT_LISTED = "not_listed"
LOOP_MARKED = "loop_marked"
INDEX_NOT_READY = "index_not_ready"
BAD_NUMBER = "bad_number"
ANNOUNCED = "announced"
LISTED_UNANNOUNCED = "listed_unannounced"
INTERNAL_ERROR = "internal_error"

_PLAIN_USER = frozenset("+0123456789-.()")
_TOP_VIA = re.compile(rb"\r?\n(?:Via|v)[ \t]*:([^\r\n]*)", re.IGNORECASE).search


class Announcer(Protocol):
    """Plays the warning for a listed number. It answers the held INVITE with 183 through
    `controller.provisional`, and ends it with `controller.finish_invite`."""

    def start(
        self,
        controller: CallController,
        invite: Request,
        key: TxKey,
        entry: Entry,
        source: Address,
        now: float,
    ) -> str | None:
        """Begin; return None if started, else the fail-open reason (no_sdp, no_codec...)."""

    def cancel(self, key: TxKey) -> None:
        """Stop the warning of this INVITE at once (CANCEL, or no PRACK)."""


@dataclass(slots=True)
class Pending:
    """An INVITE held open while its warning plays."""

    invite: Request
    transport: str
    contact: str
    to_tag: str
    reliable: bool  # the INVITE said `Require: 100rel`: the 183 goes reliably (RFC 3262)


class SipMetrics:
    def __init__(self, registry: Registry) -> None:
        self.requests = registry.counter(
            "ringback_sip_requests_total", "SIP requests received, by method", ("method",)
        )
        self.responses = registry.counter(
            "ringback_sip_responses_total",
            "SIP responses sent (first send), by status code",
            ("code",),
        )
        self.decisions = registry.counter(
            "ringback_sip_decisions_total", "INVITE decisions, by outcome", ("outcome",)
        )
        self.parse_errors = registry.counter(
            "ringback_sip_parse_errors_total",
            "Malformed SIP messages, by whether they could be answered",
            ("answered",),
        )
        self.untrusted = registry.counter(
            "ringback_sip_untrusted_dropped_total",
            "Requests from sources outside sip.trusted_sources, dropped silently",
        )
        self.decision_latency = registry.histogram(
            "ringback_sip_decision_seconds",
            "Time from an INVITE's arrival to its decision being sent",
            (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
        )
        self.ack_timeouts = registry.counter(
            "ringback_sip_ack_timeouts_total", "Final responses never ACKed (Timer H)"
        )


class CallController:
    def __init__(
        self,
        index: ListingIndex,
        plan: NumberingPlan,
        metrics: SipMetrics,
        *,
        index_ready: Callable[[], bool],
        loop_marker: str = "rbk",
        t1: float = 0.5,
        t2: float = 4.0,
        t4: float = 5.0,
        limits: Limits | None = None,
        announcer: Announcer | None = None,
    ) -> None:
        self.index = index
        self.plan = plan
        self.metrics = metrics
        self.index_ready = index_ready
        self.marker = loop_marker.lower()
        self.limits = limits or Limits()
        self.announcer = announcer
        # One transaction layer per transport: a response goes back the way its request came.
        self.layers = {
            "udp": ServerTransactionLayer(t1, t2, t4),
            "tcp": ServerTransactionLayer(t1, t2, t4),
        }
        self.pending: dict[TxKey, Pending] = {}
        # `now` is the shell's monotonic clock (timers); listings carry wall-clock times.
        # The shell keeps this offset current (wall = now + epoch_offset).
        self.epoch_offset = 0.0
        # Our Contact per transport for early dialogs; the shell fills it in once bound.
        self.contacts: dict[str, str] = {}
        self._out: list[tuple[bytes, Address, str]] = []

    # ------------------------------------------------------------------ input
    def receive(self, data: bytes, source: Address, transport: str, now: float) -> str | None:
        """Handle one datagram or stream frame. Returns the INVITE decision outcome, if any."""
        if data.startswith(b"ACK ") and self._absorbed_ack(data, transport, now):
            return None
        try:
            message = parse_message(data, self.limits)
        except SipParseError as exc:
            reply = error_response(exc)
            self.metrics.parse_errors.inc("yes" if reply is not None else "no")
            if reply is not None and exc.method not in (None, "ACK"):
                self._out.append((reply.to_bytes(), source, transport))
            return None
        if isinstance(message, Response):
            return None  # we send no requests, so no response is ours: ignore
        method = message.method
        self.metrics.requests.inc(method)
        layer = self.layers[transport]
        try:
            request = layer.receive_request(message, source, transport != "udp", now)
        except SipParseError:  # a header parsed lazily (e.g. the Via) was bad
            self.metrics.parse_errors.inc("no")
            return None
        if request is None:
            self._flush(layer, transport)
            return None  # retransmission or ACK: absorbed by the transaction layer
        try:
            if method == "INVITE":
                return self._invite(request, layer, source, transport, now)
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
                self._prack(request, layer, transport, now)
            elif method == "BYE":
                self._respond(layer, request, 481, now, transport)  # we hold no dialogs
            else:
                self._respond(layer, request, 405, now, transport, extra=(("Allow", ALLOW),))
        except SipParseError as exc:
            self.metrics.parse_errors.inc("yes")
            self._respond(layer, request, exc.status, now, transport, reason=exc.reason)
        return None

    def _absorbed_ack(self, data: bytes, transport: str, now: float) -> bool:
        """Every redirected call ends with an ACK; absorbing it from its top Via alone
        halves its cost. Anything unusual goes through the full parser instead."""
        match = _TOP_VIA(data)
        if match is None:
            return False
        value = match.group(1).decode("utf-8", "replace").strip()
        if "," in value or b"\n " in data or b"\n\t" in data:
            return False  # several Vias in one line, or folded headers: take the long way
        if self.layers[transport].absorb_ack(value, transport != "udp", now):
            self.metrics.requests.inc("ACK")
            return True
        return False

    # ----------------------------------------------------------------- INVITE
    def _invite(
        self,
        invite: Request,
        layer: ServerTransactionLayer,
        source: Address,
        transport: str,
        now: float,
    ) -> str:
        try:
            max_forwards = invite.max_forwards
            if max_forwards is not None and max_forwards <= 0:
                self._respond(layer, invite, 483, now, transport)
                return "too_many_hops"
            outcome, contact, entry = self._decide(invite.uri, now)
        except SipParseError as exc:
            self.metrics.parse_errors.inc("yes")
            self._respond(layer, invite, exc.status, now, transport, reason=exc.reason)
            return "bad_request"
        except Exception:  # fail open: whatever broke, the call goes on
            outcome, contact, entry = INTERNAL_ERROR, _mark_fallback(invite.uri, self.marker), None
        if entry is not None:
            if self.announcer is not None:
                key = layer.key_of(invite)
                requires = invite.headers.get_all("Require")
                self.pending[key] = Pending(
                    invite,
                    transport,
                    contact,
                    new_tag(),
                    any(v.lower() == "100rel" for v in requires),
                )
                reason = self.announcer.start(self, invite, key, entry, source, now)
                if reason is None:
                    self.metrics.decisions.inc(ANNOUNCED)
                    return ANNOUNCED
                del self.pending[key]
                outcome = f"listed_{reason}"
            else:
                outcome = LISTED_UNANNOUNCED
            self.metrics.decisions.inc(outcome)
            self._redirect(layer, invite, contact, now, transport, played=False, why=outcome)
            return outcome
        self.metrics.decisions.inc(outcome)
        self._redirect(layer, invite, contact, now, transport)
        return outcome

    def _decide(self, ruri: str, now: float) -> tuple[str, str, Entry | None]:
        """(outcome, Contact URI, listing entry or None) for a Request-URI."""
        fast = _fast_sip_uri(ruri)
        user: str | None
        if fast is not None:
            user, params = fast
            contact = ruri + ";" + self.marker
            if self.marker in params:
                return LOOP_MARKED, ruri, None
        else:
            uri = parse_uri(ruri)
            if uri.has_param(self.marker):
                return LOOP_MARKED, ruri, None
            contact = str(uri.with_param(self.marker))
            user = _user_of(uri)
        if user is None:
            return BAD_NUMBER, contact, None
        if not self.index_ready():
            return INDEX_NOT_READY, contact, None
        number = _fast_e164(user)
        if number is None:
            try:
                number = normalize(user, self.plan)
            except NumberError:
                return BAD_NUMBER, contact, None
        entry = self.index.lookup(number, now + self.epoch_offset)
        if entry is None:
            return NOT_LISTED, contact, None
        return "listed", contact, entry

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
        extra: tuple[tuple[str, str], ...] = (("Contact", f"<{contact}>"),)
        if played is True:
            extra += ((WARNING_HEADER, "played"),)
        elif played is False:
            extra += ((WARNING_HEADER, f"skipped; reason={why}"),)
        self._respond(layer, invite, 302, now, transport, extra=extra, to_tag=to_tag)

    # ---------------------------------------------------- held INVITEs (warnings)
    def provisional(
        self,
        key: TxKey,
        status: int,
        now: float,
        *,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> bool:
        """Send a 1xx on a held INVITE (reliably if it required 100rel). False if gone."""
        held = self.pending.get(key)
        if held is None:
            return False
        layer = self.layers[held.transport]
        if layer.invite_state(key) is not TxState.PROCEEDING:
            return False
        extra: list[tuple[str, str]] = []
        if status > 100:
            # A 1xx with a To tag opens an early dialog (RFC 3261 §12.1.1): it carries our
            # Contact and the request's Record-Route, so a PRACK follows the proxies' route.
            contact = self.contacts.get(held.transport)
            if contact:
                extra.append(("Contact", contact))
            extra.extend(("Record-Route", v) for v in held.invite.headers.get_all("Record-Route"))
        response = make_response(
            held.invite,
            status,
            to_tag=held.to_tag,
            body=body,
            content_type=content_type,
            extra_headers=extra,
        )
        if held.reliable and status > 100:
            layer.send_reliable_provisional(held.invite, response, now)
        else:
            layer.send_response(held.invite, response, now)
        self.metrics.responses.inc(str(status))
        self._flush(layer, held.transport)
        return True

    def finish_invite(self, key: TxKey, now: float, *, played: bool, why: str = "") -> None:
        """The warning is over (or could not play): redirect the held INVITE."""
        held = self.pending.pop(key, None)
        if held is None:
            return
        layer = self.layers[held.transport]
        if layer.invite_state(key) is TxState.PROCEEDING:
            self._redirect(
                layer,
                held.invite,
                held.contact,
                now,
                held.transport,
                played=played,
                why=why,
                to_tag=held.to_tag,
            )

    def _cancel(
        self, cancel: Request, layer: ServerTransactionLayer, transport: str, now: float
    ) -> None:
        key = layer.find_invite_for(cancel)
        if key is None:
            self._respond(layer, cancel, 481, now, transport)
            return
        self._respond(layer, cancel, 200, now, transport)
        held = self.pending.pop(key, None)
        if held is not None and layer.invite_state(key) is TxState.PROCEEDING:
            if self.announcer is not None:
                self.announcer.cancel(key)
            self._respond(layer, held.invite, 487, now, transport, to_tag=held.to_tag)

    def _prack(
        self, prack: Request, layer: ServerTransactionLayer, transport: str, now: float
    ) -> None:
        matched = layer.prack_match(prack)
        self._respond(layer, prack, 200 if matched is not None else 481, now, transport)

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
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------- time
    def next_deadline(self) -> float | None:
        deadlines = [
            d for d in (layer.next_deadline() for layer in self.layers.values()) if d is not None
        ]
        return min(deadlines) if deadlines else None

    def poll(self, now: float) -> None:
        for transport, layer in self.layers.items():
            layer.poll(now)
            self._flush(layer, transport)
            for event in layer.take_events():
                if isinstance(event, AckTimeout):
                    self.metrics.ack_timeouts.inc()
                else:  # PrackTimeout: the caller never PRACKed the reliable 183
                    if event.key in self.pending and self.announcer is not None:
                        self.announcer.cancel(event.key)
                    self.finish_invite(event.key, now, played=False, why="no_prack")

    def transactions(self) -> int:
        return sum(len(layer) for layer in self.layers.values())


# ----------------------------------------------------------------- helpers
def _fast_sip_uri(ruri: str) -> tuple[str, set[str]] | None:
    """The common case `sip:+8613800138000@host[:port][;params]` without parsing the URI
    fully: (user, lower-case param names). None when anything is unusual."""
    if not ruri.startswith("sip:"):
        return None
    at = ruri.find("@", 4)
    if at < 0 or "?" in ruri or "%" in ruri or '"' in ruri:
        return None
    user = ruri[4:at]
    if not user or not _PLAIN_USER.issuperset(user):
        return None
    rest = ruri[at + 1 :]
    if not rest or rest[0] == ";":
        return None
    semi = rest.find(";")
    if semi < 0:
        return user, set()
    names = {p.split("=", 1)[0].strip().lower() for p in rest[semi + 1 :].split(";")}
    return user, names


def _fast_e164(user: str) -> int | None:
    if user.startswith("+") and 9 <= len(user) <= 16 and user[1:].isdigit() and user[1] != "0":
        return int(user[1:])
    return None


def _user_of(uri: SipUri | TelUri) -> str | None:
    if isinstance(uri, TelUri):
        return str(uri)
    return uri.user_unescaped or None


def _mark_fallback(ruri: str, marker: str) -> str:
    """Best-effort loop marking when the URI could not be handled: append the parameter."""
    head, sep, tail = ruri.partition("?")
    return f"{head};{marker}{sep}{tail}"
