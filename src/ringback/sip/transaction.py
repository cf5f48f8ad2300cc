"""Sans-I/O SIP server transactions (RFC 3261 §17.2, RFC 6026, RFC 3262, RFC 3581).

One :class:`ServerTransactionLayer` holds every server transaction in a dict and its
timers in one queue per delay. The asyncio shell feeds it requests and the current
time, then drains :meth:`~ServerTransactionLayer.take_outgoing` and
:meth:`~ServerTransactionLayer.take_events`, and sleeps until
:meth:`~ServerTransactionLayer.next_deadline`, calling
:meth:`~ServerTransactionLayer.poll`. Timers are cancelled lazily: every queued timer
carries the generation of its timer slot and stale entries are skipped when reached.
"""

from __future__ import annotations

import bisect
import enum
import ipaddress
import operator
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import SipParseError
from .fast import fast_via_branch
from .model import Request, Response
from .uri import parse_name_addr
from .via import Via, default_port, parse_via

__all__ = [
    "AckTimeout",
    "Event",
    "PrackTimeout",
    "ServerTransactionLayer",
    "TxKey",
    "TxState",
]

MAGIC_COOKIE = "z9hG4bK"
TxKey = tuple[str, ...]
Address = tuple[str, int]


class TxState(enum.Enum):
    TRYING = "trying"  # non-INVITE, no response yet
    PROCEEDING = "proceeding"  # INVITE awaiting a final response / non-INVITE after 1xx
    COMPLETED = "completed"  # final response sent (non-2xx for INVITE)
    CONFIRMED = "confirmed"  # INVITE: ACK received, Timer I running
    ACCEPTED = "accepted"  # INVITE: 2xx sent (RFC 6026), Timer L running


@dataclass(frozen=True, slots=True)
class AckTimeout:
    """Timer H fired: no ACK for the final response of this INVITE transaction."""

    key: TxKey


@dataclass(frozen=True, slots=True)
class PrackTimeout:
    """No PRACK within 64*T1 for a reliable provisional response (RFC 3262 §3);
    the TU should reject the INVITE with a 5xx."""

    key: TxKey
    rseq: int


Event = AckTimeout | PrackTimeout

# timer slots
_G, _H, _I, _J, _L, _P, _X = range(7)
# Timers handled per poll, at most: after a burst of calls their Timers H (or I) all fall due
# together, tens of thousands in one poll would hold the event loop for tens of ms; in slices
# of this size a poll takes well under a millisecond and calls are answered in between (the
# shell polls again at once while timers are overdue). 2,000 held the loop 5-9 ms at
# 10,500 calls/s, when each call left three entries (G, H, I) to pass through here (a UDP
# call ACKed in time now leaves Timer G's entry and its key for Timer I).
POLL_BUDGET = 256
# Stale timer entries dropped per `next_deadline`, at most. One call never ACKed keeps its
# live Timer H at the head of its queue for 32 s, and the stale entries of every call
# ended meanwhile pile up behind it (over TCP, whose Timer H starts with the response;
# 560,000 at 17,500 calls/s when UDP calls did so too): dropped all at once when it fires,
# they held the loop 306 ms.
STALE_BUDGET = 1024


_WHEN = operator.itemgetter(0)  # a timer entry's time


def _fresh_gens() -> bytearray:
    """One generation per timer slot, counting 1..255 (0: never started, and every slot of
    a dropped transaction). A bytearray, not a list: the garbage collector does not track
    it, so a full collection walks one object fewer per transaction in flight (tens of
    thousands under load). The wrap is harmless: a slot restarts at most a dozen times
    (Timer G's doublings) while an old entry is queued."""
    return bytearray(7)


def _bump(gens: bytearray, slot: int) -> int:
    gen = gens[slot] = gens[slot] % 255 + 1
    return gen


@dataclass(slots=True)
class _Tx:
    key: TxKey
    is_invite: bool
    dest: Address
    reliable: bool
    via_rewrite: str | None
    state: TxState
    last: bytes | None = None
    interval: float = 0.0
    gens: bytearray = field(default_factory=_fresh_gens)
    to_tag: str | None = None
    # RFC 3262 state (INVITE only)
    rseq: int = 0
    prov_pending: tuple[int, int] | None = None  # (rseq, cseq number)
    prov_bytes: bytes | None = None
    prov_interval: float = 0.0
    prov_tag: str = ""  # the To tag of the reliable provisional response
    call_id: str = ""
    # PRACK transactions: the INVITE key they acknowledged
    prack_of: TxKey | None = None


def _sent_by(via: Via) -> tuple[str, str]:
    port = via.port
    if port is None:
        port = default_port(via.transport)
    return via.host.lower(), str(port)


def _key_for(req: Request, method: str) -> TxKey:
    """Transaction key (RFC 3261 §17.2.3); ``method`` is the transaction's method.

    A request's own key is computed once and kept on it (receive, then respond)."""
    own = method == req.method
    if own and req._tx_key is not None:
        return req._tx_key
    key = _compute_key(req, method)
    if own:
        req._tx_key = key
    return key


def _compute_key(req: Request, method: str) -> TxKey:
    via = req.top_via
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE) and len(branch) > 7:
        host, port = _sent_by(via)
        return (branch, host, port, method)
    # RFC 2543 fallback: Request-URI, From tag, Call-ID, CSeq number, top Via.
    # The To tag is compared separately for ACK (see ServerTransactionLayer).
    return (
        "2543",
        req.uri,
        req.from_tag or "",
        req.call_id,
        str(req.cseq[0]),
        str(via),
        method,
    )


class ServerTransactionLayer:
    """All server transactions of one SIP endpoint, as one sans-I/O object."""

    def __init__(
        self,
        t1: float = 0.5,
        t2: float = 4.0,
        t4: float = 5.0,
        *,
        maddr_allowed: Callable[[str], bool] = lambda host: False,
    ) -> None:
        # A Via `maddr` is obeyed only for addresses this says yes to (the trusted
        # networks): anyone else could have responses reflected at a victim.
        self.maddr_allowed = maddr_allowed
        self.t1 = t1
        self.t2 = t2
        self.t4 = t4
        self._txs: dict[TxKey, _Tx] = {}
        # Timers: one FIFO per delay. Entries of one delay are added in deadline order
        # (time only moves forward), so each queue stays sorted and firing costs O(1) per
        # timer instead of a heap's O(log n) over every transaction in flight.
        # An entry holds its transaction (not its key): a dropped one's entries are stale by
        # their generation alone, and a later transaction with the same key never sees them.
        self._timers: dict[float, deque[tuple[float, _Tx, int, int]]] = {}
        # UDP INVITE transactions ACKed after a non-2xx (RFC 3261 branch keys): Confirmed,
        # kept for Timer I only as their key, in ACK order, with when each ends. All that
        # state does is absorb the ACK's retransmissions, so the rest of the transaction
        # (its response bytes, destination, timers) is freed at the ACK, while it is still
        # in the cache; the 5 s later end touches one key. At 25,000 calls/s that is
        # 125,000 transactions in Timer I.
        self._confirmed: set[TxKey] = set()
        self._confirmed_keys: deque[TxKey] = deque()
        self._confirmed_until: deque[float] = deque()
        self._out: list[tuple[bytes, Address]] = []
        self._events: list[Event] = []
        self._prack_index: dict[tuple[str, int, int, str], TxKey] = {}

    # ------------------------------------------------------------------ input

    def receive_request(
        self, req: Request, source: Address, reliable: bool, now: float
    ) -> Request | None:
        """Feed a parsed request. Returns it when the TU must handle it (new
        request, ACK matching no transaction or a 2xx, CANCEL, PRACK); returns None
        when the transaction layer absorbed it (retransmission, ACK to non-2xx)."""
        method = req.method
        if method == "ACK":
            key = _key_for(req, "INVITE")
            tx = self._txs.get(key)
            if tx is None:
                return None if key in self._confirmed else req  # a retransmitted ACK
            if tx.state is TxState.ACCEPTED:
                return req
            if tx.key[0] == "2543" and tx.to_tag is not None and req.to_tag != tx.to_tag:
                return req
            if tx.state is TxState.COMPLETED:
                self._confirm(tx, reliable, now)
            return None
        key = _key_for(req, method)
        tx = self._txs.get(key)
        if tx is not None:
            # retransmission: resend the last response, if any (RFC 3261 §17.2.1/2)
            if tx.last is not None and tx.state is not TxState.ACCEPTED:
                self._out.append((tx.last, tx.dest))
            return None
        if key in self._confirmed:
            return None  # an INVITE retransmitted after its ACK: absorbed (Confirmed)
        via = req.top_via
        dest, rewrite = _response_target(via, source, reliable, self.maddr_allowed)
        is_invite = method == "INVITE"
        tx = _Tx(
            key,
            is_invite,
            dest,
            reliable,
            rewrite,
            TxState.PROCEEDING if is_invite else TxState.TRYING,
        )
        if is_invite:
            tx.call_id = req.call_id
        self._txs[key] = tx
        if method == "PRACK":
            tx.prack_of = self._match_prack(req)
        return req

    def absorb_ack(self, top_via: str, reliable: bool, now: float) -> bool:
        """Hot-path shortcut for the ACK to a non-2xx final response: match it by the top
        Via value alone (RFC 3261 branch, so no other field takes part in matching) and
        absorb it as :meth:`receive_request` would. False: not such an ACK; parse it fully.
        """
        plain = fast_via_branch(top_via)
        if plain is not None:
            branch, host, port = plain
        else:
            try:
                via = parse_via(top_via)
            except SipParseError:
                return False
            branch = via.branch or ""
            host, port = _sent_by(via)
        return self.absorb_ack_key(branch, host, port, reliable, now)

    def absorb_ack_key(self, branch: str, host: str, port: str, reliable: bool, now: float) -> bool:
        """:meth:`absorb_ack` for a top Via already read: its branch, host (lower case) and
        port (the transport's default when it has none)."""
        # Only an RFC 3261 branch keys a transaction by (branch, host, port, method)
        # (see _compute_key), so any other branch finds none here.
        key = (branch, host, port, "INVITE")
        tx = self._txs.get(key)
        if tx is None:
            return key in self._confirmed  # a retransmitted ACK, or none of ours
        if tx.state is TxState.COMPLETED:
            self._confirm(tx, reliable, now)
            return True
        return tx.state is TxState.CONFIRMED  # a retransmitted ACK

    def resend_last(self, key: TxKey) -> bool:
        """Hot-path shortcut for a retransmitted request already keyed by the caller: queue
        the transaction's last response again, as :meth:`receive_request` would. False
        when no such transaction exists."""
        tx = self._txs.get(key)
        if tx is None:
            return key in self._confirmed  # retransmitted after its ACK: absorbed
        if tx.last is not None and tx.state is not TxState.ACCEPTED:
            self._out.append((tx.last, tx.dest))
        return True

    def answer_invite(
        self, key: TxKey, dest: Address, reliable: bool, data: bytes, now: float
    ) -> None:
        """Hot-path shortcut: a new INVITE transaction (RFC 3261 branch key, see
        ``_compute_key``) answered at once with the 3xx-6xx response ``data``, already
        serialised for ``dest``. Same state and timers as :meth:`receive_request` then
        :meth:`send_response` (Timer G unless reliable, Timer H)."""
        tx = _Tx(key, True, dest, reliable, None, TxState.COMPLETED, data)
        self._txs[key] = tx
        self._out.append((data, dest))
        self._completed(tx, now)

    def _completed(self, tx: _Tx, now: float) -> None:
        """An INVITE transaction that has just sent its 3xx-6xx: Timer G (unreliable
        transports), Timer H. Over UDP Timer H is started by Timer G's first firing, 63*T1
        later (so still 64*T1 after the response): a call ACKed within T1, nearly every
        call, then costs one timer entry here instead of two."""
        tx.state = TxState.COMPLETED
        if tx.reliable:
            self._start(tx, _H, now, 64 * self.t1)
        else:
            tx.interval = self.t1
            self._start(tx, _G, now, self.t1)

    def _confirm(self, tx: _Tx, reliable: bool, now: float) -> None:
        """ACK for a non-2xx final response: stop retransmitting, linger for Timer I.
        (Timers G and H are not cancelled: they do nothing once the state is CONFIRMED.)"""
        tx.state = TxState.CONFIRMED
        if reliable or tx.reliable:
            self._drop(tx)
        elif tx.key[0] == "2543":  # matched with its To tag too: kept whole
            self._start(tx, _I, now, self.t4)
        else:
            self._drop(tx)
            self._confirmed.add(tx.key)
            self._confirmed_keys.append(tx.key)
            self._confirmed_until.append(now + self.t4)

    def _match_prack(self, req: Request) -> TxKey | None:
        rack = req.headers.get("RAck")
        if rack is None:
            return None
        parts = rack.split()
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            return None
        if parts[2] != "INVITE":
            return None
        # The To tag is part of the match (RFC 3262 §3): a PRACK for another early dialog
        # must not stop this one's retransmissions.
        ikey = self._prack_index.pop(
            (req.call_id, int(parts[1]), int(parts[0]), req.to_tag or ""), None
        )
        if ikey is None:
            return None
        itx = self._txs.get(ikey)
        if itx is None or itx.prov_pending is None:
            return None
        itx.prov_pending = None
        itx.prov_bytes = None
        self._cancel(itx, _P)
        self._cancel(itx, _X)
        return ikey

    # ------------------------------------------------------------------ output

    def send_response(self, req: Request, resp: Response, now: float) -> None:
        """Send ``resp`` on the transaction of ``req`` and run the state machine.

        The response's top Via gets ``received``/``rport`` per RFC 3261 §18.2.2 and
        RFC 3581 and the bytes are queued for the right address."""
        key = _key_for(req, req.method)
        tx = self._txs.get(key)
        if tx is None:
            raise KeyError(f"no server transaction for {key!r}")
        if tx.via_rewrite is not None:
            resp.headers.replace_first_value("Via", tx.via_rewrite)
        data = resp.to_bytes()
        self._out.append((data, tx.dest))
        status = resp.status
        if tx.state in (TxState.COMPLETED, TxState.CONFIRMED, TxState.ACCEPTED):
            return  # final already sent: the TU must not send another
        tx.last = data
        if status < 200:
            tx.state = TxState.PROCEEDING
            return
        if tx.is_invite:
            self._cancel(tx, _P)
            self._cancel(tx, _X)
            tx.prov_pending = None
            tx.prov_bytes = None
            if tx.key[0] == "2543":
                to = resp.headers.get("To")
                try:
                    tx.to_tag = parse_name_addr(to).tag if to else None
                except SipParseError:  # the 400 to a malformed To must still go out
                    tx.to_tag = None
            if status < 300:
                tx.state = TxState.ACCEPTED
                self._start(tx, _L, now, 64 * self.t1)
                return
            self._completed(tx, now)
        else:
            tx.state = TxState.COMPLETED
            if tx.reliable:
                self._drop(tx)
            else:
                self._start(tx, _J, now, 64 * self.t1)

    def send_reliable_provisional(self, req: Request, resp: Response, now: float) -> int:
        """Send a 101-199 reliably (RFC 3262): adds ``RSeq`` and ``Require: 100rel``,
        retransmits at T1, 2*T1, 4*T1... (unreliable transports) until the matching
        PRACK arrives; emits :class:`PrackTimeout` after 64*T1. Returns the RSeq."""
        if not 100 < resp.status < 200:
            raise ValueError("only 101-199 responses can be sent reliably")
        key = _key_for(req, "INVITE")
        tx = self._txs.get(key)
        if tx is None or not tx.is_invite or tx.state is not TxState.PROCEEDING:
            raise KeyError(f"no INVITE transaction awaiting a final response: {key!r}")
        if tx.prov_pending is not None:
            raise ValueError("previous reliable provisional response not yet PRACKed")
        tx.rseq = tx.rseq + 1 if tx.rseq else secrets.randbelow(2**31 - 1) + 1
        resp.headers.set("RSeq", str(tx.rseq))
        requires = [v.lower() for v in resp.headers.get_all("Require")]
        if "100rel" not in requires:
            resp.headers.add("Require", "100rel")
        self.send_response(req, resp, now)
        tx.prov_bytes = tx.last
        cseq = req.cseq[0]
        tx.prov_pending = (tx.rseq, cseq)
        tx.prov_tag = resp.to_tag or ""
        self._prack_index[(tx.call_id, cseq, tx.rseq, tx.prov_tag)] = key
        if not tx.reliable:
            tx.prov_interval = self.t1
            self._start(tx, _P, now, self.t1)
        self._start(tx, _X, now, 64 * self.t1)
        return tx.rseq

    # ------------------------------------------------------------------ queries

    def find_invite_for(self, req: Request) -> TxKey | None:
        """The INVITE transaction a CANCEL or ACK refers to (RFC 3261 §9.2, §17.2.3)."""
        key = _key_for(req, "INVITE")
        return key if key in self._txs or key in self._confirmed else None

    def invite_state(self, key: TxKey) -> TxState | None:
        """State of a transaction (PROCEEDING = still awaiting a final response)."""
        tx = self._txs.get(key)
        if tx is None:
            return TxState.CONFIRMED if key in self._confirmed else None
        return tx.state

    def destination(self, key: TxKey) -> Address | None:
        """Where responses of a transaction go (for a TU that retransmits its 2xx)."""
        tx = self._txs.get(key)
        return None if tx is None else tx.dest

    def key_of(self, req: Request) -> TxKey:
        return _key_for(req, "INVITE" if req.method == "ACK" else req.method)

    def prack_match(self, prack: Request) -> TxKey | None:
        """For a PRACK returned by :meth:`receive_request`: the INVITE transaction
        whose reliable provisional response it acknowledged, or None (answer 481)."""
        tx = self._txs.get(_key_for(prack, "PRACK"))
        return None if tx is None else tx.prack_of

    def __len__(self) -> int:
        return len(self._txs) + len(self._confirmed)

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        """The earliest live timer's time, or earlier: stale entries (timers cancelled
        lazily) are dropped from the queues' heads here, at most :data:`STALE_BUDGET` per
        call; past that, the stale head's own time is given (a wake-up that finds nothing
        due is harmless, and every later call drops more)."""
        best: float | None = self._confirmed_until[0] if self._confirmed_until else None
        budget = STALE_BUDGET
        for queue in self._timers.values():
            while queue:
                when, tx, slot, gen = queue[0]
                if tx.gens[slot] == gen or not budget:
                    if best is None or when < best:
                        best = when
                    break
                queue.popleft()
                budget -= 1
        return best

    def poll(self, now: float) -> None:
        """Fire the timers due at or before ``now``, at most :data:`POLL_BUDGET` of them
        (the rest stay due: :meth:`next_deadline` says so, and the next poll fires them)."""
        due: list[tuple[float, _Tx, int, int]] = []
        budget = POLL_BUDGET
        until, keys = self._confirmed_until, self._confirmed_keys
        while budget and until and until[0] <= now:  # Timer I of the compacted ones
            until.popleft()
            self._confirmed.discard(keys.popleft())
            budget -= 1
        for queue in self._timers.values():
            while budget and queue and queue[0][0] <= now:
                due.append(queue.popleft())
                budget -= 1
        if len(due) > 1:
            due.sort(key=_WHEN)
        for when, tx, slot, gen in due:
            if tx.gens[slot] != gen:
                continue
            _bump(tx.gens, slot)
            if slot == _G:
                if tx.state is TxState.COMPLETED and tx.last is not None:
                    self._out.append((tx.last, tx.dest))
                    if tx.gens[_H] == 0:  # the first firing: Timer H, 64*T1 after the response
                        self._start(tx, _H, when, 64 * self.t1 - tx.interval)
                    tx.interval = min(tx.interval * 2, self.t2)
                    self._start(tx, _G, when, tx.interval)
            elif slot == _H:
                if tx.state is TxState.COMPLETED:  # not ACKed meanwhile
                    self._events.append(AckTimeout(tx.key))
                    self._drop(tx)
            elif slot == _P:
                if tx.prov_pending is not None and tx.prov_bytes is not None:
                    self._out.append((tx.prov_bytes, tx.dest))
                    tx.prov_interval *= 2
                    self._start(tx, _P, when, tx.prov_interval)
            elif slot == _X:
                if tx.prov_pending is not None:
                    rseq, cseq = tx.prov_pending
                    self._prack_index.pop((tx.call_id, cseq, rseq, tx.prov_tag), None)
                    tx.prov_pending = None
                    tx.prov_bytes = None
                    self._cancel(tx, _P)
                    self._events.append(PrackTimeout(tx.key, rseq))
            else:  # I, J, L: terminate
                self._drop(tx)

    def take_outgoing(self) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[Event]:
        ev, self._events = self._events, []
        return ev

    # ------------------------------------------------------------------ internals

    def _start(self, tx: _Tx, slot: int, base: float, delay: float) -> None:
        gen = _bump(tx.gens, slot)
        when = base + delay
        queue = self._timers.get(delay)
        if queue is None:
            queue = self._timers[delay] = deque()
        entry = (when, tx, slot, gen)
        if queue and queue[-1][0] > when:  # a caller's clock went backwards: keep it sorted
            bisect.insort(queue, entry, key=_WHEN)
        else:
            queue.append(entry)

    def _cancel(self, tx: _Tx, slot: int) -> None:
        _bump(tx.gens, slot)

    def _drop(self, tx: _Tx) -> None:
        if self._txs.get(tx.key) is tx:
            del self._txs[tx.key]
        tx.gens = _fresh_gens()  # generation 0 everywhere: every queued entry of it is stale
        tx.last = None  # freed now, not when the last queued entry of it is popped
        if tx.prov_pending is not None:
            rseq, cseq = tx.prov_pending
            self._prack_index.pop((tx.call_id, cseq, rseq, tx.prov_tag), None)


def _response_target(
    via: Via, source: Address, reliable: bool, maddr_allowed: Callable[[str], bool]
) -> tuple[Address, str | None]:
    """Where responses go and the rewritten top Via (RFC 3261 §18.2.2, RFC 3581).

    Reliable transports answer on the same connection: the source address is the
    connection's key. Over UDP: ``maddr`` wins when it is an IP literal that
    ``maddr_allowed`` accepts, else the source address (with the
    source port when ``rport`` is present, else the Via port or 5060)."""
    src_host, src_port = source
    params: list[tuple[str, str | None]] = []
    changed = False
    has_rport = False
    for name, value in via.params:
        low = name.lower()
        if low == "rport":
            has_rport = True
            params.append((name, str(src_port)))
            changed = True
        elif low != "received":
            params.append((name, value))
    if has_rport or via.host.strip("[]").lower() != src_host.lower():
        params.append(("received", src_host))
        changed = True
    rewrite = str(Via(via.transport, via.host, via.port, tuple(params), via.protocol))
    if reliable:
        dest = source
    elif via.maddr and _is_ip(via.maddr) and maddr_allowed(via.maddr):
        dest = (via.maddr, via.port or 5060)
    elif has_rport:
        dest = source
    else:
        dest = (src_host, via.port or 5060)
    return dest, (rewrite if changed else None)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False  # a name would need DNS, and could point anywhere
    return True
