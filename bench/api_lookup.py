"""HTTP dip benchmark: `GET /v1/lookup/{number}` requests/s and latency with keep-alive.

One Service (one worker process, uvloop, the index holding --listed numbers) is loaded by
`wrk` (Debian package `wrk`) over loopback with keep-alive connections; half the requests
ask for listed numbers and half for unlisted ones, spread over the whole range. wrk runs
in its own process, but on a 2-core machine it still shares the CPUs with the server.

    .venv/bin/python bench/api_lookup.py [--listed 100000] [--seconds 10] [--connections 16,64]

Targets: 5,000 requests/s per worker, p99 < 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from api_bench_common import bench_service, run

from ringback.registry.common import Principal

WHO = Principal("bench", "operator")
BASE = 8613000000000

LUA = """
math.randomseed(os.time())
local listed = %d
request = function()
  local n
  if math.random() < 0.5 then
    n = %d + math.random(0, listed - 1)
  else
    n = %d + math.random(0, listed - 1)
  end
  return wrk.format("GET", "/v1/lookup/+" .. n)
end
"""


def parse_wrk(text: str) -> dict[str, float]:
    def ms(value: str, unit: str) -> float:
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    out: dict[str, float] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if m:
            out[f"p{pct}"] = ms(m.group(1), m.group(2))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    out["non2xx"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in", text)
    out["requests"] = float(m.group(1)) if m else 0.0
    return out


async def main(args: argparse.Namespace) -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    async with bench_service() as service:
        store = service.store
        court, _, _ = await store.courts.create("Bench Court", WHO)
        now = datetime.now(UTC)
        await store.pool.execute(
            "INSERT INTO listings (number, court_id, case_ref, effective_at, expires_at) "
            "SELECT $1::int8 + g, $2, 'BENCH-' || g, $3, $4 FROM generate_series(0, $5 - 1) g",
            BASE,
            court["id"],
            now,
            now + timedelta(days=30),
            args.listed,
        )
        while service.index.lookup(BASE + args.listed - 1, now.timestamp() + 1) is None:
            await asyncio.sleep(0.05)
        _, token = await store.tokens.issue("switch", None, "bench switch", WHO)
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "lookup.lua"
            script.write_text(LUA % (args.listed, BASE, BASE + 10 * args.listed))
            url = f"http://127.0.0.1:{service.http_port}"
            print(
                f"index: {len(service.index)} listed numbers; wrk {args.seconds} s per run, "
                f"1 thread, 50% listed / 50% unlisted numbers"
            )
            header = ("conns", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors")
            print("{:>6} {:>10} {:>8} {:>8} {:>8} {:>7}".format(*header))
            for conns in args.connections:
                proc = await asyncio.create_subprocess_exec(
                    wrk,
                    "-t1",
                    f"-c{conns}",
                    f"-d{args.seconds}s",
                    "--latency",
                    "-s",
                    str(script),
                    "-H",
                    f"Authorization: Bearer {token}",
                    url,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                )
                out, _ = await proc.communicate()
                r = parse_wrk(out.decode())
                if "rps" not in r:
                    print(out.decode())
                    continue
                print(
                    f"{conns:>6} {r['rps']:>10.0f} {r['p50']:>8.2f} {r['p90']:>8.2f} "
                    f"{r['p99']:>8.2f} {int(r['non2xx']):>7}"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listed", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--connections",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 16, 64],
    )
    run(main(parser.parse_args()))
