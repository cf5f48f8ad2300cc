"""Post-dial delay in ringback mode under a steady call load.

`ringback serve` in ringback mode (one worker, pinned to CPU 0) takes a steady stream of
calls to an operator test number from the bench's caller (bench/call_peers.py, CPU 1). Each
callee leg comes to the bench's callee, which rings (180) for ``--ring`` seconds while the
caller hears the warning, then answers; the caller holds the call ``--hold`` seconds and
hangs up. So at ``rate`` calls/s about rate × ring warnings play and rate × (ring + hold)
calls are up at once.

Measured per call, on one clock (the bench's ``time.monotonic_ns()``):
- post-dial delay: the caller's INVITE sent → the callee leg's INVITE received;
- time to the warning: the caller's INVITE sent → its 183 with the warning's SDP.
Percentiles over the calls after the first ``--warmup`` seconds, per rate, with the calls
that did not complete (no 200, no BYE answer) and ringback's CPU.

    .venv/bin/python bench/post_dial_delay.py [--rates 50,100,200] [--seconds 20] [--rt]

On a shared machine run it with ``--rt``: without it, ringback at normal priority got
about a fifth of a core beside the other developers' loads, fell behind at 100 calls/s,
and the "delay" measured was its wait for a CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import call_peers
from call_peers import Call, Callee, Caller, harness, log

SERVER_CPU, DRIVER_CPU = 0, 1


async def one_rate(
    rate: float,
    args: argparse.Namespace,
    caller: Caller,
    callee: Callee,
    server: call_peers.Ringback,
    first_index: int,
    shared: tuple[Any, Any],
) -> dict[str, Any]:
    n = int(rate * args.seconds)
    shared_a, shared_b = shared
    calls = [Call(first_index + i, shared_a, shared_b) for i in range(n)]
    callee.calls.update({c.index: c for c in calls})

    async def one(call: Call) -> None:
        caller.invite(call)
        assert call.answered is not None and call.ended is not None
        try:
            await asyncio.wait_for(asyncio.shield(call.answered), args.ring + 10)
        except TimeoutError:
            return
        if call.final != 200:
            return
        await asyncio.sleep(args.hold)
        caller.bye(call)
        try:
            await asyncio.wait_for(asyncio.shield(call.ended), 10)
        except TimeoutError:
            return

    gc0 = [server.metric(f"ringback_gc_pause_seconds_{k}") for k in ("count", "sum")]
    cpu0, wall0 = call_peers.cpu_seconds(server.pid), time.monotonic()
    shed0 = server.metric("ringback_sip_shed_total")
    tasks = []
    started = time.monotonic()
    for i, call in enumerate(calls):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(call)))
    await asyncio.gather(*tasks)
    cpu = call_peers.cpu_seconds(server.pid) - cpu0
    wall = time.monotonic() - wall0
    gc1 = [server.metric(f"ringback_gc_pause_seconds_{k}") for k in ("count", "sum")]
    warm = [c for c in calls if c.invite_sent_ns - calls[0].invite_sent_ns >= args.warmup * 1e9]
    pdd = np.array(
        [c.invite_at_callee_ns - c.invite_sent_ns for c in warm if c.invite_at_callee_ns]
    )
    early = np.array([c.early_ns - c.invite_sent_ns for c in warm if c.early_ns])

    def pct(a: np.ndarray[Any, Any]) -> list[float]:
        if a.size == 0:
            return [float("nan")] * 4
        return [float(np.percentile(a, q)) / 1e6 for q in (50, 90, 99)] + [float(a.max()) / 1e6]

    return {
        "rate": rate,
        "calls": n,
        "measured": len(warm),
        "reached_callee": sum(1 for c in calls if c.invite_at_callee_ns),
        "invites_retransmitted": sum(1 for c in calls if c.invite_retransmissions),
        "server_shed": int(server.metric("ringback_sip_shed_total") - shed0),
        "answered": sum(1 for c in calls if c.final == 200),
        "completed": sum(1 for c in calls if c.bye_ok),
        "finals": _count_finals(calls),
        "post_dial_delay_ms": pct(pdd),
        "time_to_warning_ms": pct(early),
        "server_cpu_pct": 100 * cpu / wall,
        # ringback serve collects garbage once a minute (automatic collection is off)
        "gc_collections": int(gc1[0] - gc0[0]),
        "gc_pause_ms": 1000 * (gc1[1] - gc0[1]),
    }


def _count_finals(calls: list[Call]) -> dict[int, int]:
    out: dict[int, int] = {}
    for c in calls:
        out[c.final] = out.get(c.final, 0) + 1
    return out


def describe(r: dict[str, Any]) -> str:
    p, w = r["post_dial_delay_ms"], r["time_to_warning_ms"]
    return (
        f"{r['rate']:g} calls/s: {r['calls']} calls, reached callee {r['reached_callee']}, "
        f"INVITE retransmitted {r['invites_retransmitted']} (ringback shed "
        f"{r['server_shed']}), "
        f"answered {r['answered']}, completed {r['completed']}, finals {r['finals']} | "
        f"post-dial delay p50 {p[0]:.2f} p90 {p[1]:.2f} p99 {p[2]:.2f} max {p[3]:.2f} ms | "
        f"INVITE→183 p50 {w[0]:.2f} p99 {w[2]:.2f} ms | server CPU {r['server_cpu_pct']:.0f}% | "
        f"GC {r['gc_collections']} collection(s), {r['gc_pause_ms']:.0f} ms"
    )


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    processes = harness.ProcessSet()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="pdd-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        callee = Callee({}, answer_after_s=args.ring)
        await callee.start()
        database = args.database or call_peers.start_database(workdir)
        server = call_peers.start_ringback(
            processes,
            workdir,
            database=database,
            next_hop=(call_peers.LOCALHOST, callee.port),
            cpu=SERVER_CPU if not args.no_pin else None,
            rt=args.rt,
        )
        caller = Caller(server.sip)
        await caller.start()
        # Every call's SDP names these two sockets. Nobody reads them: the warnings' RTP
        # (rate x ring x 50 packets/s) fills their buffers and the kernel drops the rest
        # quietly, so the bench's loop spends its time on SIP only.
        shared = (call_peers.rtp_socket(rcvbuf=4096), call_peers.rtp_socket(rcvbuf=4096))
        first = 0
        for rate in args.rates:
            r = await one_rate(rate, args, caller, callee, server, first, shared)
            first += r["calls"]
            results.append(r)
            print(describe(r), flush=True)
            await asyncio.sleep(2.0)
    finally:
        processes.stop_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="50,100,200", help="calls/s, one step each")
    ap.add_argument("--seconds", type=float, default=20.0, help="calls placed per step")
    ap.add_argument("--ring", type=float, default=2.0, help="the callee rings this long")
    ap.add_argument("--hold", type=float, default=1.0, help="answered calls last this long")
    ap.add_argument("--warmup", type=float, default=2.0, help="calls left out at the start")
    ap.add_argument("--rt", action="store_true", help="ringback and the bench under SCHED_RR")
    ap.add_argument("--no-pin", action="store_true", help="pin nothing to a CPU")
    ap.add_argument("--database", help="PostgreSQL DSN (default: an embedded one)")
    ap.add_argument("--workdir", help="configs and logs (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the workdir")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)
    args.rates = [float(x) for x in str(args.rates).split(",")]
    if not args.no_pin and (os.cpu_count() or 1) > DRIVER_CPU:
        os.sched_setaffinity(0, {DRIVER_CPU})
    if args.rt:  # the bench's caller and callee too: they time every call
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
    log(f"{os.cpu_count()} CPUs; ringback on cpu{SERVER_CPU}, bench peers on cpu{DRIVER_CPU}")
    results = asyncio.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return results


if __name__ == "__main__":
    main()
