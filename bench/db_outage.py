"""Database outage under load: what callers see while PostgreSQL is killed and restarted.

A real `ringback serve` on an embedded PostgreSQL (seeded: one court, a listed number with
a 0.6 s recording, a second listed number first dialled only after the crash) gets a steady
UDP call load (--rate calls/s, 10 % listed) from the fault tests' load generator
(tests/integration/sip_load.py). Phases: --up-s with the database up, the postmaster killed
with SIGKILL, --down-s down, then PostgreSQL restarted and --after-s more. Per phase it
reports calls, failed calls (no 302), listed calls warned, and INVITE -> final response
times of unlisted calls (p50/p99); then the recovery: restart -> `/readyz` 200, and a
listing made through the API right after the restart -> its first warned call.

  .venv/bin/python bench/db_outage.py --rate 100
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from faults_support import api, kill_postmaster, start_node  # noqa: E402
from sip_load import Call, SipLoad  # noqa: E402
from test_database_faults import (  # noqa: E402
    LISTED_A,
    LISTED_B,
    LISTED_C,
    UNLISTED,
    _seed,
    _tomorrow,
)

from ringback.registry.embedded import EmbeddedPostgres  # noqa: E402


def row(name: str, calls: list[Call], listed: set[str]) -> str:
    failed = sum(c.final != 302 for c in calls)
    to_listed = [c for c in calls if c.number in listed]
    warned = sum(c.warned for c in to_listed)
    times = sorted(
        (c.final_at - c.sent_at) * 1000
        for c in calls
        if c.number not in listed and c.final_at is not None
    )
    p50 = statistics.median(times) if times else float("nan")
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))] if times else float("nan")
    return (
        f"| {name} | {len(calls)} | {failed} | {warned} / {len(to_listed)} | "
        f"{p50:.1f} | {p99:.1f} |"
    )


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="db-outage-", dir=args.workdir))
    postgres = EmbeddedPostgres(workdir / "pg")
    postgres.start()
    node = None
    try:
        token, recordings = await _seed(postgres.url)
        node = start_node(workdir / "node", postgres.url)
        await node.wait_ready()
        numbers = [*UNLISTED, LISTED_A]
        async with SipLoad(("127.0.0.1", node.sip_port)) as load:
            up = await load.run(numbers, args.rate, args.up_s)
            stop = asyncio.Event()
            steady = asyncio.create_task(load.run(numbers, args.rate, 3600, stop))
            await asyncio.sleep(1.0)
            killed_at = time.monotonic()
            await asyncio.to_thread(kill_postmaster, postgres)
            first_b = asyncio.create_task(load.run([LISTED_B], 1, args.down_s - 1, stop))
            await asyncio.sleep(args.down_s - 1)
            stop.set()
            down = await steady + await first_b
            restarted = time.monotonic()
            down_s = restarted - killed_at
            await asyncio.to_thread(postgres.start)
            db_back = time.monotonic() - restarted
            await node.wait_ready()
            ready_s = time.monotonic() - restarted
            body = {
                "case_ref": "CASE-C",
                "expires_at": _tomorrow(),
                "recording_id": recordings[LISTED_A],
            }
            while True:
                status, _ = await api(node, "PUT", f"/v1/listings/{LISTED_C}", token, body)
                if status != 503:
                    break
                await asyncio.sleep(0.1)
            put_ok = time.monotonic()
            while True:
                [probe] = await load.run([LISTED_C], 1, 0.5)
                if probe.warned:
                    break
                if time.monotonic() - put_ok > 60:
                    raise SystemExit("the new listing was never warned")
            warned_s = probe.sent_at - put_ok
            after = await load.run([*numbers, LISTED_B, LISTED_C], args.rate, args.after_s)
        listed = {LISTED_A, LISTED_B, LISTED_C}
        print(f"\n### Database outage at {args.rate:g} calls/s\n")
        print("| phase | calls | failed | listed warned | unlisted p50 ms | unlisted p99 ms |")
        print("|---|---:|---:|---:|---:|---:|")
        print(row(f"database up ({args.up_s:g} s)", up, listed))
        print(row(f"killed 1 s in, then down {down_s:.0f} s", down, listed))
        print(row(f"database back ({args.after_s:g} s)", after, listed))
        b_calls = [c for c in down if c.number == LISTED_B]
        print(
            f"\nFirst dialled during the outage: {LISTED_B} warned in "
            f"{sum(c.warned for c in b_calls)} of {len(b_calls)} calls (recording from the "
            "local cache)."
        )
        print(
            f"Recovery: PostgreSQL restarted in {db_back:.2f} s; `/readyz` 200 "
            f"{ready_s:.2f} s after the restart began; a listing PUT after the restart was "
            f"warned {warned_s:.2f} s after its 2xx (feed reconnect and catch-up)."
        )
        failed = sum(c.final != 302 for c in [*up, *down, *after])
        return 0 if failed == 0 else 1
    finally:
        if node is not None:
            node.stop()
        postgres.remove()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--up-s", type=float, default=5.0)
    p.add_argument("--down-s", type=float, default=20.0)
    p.add_argument("--after-s", type=float, default=5.0)
    p.add_argument("--workdir", type=Path, default=None)
    return asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
