"""A dialog ``ringback`` answered as the UAS (RFC 3261 §12, §13.3.1.4), sans-I/O: the lab
callee's call. The 2xx is retransmitted until its ACK; either side may end it with BYE."""

from __future__ import annotations

from dataclasses import dataclass

from ringback.calls.legs import address_of
from ringback.sip.client import new_branch
from ringback.sip.errors import SipParseError
from ringback.sip.headers import Headers
from ringback.sip.model import Request
from ringback.sip.transaction import TxKey
from ringback.sip.uri import parse_name_addr

Address = tuple[str, int]


@dataclass(slots=True)
class UasDialog:
    key: TxKey  # the INVITE's server transaction
    invite: Request
    transport: str
    source: Address
    local_tag: str
    ok: bytes  # the 200, retransmitted until the ACK (to `source`)
    retransmit_at: float | None
    interval: float
    give_up_at: float  # 64*T1 with no ACK: end the call (RFC 3261 §13.3.1.4)
    local_cseq: int = 1

    @property
    def call_id(self) -> str:
        return self.invite.call_id

    def acked(self) -> None:
        self.retransmit_at = None

    def bye(self, local: Address, transport: str) -> tuple[Request, Address]:
        """Our BYE (§15.1.1): to the remote target through the route set."""
        invite = self.invite
        target = invite.headers.get("Contact") or ""
        try:
            remote_target = parse_name_addr(target).uri
        except SipParseError:
            remote_target = invite.uri
        routes = invite.headers.get_all("Record-Route")
        headers = Headers()
        host = f"[{local[0]}]" if ":" in local[0] else local[0]
        headers.add(
            "Via", f"SIP/2.0/{transport.upper()} {host}:{local[1]};branch={new_branch()};rport"
        )
        headers.add("Max-Forwards", "70")
        to = invite.headers.get("To") or ""
        headers.add("From", f"{to};tag={self.local_tag}")
        headers.add("To", invite.headers.get("From") or "")
        headers.add("Call-ID", invite.call_id)
        self.local_cseq += 1
        headers.add("CSeq", f"{self.local_cseq} BYE")
        for route in routes:  # a UAS keeps the Record-Route order (§12.1.1)
            headers.add("Route", route)
        next_hop = routes[0] if routes else f"<{remote_target}>"
        return Request("BYE", remote_target, headers), address_of(next_hop, self.source)
