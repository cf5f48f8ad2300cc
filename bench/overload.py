"""Overload end to end: what ringback answers, what the switch routes on by itself, what fails.

sipp callers -> Kamailio (config/switches/kamailio-redirect.cfg unchanged; RINGBACK_FR_MS
short) -> ringback -> Kamailio -> sipp callee, with ringback held to a fixed CPU budget by a
cgroup (`--cpu-fraction` of one core) so that it, not the switch or sipp, saturates on a
shared 2-core machine (tests/interop/overload.py says why). First the rate ringback
sustains is found (the highest `--rates` step where every call went through ringback's 302
and none failed), then twice that is offered for `--seconds`. One call in `--listed-every`
calls a listed number (a 1 s warning; `announcement.max_concurrent` = `--max-warnings`, so
warnings beyond it are skipped and counted). Markdown on stdout, progress on stderr.

    .venv/bin/python bench/overload.py
    .venv/bin/python bench/overload.py --cpu-fraction 0.1 --rates 100,150,200,250 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))

import harness  # noqa: E402
import overload  # noqa: E402

LISTED = "+8613800138000"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def seed(dsn: str) -> str:
    """The listed number with a 1 s recording; returns a switch token for the lookup probe."""
    from ringback.registry.common import Principal
    from ringback.registry.store import Store, create_pool

    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        store = Store(pool)
        await store.migrate()
        who = Principal("bench", "operator")
        court, _, _ = await store.courts.create("Bench Court", who)
        t = np.arange(8000) / 8000
        pcm = (0.4 * np.sin(2 * np.pi * (400 + 400 * t) * t) * 32767).astype("<i2").tobytes()
        recording = await store.recordings.add(court["id"], "chirp", pcm, who)
        now = datetime.now(UTC)
        await store.listings.put(
            court["id"],
            int(LISTED[1:]),
            "BENCH-1",
            now + timedelta(days=1),
            who,
            effective_at=now - timedelta(minutes=1),
            recording_id=recording["id"],
        )
        _, token = await store.tokens.issue("switch", None, "bench switch", who)
        return token
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu-fraction", type=float, default=0.1, help="ringback's CPU budget")
    ap.add_argument("--rates", default="100,150,200,300", help="calls/s steps to find capacity")
    ap.add_argument("--step-seconds", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the overload")
    ap.add_argument("--overload-rate", type=float, help="default: twice the sustained rate")
    ap.add_argument("--listed-every", type=int, default=10)
    ap.add_argument("--max-warnings", type=int, default=10)
    ap.add_argument("--fr-ms", type=int, default=1000, help="the switch's RINGBACK_FR_MS")
    ap.add_argument("--max-receive-age-ms", type=float, default=200.0)
    ap.add_argument("--probe-interval", type=float, default=0.1, help="s between lookups")
    args = ap.parse_args(argv)

    from ringback.registry.embedded import EmbeddedPostgres

    workdir = Path(tempfile.mkdtemp(prefix="overload-bench-"))
    db = EmbeddedPostgres(workdir / "db")
    dsn = db.start()
    atexit.register(db.remove)
    token = asyncio.run(seed(dsn))
    processes = harness.ProcessSet()
    atexit.register(processes.stop_all)
    node = harness.start_ringback(
        processes,
        workdir,
        database=dsn,
        sip_toml=f"max_receive_age_ms = {args.max_receive_age_ms}\n",
        announcement_toml=f"max_concurrent = {args.max_warnings}\n",
        log_level="info",
    )
    switch, _callee = overload.start_chain(processes, workdir, node, ringback_fr_ms=args.fr_ms)
    rows: list[overload.OverloadRun] = []
    with overload.cpu_budget(node.process.pid, args.cpu_fraction):
        time.sleep(3)  # two OPTIONS probes: the node is up at the switch
        sustained = 0.0
        for rate in [float(r) for r in args.rates.split(",")]:
            log(f"capacity step: {rate:g} calls/s for {args.step_seconds:g} s")
            run = overload.run_overload(
                processes, workdir, node, switch, rate=rate, seconds=args.step_seconds,
                listed=LISTED, listed_every=args.listed_every, token=token,
                probe_interval=args.probe_interval,
            )  # fmt: skip
            rows.append(run)
            log(run.row())
            if run.failed == 0 and run.routed_directly == 0:
                sustained = rate
            else:
                break
            time.sleep(3)
        offered = args.overload_rate or 2 * sustained
        log(f"overload: {offered:g} calls/s for {args.seconds:g} s (sustained {sustained:g})")
        time.sleep(3)
        over = overload.run_overload(
            processes, workdir, node, switch, rate=offered, seconds=args.seconds,
            listed=LISTED, listed_every=args.listed_every, token=token,
            probe_interval=args.probe_interval,
        )  # fmt: skip
    print(f"## Overload end to end ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)\n")
    print(f"Machine: {platform.node()}, {platform.processor() or platform.machine()}, shared.")
    print(f"Command: `.venv/bin/python bench/overload.py {' '.join(argv or sys.argv[1:])}`\n")
    print(
        f"ringback CPU budget: {args.cpu_fraction:g} of one core (cgroup); switch "
        f"RINGBACK_FR_MS {args.fr_ms}; sip.max_receive_age_ms {args.max_receive_age_ms:g}; "
        f"1 call in {args.listed_every} to a listed number (1 s warning), "
        f"announcement.max_concurrent {args.max_warnings}.\n"
    )
    print(overload.HEADER)
    for run in rows:
        print(run.row())
    print(over.row() + "  ← overload")
    print(f"\nSustained: {sustained:g} calls/s; overload offered {offered:g} calls/s.")
    print(f"Overload decisions: {over.decisions}")
    before, peak = over.rss_before_kb / 1024, over.peak_rss_kb / 1024
    print(f"RSS before the overload {before:.0f} MB, peak {peak:.0f} MB")
    print(f"Lookup max {over.lookup_max_s * 1000:.1f} ms, errors {len(over.lookup_errors)}")
    print(f"\nWork directory: {workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
