"""The UDP shell and the call core together, per redirected call: INVITE -> 302 -> ACK read
by `net.sip_transport._UdpSocket` on uvloop, as `ringback serve` reads them.

The datagrams are made first: batches of 8 INVITEs (sipp's lean scenario, an unlisted
number) and the ACKs of the previous batch's 302s. They are then handed to the socket
reader in place of recvmmsg(2); the 302s go out for real (sendmmsg(2) to a loopback sink).
No sipp and no timing in the way: the figure is ringback's own cost per call, shell
included, which `bench/call_path.py` (the core alone) leaves out.

    .venv/bin/python bench/udp_path.py          # µs of the loop thread's CPU per call
    # instructions, load-independent: the same --prepare, two --calls, the difference
    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python \\
        bench/udp_path.py --runs 1 --prepare 8000 --calls 4000    # and --calls 8000
    # two checkouts: PYTHONPATH=OLD/src .venv/bin/python bench/udp_path.py
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time

import uvloop

import ringback.net.sip_transport as sip_transport
from ringback.calls import CallController, SipMetrics
from ringback.metrics import Registry
from ringback.net.sip_transport import SipEndpoint, TrustedSources
from ringback.registry.listing_index import ListingIndex
from ringback.registry.numbers import NumberingPlan
from ringback.sip.tags import derived_tag_bytes

Datagram = tuple[bytes, str, int, float]  # what recv_batch returns per datagram
BATCH = 8  # calls per batch: their INVITEs, with the previous batch's ACKs


def invite(i: int, port: int, lport: int) -> tuple[bytes, str]:
    ruri = f"sip:+86137{i % 1_000_000:08d}@127.0.0.1:{port};user=phone"
    return (
        f"INVITE {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK-{i};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:sipp@127.0.0.1:{lport}>;tag={i}\r\nTo: <{ruri}>\r\n"
        f"Call-ID: {i}-bench@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:sipp@127.0.0.1:{lport}>\r\nSubject: Performance Test\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode(), ruri


def ack(i: int, ruri: str, lport: int, tag: str) -> bytes:
    return (
        f"ACK {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK-{i};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:sipp@127.0.0.1:{lport}>;tag={i}\r\n"
        f"To: <{ruri}>;tag={tag}\r\nCall-ID: {i}-bench@127.0.0.1\r\nCSeq: 1 ACK\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def batches(count: int, port: int, lport: int, tag_key: bytes) -> list[list[Datagram]]:
    out: list[list[Datagram]] = []
    previous: list[tuple[int, str]] = []
    for first in range(0, count, BATCH):
        batch: list[Datagram] = []
        for i, ruri in previous:
            tag = derived_tag_bytes(tag_key, f"{i}-bench@127.0.0.1".encode(), str(i).encode())
            batch.append((ack(i, ruri, lport, tag.decode()), "127.0.0.1", lport, 0.0))
        previous = []
        for i in range(first, min(count, first + BATCH)):
            data, ruri = invite(i, port, lport)
            previous.append((i, ruri))
            batch.append((data, "127.0.0.1", lport, 0.0))
        out.append(batch)
    return out


async def one_run(calls: int, prepare: int) -> float:
    """CPU seconds of this thread per call for `calls` calls (of `prepare` made)."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    metrics = SipMetrics(Registry())
    controller = CallController(ListingIndex(), NumberingPlan(), metrics, index_ready=lambda: True)
    endpoint = SipEndpoint(
        controller, metrics, TrustedSources(["127.0.0.0/8"]), max_receive_age_s=2.0
    )
    await endpoint.start(["127.0.0.1"], 0)
    assert controller.fast is not None
    made = batches(prepare, endpoint.port, sink.getsockname()[1], controller.fast.tag_key)
    rounds = -(-calls // BATCH)  # batches holding `calls` INVITEs
    wanted = iter(made[:rounds])
    real_recv = sip_transport.RECV_BATCH
    sip_transport.RECV_BATCH = lambda fd, most, stamps: next(wanted, [])
    reader = endpoint.udp[0]
    try:
        started = time.thread_time()
        for _ in range(rounds):
            reader._readable()
            await asyncio.sleep(0)  # a turn of the loop, as between wake-ups
        used = time.thread_time() - started
    finally:
        sip_transport.RECV_BATCH = real_recv
        await endpoint.stop()
        sink.close()
    decided = metrics.decisions.total()
    assert decided == calls, f"{decided} of {calls} INVITEs decided"
    return used / calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--prepare", type=int, help="datagrams made for this many calls (>= --calls)")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    prepare = max(args.calls, args.prepare or 0)
    results = [uvloop.run(one_run(args.calls, prepare)) for _ in range(args.runs)]
    print(
        f"INVITE->302->ACK through the UDP shell, per call: median "
        f"{statistics.median(results) * 1e6:.1f} us, min {min(results) * 1e6:.1f} us of the "
        f"loop thread's CPU over {args.runs} runs of {args.calls} calls"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
