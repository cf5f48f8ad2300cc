"""A SIP user agent client for test calls, sans-I/O: the protocol core of ``ringback dial``.

It places one call the way a carrier's test phone would and remembers everything it was
fed, so a verdict (:mod:`ringback.calls.verdict`) can be drawn from it afterwards:

- an INVITE with an SDP offer of one codec — G.711, G.722, Opus, AMR or AMR-WB (the AMRs
  bandwidth-efficient, RFC 4867's default) — (``Supported: 100rel``, and
  ``Require: 100rel`` when asked), through :class:`~ringback.sip.client.ClientTransactionLayer`,
  which retransmits it and ACKs every non-2xx final itself;
- a PRACK for each reliable provisional response (RFC 3262), in the early dialog;
- RTP received before the final response is early media, recorded per INVITE; RTP after a
  2xx is the answered call's;
- a 3xx is followed (unless told not to) with a new INVITE to its best Contact: the same
  Call-ID, From tag and To, a higher CSeq and a new branch (RFC 3261 §8.1.3.4);
- a 2xx is ACKed (again for each retransmission), listened to for ``listen_s`` and ended
  with BYE; a BYE from the far end is answered 200 and ends the call;
- no final response within ``timeout_s``: CANCEL (after a provisional), then give up.

Like the rest of the call core it never touches a socket or a clock: the shell feeds
:meth:`Uac.receive` (SIP), :meth:`Uac.receive_rtp` and :meth:`Uac.poll`, sends
:meth:`Uac.take_outgoing`, opens the connections :meth:`Uac.take_events` asks for (TCP)
and reports them with :meth:`Uac.connected`, and wakes at :meth:`Uac.next_deadline`.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass, field
from typing import Literal

from ringback import __version__
from ringback.calls.legs import Leg, address_of
from ringback.calls.redirect import WARNING_HEADER
from ringback.media.offer_answer import fmtp_params
from ringback.media.recorder import Decoder, RtpRecorder
from ringback.sip.body import sdp_of
from ringback.sip.client import ClientTimeout, ClientTransactionLayer, new_branch
from ringback.sip.errors import SipParseError
from ringback.sip.headers import Headers
from ringback.sip.message import parse_message
from ringback.sip.model import Request, Response
from ringback.sip.responses import make_response, new_tag
from ringback.sip.sdp import (
    Attribute,
    Connection,
    MediaDescription,
    Origin,
    SdpError,
    SessionDescription,
    parse_sdp,
)
from ringback.sip.uri import parse_name_addr

__all__ = ["Attempt", "Connect", "Uac", "UacOptions", "offer_sdp"]

Address = tuple[str, int]
Codec = Literal["PCMU", "PCMA", "G722", "opus", "AMR", "AMR-WB"]
# what each codec is offered as: (payload type, rtpmap, fmtp)
_OFFERS: dict[str, tuple[int, str, str | None]] = {
    "PCMU": (0, "PCMU/8000", None),
    "PCMA": (8, "PCMA/8000", None),
    "G722": (9, "G722/8000", None),
    "opus": (111, "opus/48000/2", "useinbandfec=0"),
    "AMR": (97, "AMR/8000", None),
    "AMR-WB": (98, "AMR-WB/16000", None),
}
ALLOW = "INVITE, ACK, CANCEL, BYE, PRACK, OPTIONS"
LINGER_S = 4.0  # how long a BYE or CANCEL may take to be answered before we leave anyway


@dataclass(frozen=True, slots=True)
class UacOptions:
    target: str  # the first INVITE's Request-URI (and the To of every INVITE)
    proxy: Address  # the first INVITE's next hop, and a redirect's with no IP-literal host
    local: Address  # our SIP address: the UDP socket's (TCP: see Uac.connected)
    rtp: Address  # where we receive RTP (the offer's c= and m= lines)
    transport: Literal["udp", "tcp"] = "udp"
    codec: Codec = "PCMU"
    # decodes what G.711 is not (G.722, Opus, AMR): the tool passes ffmpeg's, off the loop
    decoder: Decoder | None = None
    require_100rel: bool = False
    follow: bool = True
    listen_s: float = 5.0
    timeout_s: float = 60.0
    max_redirects: int = 5
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a stream connection to ``dest``; report its local address with
    :meth:`Uac.connected` (or :meth:`Uac.connection_failed`)."""

    dest: Address


@dataclass(slots=True)
class Attempt:
    """One INVITE and what came back to it."""

    uri: str
    dest: Address
    cseq: int
    sent_at: float
    branch: str = ""
    request: Request | None = None
    statuses: list[int] = field(default_factory=list)  # every response, in order
    first_response_at: float | None = None  # the first 18x or final
    status: int | None = None  # the final response
    reason: str = ""
    contacts: list[str] = field(default_factory=list)  # of a 3xx, best first
    warning_header: str | None = None
    pracks: int = 0
    rseq: int | None = None  # the last RSeq PRACKed
    early_codecs: dict[int, str] = field(default_factory=dict)  # from the 18x answer
    early: RtpRecorder = field(default_factory=RtpRecorder)  # given the decoder in Uac


@dataclass(slots=True)
class _Dialog:
    """The confirmed dialog of a 2xx (RFC 3261 §12.1.2): what ACK and BYE need."""

    attempt: Attempt
    leg: Leg  # our side of it: builds ACK and BYE
    ack: bytes
    codecs: dict[int, str]
    remote_tag: str | None


def offer_sdp(rtp: Address, codec: Codec, session_id: int) -> bytes:
    """An audio offer of one codec at 20 ms, send and receive."""
    family = "IP6" if ":" in rtp[0] else "IP4"
    pt, rtpmap, fmtp = _OFFERS[codec]
    attributes = [Attribute("rtpmap", f"{pt} {rtpmap}")]
    if fmtp:
        attributes.append(Attribute("fmtp", f"{pt} {fmtp}"))
    return SessionDescription(
        Origin("ringback-dial", str(session_id), "1", "IN", family, rtp[0]),
        "ringback dial",
        connection=Connection("IN", family, rtp[0]),
        media=[
            MediaDescription(
                "audio",
                rtp[1],
                "RTP/AVP",
                [str(pt)],
                attributes=[*attributes, Attribute("ptime", "20"), Attribute("sendrecv")],
            )
        ],
    ).to_bytes()


def _codecs_of(sdp: bytes | None) -> dict[int, str]:
    """Payload type -> codec (``PCMU``, ``G722``, ``opus``, ``AMR-WB/be``: AMR with its
    packetisation), from an answer's first audio m-line."""
    if sdp is None:
        return {}
    try:
        answer = parse_sdp(sdp)
        media = next((m for m in answer.media if m.media == "audio" and m.port), None)
        if media is None:
            return {}
        out: dict[int, str] = {}
        for pt, rtpmap in media.rtpmaps().items():
            name = rtpmap.encoding.upper()
            if name in ("PCMU", "PCMA", "G722") and rtpmap.clock_rate == 8000:
                out[pt] = name
            elif name == "OPUS" and rtpmap.clock_rate == 48000:
                out[pt] = "opus"
            elif (name, rtpmap.clock_rate) in (("AMR", 8000), ("AMR-WB", 16000)):
                aligned = fmtp_params(media.fmtp(pt)).get("octet-align") == "1"
                out[pt] = f"{name}/{'oa' if aligned else 'be'}"
        return out
    except SdpError:
        return {}


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Uac:
    def __init__(self, options: UacOptions, *, call_id: str | None = None) -> None:
        self.options = options
        self.reliable = options.transport == "tcp"
        self.client = ClientTransactionLayer(options.t1, options.t2, options.t4)
        self.call_id = call_id or f"{secrets.token_hex(12)}@ringback-dial"
        self.from_tag = new_tag()
        self.to = f"<{options.target}>"
        self.offer = offer_sdp(options.rtp, options.codec, secrets.randbelow(2**31))
        self.cseq = 0
        self.attempts: list[Attempt] = []
        self.dialog: _Dialog | None = None
        self.answered = RtpRecorder(options.decoder)
        self.state: Literal["idle", "calling", "answered", "ending", "done"] = "idle"
        self.no_final = False
        self.error: tuple[int | None, str] | None = None
        self.ended_by: str | None = None  # who ended an answered call: "us" or "far end"
        self.ignored_messages = 0
        self._locals: dict[Address, Address] = {}  # stream connections: dest -> our address
        self._waiting: tuple[str, Address] | None = None  # an INVITE waiting for a connection
        self._timeout_at: float | None = None
        self._listen_until: float | None = None
        self._linger_until: float | None = None
        self._out: list[tuple[bytes, Address]] = []
        self._events: list[Connect] = []

    # ------------------------------------------------------------ shell inputs
    @property
    def done(self) -> bool:
        return self.state == "done"

    def start(self, now: float) -> None:
        """Place the call: the first INVITE (or, over TCP, the connection it needs)."""
        self.state = "calling"
        self._invite(self.options.target, self.options.proxy, now)

    def connected(self, dest: Address, local: Address, now: float) -> None:
        """A stream connection to ``dest`` is open; ``local`` is our end of it."""
        self._locals[dest] = local
        if self._waiting is not None and self._waiting[1] == dest:
            uri, _ = self._waiting
            self._waiting = None
            self._invite(uri, dest, now)

    def connection_failed(self, dest: Address, reason: str, now: float) -> None:
        """The connection to ``dest`` could not be opened, or was lost."""
        self._locals.pop(dest, None)
        if self.state in ("calling", "idle") and (
            self._waiting is not None or (self.attempts and self.attempts[-1].status is None)
        ):
            self._waiting = None
            self.error = (None, f"connection to {_host(dest[0])}:{dest[1]} failed: {reason}")
            self.no_final = True  # no final response came, nor will one
            self._finish()
        elif self.state in ("answered", "ending"):
            self.ended_by = self.ended_by or "connection lost"
            self._finish()

    def unreachable(self, reason: str, now: float) -> None:
        """The network says nothing listens where the INVITE went (ICMP, over UDP): fatal
        only while that INVITE has had no response at all."""
        if self.state == "calling" and self.attempts and not self.attempts[-1].statuses:
            self.error = (None, f"{self.attempts[-1].uri}: {reason}")
            self.no_final = True
            self._finish()

    def receive(self, data: bytes, source: Address, now: float) -> None:
        """One datagram or stream frame on the SIP socket."""
        try:
            message = parse_message(data)
        except SipParseError:
            self.ignored_messages += 1
            return
        if isinstance(message, Response):
            self._response(message, now)
        else:
            self._request(message, source, now)

    def receive_rtp(self, data: bytes, now: float) -> None:
        """One datagram on the RTP socket."""
        ssrc = RtpRecorder.ssrc_of(data)
        if ssrc is None or not self.attempts:
            return
        for attempt in self.attempts[:-1]:  # the tail of an earlier INVITE's early media
            if ssrc in attempt.early:
                attempt.early.add(data, now, attempt.early_codecs)
                return
        current = self.attempts[-1]
        if self.dialog is not None:
            self.answered.add(data, now, self.dialog.codecs)
        elif current.status is None or ssrc in current.early:
            current.early.add(data, now, current.early_codecs)

    def hang_up(self, now: float) -> None:
        """End the call now (interrupted): CANCEL while calling, BYE once answered."""
        if self.state == "calling":
            self.error = self.error or (None, "interrupted before a final response")
            self._cancel_or_finish(now)
        elif self.state == "answered":
            self._bye(now)
        elif self.state != "done":
            self._finish()

    # ------------------------------------------------------------------ time
    def next_deadline(self) -> float | None:
        if self.done:
            return None
        times = [
            t
            for t in (
                self.client.next_deadline(),
                self._timeout_at,
                self._listen_until,
                self._linger_until,
            )
            if t is not None
        ]
        return min(times) if times else None

    def poll(self, now: float) -> None:
        if self.done:
            return
        self.client.poll(now)
        self._flush()
        for event in self.client.take_events():
            self._client_timeout(event, now)
        if self._timeout_at is not None and now >= self._timeout_at and self.state == "calling":
            self._timeout_at = None
            self.no_final = True
            self.error = (None, f"no final response within {self.options.timeout_s:g} s")
            self._cancel_or_finish(now)
        if self._listen_until is not None and now >= self._listen_until:
            self._listen_until = None
            if self.state == "answered":
                self._bye(now)
        if self._linger_until is not None and now >= self._linger_until:
            self._finish()

    def take_outgoing(self) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[Connect]:
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------- requests
    def _local_for(self, dest: Address) -> Address | None:
        if not self.reliable:
            return self.options.local
        return self._locals.get(dest)

    def _via(self, dest: Address, branch: str) -> str:
        host, port = self._local_for(dest) or self.options.local
        return (
            f"SIP/2.0/{self.options.transport.upper()} {_host(host)}:{port};branch={branch};rport"
        )

    def _contact(self, dest: Address) -> str:
        local = self._local_for(dest) or self.options.local
        suffix = ";transport=tcp" if self.reliable else ""
        return f"<sip:dial@{_host(local[0])}:{local[1]}{suffix}>"

    def _from(self) -> str:
        host = _host(self.options.local[0])
        return f"<sip:dial@{host}>;tag={self.from_tag}"

    def _invite(self, uri: str, dest: Address, now: float) -> None:
        if self._local_for(dest) is None:  # TCP: connect first
            self._waiting = (uri, dest)
            self._events.append(Connect(dest))
            return
        self.cseq += 1
        branch = new_branch()
        headers = Headers()
        headers.add("Via", self._via(dest, branch))
        headers.add("Max-Forwards", "70")
        headers.add("From", self._from())
        headers.add("To", self.to)
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self.cseq} INVITE")
        headers.add("Contact", self._contact(dest))
        headers.add("Allow", ALLOW)
        headers.add("Supported", "100rel")
        if self.options.require_100rel:
            headers.add("Require", "100rel")
        headers.add("P-Early-Media", "supported")
        headers.add("User-Agent", f"ringback-dial/{__version__}")
        headers.add("Content-Type", "application/sdp")
        invite = Request("INVITE", uri, headers, self.offer)
        attempt = Attempt(uri, dest, self.cseq, now, branch, invite)
        attempt.early = RtpRecorder(self.options.decoder)
        self.attempts.append(attempt)
        self.client.send(invite, dest, reliable=self.reliable, now=now)
        self._timeout_at = now + self.options.timeout_s
        self._flush()

    def _leg(self, response: Response, attempt: Attempt) -> Leg:
        """Our side of the dialog (or early dialog) a response sets up (§12.1.2): the
        remote tag, target, route set and next hop."""
        routes = list(reversed(response.headers.get_all("Record-Route")))
        contact = response.headers.get_all("Contact")
        try:
            target = parse_name_addr(contact[0]).uri if contact else attempt.uri
        except SipParseError:
            target = attempt.uri
        dest = attempt.dest
        if not self.reliable:  # over TCP in-dialog requests share the INVITE's connection
            hop = routes[0] if routes else f"<{target}>"
            with contextlib.suppress(SipParseError):
                dest = address_of(parse_name_addr(hop).uri, attempt.dest)
        return Leg(
            call_id=self.call_id,
            local=self._from(),
            remote=response.headers.get("To") or self.to,
            remote_target=target,
            routes=routes,
            dest=dest,
            transport=self.options.transport,
        )

    def _via_host(self, dest: Address) -> Address:
        return self._local_for(dest) or self.options.local

    # ------------------------------------------------------------ responses
    def _response(self, response: Response, now: float) -> None:
        passed = self.client.receive_response(response, now)
        self._flush()
        if passed is None:
            return
        try:
            method = passed.cseq[1]
            branch = passed.top_via.branch
        except SipParseError:
            return
        if method == "INVITE":
            attempt = next((a for a in self.attempts if a.branch == branch), None)
            if attempt is not None:
                self._invite_response(attempt, passed, now)
        elif method == "BYE" and self.state == "ending":
            self._finish()

    def _invite_response(self, attempt: Attempt, response: Response, now: float) -> None:
        status = response.status
        if status >= 200 and attempt.status is not None:
            if status < 300 and self.dialog is not None:  # a 2xx retransmission: ACK again
                self._out.append((self.dialog.ack, self.dialog.leg.dest))
            return
        attempt.statuses.append(status)
        if status > 100 and attempt.first_response_at is None:
            attempt.first_response_at = now
        warning = response.headers.get(WARNING_HEADER)
        if warning is not None:
            attempt.warning_header = warning
        if status < 200:
            if status > 100:
                self._provisional(attempt, response, now)
            return
        attempt.status, attempt.reason = status, response.reason
        self._timeout_at = None
        if self.state != "calling":  # a final after we gave up (the 487 to our CANCEL)
            if status < 300:  # answered all the same: ACK it, then hang up at once
                self._answered(attempt, response, now)
                self._bye(now)
            else:
                self._finish()
            return
        if status < 300:
            self._answered(attempt, response, now)
        elif status < 400:
            self._redirected(attempt, response, now)
        else:
            self.error = self.error or (status, response.reason)
            self._finish()

    def _provisional(self, attempt: Attempt, response: Response, now: float) -> None:
        codecs = _codecs_of(sdp_of(response.headers.get("Content-Type"), response.body))
        if codecs:
            attempt.early_codecs = codecs
        requires = [v.lower() for v in response.headers.get_all("Require")]
        rseq_text = (response.headers.get("RSeq") or "").strip()
        if "100rel" not in requires or not rseq_text.isdigit():
            return
        rseq = int(rseq_text)
        if attempt.rseq is not None and rseq <= attempt.rseq:
            return  # a retransmission: its PRACK is on its way (Timer E resends it)
        attempt.rseq = rseq
        leg = self._leg(response, attempt)
        self.cseq += 1
        prack = leg.request(
            "PRACK",
            self._via_host(leg.dest),
            None,
            cseq=self.cseq,
            extra=(("RAck", f"{rseq} {attempt.cseq} INVITE"),),
        )
        attempt.pracks += 1
        self.client.send(prack, leg.dest, reliable=self.reliable, now=now)
        self._flush()

    def _answered(self, attempt: Attempt, response: Response, now: float) -> None:
        leg = self._leg(response, attempt)
        ack = leg.request("ACK", self._via_host(leg.dest), None, cseq=attempt.cseq)
        codecs = _codecs_of(sdp_of(response.headers.get("Content-Type"), response.body))
        try:
            remote_tag = response.to_tag
        except SipParseError:
            remote_tag = None
        self.dialog = _Dialog(attempt, leg, ack.to_bytes(), codecs, remote_tag)
        self._out.append((self.dialog.ack, leg.dest))
        self.state = "answered"
        self._listen_until = now + max(0.0, self.options.listen_s)

    def _redirected(self, attempt: Attempt, response: Response, now: float) -> None:
        contacts: list[tuple[float, int, str]] = []
        for i, value in enumerate(response.headers.get_all("Contact")):
            try:
                na = parse_name_addr(value)
                q = float(na.get_param("q") or 1.0)
            except (SipParseError, ValueError):
                continue
            contacts.append((-q, i, na.uri))
        attempt.contacts = [uri for _, _, uri in sorted(contacts)]
        if not self.options.follow or not attempt.contacts:
            self._finish()
            return
        tried = {a.uri for a in self.attempts}
        target = next((uri for uri in attempt.contacts if uri not in tried), None)
        if target is None:
            self.error = (None, "redirected to a URI already tried (a redirect loop)")
            self._finish()
        elif len(self.attempts) > self.options.max_redirects:
            self.error = (None, f"more than {self.options.max_redirects} redirects")
            self._finish()
        else:
            self._invite(target, address_of(target, self.options.proxy), now)

    # ----------------------------------------------------- ending the call
    def _bye(self, now: float) -> None:
        dialog = self.dialog
        assert dialog is not None
        self.cseq += 1
        bye = dialog.leg.request("BYE", self._via_host(dialog.leg.dest), None, cseq=self.cseq)
        self.client.send(bye, dialog.leg.dest, reliable=self.reliable, now=now)
        self._flush()
        self.state = "ending"
        self.ended_by = "us"
        self._listen_until = None
        self._linger_until = now + LINGER_S

    def _cancel_or_finish(self, now: float) -> None:
        attempt = self.attempts[-1] if self.attempts else None
        if attempt is None or attempt.request is None or not attempt.statuses:
            self._finish()  # nothing heard yet: a CANCEL could not be matched (§9.1)
            return
        invite = attempt.request
        headers = Headers()
        for name in ("Via", "Max-Forwards", "From", "To", "Call-ID"):
            value = invite.headers.get(name)
            if value is not None:
                headers.add(name, value)
        headers.add("CSeq", f"{attempt.cseq} CANCEL")
        cancel = Request("CANCEL", invite.uri, headers)
        self.client.send(cancel, attempt.dest, reliable=self.reliable, now=now)
        self._flush()
        self.state = "ending"
        self._linger_until = now + LINGER_S

    def _client_timeout(self, event: ClientTimeout, now: float) -> None:
        method = event.key[1]
        if method == "INVITE" and self.state == "calling":
            self.no_final = True
            self.error = self.error or (None, "no response (Timer B)")
            self._finish()
        elif method in ("BYE", "CANCEL") and self.state == "ending":
            self._finish()

    def _finish(self) -> None:
        self.state = "done"
        self._timeout_at = self._listen_until = self._linger_until = None

    # ----------------------------------------------------- the far end's requests
    def _request(self, request: Request, source: Address, now: float) -> None:
        method = request.method
        if method == "ACK":
            return
        dialog = self.dialog
        try:
            ours = (
                dialog is not None
                and request.call_id == self.call_id
                and request.to_tag == self.from_tag
                and request.from_tag == dialog.remote_tag
            )
        except SipParseError:
            ours = False
        if method == "BYE":
            status = 200 if ours else 481
        elif method == "OPTIONS":
            status = 200
        elif method in ("CANCEL", "PRACK", "UPDATE", "INVITE") and not ours:
            status = 481
        else:
            status = 501
        extra = (("Allow", ALLOW),) if status in (200, 501) and method != "BYE" else ()
        response = make_response(request, status, extra_headers=extra)
        self._out.append((response.to_bytes(), source))  # the shell's peer, TCP or UDP
        if method == "BYE" and ours and self.state in ("answered", "ending"):
            self.ended_by = "far end" if self.state == "answered" else self.ended_by
            self._finish()

    def _flush(self) -> None:
        self._out.extend(self.client.take_outgoing())
