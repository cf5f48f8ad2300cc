"""Proof of play at national scale (issue 14 item 5).

Part 1, the call path under proof-of-play write load. One `ringback serve` (the real
Service, uvloop, garbage collection taken over as `ringback serve` does; pinned to CPU 0)
on an embedded PostgreSQL, with a load hook: on SIGUSR1 it feeds `--write-rate` proof-of-play
records a second (default 2,000: what 2,000 warnings ending a second leave behind) into the
node's real writer (`ProofOfPlayWriter`: batched INSERT ... unnest, rollup trigger), on
SIGUSR2 it stops and reports how many were made and written, the largest backlog seen and
how long the backlog took to drain. sipp (pinned to CPU 1) sends `--sip-rate` INVITE -> 302
-> ACK calls a second for `--seconds` per phase, and a Python probe on the client CPU times
100 calls/s with perf_counter (sipp's clock moves in 4 ms steps). Phases alternate without
and with the write load (`--rounds` of each, same server, same run); the summary gives the
medians and the with/without ratio of p50 and p99. Inside the server a task wakes every
millisecond and records the loop's own CPU since its last wakeup (a "loop hold": work done
without serving anything else), the service's once-a-minute garbage collection counted
apart; this figure does not depend on what else the shared machine runs. PostgreSQL's
backends are pinned to CPU 1 (with the client): in production the database is another
machine.

Part 2, reading at scale: `--history` rows (default 10 M) over `--history-days` days are
seeded with generate_series into the day partitions (triggers off while seeding, the
rollups then built from the rows with one GROUP BY, and checked equal); then /v1/stats over
HTTP (operator: all courts; one court), the portal's per-day query (30 days), the hourly
event's query, and for comparison the raw-row count /v1/stats used before migration 013;
and the time to drop one expired day of `--history / --history-days` rows.

    .venv/bin/python bench/proof_of_play.py                     # about 6-8 minutes
    .venv/bin/python bench/proof_of_play.py --seconds 5 --rounds 1 --history 100000  # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tests" / "interop"))
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402
import sip_redirect  # noqa: E402

COURTS = 50
LISTINGS = 10_000


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the server


def serve(config_path: Path, control: Path, write_rate: float) -> int:
    """`ringback serve` (as cli._serve runs it) plus the write-load hook."""
    from ringback.config import load_config
    from ringback.logs import setup_logging
    from ringback.runtime import run_loop
    from ringback.server import Service

    config = load_config(config_path)
    setup_logging(config.log.level, config.log.format)

    async def main() -> int:
        service = Service(config)
        await service.start()
        service.take_over_gc()
        listing_ids = [
            r[0] for r in await service.pool.fetch("SELECT id FROM listings ORDER BY id")
        ]
        loop = asyncio.get_running_loop()
        state: dict[str, Any] = {"task": None, "n": 0}
        stopped = asyncio.Event()

        async def generate(stats: dict[str, Any]) -> None:
            from ringback.registry.proof_of_play import PlayRecord

            proof = service.proof
            assert proof is not None
            rng = random.Random(5)
            outcomes = ["completed"] * 8 + ["cancelled", "failed"]
            tick, carry = 0.01, 0.0
            next_at = loop.time()
            while True:
                carry += write_rate * tick
                n, carry = int(carry), carry - int(carry)
                now = time.time()
                for _ in range(n):
                    proof.record(
                        PlayRecord(
                            rng.choice(listing_ids), 0, "PCMU", now - 21.0, now - 1.0,
                            rng.choice(outcomes), destination="127.0.0.1:40000",
                        )
                    )  # fmt: skip
                stats["made"] += n
                stats["max_pending"] = max(stats["max_pending"], len(proof.queue))
                next_at += tick
                await asyncio.sleep(max(0.0, next_at - loop.time()))

        holds: list[float] = []
        gc_pauses: list[float] = []
        gc_started = [0.0]
        gc_cpu = [0.0]  # CPU spent in garbage collection so far

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                gc_started[0] = time.thread_time()
            else:
                gc_pauses.append(time.thread_time() - gc_started[0])
                gc_cpu[0] += gc_pauses[-1]

        gc.callbacks.append(on_gc)

        async def monitor() -> None:
            """The event loop's own CPU between two wakeups of this task (1 ms apart): a
            stretch of work the loop did without serving anything else. The service's
            once-a-minute garbage collection is counted apart (`gc_pause_max_ms`)."""
            last, last_gc = time.thread_time(), gc_cpu[0]
            while True:
                await asyncio.sleep(0.001)
                now, now_gc = time.thread_time(), gc_cpu[0]
                holds.append((now - last) - (now_gc - last_gc))
                last, last_gc = now, now_gc

        def on_start(loaded: bool) -> None:
            proof = service.proof
            assert proof is not None
            holds.clear()
            gc_pauses.clear()
            stats = {
                "loaded": loaded,
                "made": 0,
                "max_pending": 0,
                "written_before": proof.written,
                "dropped_before": proof.dropped,
                "started": time.monotonic(),
            }
            state["stats"] = stats
            if loaded:
                state["task"] = loop.create_task(generate(stats))

        async def finish() -> None:
            proof = service.proof
            assert proof is not None
            stats = state["stats"]
            seen = sorted(holds)
            result: dict[str, Any] = {
                "loop_hold_max_ms": 1000 * seen[-1] if seen else None,
                "loop_hold_p999_ms": 1000 * seen[int(len(seen) * 0.999)] if seen else None,
                "loop_hold_p99_ms": 1000 * seen[int(len(seen) * 0.99)] if seen else None,
                "loop_busy": sum(seen) / (time.monotonic() - stats["started"]),
                "gc_pause_max_ms": 1000 * max(gc_pauses) if gc_pauses else 0.0,
            }
            if stats["loaded"]:
                state["task"].cancel()
                stopped_at = time.monotonic()
                pending_at_stop = len(proof.queue)
                while proof.queue and time.monotonic() - stopped_at < 30:
                    await asyncio.sleep(0.01)
                result |= {
                    "seconds": stopped_at - stats["started"],
                    "made": stats["made"],
                    "written": proof.written - stats["written_before"],
                    "dropped": proof.dropped - stats["dropped_before"],
                    "max_pending": stats["max_pending"],
                    "pending_at_stop": pending_at_stop,
                    "drain_s": time.monotonic() - stopped_at,
                }
            state["n"] += 1
            (control / f"phase-{state['n']}.json").write_text(json.dumps(result))

        state["monitor"] = loop.create_task(monitor())
        loop.add_signal_handler(signal.SIGUSR1, on_start, True)
        loop.add_signal_handler(signal.SIGHUP, on_start, False)
        loop.add_signal_handler(signal.SIGUSR2, lambda: loop.create_task(finish()))
        loop.add_signal_handler(signal.SIGTERM, stopped.set)
        loop.add_signal_handler(signal.SIGINT, stopped.set)
        (control / "ready").write_text(str(service.http_port))
        try:
            await stopped.wait()
            await service.drain()
        finally:
            await service.stop()
        return 0

    return run_loop(main())


# --------------------------------------------------------------------------- setup


def pin_postgres(pgdata: Path, cpus: str) -> None:
    """Pin the postmaster, so every backend it forks from now on (its background writers
    stay where they are)."""
    pid = (pgdata / "postmaster.pid").read_text().split()[0]
    subprocess.run(["taskset", "-a", "-c", "-p", cpus, pid], check=True, capture_output=True)


async def seed(dsn: str) -> str:
    """Courts, listings, an operator token; returns the token."""
    from ringback.registry.common import Principal
    from ringback.registry.store import Store, create_pool

    who = Principal("bench", "operator")
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        store = Store(pool)
        await store.migrate()
        courts = [(await store.courts.create(f"Court {i}", who))[0]["id"] for i in range(COURTS)]
        await pool.execute(
            "INSERT INTO listings (number, court_id, case_ref, expires_at) "
            "SELECT 8613000000000 + n, ($1::uuid[])[1 + n % $3], 'B-' || n, "
            "now() + interval '300 days' FROM generate_series(1, $2) AS n",
            courts,
            LISTINGS,
            COURTS,
        )
        _, token = await store.tokens.issue("operator", None, "bench", who)
        return str(token)
    finally:
        await pool.close()


def signal_and_wait(
    proc: harness.ManagedProcess, control: Path, sig: int, name: str
) -> dict[str, Any]:
    os.kill(proc.pid, sig)
    path = control / name
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline or not proc.alive():
            raise SystemExit(f"no {name} from the server:\n{proc.log()}")
        time.sleep(0.05)
    time.sleep(0.05)  # written in one call; let it land
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def wait_prepared(http_port: int, timeout: float = 60.0) -> None:
    """Until the node has prepared its recordings (ffmpeg at start), which would
    otherwise share the server's core with the first phase."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        if "\nringback_recordings_preparing 0" in text:
            return
        time.sleep(0.2)
    log("recordings still being prepared; going on")


# --------------------------------------------------------------------------- part 2


def http_ms(url: str, token: str, runs: int) -> tuple[float, float, Any]:
    """Median and worst of `runs` GETs (ms), and the last body."""
    times, body = [], None
    for _ in range(runs):
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=120) as r:
            body = json.loads(r.read())
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times), body


async def timed(conn: Any, runs: int, sql: str, *args: Any) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = await conn.fetch(sql, *args)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), result


async def history(dsn: str, http: str, token: str, rows: int, days: int) -> dict[str, Any]:
    import asyncpg

    from ringback.registry.announcement_days import create_days, expire
    from ringback.registry.outbox import _HOURLY
    from ringback.registry.proof_of_play import _PER_DAY_HOURLY
    from ringback.registry.store import create_pool

    out: dict[str, Any] = {"rows": rows, "days": days}
    conn = await asyncpg.connect(dsn)
    try:
        today = await conn.fetchval("SELECT (now() AT TIME ZONE 'UTC')::date")
        first = today - timedelta(days=days)
        old = today - timedelta(days=401)
        pool = await create_pool(dsn, min_size=1, max_size=2)
        await create_days(pool, first, today)
        await create_days(pool, old, old)
        listings = await conn.fetchval("SELECT max(id) FROM listings")
        per_day = rows // days
        log(f"seeding {rows:,} rows over {days} days (+{per_day:,} on an expired day) ...")
        t0 = time.perf_counter()
        await conn.execute("SET session_replication_role = replica")  # no triggers: bulk seed
        for d in [old] + [first + timedelta(days=i) for i in range(days)]:
            await conn.execute(
                "INSERT INTO announcements (listing_id, court_id, node, codec, started_at, "
                "finished_at, outcome, mode) "
                "SELECT l.id, l.court_id, 'seed', 'PCMA', t, t + interval '20 s', "
                "(ARRAY['completed','completed','completed','cancelled','failed'])[1 + g % 5], "
                "'redirect' FROM generate_series(0, $2 - 1) g "
                "CROSS JOIN LATERAL (SELECT ($1::date)::timestamp AT TIME ZONE 'UTC' "
                "+ make_interval(secs => g * 86400.0 / $2) AS t) s "
                "JOIN listings l ON l.id = 1 + (g::int8 * 7919) % $3",
                d,
                per_day,
                listings,
            )
        await conn.execute("SET session_replication_role = origin")
        out["seed_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        await conn.execute(
            "INSERT INTO announcement_hourly AS h (hour, court_id, outcome, n) "
            "SELECT date_trunc('hour', started_at, 'UTC'), court_id, outcome, count(*) "
            "FROM announcements WHERE node = 'seed' GROUP BY 1, 2, 3 "
            "ON CONFLICT (hour, (coalesce(court_id, '00000000-0000-0000-0000-000000000000'"
            "::uuid)), outcome) DO UPDATE SET n = h.n + excluded.n"
        )
        await conn.execute(
            "INSERT INTO announcement_totals AS t (court_id, outcome, n) "
            "SELECT court_id, outcome, count(*) FROM announcements WHERE node = 'seed' "
            "GROUP BY 1, 2 ON CONFLICT ((coalesce(court_id, '00000000-0000-0000-0000-"
            "000000000000'::uuid)), outcome) DO UPDATE SET n = t.n + excluded.n"
        )
        out["rollup_build_s"] = time.perf_counter() - t0
        await conn.execute("VACUUM ANALYZE announcements")
        await conn.execute("VACUUM ANALYZE announcement_hourly")
        total_raw = await conn.fetchval("SELECT count(*) FROM announcements")
        total_rollup = await conn.fetchval("SELECT sum(n)::int8 FROM announcement_totals")
        out["raw_rows"] = total_raw
        out["rollup_matches"] = total_raw == total_rollup
        out["hourly_rows"] = await conn.fetchval("SELECT count(*) FROM announcement_hourly")
        log(f"  {total_raw:,} rows, rollups match: {total_raw == total_rollup}")

        court = await conn.fetchval("SELECT id FROM courts ORDER BY name LIMIT 1")
        out["stats_all_ms"], out["stats_all_max_ms"], body = http_ms(f"{http}/v1/stats", token, 20)
        out["stats_all_total"] = body["announcements"]["total"]
        out["stats_court_ms"], _, _ = http_ms(f"{http}/v1/stats?court_id={court}", token, 20)
        out["per_day_30_ms"], _ = await timed(
            conn, 10, _PER_DAY_HOURLY, court, today - timedelta(days=29),
            today, "Asia/Shanghai",
        )  # fmt: skip
        out["hourly_event_ms"], _ = await timed(
            conn, 10, _HOURLY, await conn.fetchval(
                "SELECT ($1::date)::timestamp AT TIME ZONE 'UTC' + interval '13 hours'", first
            ),
        )  # fmt: skip
        out["raw_count_all_ms"], _ = await timed(
            conn, 3, "SELECT outcome, count(*) AS n FROM announcements GROUP BY 1"
        )
        out["raw_count_court_ms"], _ = await timed(
            conn, 3,
            "SELECT outcome, count(*) AS n FROM announcements WHERE court_id = $1 GROUP BY 1",
            court,
        )  # fmt: skip
        t0 = time.perf_counter()
        gone = await expire(pool, 400)
        out["expire_ms"] = (time.perf_counter() - t0) * 1000
        out["expired"] = [(str(g.day), g.rows) for g in gone]
        _, _, after = http_ms(f"{http}/v1/stats", token, 1)
        out["stats_total_after_expire"] = after["announcements"]["total"]
        await pool.close()
    finally:
        await conn.close()
    return out


# --------------------------------------------------------------------------- main


def median_of(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="seconds per phase (30)")
    ap.add_argument("--rounds", type=int, default=3, help="phases of each kind, alternating (3)")
    ap.add_argument("--sip-rate", type=int, default=2000, help="sipp calls/s (2,000)")
    ap.add_argument("--write-rate", type=float, default=2000.0, help="records/s (2,000)")
    ap.add_argument(
        "--history", type=int, default=10_000_000, help="rows seeded (10 M; 0: no part 2)"
    )
    ap.add_argument("--history-days", type=int, default=20, help="days they span (20)")
    ap.add_argument("--json", type=Path, help="write the figures as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (sipp traces)")
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--control", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args.serve, args.control, args.write_rate)

    harness.require_binary("sipp")
    harness.require_binary("taskset")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what was started
    os.sched_setaffinity(0, {1})  # the probe shares the client CPU with sipp
    from ringback.registry.embedded import EmbeddedPostgres

    workdir = Path(tempfile.mkdtemp(prefix="pop-bench-", dir="/tmp"))
    control = workdir / "control"
    control.mkdir()
    processes = harness.ProcessSet()
    db = EmbeddedPostgres(workdir / "db")
    summary: dict[str, Any] = {}
    try:
        dsn = db.start()
        pin_postgres(db.pgdata, "1")
        token = asyncio.run(seed(dsn))
        sip_port, http_port = harness.free_port("both"), harness.free_port("tcp")
        config = workdir / "ringback.toml"
        config.write_text(
            f"[database]\nurl = '{dsn}'\n[sip]\nport = {sip_port}\n"
            f"[http]\nport = {http_port}\n[log]\nformat = 'json'\nlevel = 'warning'\n"
        )
        server = processes.start(
            "ringback",
            [sys.executable, str(Path(__file__).resolve()), "--serve", str(config),
             "--control", str(control), "--write-rate", str(args.write_rate)],
            log_path=workdir / "ringback.log",
            cpu=0,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not (control / "ready").exists():
            if time.monotonic() > deadline or not server.alive():
                raise SystemExit("the server did not start:\n" + server.log())
            time.sleep(0.1)
        log(f"ringback (with the load hook) on 127.0.0.1:{sip_port}, HTTP {http_port}")
        scenario = sip_redirect.lean_scenario(workdir / "invite_302_lean.xml")
        numbers = sip_redirect.called_numbers(workdir / "called.csv")

        wait_prepared(http_port)
        log("warm-up (not counted)")
        sip_redirect.run_step(
            scenario, numbers, ("127.0.0.1", sip_port), args.sip_rate,
            step_seconds=min(5.0, args.seconds), workdir=workdir, cpu=1, processes=processes,
        )  # fmt: skip
        time.sleep(1.0)
        phases: list[dict[str, Any]] = []
        for r in range(args.rounds):
            for loaded in (False, True):
                os.kill(server.pid, signal.SIGUSR1 if loaded else signal.SIGHUP)
                time.sleep(1.0)  # the writer's first flushes are in before sipp starts
                log(
                    f"round {r + 1}: {args.sip_rate} calls/s, "
                    f"write load {'on' if loaded else 'off'}"
                )
                step = sip_redirect.run_step(
                    scenario, numbers, ("127.0.0.1", sip_port), args.sip_rate,
                    step_seconds=args.seconds, workdir=workdir, cpu=1, processes=processes,
                    probe_rate=100.0,
                )  # fmt: skip
                phase: dict[str, Any] = {
                    "loaded": loaded,
                    "step": step.__dict__ | {"clean": step.clean},
                    "server": signal_and_wait(
                        server, control, signal.SIGUSR2, f"phase-{len(phases) + 1}.json"
                    ),
                }
                phases.append(phase)
                log(
                    f"  achieved {step.achieved:,.0f}/s failed {step.failed} retrans "
                    f"{step.retransmissions} sipp p50/p99 {step.p50}/{step.p99} ms probe "
                    f"p50/p99 {step.probe_p50_us}/{step.probe_p99_us} µs"
                    + f" server {phase['server']}"
                )
                time.sleep(1.0)
        summary["phases"] = phases
        for kind, loaded in (("off", False), ("on", True)):
            steps = [p["step"] for p in phases if p["loaded"] == loaded]
            servers = [p["server"] for p in phases if p["loaded"] == loaded]
            summary[kind] = (
                {
                    key: median_of([s[key] for s in steps])
                    for key in ("p50", "p99", "probe_p50_us", "probe_p99_us", "achieved")
                }
                | {
                    key: median_of([s[key] for s in servers])
                    for key in (
                        "loop_hold_max_ms",
                        "loop_hold_p999_ms",
                        "loop_busy",
                        "gc_pause_max_ms",
                    )
                }
                | {
                    "failed": sum(s["failed"] for s in steps),
                    "retransmissions": sum(s["retransmissions"] for s in steps),
                    "all_clean": all(s["clean"] for s in steps),
                }
            )
        loads_seen = [p["server"] for p in phases if p["loaded"]]
        summary["writes"] = {
            "per_s": median_of([x["written"] / x["seconds"] for x in loads_seen]),
            "made": sum(x["made"] for x in loads_seen),
            "written": sum(x["written"] for x in loads_seen),
            "dropped": sum(x["dropped"] for x in loads_seen),
            "max_pending": max(x["max_pending"] for x in loads_seen),
            "drain_s_max": max(x["drain_s"] for x in loads_seen),
        }
        off, on = summary["off"], summary["on"]
        for key in ("probe_p50_us", "probe_p99_us", "p99"):
            if off[key] and on[key]:
                summary[f"ratio_{key}"] = on[key] / off[key]
        if args.history:
            pin_postgres(db.pgdata, "0,1")  # the history part: both cores for the database
            summary["history"] = asyncio.run(
                history(
                    dsn, f"http://127.0.0.1:{http_port}", token, args.history, args.history_days
                )
            )
    finally:
        processes.stop_all()
        db.remove()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(args, summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))
    return 0


def report(args: argparse.Namespace, s: dict[str, Any]) -> str:
    off, on, w, h = s["off"], s["on"], s["writes"], s.get("history")

    def f(v: float | None, spec: str = ",.0f") -> str:
        return "-" if v is None else format(v, spec)

    lines = [
        f"### Call path with and without {args.write_rate:,.0f} proof-of-play writes/s "
        f"({args.sip_rate:,} calls/s, {args.rounds} x {args.seconds:g} s each, alternating)",
        "",
        "| write load | achieved calls/s | failed | retrans | sipp p50 ms | sipp p99 ms "
        "| probe p50 µs | probe p99 µs | loop hold max / p99.9 ms | loop busy | GC pause ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, x in (("off", off), ("on", on)):
        lines.append(
            f"| {name} | {f(x['achieved'])} | {x['failed']} | {x['retransmissions']} "
            f"| {f(x['p50'], '.1f')} | {f(x['p99'], '.1f')} | {f(x['probe_p50_us'])} "
            f"| {f(x['probe_p99_us'])} | {f(x['loop_hold_max_ms'], '.2f')} / "
            f"{f(x['loop_hold_p999_ms'], '.2f')} | {f(x['loop_busy'], '.0%')} "
            f"| {f(x['gc_pause_max_ms'], '.0f')} |"
        )
    lines += [
        "",
        f"p99 ratio on/off (probe): **{f(s.get('ratio_probe_p99_us'), '.2f')}**, "
        f"p50 ratio (probe): {f(s.get('ratio_probe_p50_us'), '.2f')}, "
        f"sipp p99 ratio: {f(s.get('ratio_p99'), '.2f')}",
        "",
        f"Writer: **{f(w['per_s'])} records/s written** (median of phases); {w['made']:,} made, "
        f"{w['written']:,} written, {w['dropped']:,} dropped; largest backlog "
        f"**{w['max_pending']:,}** records; backlog empty {w['drain_s_max']:.2f} s after the "
        "load stopped (worst phase)",
    ]
    if not h:
        return "\n".join(lines)
    lines += [
        "",
        f"### Reading at {h['raw_rows']:,} rows of history ({h['days']} days, "
        f"{h['hourly_rows']:,} hourly rollup rows)",
        "",
        f"Seeded in {h['seed_s']:.0f} s (triggers off), rollups built in "
        f"{h['rollup_build_s']:.0f} s; rollups match the raw rows: {h['rollup_matches']}",
        "",
        "| query | median ms |",
        "|---|---:|",
        f"| GET /v1/stats, operator (all courts), over HTTP | **{h['stats_all_ms']:.1f}** "
        f"(worst {h['stats_all_max_ms']:.1f}) |",
        f"| GET /v1/stats?court_id= (one of {COURTS} courts), over HTTP | "
        f"{h['stats_court_ms']:.1f} |",
        f"| portal per-day query, 30 days, one court | {h['per_day_30_ms']:.1f} |",
        f"| hourly event query, one hour | {h['hourly_event_ms']:.1f} |",
        f"| before 013: count(*) of raw rows by outcome, all courts | "
        f"{h['raw_count_all_ms']:,.0f} |",
        f"| before 013: the same for one court | {h['raw_count_court_ms']:,.0f} |",
        f"| retention: drop expired day(s) {h['expired']} | {h['expire_ms']:.0f} |",
        "",
        f"/v1/stats total before the drop {h['stats_all_total']:,}, after "
        f"{h['stats_total_after_expire']:,} (the rollups keep the dropped day's counts)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
