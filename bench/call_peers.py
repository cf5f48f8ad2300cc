"""The benches' own SIP peers for ringback mode, and how they start `ringback serve`.

Shared by bench/relay.py and bench/post_dial_delay.py (and the smoke test of the first).

- :class:`Caller`: a minimal UAC on one UDP socket. Each call INVITEs a listed test number
  at ringback with a PCMU offer for its own RTP socket, ACKs the 200 (and each
  retransmission of it), and hangs up with BYE. Its From user is ``c<index>``, which ringback
  copies to the callee leg, so the callee knows which call a leg belongs to.
- :class:`Callee`: a minimal UAS on one UDP socket (ringback's ``next_hop``). It answers
  every INVITE at once with 200 and an SDP for the call's callee RTP socket, answers a
  retransmitted INVITE with the same 200, and answers BYE with 200.

Both parse with ringback's own SIP parser and build messages as text. Both stamp every
INVITE (sent / received) with ``time.monotonic_ns()``: the post-dial delay is the callee's
stamp minus the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))

import harness  # noqa: E402

from ringback.sip.message import parse_message  # noqa: E402
from ringback.sip.model import Request, Response  # noqa: E402
from ringback.sip.sdp import parse_sdp  # noqa: E402

LOCALHOST = harness.LOCALHOST
TEST_NUMBER = "+8613900139000"  # an operator test number: always warned, no listing needed
Address = tuple[str, int]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sdp_for(port: int, session: int) -> bytes:
    return (
        "v=0\r\n"
        f"o=bench {session} 1 IN IP4 {LOCALHOST}\r\n"
        "s=bench\r\n"
        f"c=IN IP4 {LOCALHOST}\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n"
    ).encode()


def media_address(body: bytes) -> Address:
    """Where an SDP says its first audio stream receives."""
    sd = parse_sdp(body)
    media = next(m for m in sd.media if m.media == "audio")
    return sd.connection_of(media).host, media.port


def rtp_socket(rcvbuf: int = 1 << 20) -> socket.socket:
    """A loopback UDP socket for one side of one call's media."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((LOCALHOST, 0))
    s.setblocking(False)
    return s


@dataclass(slots=True)
class Call:
    index: int
    caller_rtp: socket.socket
    callee_rtp: socket.socket
    call_id: str = ""
    from_tag: str = ""
    to_tag: str = ""
    remote_target: str = ""
    invite_sent_ns: int = 0
    invite_at_callee_ns: int = 0
    early_ns: int = 0  # the caller's first 183 (the warning starts)
    answered_ns: int = 0
    caller_relay: Address | None = None  # where the caller sends RTP (ringback's caller side)
    callee_relay: Address | None = None  # where the callee sends RTP (ringback's callee side)
    final: int = 0  # the final status the caller got
    invite: bytes = b""  # as sent: retransmitted as is until a response (Timer A)
    responded: bool = False  # a response to the INVITE came (retransmissions stop)
    invite_retransmissions: int = 0
    bye_ok: bool = False
    callee_bye: bool = False  # the callee leg got its BYE
    answered: asyncio.Future[None] | None = None
    ended: asyncio.Future[None] | None = None


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, on_message: Callable[[Request | Response, Address, int], None]) -> None:
        self.on_message = on_message
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        stamp = time.monotonic_ns()
        try:
            message = parse_message(data)
        except Exception as exc:
            log(f"unparseable datagram from {addr}: {exc}")
            return
        self.on_message(message, addr, stamp)


class Callee:
    """The next hop: answers every INVITE at once, or rings (180) for ``answer_after_s``."""

    def __init__(self, calls: dict[int, Call], answer_after_s: float = 0.0) -> None:
        self.calls = calls
        self.answer_after_s = answer_after_s
        self.ok_by_call_id: dict[str, bytes] = {}
        self.protocol = _Udp(self._on_message)
        self.port = 0
        self.invites = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self.protocol, local_addr=(LOCALHOST, 0)
        )
        self.protocol.transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        _big_buffers(transport)

    def _send(self, data: bytes, addr: Address) -> None:
        assert self.protocol.transport is not None
        self.protocol.transport.sendto(data, addr)

    def _on_message(self, msg: Request | Response, addr: Address, stamp: int) -> None:
        if not isinstance(msg, Request):
            return
        if msg.method == "INVITE":
            cached = self.ok_by_call_id.get(msg.call_id)
            if cached is not None:  # a retransmission: the same answer again
                self._send(cached, addr)
                return
            self.invites += 1
            user = (msg.headers.get("From") or "").split("sip:", 1)[-1].split("@", 1)[0]
            call = self.calls.get(int(user[1:])) if user.startswith("c") else None
            if call is None:
                self._send(_response(msg, 404, "Not Found", "x"), addr)
                return
            try:
                port = call.callee_rtp.getsockname()[1]
            except OSError:  # a late INVITE of a call the bench has finished with
                self._send(_response(msg, 481, "Call Does Not Exist", "x"), addr)
                return
            call.invite_at_callee_ns = stamp
            ok = _response(
                msg,
                200,
                "OK",
                f"callee{call.index}",
                contact=f"<sip:callee@{LOCALHOST}:{self.port}>",
                body=sdp_for(port, 2000 + call.index),
            )
            self.ok_by_call_id[msg.call_id] = ok
            if self.answer_after_s > 0:
                self._send(_response(msg, 180, "Ringing", f"callee{call.index}"), addr)
                asyncio.get_running_loop().call_later(self.answer_after_s, self._send, ok, addr)
            else:
                self._send(ok, addr)
            with contextlib.suppress(Exception):
                call.callee_relay = media_address(msg.body)
        elif msg.method == "BYE":
            self._send(_response(msg, 200, "OK", None), addr)
            self.ok_by_call_id.pop(msg.call_id, None)
            user = (msg.headers.get("From") or "").split("sip:", 1)[-1].split("@", 1)[0]
            call = self.calls.get(int(user[1:])) if user.startswith("c") else None
            if call is not None:
                call.callee_bye = True
        elif msg.method in ("OPTIONS", "INFO", "UPDATE"):
            self._send(_response(msg, 200, "OK", None), addr)
        # ACK: nothing to do (the 200 is sent once and repeated on a retransmitted INVITE)


class Caller:
    """The caller UAC: INVITE → (100, 183) → 200 → ACK; later BYE.

    As a switch does (RFC 3261 §17.1.1.2), it retransmits an INVITE nobody answered after
    T1 = 500 ms, doubling, until a response comes or Timer B (64 × T1) runs out: a server
    that dropped the first copy (a loss, or ringback shedding an INVITE that waited past
    `sip.max_receive_age_ms`) gets another chance, and the bench counts the
    retransmissions instead of a lost call.
    """

    T1 = 0.5

    def __init__(self, target: Address, number: str = TEST_NUMBER) -> None:
        self.target = target
        self.number = number
        self.by_call_id: dict[str, Call] = {}
        self.protocol = _Udp(self._on_message)
        self.port = 0
        self.finals: dict[int, int] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self.protocol, local_addr=(LOCALHOST, 0)
        )
        self.protocol.transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        _big_buffers(transport)

    def _send(self, data: bytes) -> None:
        assert self.protocol.transport is not None
        self.protocol.transport.sendto(data, self.target)

    def _via(self, branch: str = "") -> str:
        branch = branch or f"z9hG4bK{secrets.token_hex(8)}"
        return f"SIP/2.0/UDP {LOCALHOST}:{self.port};branch={branch};rport"

    def invite(self, call: Call) -> None:
        loop = asyncio.get_running_loop()
        call.call_id = f"{secrets.token_hex(8)}-{call.index}@bench"
        call.from_tag = secrets.token_hex(4)
        call.answered = loop.create_future()
        call.ended = loop.create_future()
        self.by_call_id[call.call_id] = call
        body = sdp_for(call.caller_rtp.getsockname()[1], 1000 + call.index)
        host, port = self.target
        request = (
            f"INVITE sip:{self.number}@{host}:{port} SIP/2.0\r\n"
            f"Via: {self._via()}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:c{call.index}@{LOCALHOST}>;tag={call.from_tag}\r\n"
            f"To: <sip:{self.number}@{host}>\r\n"
            f"Call-ID: {call.call_id}\r\n"
            "CSeq: 1 INVITE\r\n"
            f"Contact: <sip:c{call.index}@{LOCALHOST}:{self.port}>\r\n"
            "Content-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        call.invite_sent_ns = time.monotonic_ns()
        call.invite = request
        self._send(request)
        loop.call_later(self.T1, self._timer_a, call, self.T1)

    def _timer_a(self, call: Call, interval: float) -> None:
        if call.responded or call.final:
            return
        if (time.monotonic_ns() - call.invite_sent_ns) / 1e9 + interval > 64 * self.T1:
            return  # Timer B: the call fails at the caller
        call.invite_retransmissions += 1
        self._send(call.invite)
        asyncio.get_running_loop().call_later(2 * interval, self._timer_a, call, 2 * interval)

    def bye(self, call: Call) -> None:
        host, port = self.target
        request = (
            f"BYE {call.remote_target or f'sip:{self.number}@{host}:{port}'} SIP/2.0\r\n"
            f"Via: {self._via()}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:c{call.index}@{LOCALHOST}>;tag={call.from_tag}\r\n"
            f"To: <sip:{self.number}@{host}>;tag={call.to_tag}\r\n"
            f"Call-ID: {call.call_id}\r\n"
            "CSeq: 2 BYE\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        self._send(request)

    def _ack(self, call: Call, response: Response) -> None:
        host, port = self.target
        uri = call.remote_target or f"sip:{self.number}@{host}:{port}"
        branch = f"z9hG4bK{secrets.token_hex(8)}"
        if response.status >= 300:  # the ACK of a non-2xx is hop-by-hop: the INVITE's Via
            uri = f"sip:{self.number}@{host}:{port}"
            branch = response.top_via.branch or branch
        ack = (
            f"ACK {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOCALHOST}:{self.port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:c{call.index}@{LOCALHOST}>;tag={call.from_tag}\r\n"
            f"To: {response.headers.get('To')}\r\n"
            f"Call-ID: {call.call_id}\r\n"
            "CSeq: 1 ACK\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        self._send(ack)

    def _on_message(self, msg: Request | Response, addr: Address, stamp: int) -> None:
        if isinstance(msg, Request):  # a BYE from ringback (max call duration, shutdown)
            if msg.method == "BYE":
                assert self.protocol.transport is not None
                self.protocol.transport.sendto(_response(msg, 200, "OK", None), addr)
            return
        call = self.by_call_id.get(msg.call_id)
        if call is None:
            return
        method = msg.cseq[1]
        if method == "BYE" and msg.status >= 200:
            call.bye_ok = msg.status == 200
            if call.ended is not None and not call.ended.done():
                call.ended.set_result(None)
            return
        if method != "INVITE":
            return
        call.responded = True
        if 180 <= msg.status < 200 and msg.body:
            call.early_ns = call.early_ns or stamp
            with contextlib.suppress(Exception):
                call.caller_relay = media_address(msg.body)
        if msg.status < 200:
            return
        self._ack(call, msg)
        if call.final:
            return  # a retransmission, ACKed again
        call.final = msg.status
        self.finals[msg.status] = self.finals.get(msg.status, 0) + 1
        if msg.status < 300:
            call.answered_ns = stamp
            call.to_tag = _tag(msg.headers.get("To") or "")
            contact = msg.headers.get("Contact") or ""
            if "<" in contact:
                call.remote_target = contact.split("<", 1)[1].split(">", 1)[0]
            with contextlib.suppress(Exception):
                call.caller_relay = media_address(msg.body)
        if call.answered is not None and not call.answered.done():
            call.answered.set_result(None)


def _big_buffers(transport: asyncio.BaseTransport) -> None:
    """4 MB socket buffers, as sipp needs under load (INTEROP-NOTES)."""
    sock = transport.get_extra_info("socket")
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, 4 << 20)


def _tag(value: str) -> str:
    i = value.find(";tag=")
    return value[i + 5 :].split(";", 1)[0] if i >= 0 else ""


def _response(
    request: Request,
    status: int,
    reason: str,
    to_tag: str | None,
    *,
    contact: str | None = None,
    body: bytes = b"",
) -> bytes:
    h = request.headers
    to = h.get("To") or ""
    if to_tag is not None and ";tag=" not in to:
        to += f";tag={to_tag}"
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {v}" for v in h.get_all("Via")]
    lines += [f"From: {h.get('From')}", f"To: {to}", f"Call-ID: {request.call_id}"]
    lines.append(f"CSeq: {h.get('CSeq')}")
    if contact:
        lines.append(f"Contact: {contact}")
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# --------------------------------------------------------------------------- ringback


@dataclass
class Ringback:
    """A running `ringback serve` in ringback mode."""

    sip: Address
    http_port: int
    process: harness.ManagedProcess
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://{LOCALHOST}:{self.http_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total


def start_database(workdir: Path) -> str:
    """An embedded PostgreSQL in ``workdir`` (removed at exit): its DSN."""
    import atexit

    from ringback.registry.embedded import EmbeddedPostgres

    db = EmbeddedPostgres(workdir / "db")
    dsn = db.start()
    atexit.register(db.remove)
    return dsn


def start_ringback(
    processes: harness.ProcessSet,
    workdir: Path,
    *,
    database: str,
    next_hop: Address,
    cpu: int | None,
    rt: bool = False,
    ringback_toml: str = "",
    timeout: float = 60.0,
) -> Ringback:
    """`ringback serve` in ringback mode (callee legs to ``next_hop``), one worker,
    :data:`TEST_NUMBER` always warned; returns once ``/readyz`` answers 200. ``rt``: under
    SCHED_RR (``chrt -r 10``), as a deployment would with systemd's CPUSchedulingPolicy=rr."""
    sip_port, http_port = harness.free_port("both"), harness.free_port("tcp")
    config = workdir / "ringback.toml"
    config.write_text(
        f"[database]\nurl = '{database}'\n"
        f"[sip]\nport = {sip_port}\n"
        f"[http]\nport = {http_port}\n"
        "[announcement]\nmax_concurrent = 10000\nrtp_port_min = 20000\nrtp_port_max = 29999\n"
        f"test_numbers = ['{TEST_NUMBER}']\n"
        f"[ringback]\nmode = 'ringback'\nnext_hop = '{next_hop[0]}:{next_hop[1]}'\n"
        + ringback_toml
        + "[log]\nformat = 'json'\nlevel = 'warning'\n"
    )
    if cpu is not None and (os.cpu_count() or 1) <= cpu:
        cpu = None
    argv = [sys.executable, "-m", "ringback", "serve", "--config", str(config)]
    if rt:
        argv = [harness.require_binary("chrt", "util-linux"), "-r", "10", *argv]
    proc = processes.start(
        "ringback",
        argv,
        log_path=workdir / "ringback.log",
        cpu=cpu,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{LOCALHOST}:{http_port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return Ringback((LOCALHOST, sip_port), http_port, proc)
        except OSError:
            pass
        if not proc.alive():
            break
        time.sleep(0.2)
    raise RuntimeError("ringback did not become ready:\n" + proc.log())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def place_calls(
    caller: Caller, calls: list[Call], rate: float, timeout: float
) -> tuple[int, dict[int, int]]:
    """INVITE every call at ``rate`` calls/s; wait for their final responses. Returns how
    many were answered (2xx) and the finals seen."""
    started = time.monotonic()
    for i, call in enumerate(calls):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        caller.invite(call)
    waits = [c.answered for c in calls if c.answered is not None]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*waits), timeout)
    answered = sum(1 for c in calls if 200 <= c.final < 300)
    return answered, dict(caller.finals)


async def hang_up(caller: Caller, calls: list[Call], rate: float, timeout: float) -> int:
    """BYE every answered call at ``rate``; how many got their 200."""
    answered = [c for c in calls if 200 <= c.final < 300]
    started = time.monotonic()
    for i, call in enumerate(answered):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        caller.bye(call)
    waits = [c.ended for c in answered if c.ended is not None]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*waits), timeout)
    return sum(1 for c in answered if c.bye_ok)
