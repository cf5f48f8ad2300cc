"""CPU cost of receiving one SIP datagram in the UDP shell: asyncio's datagram transport
(the shell before overload shedding) against `net.sip_transport._UdpSocket` (batched reads,
kernel receive timestamps, the age check), on uvloop.

Each round puts `--batch` INVITEs into a loopback socket, then lets the event loop read them
all; the figure is the event-loop thread's CPU time (`time.thread_time`, so other load on a
shared machine barely moves it) per datagram. Variants alternate, round after round; the
medians and their ratio are printed.

    .venv/bin/python bench/udp_receive.py
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time
from typing import Any

import uvloop

from ringback.net.sip_transport import _UdpSocket, udp_socket

INVITE = (
    b"INVITE sip:+8613700137000@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-bench;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=abc\r\n"
    b"To: <sip:+8613700137000@127.0.0.1:5060>\r\nCall-ID: bench\r\nCSeq: 1 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n"
)


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def inc(self, *labels: str) -> None:
        self.n += 1


class _Metrics:
    def __init__(self) -> None:
        self.untrusted = _Counter()
        self.shed = _Counter()
        self.send_dropped = _Counter()


class StubEndpoint:
    """What the socket readers call: trusted(), metrics, receive() (counts only)."""

    def __init__(self, max_age_s: float) -> None:
        self.max_receive_age_s = max_age_s
        self.metrics = _Metrics()
        self.received = 0
        self.done: asyncio.Future[None] | None = None
        self.target = 0

    def trusted(self, host: str) -> bool:
        return True

    def receive(self, data: bytes, source: Any, transport: str) -> None:
        self.received += 1
        if self.received >= self.target and self.done is not None and not self.done.done():
            self.done.set_result(None)


class OldProtocol(asyncio.DatagramProtocol):
    """The shell's previous UDP protocol (its datagram_received, verbatim in effect)."""

    def __init__(self, endpoint: StubEndpoint) -> None:
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr: Any) -> None:
        host, port = addr[0], addr[1]
        endpoint = self.endpoint
        if not endpoint.trusted(host):
            endpoint.metrics.untrusted.inc()
            return
        if len(data) < 4 or data.isspace():
            return
        endpoint.receive(data, (host, port), "udp")


async def one_round(variant: str, batch: int) -> float:
    loop = asyncio.get_running_loop()
    endpoint = StubEndpoint(max_age_s=0.0 if variant == "batched" else 10.0)
    if variant == "asyncio":
        transport, _ = await loop.create_datagram_endpoint(
            lambda: OldProtocol(endpoint), local_addr=("127.0.0.1", 0)
        )
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        port = sock.getsockname()[1]
        closer = transport.close
    else:
        sock = udp_socket("127.0.0.1", 0, socket.AF_INET)
        reader = _UdpSocket(endpoint, sock)  # type: ignore[arg-type]
        port = reader.port
        closer = reader.close
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    endpoint.target = batch
    endpoint.done = loop.create_future()
    await asyncio.sleep(0)
    for _ in range(batch):  # from the loop's own thread: nothing is read meanwhile
        sender.sendto(INVITE, ("127.0.0.1", port))
    started = time.thread_time()
    await asyncio.wait_for(endpoint.done, 10)
    used = time.thread_time() - started
    sender.close()
    closer()
    return used / batch


async def main_async(rounds: int, batch: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"asyncio": [], "batched": [], "batched+age": []}
    for _ in range(rounds):
        for variant in results:
            results[variant].append(await one_round(variant, batch))
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    results = uvloop.run(main_async(args.rounds, args.batch))
    base = statistics.median(results["asyncio"])
    print("| variant | µs per datagram (median) | ratio |")
    print("|---|---:|---:|")
    for variant, values in results.items():
        m = statistics.median(values)
        print(f"| {variant} | {m * 1e6:.2f} | {m / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
