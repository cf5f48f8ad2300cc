"""RTP pacer benchmark: N concurrent announcement streams, measured by another process.

The pacer (one :class:`ringback.net.rtp_pacer.RtpPacer`, uvloop if installed) runs in this
process pinned to CPU 0 and plays N streams of the first 10 s of the shipped warning
recording (PCMU), started at random times over the first second, each from its own socket
of an :class:`RtpPortPool`. A receiver process pinned to CPU 1 reads a few UDP sockets with
epoll (streams are spread over them and demultiplexed by SSRC), timestamps every datagram
with ``time.monotonic_ns()`` right after ``recv`` and reports, per N: packets sent/received,
lost, out of order, inter-arrival jitter ``|interval - 20 ms|`` p50/p99/max, and the
achieved packet rate while all N streams play. Loopback only.

``--codecs mix`` plays the streams round-robin in PCMU, PCMA, G.722, Opus, AMR-NB
(bandwidth-efficient) and AMR-WB (octet-aligned), each with its payload type and RTP
clock, all prepared once before the run (issue 15: no per-call encoding, so the pacer's
cost should match G.711's).

    .venv/bin/python bench/rtp_streams.py [--counts 250,500,1000,1500] [--seconds 10]
        [--codecs g711|mix]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import select
import socket
import struct
import time
from collections import defaultdict
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from ringback.media import shipped
from ringback.media.encode import prepare_all
from ringback.media.prepared import PreparedAudio
from ringback.media.rtp import RtpStream
from ringback.net.rtp_pacer import Outcome, RtpPacer, RtpPortPool

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
PACER_CPU, RECEIVER_CPU = 0, 1


def realtime(enable: bool) -> str:
    """SCHED_RR priority 10 (as a deployment would set with systemd CPUSchedulingPolicy=rr)."""
    if not enable:
        return "SCHED_OTHER"
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
        return "SCHED_RR"
    except (AttributeError, OSError, PermissionError):
        return "SCHED_OTHER (RR refused)"


def runqueue_wait_ms() -> float:
    """Time this process was runnable but not running (another process had the CPU)."""
    try:
        with open("/proc/self/schedstat") as f:
            return int(f.read().split()[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return float("nan")


def pin(cpu: int) -> str:
    try:
        if (os.cpu_count() or 1) > max(cpu, 1):  # the fork inherits the parent's mask
            os.sched_setaffinity(0, {cpu})
            return f"cpu{cpu}"
    except (AttributeError, OSError):
        pass
    return "unpinned"


# --- receiver process ------------------------------------------------------------------------


def receiver_main(conn: Connection, n_sockets: int, rt: bool) -> None:
    where = pin(RECEIVER_CPU) + " " + realtime(rt)
    socks = []
    for _ in range(n_sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    conn.send(([s.getsockname() for s in socks], where))
    ep = select.epoll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        ep.register(fd, select.EPOLLIN)
    ep.register(conn.fileno(), select.EPOLLIN)
    headers: list[bytes] = []
    stamps: list[int] = []
    add_h, add_t, now_ns = headers.append, stamps.append, time.monotonic_ns
    wait0 = runqueue_wait_ms()
    running = True
    while running:
        for fd, _ in ep.poll():
            rx = by_fd.get(fd)
            if rx is None:
                running = False
                continue
            recv = rx.recv
            while True:
                try:
                    data = recv(2048)
                except BlockingIOError:
                    break
                add_t(now_ns())
                add_h(data[:12])
    waited = runqueue_wait_ms() - wait0
    conn.recv()
    report = analyse(headers, stamps)
    report["runqueue_wait_ms"] = waited
    conn.send(report)


def analyse(headers: list[bytes], stamps: list[int]) -> dict[str, Any]:
    per_ssrc: dict[int, list[tuple[int, int]]] = defaultdict(list)
    unpack = struct.Struct(">2xH4xI").unpack
    for h, t in zip(headers, stamps, strict=True):
        seq, ssrc = unpack(h)
        per_ssrc[ssrc].append((seq, t))
    jitter: list[np.ndarray[Any, np.dtype[np.int64]]] = []
    reordered = 0
    for packets in per_ssrc.values():
        seqs = np.array([p[0] for p in packets], dtype=np.int64)
        ts = np.array([p[1] for p in packets], dtype=np.int64)
        seqs = np.unwrap(seqs, period=65536).astype(np.int64)  # sequence numbers wrap at 2**16
        step = np.diff(seqs)
        reordered += int(np.count_nonzero(step <= 0))
        consecutive = step == 1  # an interval across a loss is not a jitter sample
        jitter.append(np.abs(np.diff(ts)[consecutive] - 20_000_000))
    all_j = np.concatenate(jitter) if jitter else np.zeros(1, dtype=np.int64)
    arrivals = np.array(stamps, dtype=np.int64)
    return {
        "received": len(stamps),
        "streams": len(per_ssrc),
        "reordered": reordered,
        "jitter_ms": [float(np.percentile(all_j, q)) / 1e6 for q in (50, 99, 99.9)]
        + [float(all_j.max()) / 1e6],
        "first_ns": int(arrivals.min()) if arrivals.size else 0,
        "stamps": arrivals,  # for the steady-state rate
    }


# --- pacer side ------------------------------------------------------------------------------


# (frames key, payload type, RTP timestamp step per 20 ms) of each codec in the mix
MIX = [
    ("PCMU", 0, 160),
    ("PCMA", 8, 160),
    ("G722", 9, 160),
    ("opus", 111, 960),
    ("AMR@7/be", 97, 160),
    ("AMR-WB@2/oa", 98, 320),
]


def streams_of(codecs: str, seconds: float) -> list[tuple[list[bytes], int, int]]:
    pcm = shipped.read_pcm8k(shipped.default_warning_path())[: int(seconds * 8000) * 2]
    if codecs == "g711":
        return [(PreparedAudio.from_pcm(pcm).frames("PCMU"), 0, 160)]
    audio = prepare_all(pcm, 8000, {key.split("/")[0] for key, _, _ in MIX})
    return [(audio.frames(key), pt, step) for key, pt, step in MIX]


async def play(
    n: int,
    seconds: float,
    spread: float,
    addrs: list[tuple[str, int]],
    kinds: list[tuple[list[bytes], int, int]],
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    pacer = RtpPacer(loop)
    pool = RtpPortPool("127.0.0.1", 20000, 29999)
    outcomes: list[Outcome] = []
    all_done = loop.create_future()

    def on_done(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if len(outcomes) == n and not all_done.done():
            all_done.set_result(None)

    def start(j: int) -> None:
        frames, pt, step = kinds[j % len(kinds)]
        stream = RtpStream(frames, pt, samples_per_packet=step)
        pacer.start(stream, addrs[j % len(addrs)], pool.allocate(), on_done=on_done)

    rng = random.Random(n)
    probe = await timer_probe(1.0)
    wait0 = runqueue_wait_ms()
    cpu0 = time.process_time()
    wall0 = time.monotonic()
    for j in range(n):
        loop.call_later(rng.uniform(0, spread), start, j)
    await asyncio.wait_for(all_done, seconds + spread + 10)
    cpu = time.process_time() - cpu0
    waited = runqueue_wait_ms() - wait0
    wall = time.monotonic() - wall0
    return {
        "sent": pacer.packets_sent,
        "dropped_at_sender": pacer.packets_dropped,
        "outcomes": {o: outcomes.count(o) for o in set(outcomes)},
        "cpu_pct": 100 * cpu / wall,
        "cpu_us_per_packet": 1e6 * cpu / max(pacer.packets_sent, 1),
        "max_catch_up_ticks": pacer.max_catch_up,
        "late_wakes": f"{pacer.late_wakes}/{pacer.wakes}",
        "max_lateness_ms": pacer.max_lateness_s * 1000,
        "probe_ms": probe,
        "runqueue_wait_ms": waited,
    }


async def timer_probe(seconds: float) -> tuple[float, float]:
    """How late this process's 5 ms timers fire with nothing else to do (p99, max in ms):
    the floor under any jitter the pacer can achieve on this machine right now."""
    loop = asyncio.get_running_loop()
    late: list[float] = []
    done = loop.create_future()
    t0 = loop.time()
    n = int(seconds / 0.005)

    def tick(k: int) -> None:
        late.append(time.monotonic() - (t0 + k * 0.005))
        if k < n:
            loop.call_at(t0 + (k + 1) * 0.005, tick, k + 1)
        else:
            done.set_result(None)

    loop.call_at(t0 + 0.005, tick, 1)
    await done
    a = np.array(late) * 1000
    return float(np.percentile(a, 99)), float(a.max())


def run_loop(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro), "asyncio"
    return uvloop.run(coro), "uvloop"


def one_run(
    n: int,
    seconds: float,
    spread: float,
    n_sockets: int,
    rt: bool,
    kinds: list[tuple[list[bytes], int, int]],
) -> None:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=receiver_main, args=(child, n_sockets, rt), daemon=True)
    proc.start()
    addrs, rx_where = parent.recv()
    sent, loop_name = run_loop(play(n, seconds, spread, addrs, kinds))
    time.sleep(0.3)  # let the receiver drain
    parent.send("stop")
    rx = parent.recv()
    proc.join(5)
    stamps = rx.pop("stamps")
    t0 = rx["first_ns"]
    # steady state: every stream has started (spread) and none has finished yet
    lo, hi = t0 + int((spread + 0.1) * 1e9), t0 + int((seconds - 0.1) * 1e9)
    steady = int(np.count_nonzero((stamps >= lo) & (stamps < hi)))
    pps = steady / ((hi - lo) / 1e9) if hi > lo else float("nan")
    lost = sent["sent"] - rx["received"]
    j50, j99, j999, jmax = rx["jitter_ms"]
    print(
        f"N={n:5d} {loop_name}  sent {sent['sent']:7d}  received {rx['received']:7d}  "
        f"lost {lost:4d}  reordered {rx['reordered']}  streams {rx['streams']}  "
        f"jitter p50 {j50:.3f} p99 {j99:.3f} p99.9 {j999:.3f} max {jmax:.3f} ms  "
        f"{pps:8.0f} pkt/s steady  pacer CPU {sent['cpu_pct']:.0f}% "
        f"({sent['cpu_us_per_packet']:.2f} µs/packet)  "
        f"late wakes {sent['late_wakes']} (max {sent['max_lateness_ms']:.1f} ms)  "
        f"catch-up max {sent['max_catch_up_ticks']} ticks  "
        f"idle-timer probe p99 {sent['probe_ms'][0]:.2f} max {sent['probe_ms'][1]:.2f} ms  "
        f"runqueue wait pacer {sent['runqueue_wait_ms']:.0f} ms "
        f"rx {rx['runqueue_wait_ms']:.0f} ms  "
        f"outcomes {sent['outcomes']}  rx {rx_where}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counts", default="250,500,1000,1500")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--spread", type=float, default=1.0, help="start streams over this many s")
    ap.add_argument("--sockets", type=int, default=8, help="receiver sockets")
    ap.add_argument("--rt", action="store_true", help="run both processes SCHED_RR")
    ap.add_argument("--codecs", choices=("g711", "mix"), default="g711")
    args = ap.parse_args()
    kinds = streams_of(args.codecs, args.seconds)  # prepared once, before any stream
    where = pin(PACER_CPU) + " " + realtime(args.rt)
    print(
        f"pacer on {where}, {os.cpu_count()} CPUs, {args.seconds:g} s recording, "
        f"codecs {args.codecs}",
        flush=True,
    )
    for n in (int(x) for x in args.counts.split(",")):
        one_run(n, args.seconds, args.spread, args.sockets, args.rt, kinds)


if __name__ == "__main__":
    main()
