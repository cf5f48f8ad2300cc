"""Soak: `ringback serve` under a steady SIP load for a long time; does anything grow?

The load is two sipp UACs at a fixed total rate: 90 % of calls to an unlisted number
(tests/interop/sipp/invite_302.xml: INVITE -> 302 -> ACK) and 10 % to a listed one
(bench/soak_listed.xml: 183 with the warning as early media, then 302 "played"; a listed
call that is not warned counts as failed). The database is an embedded PostgreSQL in a
temporary folder, seeded with one court, a --warning-s long recording and the listed number.

Every --sample-s it samples the server process: RSS, open file descriptors, SIP server
transactions in memory and warnings playing (from /metrics). After the warm-up (the first
--warmup-share of the run) it fits a least-squares line to each series and reports the slope
per 10 minutes next to the median, so "flat" is a number: RSS MB/10 min, fds/10 min,
transactions/10 min. Markdown on stdout (for bench/RESULTS.md), progress on stderr, the
samples as CSV in --csv.

The default rate is half the rate this mix sustains on one core of the 2-core bench machine
(bench/RESULTS.md, "Soak again, session 6"): with 10 % of calls playing a warning, no call
failed at any step up to 3,000 calls/s (1 min steps, the highest offered), and sipp counted
no retransmission up to 1,500. Every warning is an RTP stream of 50 packets/s, so the
listed share, not the SIP rate, sets the ceiling (pure redirects sustain 17,000-21,000).

  .venv/bin/python bench/soak.py --minutes 1 --rate 100          # smoke
  .venv/bin/python bench/soak.py --minutes 40 --rate 300 --cpu 0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))

import harness  # noqa: E402

from ringback.registry.common import Principal  # noqa: E402
from ringback.registry.embedded import EmbeddedPostgres  # noqa: E402
from ringback.registry.store import Store, create_pool  # noqa: E402

SUSTAINED_CALLS_S = 3000  # this mix, one core, no failed call: bench/RESULTS.md, "Soak again"
LISTED = "+8613800138000"
UNLISTED = "+8613900139000"
BENCH = Path(__file__).resolve().parent


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Sample:
    t: float  # seconds since the load started
    rss_mb: float
    fds: int
    transactions: float
    warnings: float
    cpu_s: float  # user + system CPU seconds of the server so far


async def seed(url: str, warning_s: float) -> None:
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        store = Store(pool)
        await store.migrate()
        who = Principal("soak", "operator")
        court, _, _ = await store.courts.create("Soak Court", who)
        t = np.arange(int(8000 * warning_s)) / 8000
        pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes()
        recording = await store.recordings.add(court["id"], "soak", pcm, who)
        now = datetime.now(UTC)
        await store.listings.put(
            court["id"],
            int(LISTED[1:]),
            "SOAK-1",
            now + timedelta(days=1),
            who,
            effective_at=now - timedelta(minutes=1),
            recording_id=recording["id"],
        )
    finally:
        await pool.close()


def metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[key] = float(value)
    return out


def sample(pid: int, url: str, t: float) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    m = metrics(url)
    ticks = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    cpu_s = (int(ticks[11]) + int(ticks[12])) / os.sysconf("SC_CLK_TCK")
    return Sample(
        round(t, 1),
        rss_kb / 1024,
        fds,
        m.get("ringback_sip_transactions", float("nan")),
        m.get("ringback_announcements_active", float("nan")),
        cpu_s,
    )


def slope_per_10min(samples: list[Sample], field: str) -> float:
    xs = np.array([s.t for s in samples])
    ys = np.array([getattr(s, field) for s in samples], dtype=float)
    if len(xs) < 3:
        return float("nan")
    return float(np.polyfit(xs, ys, 1)[0] * 600)


def start_server(
    processes: harness.ProcessSet, workdir: Path, url: str, cpu: int | None
) -> tuple[harness.ManagedProcess, int, str]:
    sip_port = harness.free_port("both")
    http_port = harness.free_port("tcp")
    config = workdir / "ringback.toml"
    config.write_text(
        f"[database]\nurl = '{url}'\ndata_dir = '{workdir / 'data'}'\n"
        f"[sip]\nport = {sip_port}\n"
        f"[http]\nport = {http_port}\n"
        "[announcement]\ngap_ms = 0\nrtp_port_min = 40000\nrtp_port_max = 49999\n"
        "max_concurrent = 2000\n"
        "[events]\nenabled = false\n"
        "[log]\nformat = 'json'\nlevel = 'warning'\n"
    )
    proc = processes.start(
        "ringback",
        [sys.executable, "-m", "ringback", "serve", "--config", str(config)],
        log_path=workdir / "ringback.log",
        cpu=cpu,
    )
    http = f"http://{harness.LOCALHOST}:{http_port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{http}/readyz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if not proc.alive() or time.monotonic() > deadline:
            raise harness.PeerFailed(f"ringback did not become ready:\n{proc.log()}")
        time.sleep(0.2)
    return proc, sip_port, http


def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="soak-", dir=args.workdir))
    processes = harness.ProcessSet()
    server = EmbeddedPostgres(workdir / "db")
    url = server.start()
    try:
        asyncio.run(seed(url, args.warning_s))
        proc, sip_port, http = start_server(processes, workdir, url, args.cpu)
        log(f"ringback pid {proc.pid}: SIP {sip_port}, HTTP {http}; workdir {workdir}")
        seconds = args.minutes * 60
        listed_rate = args.rate * args.listed_share
        unlisted_rate = args.rate - listed_rate
        results: dict[str, harness.SippResult] = {}

        def load(name: str, scenario: Path, number: str, rate: float) -> None:
            results[name] = harness.run_sipp(
                scenario,
                (harness.LOCALHOST, sip_port),
                calls=max(1, round(rate * seconds)),
                rate=rate,
                service=number,
                timeout=seconds + 90,
                workdir=workdir / "sipp",
                trace_msg=False,
                extra_args=["-buff_size", "4194304", "-l", "5000"],
                cpu=args.sipp_cpu,
                processes=processes,
            )

        threads = [
            threading.Thread(
                target=load,
                args=("unlisted", harness.SCENARIOS / "invite_302.xml", UNLISTED, unlisted_rate),
            ),
            threading.Thread(
                target=load, args=("listed", BENCH / "soak_listed.xml", LISTED, listed_rate)
            ),
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        samples: list[Sample] = []
        while any(t.is_alive() for t in threads):
            now = time.monotonic() - started
            try:
                samples.append(sample(proc.pid, http, now))
            except (OSError, StopIteration) as exc:
                log(f"sample failed: {exc}")
            if len(samples) % max(1, round(60 / args.sample_s)) == 0 and samples:
                s = samples[-1]
                log(
                    f"t={s.t:.0f}s rss={s.rss_mb:.1f} MB fds={s.fds} "
                    f"transactions={s.transactions:.0f} warnings={s.warnings:.0f}"
                )
            for t in threads:
                t.join(timeout=args.sample_s / len(threads))
        final_metrics = metrics(http)
        proc.stop()
    finally:
        processes.stop_all()
        server.remove()
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["t_s", "rss_mb", "fds", "transactions", "warnings_playing", "cpu_s"])
            for s in samples:
                w.writerow(
                    [s.t, f"{s.rss_mb:.2f}", s.fds, s.transactions, s.warnings, f"{s.cpu_s:.2f}"]
                )
    report(args, samples, results, final_metrics)
    failed = sum(r.failed for r in results.values())
    return 0 if failed == 0 else 1


def report(
    args: argparse.Namespace,
    samples: list[Sample],
    results: dict[str, harness.SippResult],
    final_metrics: dict[str, float],
) -> None:
    warm = args.minutes * 60 * args.warmup_share
    end = args.minutes * 60 - args.sample_s  # after this sipp winds down: not steady
    steady = [s for s in samples if warm <= s.t <= end]
    print(
        f"\n### Soak, {args.minutes:g} min at {args.rate:g} calls/s "
        f"({args.listed_share:.0%} listed, {args.warning_s:g} s warning)\n"
    )
    print("| calls | offered | successful | failed | retransmissions |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r.outgoing} | {r.successful} | {r.failed} | {r.retransmissions} |")
    print(
        f"\nAfter a warm-up of {warm / 60:.1f} min ({len(steady)} samples every "
        f"{args.sample_s:g} s):\n"
    )
    print("| series | first | median | last | min | max | slope per 10 min |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for field, label, fmt in (
        ("rss_mb", "RSS (MB)", "{:.1f}"),
        ("fds", "open fds", "{:.0f}"),
        ("transactions", "SIP transactions", "{:.0f}"),
        ("warnings", "warnings playing", "{:.0f}"),
    ):
        values = [getattr(s, field) for s in steady]
        if not values:
            continue
        cells = [values[0], statistics.median(values), values[-1], min(values), max(values)]
        print(
            f"| {label} | "
            + " | ".join(fmt.format(v) for v in cells)
            + f" | {slope_per_10min(steady, field):+.2f} |"
        )
    shares = [
        100 * (b.cpu_s - a.cpu_s) / (b.t - a.t) for a, b in itertools.pairwise(steady) if b.t > a.t
    ]
    if shares:
        print(
            f"\nServer CPU, % of one core per {args.sample_s:g} s sample: median "
            f"{statistics.median(shares):.0f}, max {max(shares):.0f}"
        )
    keys = sorted(k for k in final_metrics if k.startswith("ringback_announcements_total"))
    print("\nWarnings by outcome at the end: " + json.dumps({k: final_metrics[k] for k in keys}))
    gc_keys = [k for k in final_metrics if k.startswith("ringback_gc_pause_seconds")]
    print("\nGarbage-collection pauses: " + json.dumps({k: final_metrics[k] for k in gc_keys}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=SUSTAINED_CALLS_S / 2, help="calls/s in total")
    p.add_argument("--listed-share", type=float, default=0.10)
    p.add_argument("--warning-s", type=float, default=3.0, help="length of the warning")
    p.add_argument("--sample-s", type=float, default=5.0)
    p.add_argument("--warmup-share", type=float, default=0.2)
    p.add_argument("--cpu", type=int, default=None, help="pin ringback to this CPU")
    p.add_argument("--sipp-cpu", type=int, default=None, help="pin sipp to this CPU")
    p.add_argument("--csv", type=Path, default=None)
    p.add_argument("--workdir", type=Path, default=None)
    return run(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
