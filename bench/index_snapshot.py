"""One index per host: `ringback serve --workers 2` sharing the memory-mapped snapshot.

An embedded PostgreSQL seeded with --n listed numbers (one INSERT ... SELECT from
generate_series with the per-row triggers off: minutes instead of hours at 15 M; a few
changes go through the feed afterwards so the sequence is not 0), then:

1. **start from PostgreSQL**: `ringback serve --workers 2` with an empty cache dir; one
   worker loads the index (binary COPY) and writes `<cache>/index.snapshot`, the other maps
   it. Times from the workers' log lines and from the process start.
2. **memory per host**: each worker's /proc/PID/smaps_rollup (RSS, PSS, USS = private
   clean + dirty) and the snapshot mapping's own RSS/PSS from /proc/PID/smaps; PSS counts
   a page shared by both workers half in each, so the sum over the workers (and the
   supervisor) is what the host pays.
3. **merge peak**: one transaction changes --merge-changes listings (more than the
   configured `index.compact_threshold`): a worker merges its overlay and writes a new
   snapshot, the other maps it. Host PSS sampled every 50 ms; peak / steady.
4. **reload peak**: one transaction changes more than `full_reload_threshold` (50,000):
   both reload (one from PostgreSQL, the other maps its snapshot). Same sampling.
5. **restart from the snapshot** with the database up, then with it stopped: time until
   each worker's index is loaded from the file.

    .venv/bin/python bench/index_snapshot.py [--n 15000000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))

import harness  # noqa: E402

from ringback.registry.common import Principal  # noqa: E402
from ringback.registry.embedded import EmbeddedPostgres  # noqa: E402
from ringback.registry.store import Store, create_pool  # noqa: E402

SEED = """
SET session_replication_role = replica;
INSERT INTO listings (number, court_id, case_ref, effective_at, expires_at)
SELECT 8613000000000 + g * 37, '{court}', 'SEED', now() - interval '1 day',
       now() + interval '300 days'
FROM generate_series(1, {n}) AS g;
SET session_replication_role = DEFAULT;
"""
CHANGE = (
    "UPDATE listings SET expires_at = expires_at + interval '1 day' "
    "WHERE id IN (SELECT id FROM listings WHERE status = 'active' ORDER BY id LIMIT $1)"
)


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return sorted(out)


def rollup(pid: int) -> dict[str, int]:
    """smaps_rollup in bytes, plus USS (private clean + private dirty)."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[-1] == "kB":
            out[key] = int(parts[0]) * 1024
    out["USS"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
    return out


def snapshot_mapping(pid: int) -> dict[str, int]:
    """RSS and PSS of the process's mappings of an index.snapshot file (bytes)."""
    totals = {"Rss": 0, "Pss": 0, "mappings": 0, "deleted": 0}
    inside = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", head[0]):
            inside = "index.snapshot" in line
            if inside:
                totals["mappings"] += 1
                totals["deleted"] += "(deleted)" in line
        elif inside and head and head[0] in ("Rss:", "Pss:"):
            totals[head[0][:-1]] += int(head[1]) * 1024
    return totals


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


class Node:
    def __init__(self, workdir: Path, dsn: str, threshold: int) -> None:
        self.workdir = workdir
        self.http = harness.free_port("both")
        self.sip = harness.free_port("both")
        self.config = workdir / "ringback.toml"
        self.config.write_text(
            f"[database]\nurl = '{dsn}'\nconnect_timeout_s = 2.0\n"
            f"data_dir = '{workdir / 'data'}'\n"
            f"[sip]\nport = {self.sip}\n[http]\nport = {self.http}\n"
            f"[index]\nheartbeat_s = 0.5\ncompact_threshold = {threshold}\n"
            f"[cache]\ndir = '{workdir / 'cache'}'\n"
            "[events]\nenabled = false\n[log]\nformat = 'text'\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "node.log"
        self.started = 0.0

    def start(self) -> None:
        self.log_path.write_bytes(b"")
        self.started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ringback",
                    "serve",
                    "--config",
                    str(self.config),
                    "--workers",
                    "2",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, count: int, timeout: float) -> list[re.Match[str]]:
        deadline = time.monotonic() + timeout
        while True:
            found = list(re.finditer(pattern, self.log()))
            if len(found) >= count:
                return found
            if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                raise RuntimeError(f"waiting for {pattern!r} x{count}:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def workers(self) -> list[int]:
        assert self.proc is not None
        return children(self.proc.pid)

    def readyz(self) -> dict[str, Any]:
        """/readyz's body (200 or 503), once HTTP listens."""
        deadline = time.monotonic() + 60
        while True:
            try:
                url = f"http://127.0.0.1:{self.http}/readyz"
                with urllib.request.urlopen(url, timeout=5) as r:
                    body: dict[str, Any] = json.loads(r.read())
                return body
            except urllib.error.HTTPError as e:
                return dict(json.loads(e.read()))
            except urllib.error.URLError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def host_memory(node: Node) -> dict[str, Any]:
    assert node.proc is not None
    pids = node.workers()
    per = []
    for pid in pids:
        r, s = rollup(pid), snapshot_mapping(pid)
        per.append(
            {
                "pid": pid,
                "rss": r["Rss"],
                "pss": r["Pss"],
                "uss": r["USS"],
                "pss_anon": r.get("Pss_Anon", 0),
                "snapshot_rss": s["Rss"],
                "snapshot_pss": s["Pss"],
                "snapshot_mappings": s["mappings"],
                "hwm": status_kb(pid, "VmHWM"),
            }
        )
    sup = rollup(node.proc.pid)
    return {
        "workers": per,
        "supervisor_pss": sup["Pss"],
        "host_pss": sum(w["pss"] for w in per) + sup["Pss"],
        "snapshot_pss": sum(w["snapshot_pss"] for w in per),
    }


def sample_until(node: Node, done: Any, timeout: float) -> tuple[int, float]:
    """Peak host PSS (workers + supervisor) sampled every 50 ms until done() or timeout."""
    peak, started = 0, time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(OSError, KeyError):
            peak = max(peak, host_memory(node)["host_pss"])
        if done():
            break
        time.sleep(0.05)
    return peak, time.monotonic() - started


def mapped_current(node: Node) -> bool:
    """Both workers map the snapshot file now on disk, and no replaced one."""
    try:
        maps = [snapshot_mapping(pid) for pid in node.workers()]
    except OSError:
        return False
    return len(maps) == 2 and all(m["mappings"] and not m["deleted"] for m in maps)


async def seed(dsn: str, n: int) -> float:
    t = time.perf_counter()
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        store = Store(pool)
        await store.migrate()
        court, _, _ = await store.courts.create("Scale Court", Principal("bench", "operator"))
        conn: asyncpg.Connection
        async with pool.acquire() as conn:
            await conn.execute(SEED.format(court=court["id"], n=n))
            await conn.execute("ANALYZE listings")
            await conn.execute(CHANGE, 10)  # a few changes through the feed: seq > 0
    finally:
        await pool.close()
    return time.perf_counter() - t


async def change(dsn: str, count: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(CHANGE, count)
    finally:
        await conn.close()


def seconds(m: re.Match[str]) -> float:
    return float(m.group("s"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=15_000_000)
    ap.add_argument("--compact-threshold", type=int, default=20_000)
    ap.add_argument("--merge-changes", type=int, default=30_000)
    ap.add_argument("--reload-changes", type=int, default=60_000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out: dict[str, Any] = {"n": args.n}
    workdir = Path(tempfile.mkdtemp(prefix="index-snapshot-"))
    db = EmbeddedPostgres(workdir / "db")
    dsn = db.start()
    node = Node(workdir, dsn, args.compact_threshold)
    loaded = r"loaded (?P<n>\d+) numbers at seq \d+ in (?P<s>[\d.]+) s"
    adopted = (
        r"numbers from the snapshot at seq \d+ and \d+ changes up to seq \d+ in (?P<s>[\d.]+) s"
    )
    mapped = r"numbers from the snapshot at seq \d+ \((?P<age>\d+) s old\) in (?P<s>[\d.]+) s"
    try:
        out["seed_s"] = asyncio.run(seed(dsn, args.n))
        print(f"seeded {args.n:,} listings in {out['seed_s']:.0f} s", file=sys.stderr)

        # 1. start from PostgreSQL
        node.start()
        load = node.wait_log(loaded, 1, 600)[0]
        adopt = node.wait_log(adopted, 1, 600)[0]
        out["pg_load_s"] = seconds(load)
        out["second_worker_adopt_s"] = seconds(adopt)
        out["both_loaded_after_start_s"] = time.monotonic() - node.started
        deadline = time.monotonic() + 60
        while not mapped_current(node) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2.0)  # settle (recordings, codecs warm-up)
        size = (workdir / "cache" / "index.snapshot").stat().st_size
        out["snapshot_bytes"] = size
        steady = host_memory(node)
        out["steady"] = steady
        print(
            json.dumps(
                {
                    k: out[k]
                    for k in ("pg_load_s", "second_worker_adopt_s", "both_loaded_after_start_s")
                }
            ),
            file=sys.stderr,
        )

        # 3. merge peak
        before = (workdir / "cache" / "index.snapshot").stat().st_ino
        asyncio.run(change(dsn, args.merge_changes))

        def merged() -> bool:
            path = workdir / "cache" / "index.snapshot"
            return path.stat().st_ino != before and mapped_current(node)

        peak, took = sample_until(node, merged, 120)
        out["merge"] = {"peak_host_pss": peak, "took_s": took, "done": merged()}
        time.sleep(1.0)
        out["after_merge"] = host_memory(node)

        # 4. reload peak
        before = (workdir / "cache" / "index.snapshot").stat().st_ino
        loads_before = len(re.findall(loaded, node.log()))
        asyncio.run(change(dsn, args.reload_changes))

        def reloaded() -> bool:
            path = workdir / "cache" / "index.snapshot"
            return (
                len(re.findall(loaded, node.log())) > loads_before
                and path.stat().st_ino != before
                and mapped_current(node)
            )

        peak, took = sample_until(node, reloaded, 300)
        out["reload"] = {"peak_host_pss": peak, "took_s": took, "done": reloaded()}
        time.sleep(1.0)
        out["after_reload"] = host_memory(node)
        node.stop()

        # 5. restart from the snapshot, database up, then down
        node.start()
        starts = node.wait_log(adopted, 2, 120)
        out["restart_db_up"] = {
            "from_snapshot_s": [seconds(m) for m in starts],
            "after_start_s": time.monotonic() - node.started,
        }
        node.stop()
        db.stop()
        node.start()
        starts = node.wait_log(mapped, 2, 120)
        after = time.monotonic() - node.started
        body = node.readyz()
        out["restart_db_down"] = {
            "from_snapshot_s": [seconds(m) for m in starts],
            "after_start_s": after,
            "readyz": body,
        }
        node.stop()
    finally:
        node.stop()
        shutil.rmtree(workdir / "cache", ignore_errors=True)
        db.remove()
        shutil.rmtree(workdir, ignore_errors=True)
    report(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


def report(out: dict[str, Any]) -> None:
    n = out["n"]
    mb = 1e6

    def per_n(x: float) -> str:
        return f"{x / n:.1f} B/number" if n else "-"

    s = out["steady"]
    print(
        f"\n{n:,} numbers; snapshot file {out['snapshot_bytes'] / mb:.0f} MB "
        f"({per_n(out['snapshot_bytes'])})"
    )
    print("| | figure | target |")
    print("|---|---:|---|")
    print(
        f"| start from PostgreSQL: COPY + arrays (worker 0) | {out['pg_load_s']:.1f} s | < 30 s |"
    )
    print(
        f"| second worker maps the snapshot + catch-up | {out['second_worker_adopt_s']:.2f} s | |"
    )
    print(
        f"| both workers loaded, from process start | {out['both_loaded_after_start_s']:.1f} s | |"
    )
    for key, what in (("restart_db_up", "database up"), ("restart_db_down", "database down")):
        r = out[key]
        print(
            f"| restart from the snapshot ({what}), per worker | "
            f"{', '.join(f'{x:.2f}' for x in r['from_snapshot_s'])} s "
            f"(both within {r['after_start_s']:.1f} s of start) | < 5 s |"
        )
    print(f"| host PSS, 2 workers + supervisor (steady) | {s['host_pss'] / mb:.0f} MB | |")
    print(
        f"| of which the snapshot mapping (PSS, both workers) | {s['snapshot_pss'] / mb:.0f} MB "
        f"= {per_n(s['snapshot_pss'])} | ≤ 24 B/number |"
    )
    fixed = [(w["pss"] - w["snapshot_pss"]) / mb for w in s["workers"]]
    print(
        f"| per worker apart from the snapshot (PSS) | "
        f"{', '.join(f'{x:.0f}' for x in fixed)} MB | fixed |"
    )
    for w in s["workers"]:
        print(
            f"| worker {w['pid']}: RSS / PSS / USS / peak RSS | {w['rss'] / mb:.0f} / "
            f"{w['pss'] / mb:.0f} / {w['uss'] / mb:.0f} / {w['hwm'] / mb:.0f} MB | |"
        )
    for key in ("merge", "reload"):
        r = out[key]
        print(
            f"| {key} peak host PSS / steady | {r['peak_host_pss'] / mb:.0f} / "
            f"{s['host_pss'] / mb:.0f} MB = {r['peak_host_pss'] / s['host_pss']:.2f}× "
            f"({r['took_s']:.1f} s{'' if r['done'] else ', NOT finished'}) | ≤ 1.5× |"
        )
    body = out["restart_db_down"]["readyz"]
    print(
        f"| /readyz with the database down | index_loaded {body['checks']['index_loaded']}, "
        f"staleness {body['index']['staleness_s']} s | |"
    )


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # bench/run's time limit: clean up what was started


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop)
    sys.exit(main())
