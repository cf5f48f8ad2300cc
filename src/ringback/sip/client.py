"""Sans-I/O SIP client transactions (RFC 3261 §17.1, with RFC 6026's Accepted state).

One :class:`ClientTransactionLayer` holds the requests ``ringback`` sends (the test
user agent's INVITE, a BYE ending a lab call, the callee leg of a B2BUA) and feeds the
responses to them back. Like the server side it takes requests, responses and the time
in, and gives bytes to send, responses for the transaction user, timeout events and its
next deadline out.

- INVITE: Timer A retransmits over UDP (T1, doubling) until a provisional response;
  Timer B (64*T1) gives up. A 300-699 is ACKed here (the same branch, §17.1.1.3) and
  its retransmissions are ACKed again until Timer D; a 2xx is the TU's to ACK, and its
  retransmissions are passed up until Timer M (RFC 6026).
- Other methods: Timer E retransmits (T1 doubling to T2); Timer F (64*T1) gives up;
  Timer K absorbs retransmitted finals.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from .errors import SipParseError
from .headers import Headers
from .model import Request, Response

__all__ = ["ClientTimeout", "ClientTransactionLayer", "new_branch"]

Address = tuple[str, int]
ClientKey = tuple[str, str]  # (branch, method)


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(10)


@dataclass(frozen=True, slots=True)
class ClientTimeout:
    """Timer B or F fired: no final response to this request."""

    key: ClientKey
    request: Request


@dataclass(slots=True)
class _Tx:
    request: Request
    data: bytes
    dest: Address
    reliable: bool
    state: str  # calling | trying | proceeding | completed | accepted
    retransmit_at: float | None
    interval: float
    give_up_at: float | None
    ack: bytes | None = None  # for a non-2xx final of an INVITE
    finals: set[int] = field(default_factory=set)
    transport: str = "udp"  # a label for the shell: which socket the bytes leave by


class ClientTransactionLayer:
    def __init__(self, t1: float = 0.5, t2: float = 4.0, t4: float = 5.0) -> None:
        self.t1, self.t2, self.t4 = t1, t2, t4
        self._txs: dict[ClientKey, _Tx] = {}
        self._out: list[tuple[bytes, Address]] = []
        self._transports: list[str] = []  # parallel to _out
        self._events: list[ClientTimeout] = []

    def __len__(self) -> int:
        return len(self._txs)

    def send(
        self,
        request: Request,
        dest: Address,
        *,
        reliable: bool,
        now: float,
        transport: str | None = None,
    ) -> ClientKey:
        """Start a transaction for ``request`` (its top Via must carry a branch).
        ``transport`` labels its bytes in :meth:`take_outgoing_by_transport`."""
        branch = request.top_via.branch
        if not branch:
            raise ValueError("a client request needs a Via branch")
        key = (branch, request.method)
        data = request.to_bytes()
        invite = request.method == "INVITE"
        self._txs[key] = _Tx(
            request,
            data,
            dest,
            reliable,
            "calling" if invite else "trying",
            None if reliable else now + self.t1,
            self.t1,
            now + 64 * self.t1,
            transport=transport or ("tcp" if reliable else "udp"),
        )
        self._emit(data, dest, self._txs[key].transport)
        return key

    def _emit(self, data: bytes, dest: Address, transport: str) -> None:
        self._out.append((data, dest))
        self._transports.append(transport)

    def receive_response(self, response: Response, now: float) -> Response | None:
        """A response from the network: returned when the TU should see it, None when it
        is a retransmission absorbed here or matches no transaction."""
        try:
            branch = response.top_via.branch
            method = response.cseq[1]
        except SipParseError:
            return None
        tx = self._txs.get((branch or "", method))
        if tx is None:
            return None
        status = response.status
        if status < 200:
            if tx.state in ("calling", "trying"):
                tx.state = "proceeding"
                if tx.request.method == "INVITE":
                    tx.retransmit_at = None  # Timer A stops; no Timer B once proceeding
                    tx.give_up_at = None
                elif tx.retransmit_at is not None:
                    tx.interval = self.t2
            return response if tx.state == "proceeding" else None
        if tx.request.method == "INVITE":
            if status < 300:
                if tx.state == "accepted":
                    return response  # a 2xx retransmission: the TU ACKs it again
                tx.state, tx.retransmit_at = "accepted", None
                tx.give_up_at = now + 64 * self.t1  # Timer M
                return response
            if tx.state == "completed":
                if tx.ack is not None:
                    self._emit(tx.ack, tx.dest, tx.transport)
                return None
            tx.ack = _ack_for(tx.request, response).to_bytes()
            self._emit(tx.ack, tx.dest, tx.transport)
            tx.state, tx.retransmit_at = "completed", None
            tx.give_up_at = now + (0.0 if tx.reliable else 32.0)  # Timer D
            return response
        if tx.state == "completed":
            return None
        tx.state, tx.retransmit_at = "completed", None
        tx.give_up_at = now + (0.0 if tx.reliable else self.t4)  # Timer K
        return response

    def next_deadline(self) -> float | None:
        times = [
            t
            for tx in self._txs.values()
            for t in (tx.retransmit_at, tx.give_up_at)
            if t is not None
        ]
        return min(times) if times else None

    def poll(self, now: float) -> None:
        for key, tx in list(self._txs.items()):
            if tx.retransmit_at is not None and tx.retransmit_at <= now:
                self._emit(tx.data, tx.dest, tx.transport)
                if tx.request.method == "INVITE":
                    tx.interval *= 2
                else:
                    tx.interval = min(tx.interval * 2, self.t2)
                tx.retransmit_at = now + tx.interval
            if tx.give_up_at is not None and tx.give_up_at <= now:
                del self._txs[key]
                if tx.state in ("calling", "trying", "proceeding"):
                    self._events.append(ClientTimeout(key, tx.request))

    def take_outgoing(self) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        self._transports = []
        return out

    def take_outgoing_by_transport(self) -> list[tuple[bytes, Address, str]]:
        """Like :meth:`take_outgoing`, each with the transport label it was sent with."""
        out = [(d, a, t) for (d, a), t in zip(self._out, self._transports, strict=True)]
        self._out, self._transports = [], []
        return out

    def take_events(self) -> list[ClientTimeout]:
        events, self._events = self._events, []
        return events


def _ack_for(invite: Request, response: Response) -> Request:
    """The ACK of a non-2xx final response (RFC 3261 §17.1.1.3): the INVITE's Request-URI,
    top Via, Call-ID, From, Route and CSeq number; the response's To (with its tag)."""
    headers = Headers()
    via = invite.headers.get("Via")
    if via is not None:
        headers.add("Via", via)
    headers.add("Max-Forwards", "70")
    for name in ("From", "Call-ID"):
        value = invite.headers.get(name)
        if value is not None:
            headers.add(name, value)
    to = response.headers.get("To")
    if to is not None:
        headers.add("To", to)
    headers.add("CSeq", f"{invite.cseq[0]} ACK")
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    return Request("ACK", invite.uri, headers)
