"""A dialog ``ringback`` answered as the UAS (RFC 3261 §12, §13.3.1.4), sans-I/O: the lab
callee's call. The 2xx is retransmitted until its ACK; either side may end it with BYE."""

from __future__ import annotations

from dataclasses import dataclass, field

from ringback.calls.legs import Leg, caller_leg
from ringback.sip.model import Request
from ringback.sip.transaction import TxKey

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
    leg: Leg = field(init=False)  # our side of the dialog: builds the requests we send in it

    def __post_init__(self) -> None:
        self.leg = caller_leg(self.invite, self.local_tag, self.source, self.transport)

    @property
    def call_id(self) -> str:
        return self.invite.call_id

    def acked(self) -> None:
        self.retransmit_at = None

    def bye(self, local: Address) -> tuple[Request, Address]:
        """Our BYE (§15.1.1): to the remote target through the route set."""
        return self.leg.request("BYE", local, None), self.leg.dest
