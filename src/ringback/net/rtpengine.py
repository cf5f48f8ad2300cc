"""rtpengine as ringback mode's media plane (optional: ``[ringback] media = "rtpengine"``).

`rtpengine <https://github.com/sipwise/rtpengine>`_ (Debian: ``rtpengine-daemon``) relays
the bridged calls' RTP in place of the built-in :class:`~ringback.net.relay.MediaRelay`,
for carriers who already run it or want the media plane out of the SIP process. It is
driven over its ng control protocol: bencoded dictionaries over UDP, each request and
reply prefixed with a cookie.

Media safety. Run the daemon with ``--endpoint-learning=immediate`` (or ``off``): every
offer and answer here carries the ``strict source`` flag, and with both rtpengine drops
packets from anyone but the party's learned address. Checked against rtpengine 10.5: with
its default (``delayed``) learning, a third host sending to a call's port was relayed to
the other party and took the call's media over, ``strict source`` or not.

Each call is one rtpengine call with two parties, ``caller`` and ``callee``. While the
callee rings, the ``callee`` party rtpengine knows is ringback's own warning socket: the
warning goes from that socket to rtpengine's callee-facing port, and rtpengine carries it
to the caller. So the caller's SDP (rtpengine's caller-facing address) is the same in the
183 and the 200, as with the built-in relay; on the answer, :meth:`RtpengineRelay.bridge`
answers the call again with the callee's own address. Symmetric latching is rtpengine's
(its endpoint learning); ringback still decides which addresses may be used at all.

The same surface as :class:`MediaRelay` as :class:`~ringback.net.call_media.CallMedia`
uses it, except that :meth:`RtpengineRelay.open` is a coroutine (two ng round trips) and
bridge/move/close send their ng commands in the background: a failed one is logged, the
call goes on.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from ringback.net.rtp_pacer import PortsExhausted, RtpPortPool, RtpSocket
from ringback.sip.sdp import parse_sdp

__all__ = ["NgClient", "NgError", "PortsExhausted", "RtpengineRelay", "bdecode", "bencode"]

log = logging.getLogger(__name__)

Address = tuple[str, int]
STRICT = ("strict source",)  # drop packets from any source but the party's own


# ------------------------------------------------------------------------------ bencode


def bencode(value: Any) -> bytes:
    """Integers, strings (UTF-8), bytes, lists and dicts (keys sorted), as ng wants them."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list | tuple):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> Any:
    """The value in ``data`` (strings stay bytes). Raises ValueError if malformed."""
    try:
        value, end = _decode(data, 0)
    except (IndexError, ValueError) as exc:
        raise ValueError(f"malformed bencode: {exc}") from None
    if end != len(data):
        raise ValueError("trailing bytes after the bencoded value")
    return value


def _decode(data: bytes, i: int) -> tuple[Any, int]:
    c = data[i : i + 1]
    if c == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1 : end]), end + 1
    if c == b"l":
        i += 1
        items = []
        while data[i : i + 1] != b"e":
            if i >= len(data):
                raise ValueError("unterminated list")
            item, i = _decode(data, i)
            items.append(item)
        return items, i + 1
    if c == b"d":
        i += 1
        out = {}
        while data[i : i + 1] != b"e":
            if i >= len(data):
                raise ValueError("unterminated dictionary")
            key, i = _decode(data, i)
            out[key], i = _decode(data, i)
        return out, i + 1
    colon = data.index(b":", i)
    n = int(data[i:colon])
    if n < 0 or colon + 1 + n > len(data):
        raise ValueError("string runs past the end")
    return data[colon + 1 : colon + 1 + n], colon + 1 + n


# ----------------------------------------------------------------------------- ng client


class NgError(RuntimeError):
    """rtpengine answered with an error, or not at all."""


class NgClient(asyncio.DatagramProtocol):
    """ng requests over one UDP socket; replies matched by cookie. A request not answered
    in ``timeout_s`` is sent again once with the same cookie (rtpengine answers a repeated
    cookie from its cache, so a command never runs twice), then fails."""

    def __init__(self, address: Address, *, timeout_s: float = 0.5) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: dict[bytes, asyncio.Future[dict[bytes, Any]]] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, remote_addr=self.address)
        self._transport = transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(NgError("ng client closed"))
        self._pending.clear()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        cookie, _, body = data.partition(b" ")
        future = self._pending.pop(cookie, None)
        if future is None or future.done():
            return
        try:
            reply = bdecode(body)
        except ValueError as exc:
            future.set_exception(NgError(f"unreadable ng reply: {exc}"))
            return
        if not isinstance(reply, dict):
            future.set_exception(NgError("ng reply is not a dictionary"))
            return
        future.set_result(reply)

    async def command(self, name: str, args: dict[str, Any] | None = None) -> dict[bytes, Any]:
        if self._transport is None:
            raise NgError("ng client not started")
        cookie = secrets.token_hex(8).encode()
        message = cookie + b" " + bencode({"command": name, **(args or {})})
        future: asyncio.Future[dict[bytes, Any]] = asyncio.get_running_loop().create_future()
        self._pending[cookie] = future
        try:
            for _ in range(2):
                self._transport.sendto(message)
                try:
                    reply = await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
                    break
                except TimeoutError:
                    continue
            else:
                raise NgError(f"rtpengine did not answer {name} at {self.address}")
        finally:
            self._pending.pop(cookie, None)
        if reply.get(b"result") not in (b"ok", b"pong"):
            reason = reply.get(b"error-reason", reply.get(b"result", b"?"))
            raise NgError(f"rtpengine refused {name}: {reason!r}")
        return reply


# ---------------------------------------------------------------------------- the relay


def _sdp(address: Address | None, session: str) -> bytes:
    """A one-stream SDP for rtpengine: only the address matters (it forwards packets as
    they are); ``None``: on hold."""
    host, port = address if address is not None else ("0.0.0.0", 9)
    kind = "IP6" if ":" in host else "IP4"
    direction = "sendrecv" if address is not None else "inactive"
    return (
        f"v=0\r\no=ringback {session} 1 IN {kind} {host}\r\ns=ringback\r\n"
        f"c=IN {kind} {host}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 8 101\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
    ).encode()


def _media_address(sdp: bytes) -> Address:
    sd = parse_sdp(sdp)
    media = next(m for m in sd.media if m.media.lower() == "audio")
    return sd.connection_of(media).host, media.port


@dataclass(slots=True)
class _Call:
    call_id: str
    warning: RtpSocket  # ringback's socket: the callee rtpengine sees until the answer
    caller: Address | None  # where the caller receives (None: on hold)
    callee: Address | None
    caller_side: Address  # rtpengine's port facing the caller
    callee_side: Address  # rtpengine's port facing the callee


class RtpengineRelay:
    def __init__(self, pools: dict[int, RtpPortPool], ng: NgClient) -> None:
        self.pools = pools  # for the warning sockets, by IP version
        self.ng = ng
        self.sessions: dict[object, _Call] = {}
        self.packets_relayed = 0  # from rtpengine's totals as each call ends
        self.packets_refused = 0  # rtpengine does its own source checks
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self.sessions)

    async def open(
        self, key: object, caller: tuple[Address, ...], caller_family: int
    ) -> tuple[Address, Address]:
        """Create the call on rtpengine: its caller-facing and callee-facing addresses.
        Raises :class:`PortsExhausted` or :class:`NgError`."""
        pool = self.pools.get(caller_family) or next(iter(self.pools.values()))
        warning = pool.allocate()
        call_id = f"ringback-{secrets.token_hex(10)}"
        ids = {"call-id": call_id, "from-tag": "caller", "flags": STRICT}
        try:
            offer = await self.ng.command("offer", {**ids, "sdp": _sdp(caller[0], "1")})
            callee_side = _media_address(offer[b"sdp"])
            answer = await self.ng.command(
                "answer",
                {**ids, "to-tag": "callee", "sdp": _sdp((pool.local_ip, warning.port), "2")},
            )
            caller_side = _media_address(answer[b"sdp"])
        except BaseException:
            warning.close()
            self._background("delete", {"call-id": call_id})
            raise
        if key in self.sessions:  # opened twice: keep the first
            warning.close()
            self._background("delete", {"call-id": call_id})
            return self.sessions[key].caller_side, self.sessions[key].callee_side
        self.sessions[key] = _Call(call_id, warning, caller[0], None, caller_side, callee_side)
        return caller_side, callee_side

    def caller_socket(self, key: object) -> RtpSocket | None:
        call = self.sessions.get(key)
        return None if call is None else call.warning

    def warning_destinations(
        self, key: object, destinations: tuple[Address, ...]
    ) -> tuple[Address, ...]:
        """The warning goes to rtpengine, which carries it to the caller."""
        call = self.sessions.get(key)
        return destinations if call is None else (call.callee_side,)

    def bridge(
        self,
        key: object,
        caller: tuple[Address, ...],
        caller_latched: Address | None,
        callee: tuple[Address, ...],
    ) -> bool:
        """The callee answered: rtpengine sends the caller's RTP to it from now on."""
        call = self.sessions.get(key)
        if call is None:
            return False
        call.callee = callee[0] if callee else None
        self._reanswer(call)
        return True

    def move(self, key: object, side: str, dest: Address | None) -> None:
        """A re-INVITE moved one side's media (None: on hold)."""
        call = self.sessions.get(key)
        if call is None:
            return
        if side == "caller":
            call.caller = dest
            ids = {"call-id": call.call_id, "from-tag": "caller", "flags": STRICT}
            self._background("offer", {**ids, "sdp": _sdp(dest, "3")}, then=call)
        else:
            call.callee = dest
            self._reanswer(call)

    def _reanswer(self, call: _Call) -> None:
        args = {"call-id": call.call_id, "from-tag": "caller", "to-tag": "callee"}
        self._background("answer", {**args, "flags": STRICT, "sdp": _sdp(call.callee, "4")})

    def close(self, key: object) -> None:
        """End the call on rtpengine: its packet count (``query``), then ``delete``."""
        call = self.sessions.pop(key, None)
        if call is None:
            return
        call.warning.close()
        self._background("query", {"call-id": call.call_id}, count=True)

    def close_all(self) -> None:
        for key in list(self.sessions):
            self.close(key)

    async def drain(self, timeout_s: float = 2.0) -> None:
        """Wait for the ng commands still under way, and those they lead to (at shutdown)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._tasks:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            await asyncio.wait(set(self._tasks), timeout=left)

    def _background(
        self, name: str, args: dict[str, Any], *, then: _Call | None = None, count: bool = False
    ) -> None:
        async def run() -> None:
            try:
                reply = await self.ng.command(name, args)
            except NgError as exc:
                log.warning("rtpengine %s for %s failed: %s", name, args.get("call-id"), exc)
                reply = {}
            if then is not None and reply:  # a new offer from the caller wants its answer
                self._reanswer(then)
            if count:  # the call's count is in: now it goes
                self.packets_relayed += _packets(reply)
                self._background("delete", {"call-id": args["call-id"]})

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _packets(reply: dict[bytes, Any]) -> int:
    """RTP packets rtpengine forwarded in a call, from a ``query`` reply's totals."""
    totals = reply.get(b"totals")
    if not isinstance(totals, dict):
        return 0
    rtp = totals.get(b"RTP")
    if not isinstance(rtp, dict):
        return 0
    packets = rtp.get(b"packets")
    return packets if isinstance(packets, int) else 0
