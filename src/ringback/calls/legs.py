"""One leg of a bridged call as a dialog (RFC 3261 §12), sans-I/O.

A B2BUA is a UAS on the caller's leg and a UAC on the callee's: each leg has its own
Call-ID, tags, CSeq space, remote target and route set. :class:`Leg` holds them and builds
the requests ``ringback`` sends inside that dialog (BYE, re-INVITE, UPDATE, INFO, ACK of a
2xx); the B2BUA pairs two of them.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from ringback.sip.client import new_branch
from ringback.sip.errors import SipParseError
from ringback.sip.headers import Headers
from ringback.sip.model import Request, Response
from ringback.sip.uri import SipUri, parse_name_addr, parse_uri

Address = tuple[str, int]


def address_of(name_addr_or_uri: str, fallback: Address) -> Address:
    """The IP-literal host and port of a URI (``<...>`` allowed); ``fallback`` when the
    host is a name (no DNS here: the next hop of a dialog is an IP in every deployment
    this serves) or the URI cannot be read."""
    value = name_addr_or_uri.strip()
    try:
        uri = parse_uri(parse_name_addr(value).uri if "<" in value else value)
    except SipParseError:
        return fallback
    if not isinstance(uri, SipUri):
        return fallback
    host = uri.host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return fallback
    default = 5061 if uri.scheme == "sips" else 5060
    return (host, uri.port or default)


@dataclass(slots=True)
class Leg:
    """Our side of one dialog. ``local``/``remote`` are the From/To values of the requests
    we send in it (each with its tag, once known)."""

    call_id: str
    local: str  # our From value, with our tag
    remote: str  # the peer's name-addr, with its tag once known
    remote_target: str  # the peer's Contact URI
    routes: list[str]  # the route set, in the order our requests list it
    dest: Address  # where requests in this dialog are sent
    transport: str  # "udp" | "tcp"
    local_cseq: int = 1
    remote_cseq: int = 0
    # The origin of the SDP we send on this leg: one session id, a version that rises.
    sdp_session: int = 0
    sdp_version: int = 0
    pending_ok: bytes | None = None  # our 2xx to an INVITE, resent until its ACK
    pending_ok_cseq: int = 0
    ok_dest: Address | None = None
    ok_resend_at: float | None = None
    ok_interval: float = 0.5
    ok_give_up_at: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def remote_tag(self) -> str | None:
        try:
            return parse_name_addr(self.remote).tag
        except SipParseError:
            return None

    def request(
        self,
        method: str,
        via_host: Address,
        contact: str | None,
        *,
        cseq: int | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        extra: Iterable[tuple[str, str]] = (),
    ) -> Request:
        """A request in this dialog (§12.2.1.1): loose routing through the route set.

        ``cseq`` is given for an ACK (it repeats its INVITE's); otherwise the next one."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        headers = Headers()
        host = f"[{via_host[0]}]" if ":" in via_host[0] else via_host[0]
        headers.add(
            "Via",
            f"SIP/2.0/{self.transport.upper()} {host}:{via_host[1]};branch={new_branch()};rport",
        )
        headers.add("Max-Forwards", "70")
        headers.add("From", self.local)
        headers.add("To", self.remote)
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        for route in self.routes:
            headers.add("Route", route)
        if contact is not None and method in ("INVITE", "UPDATE"):
            headers.add("Contact", contact)
        for name, value in extra:
            headers.add(name, value)
        if body:
            headers.add("Content-Type", content_type or "application/sdp")
        return Request(method, self.remote_target, headers, body)

    def next_sdp_version(self) -> int:
        self.sdp_version += 1
        return self.sdp_version


def caller_leg(invite: Request, local_tag: str, source: Address, transport: str) -> Leg:
    """The caller's dialog as its INVITE set it up (§12.1.1): we are the UAS."""
    routes = invite.headers.get_all("Record-Route")  # a UAS keeps their order
    target = invite.headers.get("Contact") or ""
    try:
        remote_target = parse_name_addr(target).uri
    except SipParseError:
        remote_target = invite.uri
    next_hop = routes[0] if routes else remote_target
    return Leg(
        call_id=invite.call_id,
        local=f"{invite.headers.get('To') or ''};tag={local_tag}",
        remote=invite.headers.get("From") or "",
        remote_target=remote_target,
        routes=routes,
        dest=address_of(next_hop, source),
        transport=transport,
        local_cseq=0,
        remote_cseq=invite.cseq[0],
    )


def confirm_callee_leg(leg: Leg, response: Response) -> None:
    """Complete the callee's dialog from its 2xx (§12.1.2): its tag, target, route set."""
    to = response.headers.get("To")
    if to:
        leg.remote = to
    contact = response.headers.get("Contact")
    if contact:
        with contextlib.suppress(SipParseError):
            leg.remote_target = parse_name_addr(contact).uri
    leg.routes = list(reversed(response.headers.get_all("Record-Route")))  # a UAC reverses
    next_hop = leg.routes[0] if leg.routes else leg.remote_target
    leg.dest = address_of(next_hop, leg.dest)
