"""A steady stream of SIP calls over UDP for fault tests: INVITE (with an SDP offer) ->
responses -> ACK of the final, many calls in flight, each call's outcome kept.

Plain asyncio on one UDP socket (calls told apart by Call-ID); the RTP of every warning
arrives on one shared socket and is counted per source port. A call that gets no final
response within `call_timeout` counts as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field

from ringback.sip.message import parse_message
from ringback.sip.model import Response


@dataclass
class Call:
    number: str
    call_id: str
    branch: str
    sent_at: float
    statuses: list[int] = field(default_factory=list)
    warning: str | None = None  # the final response's X-Ringback-Warning
    final_at: float | None = None

    @property
    def final(self) -> int | None:
        finals = [s for s in self.statuses if s >= 200]
        return finals[0] if finals else None

    @property
    def warned(self) -> bool:
        return 183 in self.statuses and self.final == 302 and self.warning == "played"


class _Sip(asyncio.DatagramProtocol):
    def __init__(self, load: SipLoad) -> None:
        self.load = load

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.load.received(data)


class _Rtp(asyncio.DatagramProtocol):
    def __init__(self, counts: Counter[int]) -> None:
        self.counts = counts

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.counts[addr[1]] += 1


class SipLoad:
    """Calls to `target` at `rate` a second: `numbers` are dialled in turn."""

    def __init__(self, target: tuple[str, int], *, call_timeout: float = 32.0) -> None:
        self.target = target
        self.call_timeout = call_timeout
        self.calls: dict[str, Call] = {}
        self.rtp_packets: Counter[int] = Counter()
        self._sip: asyncio.DatagramTransport | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self._ids = itertools.count(1)
        self._finished: dict[str, asyncio.Event] = {}
        self.local_port = 0
        self.rtp_port = 0

    async def __aenter__(self) -> SipLoad:
        loop = asyncio.get_running_loop()
        self._sip, _ = await loop.create_datagram_endpoint(
            lambda: _Sip(self), local_addr=("127.0.0.1", 0)
        )
        self._rtp, _ = await loop.create_datagram_endpoint(
            lambda: _Rtp(self.rtp_packets), local_addr=("127.0.0.1", 0)
        )
        self.local_port = self._sip.get_extra_info("sockname")[1]
        self.rtp_port = self._rtp.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for transport in (self._sip, self._rtp):
            if transport is not None:
                transport.close()

    def _invite(self, call: Call) -> bytes:
        host, port = self.target
        sdp = (
            "v=0\r\no=load 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {self.rtp_port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:8 PCMA/8000\r\n"
        ).encode()
        return (
            f"INVITE sip:{call.number}@{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.local_port};branch={call.branch};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:+4930999000@127.0.0.1>;tag=load\r\n"
            f"To: <sip:{call.number}@{host}>\r\nCall-ID: {call.call_id}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:load@127.0.0.1:{self.local_port}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n"
        ).encode() + sdp

    def _ack(self, call: Call, response: Response) -> bytes:
        host, port = self.target
        return (
            f"ACK sip:{call.number}@{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.local_port};branch={call.branch};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:+4930999000@127.0.0.1>;tag=load\r\n"
            f"To: {response.headers.get('To')}\r\nCall-ID: {call.call_id}\r\nCSeq: 1 ACK\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()

    def place(self, number: str) -> Call:
        n = next(self._ids)
        call = Call(number, f"load-{n}-{time.monotonic_ns()}", f"z9hG4bK-load{n}", time.monotonic())
        self.calls[call.call_id] = call
        self._finished[call.call_id] = asyncio.Event()
        assert self._sip is not None
        self._sip.sendto(self._invite(call), self.target)
        return call

    def received(self, data: bytes) -> None:
        try:
            message = parse_message(data)
        except Exception:
            return
        if not isinstance(message, Response):
            return
        call = self.calls.get(str(message.headers.get("Call-ID")))
        if call is None:
            return
        if message.status >= 200:
            assert self._sip is not None
            self._sip.sendto(self._ack(call, message), self.target)  # also for retransmits
            if call.final_at is not None:
                return
            call.final_at = time.monotonic()
            call.warning = message.headers.get("X-Ringback-Warning")
            self._finished[call.call_id].set()
        call.statuses.append(message.status)

    async def wait(self, call: Call) -> Call:
        with contextlib.suppress(TimeoutError):
            remaining = call.sent_at + self.call_timeout - time.monotonic()
            await asyncio.wait_for(self._finished[call.call_id].wait(), max(0.0, remaining))
        return call

    async def run(
        self, numbers: list[str], rate: float, seconds: float, stop: asyncio.Event | None = None
    ) -> list[Call]:
        """Place calls at `rate`/s for `seconds` (or until `stop`), cycling `numbers`;
        return them all once each has its final response or timed out."""
        placed: list[Call] = []
        started = time.monotonic()
        for i, number in enumerate(itertools.cycle(numbers)):
            due = started + i / rate
            if due - started >= seconds or (stop is not None and stop.is_set()):
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            placed.append(self.place(number))
        await asyncio.gather(*(self.wait(c) for c in placed))
        return placed
