"""Media relay benchmark: N concurrent bridged G.711 calls through ONE ringback process.

For each N: `ringback serve` in ringback mode (one worker, pinned to CPU 0) takes N calls
from the bench's own caller (bench/call_peers.py) to an operator test number and sends each
callee leg to the bench's own callee, which answers at once; ringback bridges both legs on
its built-in relay. Once every call is answered, a sender process sends 50 packets/s of
20 ms PCMU RTP from both ends of every call (2 × N streams, start phases spread evenly over
20 ms, 172-byte packets) for ``--seconds``; a receiver process reads every call's two RTP
sockets. Then every call is hung up with BYE.

What is measured, at the receivers, per direction (caller → callee, callee → caller):
- loss: packets sent that never arrived (also duplicates and reordering);
- transit time = the kernel's receive timestamp (SO_TIMESTAMPNS, so the receiver's own
  scheduling does not count) minus the send time the sender wrote into the payload just
  before ``sendto`` (CLOCK_REALTIME on both sides). The relay's added jitter is the
  **transit-time deviation**: each packet's transit minus its stream's fastest;
  p50/p99/p99.9/max over every packet;
- RFC 3550 interarrival jitter J (§6.4.1, J += (|D| − J)/16 with D the difference of
  consecutive transit times), every packet's running value after the 16th of its stream;
- ringback's CPU time (/proc) during the media window: percent of one core, µs per packet
  relayed and percent of a core per call; relay counters from /metrics.

``--via ringback-rtpengine`` is the same with ringback's rtpengine backend
(``[ringback] media = "rtpengine"``): ringback does the signalling and the warning, an
rtpengine daemon beside it (pinned to CPU 0 too) relays; CPU is the sum of both processes.
``--via direct`` sends the same streams straight from caller socket to callee socket with no
relay: the floor of this measurement on this machine right now. ``--via rtpengine`` puts
an rtpengine daemon (Debian 12's 10.5, userspace forwarding, ``--table=-1``, one thread,
pinned to CPU 0) in ringback's place: the bench sets each call up on it with ng
``offer``/``answer`` (bench/rtpengine_ng.py) and the same media goes through it, so its
figures compare with the built-in relay's.

A step "holds" when every call was answered, no packet was lost in either direction, and
the transit-deviation p99 is under 2 ms in both.

    .venv/bin/python bench/relay.py [--counts 250,500,750,1000] [--seconds 10]
    .venv/bin/python bench/relay.py --via direct --counts 500
    .venv/bin/python bench/relay.py --via rtpengine --rt --counts 500,1000

``--rt`` runs the relay (and the sender) under SCHED_RR, as a deployment would give it
systemd's CPUSchedulingPolicy=rr; ``--profile`` samples ringback with py-spy
(``pip install py-spy``) during the media.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import select
import shutil
import socket
import struct
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contextlib

import call_peers
from call_peers import Call, Callee, Caller, harness, log

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SERVER_CPU, DRIVER_CPU = 0, 1
PINNED = True  # --no-pin: nothing is pinned (the smoke test inside pytest)
PTIME_NS = 20_000_000
PAYLOAD = 160  # 20 ms of PCMU
HEADER = struct.Struct("!BBHII")  # RTP fixed header
STAMP = struct.Struct("!q")  # send time, ns, CLOCK_REALTIME
SLOTS = 20  # the 20 ms tick is cut into 1 ms slots; the sender wakes once per slot


def pin(cpu: int, rt: bool = False) -> None:
    """Run on ``cpu`` (when there is one); ``rt``: under SCHED_RR too."""
    if PINNED and (os.cpu_count() or 1) > cpu:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})
    if rt:
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
        except OSError:
            log("SCHED_RR refused")


# --------------------------------------------------------------------------- media: sender


def sender_main(
    conn: Connection,
    streams: list[tuple[socket.socket, tuple[str, int], int]],
    seconds: float,
    start_ns: int,
    rt: bool,
) -> None:
    """Send ``seconds`` of 50 pps RTP on every stream (socket, destination, SSRC), stream i
    at phase i/len × 20 ms of each tick, and report packets sent and how late they went."""
    pin(DRIVER_CPU, rt)
    n = len(streams)
    ticks = int(seconds * 1000 / 20)
    slots: list[list[int]] = [[] for _ in range(SLOTS)]
    for i in range(n):
        slots[i * SLOTS // n].append(i)
    buf = bytearray(HEADER.size + PAYLOAD)
    buf[HEADER.size + STAMP.size :] = b"\xff" * (PAYLOAD - STAMP.size)  # μ-law silence
    pack_header, pack_stamp = HEADER.pack_into, STAMP.pack_into
    sent = [0] * n
    failed = 0
    late: list[int] = []
    now_ns, real_ns = time.monotonic_ns, time.time_ns
    for k in range(ticks):
        for s, members in enumerate(slots):
            due = start_ns + k * PTIME_NS + s * PTIME_NS // SLOTS
            wait = due - now_ns()
            if wait > 0:
                time.sleep(wait / 1e9)
            late.append(now_ns() - due)
            for i in members:
                sock, dest, ssrc = streams[i]
                pack_header(buf, 0, 0x80, 0, k & 0xFFFF, (k * 160) & 0xFFFFFFFF, ssrc)
                pack_stamp(buf, HEADER.size, real_ns())
                try:
                    sock.sendto(buf, dest)
                    sent[i] += 1
                except OSError:
                    failed += 1
    lateness = np.array(late, dtype=np.int64) / 1e6
    conn.send(
        {
            "sent": sent,
            "send_failed": failed,
            "late_ms": [float(np.percentile(lateness, q)) for q in (50, 99)]
            + [float(lateness.max())],
        }
    )


# ------------------------------------------------------------------------- media: receiver


def receiver_main(conn: Connection, socks: list[socket.socket], ssrcs: set[int]) -> None:
    """Read every socket until told to stop; keep (header + send stamp, kernel stamp) of
    each packet of ours, then analyse and send the result.

    The kernel stamps each packet as it arrives, so this process may lag behind: it runs
    at the lowest priority (never SCHED_RR) so that the sender, on the same CPU, keeps
    its schedule; the sockets' buffers (1 MB, about 25 s of one stream) hold the backlog,
    and a last pass after the stop reads what is left."""
    pin(DRIVER_CPU)
    os.nice(19)
    ep = select.epoll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        ep.register(fd, select.EPOLLIN)
    ep.register(conn.fileno(), select.EPOLLIN)
    heads: list[bytes] = []
    stamps: list[bytes] = []
    add_h, add_s = heads.append, stamps.append
    anc = socket.CMSG_SPACE(16)

    def drain(sock: socket.socket) -> None:
        recvmsg = sock.recvmsg
        while True:
            try:
                data, ancdata, _, _ = recvmsg(2048, anc)
            except BlockingIOError:
                return
            except OSError:
                continue
            if len(data) >= 20 and ancdata:
                add_h(data[:20])
                add_s(ancdata[0][2])

    running = True
    while running:
        for fd, _ in ep.poll():
            sock = by_fd.get(fd)
            if sock is None:
                running = False
            else:
                drain(sock)
    for sock in socks:
        drain(sock)
    conn.recv()
    conn.send(analyse(heads, stamps, ssrcs))


def analyse(heads: list[bytes], stamps: list[bytes], ssrcs: set[int]) -> dict[str, Any]:
    """Loss, transit-time deviation and RFC 3550 jitter per SSRC (packets of other SSRCs,
    e.g. the warning ringback played before the answer, are left out)."""
    if not heads:
        return {"streams": {}}
    raw = np.frombuffer(b"".join(heads), dtype=np.uint8).reshape(-1, 20)
    seq = raw[:, 2:4].copy().view(">u2").ravel().astype(np.int64)
    ssrc = raw[:, 8:12].copy().view(">u4").ravel().astype(np.int64)
    tx = raw[:, 12:20].copy().view(">i8").ravel().astype(np.int64)
    ts = np.frombuffer(b"".join(stamps), dtype=np.int64).reshape(-1, 2)
    rx = ts[:, 0] * 1_000_000_000 + ts[:, 1]
    out: dict[int, dict[str, Any]] = {}
    order = np.argsort(ssrc, kind="stable")  # arrival order kept within each stream
    ssrc, seq, tx, rx = ssrc[order], seq[order], tx[order], rx[order]
    bounds = np.flatnonzero(np.diff(ssrc)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(ssrc)], strict=True):
        key = int(ssrc[lo])
        if key not in ssrcs:
            continue
        s_seq = seq[lo:hi]
        transit = rx[lo:hi] - tx[lo:hi]
        unique = len(np.unique(s_seq))
        d = np.abs(np.diff(transit)).astype(np.float64)
        j = np.empty_like(d)
        acc = 0.0
        for i, v in enumerate(d.tolist()):  # RFC 3550 §6.4.1, in arrival order
            acc += (v - acc) / 16
            j[i] = acc
        out[key] = {
            "received": hi - lo,
            "unique": unique,
            "reordered": int(np.count_nonzero(np.diff(s_seq) < 0)),
            "deviation": transit - transit.min(),
            "tx": tx[lo:hi],
            "jitter": j[15:],
            "transit_min": int(transit.min()),
        }
    return {"streams": out}


def summarise(per: dict[int, dict[str, Any]], sent: dict[int, int]) -> dict[str, Any]:
    mine = [per[s] for s in sent if s in per]
    dev = np.concatenate([p["deviation"] for p in mine]) / 1e6 if mine else np.zeros(1)
    jit = np.concatenate([p["jitter"] for p in mine]) / 1e6 if mine else np.zeros(1)
    late_at = np.concatenate([p["tx"][p["deviation"] > 1_000_000] for p in mine]) if mine else []
    # in how many distinct 10 ms windows packets were over 1 ms late: a few = stalls
    stall_windows = len(np.unique(np.asarray(late_at) // 10_000_000))
    expected = sum(sent.values())
    unique = sum(p["unique"] for p in mine)
    return {
        "streams": len(sent),
        "streams_heard": len(mine),
        "sent": expected,
        "received": sum(p["received"] for p in mine),
        "lost": expected - unique,
        "duplicates": sum(p["received"] - p["unique"] for p in mine),
        "reordered": sum(p["reordered"] for p in mine),
        "deviation_ms": [float(np.percentile(dev, q)) for q in (50, 99, 99.9)] + [float(dev.max())],
        "rfc3550_jitter_ms": [float(np.percentile(jit, q)) for q in (50, 99)] + [float(jit.max())],
        "windows_over_1ms": stall_windows,
        "transit_min_ms": float(np.median([p["transit_min"] for p in mine]) / 1e6) if mine else 0,
    }


def run_media(
    calls: list[Call],
    routes: dict[str, list[tuple[socket.socket, tuple[str, int], int]]],
    seconds: float,
    rt: bool,
    pids: list[int],
) -> dict[str, Any]:
    """Send and receive every stream in two forked processes; per-direction results."""
    ctx = mp.get_context("fork")
    socks = [c.caller_rtp for c in calls] + [c.callee_rtp for c in calls]
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    all_streams = routes["caller_to_callee"] + routes["callee_to_caller"]
    ssrcs = {s for _, _, s in all_streams}
    rx_parent, rx_child = ctx.Pipe()
    tx_parent, tx_child = ctx.Pipe()
    receiver = ctx.Process(target=receiver_main, args=(rx_child, socks, ssrcs), daemon=True)
    receiver.start()
    start_ns = time.monotonic_ns() + 300_000_000
    sender = ctx.Process(
        target=sender_main, args=(tx_child, all_streams, seconds, start_ns, rt), daemon=True
    )
    sender.start()
    time.sleep(max(0.0, (start_ns - time.monotonic_ns()) / 1e9))
    cpu0, wall0 = [call_peers.cpu_seconds(p) for p in pids], time.monotonic()
    sent = tx_parent.recv()  # the sender is done
    wall = time.monotonic() - wall0
    cpu = sum(call_peers.cpu_seconds(p) - c for p, c in zip(pids, cpu0, strict=True))
    sender.join(10)
    time.sleep(0.5)  # the last packets drain
    rx_parent.send("stop")  # wakes the receiver's epoll
    received = rx_parent.recv()["streams"]
    receiver.join(10)
    counts = dict(zip((s for _, _, s in all_streams), sent["sent"], strict=True))
    result: dict[str, Any] = {"sender": {k: sent[k] for k in ("send_failed", "late_ms")}}
    result["cpu_s"], result["media_s"] = cpu, wall
    for direction, streams in routes.items():
        result[direction] = summarise(received, {s: counts[s] for _, _, s in streams})
    return result


# --------------------------------------------------------------------------- one step


async def one_step(
    n: int,
    args: argparse.Namespace,
    server: call_peers.Ringback | None,
    callee: Callee | None,
    caller: Caller | None,
    calls_by_index: dict[int, Call],
    pids: list[int],
    ng: Any = None,
) -> dict[str, Any]:
    calls = [Call(i, call_peers.rtp_socket(), call_peers.rtp_socket()) for i in range(n)]
    calls_by_index.clear()
    calls_by_index.update({c.index: c for c in calls})
    step: dict[str, Any] = {"calls": n, "seconds": args.seconds}
    if server is not None:
        assert caller is not None and callee is not None
        relayed0 = server.metric("ringback_relay_packets")
        refused0 = server.metric("ringback_relay_packets_refused")
        t0 = time.monotonic()
        answered, finals = await call_peers.place_calls(
            caller, calls, args.setup_rate, timeout=n / args.setup_rate + 15
        )
        step["setup_s"] = round(time.monotonic() - t0, 2)
        step["answered"], step["finals"] = answered, finals
        calls = [
            c for c in calls if c.final == 200 and c.caller_relay and c.callee_relay is not None
        ]
        if len(calls) < n:
            log(f"only {len(calls)} of {n} calls answered with media: {finals}")
        await asyncio.sleep(0.5)  # the warnings' last frames have gone
    elif ng is not None:
        t0 = time.monotonic()
        step["answered"] = await asyncio.to_thread(rtpengine_calls, ng, calls)
        step["setup_s"] = round(time.monotonic() - t0, 2)
    else:
        step["answered"] = n
    routes: dict[str, list[tuple[socket.socket, tuple[str, int], int]]] = {
        "caller_to_callee": [],
        "callee_to_caller": [],
    }
    for c in calls:
        a_ssrc, b_ssrc = 0x10000000 + c.index, 0x20000000 + c.index
        if server is None and ng is None:
            to_callee = c.callee_rtp.getsockname()
            to_caller = c.caller_rtp.getsockname()
        else:
            assert c.caller_relay is not None and c.callee_relay is not None
            to_callee, to_caller = c.caller_relay, c.callee_relay
        routes["caller_to_callee"].append((c.caller_rtp, to_callee, a_ssrc))
        routes["callee_to_caller"].append((c.callee_rtp, to_caller, b_ssrc))
    cpu0 = [call_peers.cpu_seconds(p) for p in pids]
    wall0 = time.monotonic()
    await asyncio.sleep(1.0)
    if pids:  # the calls are up, no RTP yet: the floor of the server's CPU
        idle = sum(call_peers.cpu_seconds(p) - c for p, c in zip(pids, cpu0, strict=True))
        step["server_idle_cpu_pct"] = 100 * idle / (time.monotonic() - wall0)
    profiler = None
    if args.profile and server is not None:
        profiler = await asyncio.create_subprocess_exec(
            shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
            "record",
            "-r",
            "250",
            "-d",
            str(int(args.seconds)),
            "-f",
            "raw",
            "-o",
            str(Path(args.workdir or ".") / f"profile-{n}.txt"),
            "-p",
            str(server.pid),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
    media = await asyncio.to_thread(run_media, calls, routes, args.seconds, args.rt, pids)
    if profiler is not None:
        await profiler.wait()
    cpu, wall = media.pop("cpu_s"), media.pop("media_s")
    step.update(media)
    step["server_cpu_pct"] = 100 * cpu / wall if pids else None
    packets = sum(step[d]["received"] for d in ("caller_to_callee", "callee_to_caller"))
    step["server_cpu_us_per_packet"] = 1e6 * cpu / packets if pids and packets else None
    step["server_cpu_pct_per_call"] = 100 * cpu / wall / len(calls) if pids and calls else None
    if server is not None:
        assert caller is not None and callee is not None
        step["bye_ok"] = await call_peers.hang_up(caller, calls, args.setup_rate, timeout=15)
        deadline = time.monotonic() + 5  # the callee legs' BYEs may come after the 200s
        while not all(c.callee_bye for c in calls) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        step["callee_byes"] = sum(1 for c in calls if c.callee_bye)
        await asyncio.sleep(1.0)  # rtpengine's counts come in as its calls end
        step["relay_packets"] = server.metric("ringback_relay_packets") - relayed0
        step["relay_refused"] = server.metric("ringback_relay_packets_refused") - refused0
    if ng is not None:
        for c in calls:
            ng.command("delete", {"call-id": c.call_id})
    for c in calls_by_index.values():
        c.caller_rtp.close()
        c.callee_rtp.close()
    step["holds"] = bool(
        step["answered"] == n
        and all(step[d]["lost"] == 0 for d in ("caller_to_callee", "callee_to_caller"))
        and all(step[d]["streams_heard"] == n for d in ("caller_to_callee", "callee_to_caller"))
        and all(step[d]["deviation_ms"][1] < 2.0 for d in ("caller_to_callee", "callee_to_caller"))
    )
    return step


def rtpengine_calls(ng: Any, calls: list[Call]) -> int:
    """Each call set up on rtpengine as a B2BUA would: the caller's SDP offered (rtpengine
    answers with its address for the callee), the callee's SDP answered (its address for
    the caller)."""
    for c in calls:
        c.call_id = f"bench-{c.index}-{time.monotonic_ns()}"
        a = call_peers.sdp_for(c.caller_rtp.getsockname()[1], 1000 + c.index)
        b = call_peers.sdp_for(c.callee_rtp.getsockname()[1], 2000 + c.index)
        ids = {"call-id": c.call_id, "from-tag": f"a{c.index}", "flags": ["strict source"]}
        offer = ng.command("offer", {**ids, "sdp": a})
        c.callee_relay = call_peers.media_address(offer[b"sdp"])
        answer = ng.command("answer", {**ids, "to-tag": f"b{c.index}", "sdp": b})
        c.caller_relay = call_peers.media_address(answer[b"sdp"])
    return len(calls)


def describe(step: dict[str, Any]) -> str:
    parts = [f"N={step['calls']:5d} answered {step['answered']}"]
    for d, name in (("caller_to_callee", "A→B"), ("callee_to_caller", "B→A")):
        r = step[d]
        dev, jit = r["deviation_ms"], r["rfc3550_jitter_ms"]
        parts.append(
            f"{name}: sent {r['sent']} lost {r['lost']} dup {r['duplicates']} "
            f"reord {r['reordered']} dev p50 {dev[0]:.3f} p99 {dev[1]:.3f} "
            f"p99.9 {dev[2]:.3f} max {dev[3]:.2f} ms, J p50 {jit[0]:.3f} p99 {jit[1]:.3f} ms, "
            f"transit min {r['transit_min_ms']:.3f} ms, "
            f"10 ms windows with a packet over 1 ms {r['windows_over_1ms']}"
        )
    if step.get("server_cpu_pct") is not None:
        parts.append(
            f"server CPU {step['server_cpu_pct']:.1f}% (idle with the calls up "
            f"{step['server_idle_cpu_pct']:.1f}%) "
            f"({step['server_cpu_us_per_packet']:.1f} µs/packet, "
            f"{step['server_cpu_pct_per_call']:.3f}% per call)"
        )
    late = step["sender"]["late_ms"]
    parts.append(f"sender late p99 {late[1]:.2f} max {late[2]:.2f} ms")
    if "bye_ok" in step:
        parts.append(
            f"relayed {step['relay_packets']:.0f} refused {step['relay_refused']:.0f} "
            f"BYE ok {step['bye_ok']} callee BYEs {step['callee_byes']}"
        )
    parts.append("HOLDS" if step["holds"] else "misses")
    return " | ".join(parts)


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    processes = harness.ProcessSet()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="relay-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    calls_by_index: dict[int, Call] = {}
    results: list[dict[str, Any]] = []
    try:
        server = callee = caller = ng = None
        pids: list[int] = []
        if args.via in ("rtpengine", "ringback-rtpengine"):
            from rtpengine_ng import NgClient, start_rtpengine

            daemon = start_rtpengine(
                processes, workdir, cpu=SERVER_CPU if PINNED else None, rt=args.rt
            )
            pids.append(daemon.pid)
            if args.via == "rtpengine":
                ng = NgClient(daemon.ng)
        if args.via.startswith("ringback"):
            callee = Callee(calls_by_index)
            await callee.start()
            database = args.database or call_peers.start_database(workdir)
            media = ""
            if args.via == "ringback-rtpengine":
                media = f"media = 'rtpengine'\nrtpengine_ng = '{daemon.ng[0]}:{daemon.ng[1]}'\n"
            server = call_peers.start_ringback(
                processes,
                workdir,
                database=database,
                next_hop=(call_peers.LOCALHOST, callee.port),
                cpu=SERVER_CPU if PINNED else None,
                rt=args.rt,
                ringback_toml=media,
            )
            pids.append(server.pid)
            caller = Caller(server.sip)
            await caller.start()
        for n in args.counts:
            step = await one_step(n, args, server, callee, caller, calls_by_index, pids, ng)
            step["via"] = args.via
            results.append(step)
            print(describe(step), flush=True)
            await asyncio.sleep(1.0)
    finally:
        processes.stop_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counts", default="250,500,750,1000", help="calls per step")
    ap.add_argument("--seconds", type=float, default=10.0, help="media per step")
    ap.add_argument("--setup-rate", type=float, default=200.0, help="calls/s set up and hung up")
    ap.add_argument(
        "--via",
        choices=("ringback", "ringback-rtpengine", "rtpengine", "direct"),
        default="ringback",
        help="what relays the media (direct: nothing, the measurement floor)",
    )
    ap.add_argument(
        "--rt", action="store_true", help="ringback, rtpengine and the RTP peers SCHED_RR"
    )
    ap.add_argument("--profile", action="store_true", help="py-spy ringback during the media")
    ap.add_argument("--no-pin", action="store_true", help="pin nothing to a CPU")
    ap.add_argument("--database", help="PostgreSQL DSN (default: an embedded one, removed after)")
    ap.add_argument("--workdir", help="where configs and logs go (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the workdir")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)
    args.counts = [int(x) for x in str(args.counts).split(",")]
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    global PINNED
    args = parse_args(argv)
    PINNED = not args.no_pin
    pin(DRIVER_CPU)
    log(f"{os.cpu_count()} CPUs; server on cpu{SERVER_CPU}, bench peers on cpu{DRIVER_CPU}")
    results = asyncio.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return results


if __name__ == "__main__":
    main()
