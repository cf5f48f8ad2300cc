"""The call core's cost per redirected call, with no network: INVITE -> 302 -> ACK.

Feeds the controller the same bytes the SIP shell would (an INVITE for an unlisted number,
then the ACK of its 302) and does the shell's per-message work (take the bytes to send,
the effects and the next deadline), at 10,000 calls/s of simulated time, firing the
transactions' timers every 10 ms as the shell does (so each call's Timers G and I are
paid for in the run; the last 5.5 s of calls' are fired after it, untimed). Run it under
two checkouts to compare them:

    PYTHONPATH=OLD/src .venv/bin/python bench/call_path.py
    .venv/bin/python bench/call_path.py
    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python \
        bench/call_path.py --calls 3000 --runs 1     # instructions: load-independent

Wall-clock figures on a shared 2-core VM are noisy: compare medians of runs made back to
back, or the instruction counts.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from ringback.calls import CallController, SipMetrics
from ringback.metrics import Registry
from ringback.registry.listing_index import Entry, ListingIndex
from ringback.registry.numbers import NumberingPlan

SRC = ("192.0.2.10", 5060)


def invite(i: int) -> bytes:
    ruri = f"sip:+8613700{i % 1_000_000:06d}@192.0.2.1:5060;user=phone"
    return (
        f"INVITE {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-{i};rport\r\n"
        "Max-Forwards: 70\r\n"
        f'From: "Caller" <sip:+8613911112222@192.0.2.10>;tag=f{i}\r\n'
        f"To: <{ruri}>\r\nCall-ID: c{i}@192.0.2.10\r\nCSeq: 1 INVITE\r\n"
        "Contact: <sip:+8613911112222@192.0.2.10:5060>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def ack(i: int, to_tag: str) -> bytes:
    ruri = f"sip:+8613700{i % 1_000_000:06d}@192.0.2.1:5060;user=phone"
    return (
        f"ACK {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-{i};rport\r\n"
        "Max-Forwards: 70\r\n"
        f'From: "Caller" <sip:+8613911112222@192.0.2.10>;tag=f{i}\r\n'
        f"To: <{ruri}>;tag={to_tag}\r\nCall-ID: c{i}@192.0.2.10\r\nCSeq: 1 ACK\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def run(calls: int, shell: bool = True) -> float:
    index = ListingIndex()
    for n in range(1000):
        index.upsert(8613800000000 + n, Entry(n + 1, 0, 0, 2**32 - 1))
    controller = CallController(
        index, NumberingPlan(), SipMetrics(Registry()), index_ready=lambda: True
    )
    invites = [invite(i) for i in range(calls)]
    shell_work = [
        getattr(controller, name)
        for name in ("take_effects", "next_deadline")
        if hasattr(controller, name)
    ]
    gc.collect()
    gc.disable()
    started = time.perf_counter()
    now = 1000.0
    poll = getattr(controller, "poll", None)
    for i, data in enumerate(invites):
        if poll is not None and i % 100 == 0:  # every 10 ms at 10,000 calls/s
            while (deadline := controller.next_deadline()) is not None and deadline <= now:
                poll(now)
            controller.take_outgoing()
        controller.receive(data, SRC, "udp", now)
        out = controller.take_outgoing()
        for work in shell_work:
            work()
        tag = out[-1][0].split(b";tag=")[-1].split(b"\r\n", 1)[0].decode()
        controller.receive(ack(i, tag), SRC, "udp", now)
        controller.take_outgoing()
        for work in shell_work:
            work()
        now += 0.0001
    elapsed = time.perf_counter() - started
    gc.enable()
    return elapsed / calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument(
        "--core-only", action="store_true", help="leave out the shell's per-message calls"
    )
    args = ap.parse_args()
    results = [run(args.calls, not args.core_only) for _ in range(args.runs)]
    print(
        f"INVITE->302->ACK per call: median {statistics.median(results) * 1e6:.1f} us, "
        f"min {min(results) * 1e6:.1f} us over {args.runs} runs of {args.calls} calls"
    )


if __name__ == "__main__":
    main()
