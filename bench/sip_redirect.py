"""SIP redirect benchmark: how many INVITE -> 302 -> ACK calls per second a server sustains.

The load is sipp (UAC, tests/interop/sipp/invite_302.xml with its SDP offer stripped to keep it
lean, the called number drawn from a CSV of unlisted numbers), pinned to CPU 1 with taskset,
waking its call generator every 4 ms (sipp -timer_resol 1; see --timer-resol).
The rate steps up (default 2,000 -> 30,000 calls/s); each step is bounded in calls (rate x
--step-seconds) and in time (sipp -timeout, then kill by PID). For each step it prints the
offered rate, achieved calls/s, failed calls, retransmissions, response time p50/p90/p99 (from
sipp's -trace_rtt file) and, at the end, the highest rate sustained with zero failures, zero
retransmissions and at least 90 % of the offered rate achieved. Markdown on stdout, progress on
stderr.

Targets:
  (default)          the sipp stand-in (tests/interop/sipp/uas_redirect_standin.xml), started
                     here and pinned to CPU 0: its figure only shows that the driver works;
  --target HOST:PORT a server that is already running (pin it to CPU 0 yourself, e.g.
                     `taskset -c 0 ringback serve ...`);
  --kamailio-peer    Kamailio 5.6 as a stateless redirect server with an htable lookup
                     (bench/kamailio_redirect.cfg, --numbers entries loaded from db_text),
                     started here and pinned to CPU 0: the comparison peer.

Examples:
  .venv/bin/python bench/sip_redirect.py
  .venv/bin/python bench/sip_redirect.py --kamailio-peer
  .venv/bin/python bench/sip_redirect.py --target 127.0.0.1:5060 --rates 5000,10000,20000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))

import harness  # noqa: E402

BUFF = "4194304"
TIMER_RESOL_MS = 1  # sipp -timer_resol: see --timer-resol
# sipp's clock: "packaged" (Debian's sipp 3.6.1 reads CLOCK_MONOTONIC_COARSE: 4 ms steps on this
# HZ=250 kernel) or "monotonic" (CLOCK_MONOTONIC, as upstream sipp since February 2026, given
# to the packaged sipp by bench/sipp_fine_clock.c through LD_PRELOAD)
SIPP_CLOCKS = ("packaged", "monotonic")


def sipp_clock_env(clock: str, workdir: Path) -> dict[str, str]:
    """The environment that gives sipp `clock` (building the shim on first use)."""
    if clock == "packaged":
        return {}
    shim = workdir / "sipp_fine_clock.so"
    if not shim.exists():
        source = Path(__file__).with_name("sipp_fine_clock.c")
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            raise SystemExit("--sipp-clock monotonic needs a C compiler (cc) for the shim")
        subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(shim), str(source), "-ldl"],
                       check=True)  # fmt: skip
    return {"LD_PRELOAD": str(shim)}


DEFAULT_RATES = "2000,5000,10000,15000,20000,25000,30000"
BENCH = Path(__file__).resolve().parent


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- inputs


def lean_scenario(dest: Path) -> Path:
    """invite_302.xml without its SDP offer, with the called number taken from -inf [field0]."""
    text = (harness.SCENARIOS / "invite_302.xml").read_text()
    start = text.index("      Content-Type: application/sdp\n")
    body_start = text.index("      v=0\n", start)
    body_end = text.index("    ]]>", body_start)
    text = (
        text[:start]
        + text[start:body_start].replace("      Content-Type: application/sdp\n", "")
        + "\n"
        + text[body_end:]
    )
    text = text.replace("[service]", "[field0]")
    text = text.replace('<scenario name="invite 302">', '<scenario name="invite 302 lean">')
    assert "v=0" not in text and "[field0]" in text
    dest.write_text(text)
    return dest


def called_numbers(dest: Path, count: int = 10_000) -> Path:
    """Unlisted numbers to call (+49 40 2xxxxxxx), one a line, for sipp -inf."""
    lines = ["SEQUENTIAL"] + [f"+4940{20_000_000 + i};" for i in range(count)]
    dest.write_text("\n".join(lines) + "\n")
    return dest


def listed_numbers_db(db_dir: Path, count: int) -> Path:
    """db_text table `listed` for Kamailio's htable: `count` numbers +49 30 1xxxxxxx."""
    db_dir.mkdir(parents=True, exist_ok=True)
    rows = [
        "id(int,auto) key_name(string) key_type(int) value_type(int) key_value(string) expires(int)"
    ]
    rows += [f"{i + 1}:+4930{10_000_000 + i}:0:0:1:0" for i in range(count)]
    (db_dir / "listed").write_text("\n".join(rows) + "\n")
    (db_dir / "version").write_text("table_name(string) table_version(int)\nlisted:2\n")
    return db_dir


# --------------------------------------------------------------------------- servers


def start_kamailio_peer(
    processes: harness.ProcessSet, workdir: Path, *, numbers: int, children: int, cpu: int
) -> tuple[tuple[str, int], int]:
    """Kamailio's address and the PID of its main process (its workers are its children)."""
    port = harness.free_port("udp")
    db_dir = listed_numbers_db(workdir / "kamailio-db", numbers)
    text = (BENCH / "kamailio_redirect.cfg").read_text()
    for key, value in {
        "@@LISTEN_PORT@@": str(port),
        "@@DB_DIR@@": str(db_dir),
        "@@CHILDREN@@": str(children),
    }.items():
        text = text.replace(key, value)
    cfg = workdir / "kamailio_redirect.cfg"
    cfg.write_text(text)
    # db_text reads the whole table into private (pkg) memory: 8 MB (default) holds ~95,000 rows
    mem = ["-M", str(max(16, numbers // 1000)), "-m", "256"]
    kam = harness.start_kamailio(
        processes, cfg, port=port, workdir=workdir, cpu=cpu, extra_args=mem
    )
    # make sure the table really loaded (htable logs an error and starts empty otherwise)
    time.sleep(0.5)
    if re.search(r"ERROR: htable", kam.log()):
        raise harness.PeerFailed(f"htable did not load:\n{kam.log()}")
    log(f"kamailio redirect peer on {kam.addr} (pid {kam.process.pid}, {numbers} numbers)")
    return (kam.host, kam.port), kam.process.pid


class LatencyProbe(threading.Thread):
    """A second clock: INVITE (no SDP) -> 302 -> ACK sent from Python at a low rate during a
    step and timed with perf_counter_ns, because sipp's own clock moves in 4 ms steps on these
    VMs. It runs on the client CPU (the bench pins itself there) and its figures include
    Python's own send/receive overhead (tens of µs)."""

    def __init__(self, target: tuple[str, int], *, rate: float, seconds: float, start: float):
        super().__init__(daemon=True)
        self.target = target
        self.rate = rate
        self.seconds = seconds
        self.start_delay = start
        self.samples_us: list[float] = []
        self.lost = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((harness.LOCALHOST, 0))
        lport = sock.getsockname()[1]
        host, port = self.target
        tag = uuid.uuid4().hex[:10]
        if self.stop_event.wait(self.start_delay):
            return
        deadline = time.monotonic() + self.seconds
        i = 0
        next_at = time.monotonic()
        try:
            while time.monotonic() < deadline and not self.stop_event.is_set():
                i += 1
                self._one(sock, lport, host, port, f"{tag}-{i}", f"+4941{30_000_000 + i}")
                next_at += 1 / self.rate
                delay = next_at - time.monotonic()
                if delay > 0 and self.stop_event.wait(delay):
                    break
        finally:
            sock.close()

    def _one(self, sock: socket.socket, lport: int, host: str, port: int, cid: str, num: str):
        ruri = f"sip:{num}@{host}:{port}"
        via = f"SIP/2.0/UDP {harness.LOCALHOST}:{lport};branch=z9hG4bK-{cid};rport"
        common = (
            f"Via: {via}\r\nFrom: <sip:probe@{harness.LOCALHOST}:{lport}>;tag={cid}\r\n"
            f"Call-ID: probe-{cid}\r\nMax-Forwards: 70\r\n"
        )
        invite = (
            f"INVITE {ruri} SIP/2.0\r\n{common}To: <{ruri}>\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:probe@{harness.LOCALHOST}:{lport}>\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        sent = time.perf_counter_ns()
        sock.sendto(invite, (host, port))
        give_up = time.monotonic() + 1.0
        while True:
            remaining = give_up - time.monotonic()
            if remaining <= 0:
                self.lost += 1
                return
            sock.settimeout(remaining)
            try:
                data = sock.recv(65535)
            except TimeoutError:
                self.lost += 1
                return
            got = time.perf_counter_ns()
            text = data.decode(errors="replace")
            if f"probe-{cid}" not in text or not text.startswith("SIP/2.0 "):
                continue
            status = int(text.split(" ", 2)[1])
            if status < 200:
                continue
            self.samples_us.append((got - sent) / 1000)
            to = next(
                (ln for ln in text.split("\r\n") if ln.lower().startswith(("to:", "t:"))),
                f"To: <{ruri}>",
            )
            ack = (
                f"ACK {ruri} SIP/2.0\r\n{common}{to}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            sock.sendto(ack, (host, port))
            return


class RingbackMetrics:
    """`ringback serve`'s /metrics, read between steps: the event-loop stall histogram
    (`ringback_loop_lag_seconds`), full collections and transactions in memory."""

    def __init__(self, http_port: int) -> None:
        self.url = f"http://{harness.LOCALHOST}:{http_port}/metrics"

    def read(self) -> dict[str, float]:
        import urllib.request

        with urllib.request.urlopen(self.url, timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("ringback_") and " " in line:
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def stalls(self, before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """Ticks of the 10 ms ticker at least N ms late during a step, full collections and
        their pause (the difference of two readings)."""
        out: dict[str, float] = {}
        total = after.get("ringback_loop_lag_seconds_count", 0) - before.get(
            "ringback_loop_lag_seconds_count", 0
        )
        out["ticks"] = total
        for bound in STALL_BOUNDS_MS:
            key = f'ringback_loop_lag_seconds_bucket{{le="{bound / 1000:g}"}}'
            below = after.get(key, 0) - before.get(key, 0)
            out[f">={bound}ms"] = total - below
        for part in ("count", "sum"):
            key = f"ringback_gc_pause_seconds_{part}"
            out[f"gc_{part}"] = after.get(key, 0) - before.get(key, 0)
        for q in (50, 99):
            out[f"turnaround_p{q}_ms"] = turnaround_quantile(before, after, q / 100)
        out["turnaround_over5_share"] = turnaround_share_over(before, after, 0.005)
        key = "ringback_loop_cpu_wait_seconds"  # ready to run, but another process had CPU 0
        out["cpu_wait_s"] = after.get(key, 0) - before.get(key, 0)
        return out

    def settle(self, quiet: float, limit_s: float) -> float:
        """Wait until at most `quiet` transactions are left in memory (Timers I and H of
        the last step expired), at most `limit_s`; the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < limit_s:
            if self.read().get("ringback_sip_transactions", 0) <= quiet:
                break
            time.sleep(0.5)
        return time.monotonic() - started


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` and all its descendants (Kamailio's
    workers, ringback's), from /proc: what the server itself spent, whatever else ran on
    its CPU (the embedded PostgreSQL is not pinned)."""
    parents: dict[int, int] = {}
    times: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = int(fields[11]) + int(fields[12])
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(times.get(p, 0) for p in tree) / os.sysconf("SC_CLK_TCK")


def wait_quiet(cpu: int, limit_s: float = 30.0, busy: float = 0.1) -> float:
    """Wait until `cpu` was less than `busy` busy over one second (a server started here
    finishes its start-up, PostgreSQL settles), at most `limit_s`; the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        before = cpu_jiffies()
        time.sleep(1.0)
        if busy_seconds(before, cpu_jiffies(), cpu)[1] < busy:
            break
    return time.monotonic() - started


def cpu_jiffies() -> dict[int, tuple[int, int, int]]:
    """Per CPU: (busy, total, steal) jiffies from /proc/stat (busy: all but idle and iowait),
    so a step's busy share of the server's CPU and of sipp's covers user, kernel and softirq
    time of whatever ran there (for either server, however many processes it has). Steal is
    time the hypervisor gave another guest while this one wanted the CPU."""
    out: dict[int, tuple[int, int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            values = [int(v) for v in fields]
            idle = values[3] + values[4]
            steal = values[7] if len(values) > 7 else 0
            out[int(name[3:])] = (sum(values) - idle, sum(values), steal)
    return out


def busy_seconds(
    before: dict[int, tuple[int, int, int]], after: dict[int, tuple[int, int, int]], cpu: int
) -> tuple[float, float]:
    """(busy CPU seconds, busy share) of `cpu` between two `cpu_jiffies` readings."""
    busy = after[cpu][0] - before[cpu][0]
    total = after[cpu][1] - before[cpu][1]
    return busy / os.sysconf("SC_CLK_TCK"), busy / total if total > 0 else 0.0


def steal_share(
    before: dict[int, tuple[int, int, int]], after: dict[int, tuple[int, int, int]], cpu: int
) -> float:
    """The share of `cpu`'s time the hypervisor took between two `cpu_jiffies` readings."""
    total = after[cpu][1] - before[cpu][1]
    return (after[cpu][2] - before[cpu][2]) / total if total > 0 else 0.0


TURNAROUND_BOUNDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


TURNAROUND = "ringback_sip_udp_turnaround_seconds"


def turnaround_within(
    before: dict[str, float], after: dict[str, float], bound: float | None
) -> float:
    """How many of the step's datagrams ringback's own clock (`TURNAROUND`: the kernel's
    receipt of a batch's first datagram -> the batch's answers handed to the kernel) answered
    within `bound` seconds, a bucket bound; all of them with None."""
    key = f"{TURNAROUND}_count" if bound is None else f'{TURNAROUND}_bucket{{le="{bound:g}"}}'
    return after.get(key, 0) - before.get(key, 0)


def turnaround_quantile(before: dict[str, float], after: dict[str, float], q: float) -> float:
    """The bucket bound (ms) at or below which a fraction `q` of the step's datagrams were
    answered by ringback's own clock; inf above the last bound, nan without observations."""
    total = turnaround_within(before, after, None)
    if total <= 0:
        return math.nan
    for bound in TURNAROUND_BOUNDS:
        if turnaround_within(before, after, bound) >= q * total:
            return bound * 1000
    return math.inf


def turnaround_share_over(before: dict[str, float], after: dict[str, float], bound: float) -> float:
    """The share of the step's datagrams that ringback's own clock put above `bound`
    seconds (a bucket bound); nan without observations. Next to sipp's share at 5 ms or
    more it says how much of the tail is ringback's: the rest is sipp's and the kernel's,
    on the other side of the socket."""
    total = turnaround_within(before, after, None)
    if total <= 0:
        return math.nan
    return 1 - turnaround_within(before, after, bound) / total


# Lateness bounds (ms) of the stall table: ringback_loop_lag_seconds has these buckets.
STALL_BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500)


def check_alive(processes: harness.ProcessSet) -> None:
    for proc in processes.processes:
        if not proc.alive():
            raise harness.PeerFailed(f"{proc.name} died:\n{proc.log()}")


# --------------------------------------------------------------------------- steps


@dataclass
class Step:
    offered: int
    calls: int
    achieved: float
    successful: int
    failed: int
    retransmissions: int
    p50: float | None
    p90: float | None
    p99: float | None
    seconds: float
    exit_code: int
    timed_out: bool
    probe_p50_us: float | None = None
    probe_p99_us: float | None = None
    probe_samples: int = 0
    probe_lost: int = 0
    rtt_samples: int = 0  # response times sipp wrote (one a successful call)
    # The share of them at 5 ms or more: p99 < 5 ms means under 1 %. sipp's clock moves
    # in 4 ms steps, so this share says how far a p99 of 8 ms is from 4.
    slow_share: float | None = None
    stalls: dict[str, float] | None = None  # ringback only: see RingbackMetrics.stalls
    # The server's CPU and sipp's during the step (/proc/stat): busy seconds, busy share.
    # sipp's share near 1.0 means sipp, not the server, may be what failed.
    server_cpu_s: float = 0.0
    server_cpu_busy: float = 0.0
    client_cpu_s: float = 0.0
    client_cpu_busy: float = 0.0
    server_process_cpu_s: float = 0.0  # the server's processes' own CPU time (/proc/PID)
    # The share of each CPU's time the hypervisor took during the step (/proc/stat steal):
    # a stall no process here caused, which sipp's clock counts as response time.
    server_cpu_steal: float = 0.0
    client_cpu_steal: float = 0.0

    @property
    def server_us_per_call(self) -> float | None:
        """The server processes' CPU µs per successful call."""
        return 1e6 * self.server_process_cpu_s / self.successful if self.successful else None

    settled_s: float = 0.0  # waited before the step for the last one's transactions to end

    @property
    def clean(self) -> bool:
        return (
            self.failed == 0
            and self.retransmissions == 0
            and not self.timed_out
            and self.successful == self.calls
            and self.achieved >= 0.9 * self.offered
        )


def memory_dir(path: str = "/dev/shm", need_bytes: int = 1 << 30) -> str | None:
    """A memory-backed directory for the work directory (sipp's traces, both servers'
    databases), or None for the default temporary directory. sipp's -trace_rtt file grows
    by 20,000+ lines a second; on a disk its writeback runs in kernel workers that take the
    server's CPU for milliseconds at a time, in the middle of the latency being measured."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    if not os.access(path, os.W_OK) or st.f_bavail * st.f_frsize < need_bytes:
        return None
    return path


def percentile(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


def run_step(
    scenario: Path,
    numbers: Path,
    target: tuple[str, int],
    rate: int,
    *,
    step_seconds: float,
    workdir: Path,
    cpu: int,
    processes: harness.ProcessSet,
    probe_rate: float = 0.0,
    server_cpu: int = 0,
    server_pid: int | None = None,
    timer_resol_ms: int = TIMER_RESOL_MS,
    sipp_env: dict[str, str] | None = None,
) -> Step:
    calls = max(1, int(rate * step_seconds))
    jiffies = cpu_jiffies()
    process_cpu = tree_cpu_seconds(server_pid) if server_pid else 0.0
    probe = None
    if probe_rate > 0:
        # measure in the middle of the step: after 1 s of ramp-up, for 60 % of it
        probe = LatencyProbe(target, rate=probe_rate, seconds=step_seconds * 0.6, start=1.0)
        probe.start()
    limit = max(200, rate // 2)  # bound on calls in flight (half a second's worth)
    result = harness.run_sipp(
        scenario,
        target,
        transport="u1",
        calls=calls,
        rate=rate,
        timeout=step_seconds * 2 + 10,
        limit=limit,
        workdir=workdir,
        trace_msg=False,
        trace_rtt=True,
        cpu=cpu,
        processes=processes,
        env=sipp_env,
        extra_args=[
            "-buff_size", BUFF,
            "-inf", str(numbers),
            "-recv_timeout", "4000",
            "-max_invite_retrans", "3",
            "-max_log_size", "5000000",
            "-max_recv_loops", "5000",
            "-max_sched_loops", "5000",
            "-timer_resol", str(timer_resol_ms),
        ],
    )  # fmt: skip
    after = cpu_jiffies()
    if server_pid:
        process_cpu = tree_cpu_seconds(server_pid) - process_cpu
    if probe is not None:
        probe.stop_event.set()
        probe.join(5)
    elapsed = result.elapsed or result.wall_seconds
    achieved = result.successful / elapsed if elapsed > 0 else 0.0
    step = Step(
        offered=rate,
        calls=calls,
        achieved=achieved,
        successful=result.successful,
        failed=result.failed,
        retransmissions=result.retransmissions,
        p50=percentile(result.rtt_ms, 50),
        p90=percentile(result.rtt_ms, 90),
        p99=percentile(result.rtt_ms, 99),
        seconds=elapsed,
        exit_code=result.returncode,
        timed_out=result.timed_out,
        probe_p50_us=percentile(probe.samples_us, 50) if probe else None,
        probe_p99_us=percentile(probe.samples_us, 99) if probe else None,
        probe_samples=len(probe.samples_us) if probe else 0,
        probe_lost=probe.lost if probe else 0,
        rtt_samples=len(result.rtt_ms),
        slow_share=share_at_least(result.rtt_ms, 5.0),
    )
    step.server_cpu_s, step.server_cpu_busy = busy_seconds(jiffies, after, server_cpu)
    step.server_process_cpu_s = process_cpu
    step.client_cpu_s, step.client_cpu_busy = busy_seconds(jiffies, after, cpu)
    step.server_cpu_steal = steal_share(jiffies, after, server_cpu)
    step.client_cpu_steal = steal_share(jiffies, after, cpu)
    return step


def share_at_least(values: list[float], bound: float) -> float | None:
    """The share of `values` at `bound` or more (None without values)."""
    if not values:
        return None
    return sum(1 for v in values if v >= bound) / len(values)


def fmt_share(v: float | None) -> str:
    return "-" if v is None or math.isnan(v) else f"{100 * v:.2f} %"


def at70_phrase(summary: dict[str, object], name: str, label: str) -> str:
    """ "; <label> (rate): p99 by sipp's clock, share at 5 ms or more, the probe's p99 (and
    ringback's own clock)", from the `<name>_..._at_70` summary entries; "" without them."""
    rate = summary.get(f"{name}_rate_at_70")
    if not isinstance(rate, int):
        return ""
    p99, share = summary.get(f"{name}_p99_ms_at_70"), summary.get(f"{name}_slow_share_at_70")
    probe, own = summary.get(f"{name}_probe_p99_us_at_70"), summary.get(f"{name}_own_p99_ms_at_70")
    own_over5 = summary.get(f"{name}_own_over5_share_at_70")
    steal = summary.get(f"{name}_steal_at_70")
    return (
        f"; {label} ({rate:,} calls/s): {fmt_ms(p99 if isinstance(p99, float) else None)} ms "
        f"(sipp's clock; {fmt_share(share if isinstance(share, float) else None)} of calls at "
        f"5 ms or more), {fmt_us(probe if isinstance(probe, float) else None)} µs (probe)"
        + (
            f", ≤ {own:g} ms (ringback's clock: kernel receipt -> answer sent, no sipp in it"
            + (
                f"; {fmt_share(own_over5)} of datagrams over 5 ms"
                if isinstance(own_over5, float) and not math.isnan(own_over5)
                else ""
            )
            + ")"
            if isinstance(own, float)
            else ""
        )
        + (
            f", host steal {100 * steal[0]:.1f} / {100 * steal[1]:.1f} % (server / sipp CPU)"
            if isinstance(steal, list) and len(steal) == 2
            else ""
        )
    )


AT70_LABELS = (
    ("ringback", "ringback's p99 at 70 % of its top"),
    ("kamailio", "Kamailio's at 70 % of its top"),
    ("ringback_at_peer", "ringback's at Kamailio's 70 %"),
    ("kamailio_at_ringback", "Kamailio's at ringback's 70 %"),
)


def at70_phrases(summary: dict[str, object], suffix: str = "") -> str:
    """The four 70 % steps' phrases, for the clock whose summary keys carry `suffix`."""
    return "".join(at70_phrase(summary, f"{name}{suffix}", label) for name, label in AT70_LABELS)


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def fmt_us(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def lost(s: Step) -> str:
    return f" ({s.probe_lost} lost)" if s.probe_lost else ""


def table(title: str, steps: list[Step]) -> str:
    out = [
        f"### {title}",
        "",
        "| offered calls/s | calls | achieved calls/s | failed | retransmissions "
        "| p50 ms | p90 ms | p99 ms | calls ≥ 5 ms | probe p50 µs | probe p99 µs "
        "| server's CPU busy | server µs/call | sipp's CPU busy | host steal (server / sipp "
        "CPU) | clean |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for s in steps:
        out.append(
            f"| {s.offered:,} | {s.calls:,} | {s.achieved:,.0f} | {s.failed:,} "
            f"| {s.retransmissions:,} | {fmt_ms(s.p50)} | {fmt_ms(s.p90)} | {fmt_ms(s.p99)} "
            f"| {fmt_share(s.slow_share)} "
            f"| {fmt_us(s.probe_p50_us)} | {fmt_us(s.probe_p99_us)}{lost(s)} "
            f"| {s.server_cpu_busy:.0%} | {fmt_us(s.server_us_per_call)} "
            f"| {s.client_cpu_busy:.0%} "
            f"| {100 * s.server_cpu_steal:.1f} / {100 * s.client_cpu_steal:.1f} % "
            f"| {'yes' if s.clean else 'no'} |"
        )
    clean = [s for s in steps if s.clean]
    best = max(clean, key=lambda s: s.offered) if clean else None
    out.append("")
    out.append(
        f"Highest rate sustained with 0 failed calls and 0 retransmissions: "
        f"**{best.offered:,} calls/s offered, {best.achieved:,.0f} achieved**"
        if best
        else "Highest rate sustained with 0 failed calls and 0 retransmissions: **none**"
    )
    return "\n".join(out)


def stall_table(title: str, steps: list[Step]) -> str:
    """Per step: how many 10 ms ticks of ringback's loop watch ran late by at least N ms, the
    full garbage collections in the step, how long ringback was ready to run but another
    process had its CPU (schedstat), and ringback's own turnaround (its CPU per call is in
    the step table)."""
    heads = " | ".join(f"≥ {b} ms" for b in STALL_BOUNDS_MS)
    out = [
        f"#### {title}: event-loop stalls (`ringback_loop_lag_seconds`)",
        "",
        f"| offered calls/s | settled s | ticks | {heads} | full gcs | gc pause ms "
        "| waited for CPU s | ringback's clock p50 / p99 ms | ringback's clock > 5 ms |",
        "|---:|---:|---:|" + "---:|" * len(STALL_BOUNDS_MS) + "---:|---:|---:|---:|---:|",
    ]
    for s in steps:
        st = s.stalls or {}
        cells = " | ".join(f"{st.get(f'>={b}ms', 0):,.0f}" for b in STALL_BOUNDS_MS)
        out.append(
            f"| {s.offered:,} | {s.settled_s:.0f} | {st.get('ticks', 0):,.0f} | {cells} "
            f"| {st.get('gc_count', 0):.0f} | {1000 * st.get('gc_sum', 0):.1f} "
            f"| {st.get('cpu_wait_s', 0):.2f} "
            f"| ≤ {st.get('turnaround_p50_ms', math.nan):g} / "
            f"≤ {st.get('turnaround_p99_ms', math.nan):g} "
            f"| {fmt_share(st.get('turnaround_over5_share'))} |"
        )
    return "\n".join(out)


# Embedded PostgreSQL clusters started here: stopped before the work directory is removed
# (pg_ctl needs the data directory; without it the server lingers until it notices).
DATABASES: list[Any] = []


def start_ringback(
    processes: harness.ProcessSet,
    workdir: Path,
    *,
    numbers: int,
    cpu: int,
    workers: int = 1,
    cpus: str = "0,1",
) -> tuple[tuple[str, int], RingbackMetrics, int]:
    """`ringback serve` on an embedded PostgreSQL in `workdir` with `numbers` listings,
    a reader of its /metrics, and its PID (its workers are its children)."""
    import asyncio
    import atexit
    import urllib.request

    import asyncpg

    from ringback.registry.common import Principal
    from ringback.registry.embedded import EmbeddedPostgres
    from ringback.registry.store import Store, create_pool

    db = EmbeddedPostgres(workdir / "db")
    dsn = db.start()
    DATABASES.append(db)
    atexit.register(db.remove)  # and before the work directory goes: see main()

    async def seed() -> None:
        pool = await create_pool(dsn, min_size=1, max_size=2)
        try:
            store = Store(pool)
            await store.migrate()
            court, _, _ = await store.courts.create("Bench Court", Principal("bench", "operator"))
            conn: asyncpg.Connection
            async with pool.acquire() as conn:
                await conn.execute(
                    "INSERT INTO listings (number, court_id, case_ref, expires_at) "
                    "SELECT 8613000000000 + n * 7, $1, 'BENCH', now() + interval '30 days' "
                    "FROM generate_series(1, $2) AS n",
                    court["id"],
                    numbers,
                )
        finally:
            await pool.close()

    asyncio.run(seed())
    sip_port, http_port = harness.free_port("both"), harness.free_port("tcp")
    config = workdir / "ringback.toml"
    config.write_text(
        f"[database]\nurl = '{dsn}'\n[sip]\nport = {sip_port}\n"
        f"[http]\nport = {http_port}\n[log]\nformat = 'json'\nlevel = 'warning'\n"
    )
    argv = [sys.executable, "-m", "ringback", "serve", "--config", str(config)]
    if workers > 1:
        argv = ["taskset", "-c", cpus, *argv, "--workers", str(workers)]
    proc = processes.start(
        "ringback", argv, log_path=workdir / "ringback.log", cpu=cpu if workers == 1 else None
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1) as r:
                ready = r.status == 200
            if ready and workers > 1:  # every worker up: each reports its CPU counter
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics") as r:
                    text = r.read().decode()
                reported = re.findall(
                    r'ringback_worker_cpu_milliseconds_total\{worker="\d+"\} [1-9]', text
                )
                ready = len(reported) >= workers
            if ready:
                log(f"ringback ready on {harness.LOCALHOST}:{sip_port}")
                return (harness.LOCALHOST, sip_port), RingbackMetrics(http_port), proc.pid
        except OSError:
            pass
        if not proc.alive():
            break
        time.sleep(0.2)
    raise SystemExit("ringback did not become ready:\n" + proc.log())


def sweep(
    target: tuple[str, int],
    rates: list[int],
    args: argparse.Namespace,
    workdir: Path,
    processes: harness.ProcessSet,
    scenario: Path,
    numbers: Path,
    *,
    metrics: RingbackMetrics | None = None,
    step_seconds: float | None = None,
    probe_rate: float | None = None,
    server_pid: int | None = None,
    sipp_clock: str = "packaged",
) -> list[Step]:
    """Step the rate up until --stop-after unclean steps in a row. With `metrics` (ringback),
    each step starts once the last one's transactions have ended (--settle) and records the
    event-loop stalls during it."""
    steps: list[Step] = []
    unclean = 0
    seconds = args.step_seconds if step_seconds is None else step_seconds
    waited = wait_quiet(args.server_cpu)
    log(f"CPU {args.server_cpu} quiet after {waited:.0f} s")
    for rate in rates:
        check_alive(processes)
        settled = 0.0
        if metrics is not None and args.settle > 0:
            settled = metrics.settle(quiet=200, limit_s=args.settle)
        before = metrics.read() if metrics is not None else None
        log(f"step {rate} calls/s x {seconds:g} s -> {target[0]}:{target[1]} ...")
        step = run_step(
            scenario,
            numbers,
            target,
            rate,
            step_seconds=seconds,
            workdir=workdir,
            cpu=args.client_cpu,
            processes=processes,
            probe_rate=args.probe_rate if probe_rate is None else probe_rate,
            server_cpu=args.server_cpu,
            server_pid=server_pid,
            timer_resol_ms=args.timer_resol,
            sipp_env=sipp_clock_env(sipp_clock, workdir),
        )
        step.settled_s = settled
        if metrics is not None and before is not None:
            step.stalls = metrics.stalls(before, metrics.read())
        steps.append(step)
        log(
            f"  achieved {step.achieved:,.0f}/s failed {step.failed} "
            f"retrans {step.retransmissions} p50/p90/p99 {fmt_ms(step.p50)}/"
            f"{fmt_ms(step.p90)}/{fmt_ms(step.p99)} ms, probe p50/p99 "
            f"{fmt_us(step.probe_p50_us)}/{fmt_us(step.probe_p99_us)} µs "
            f"({step.probe_lost} lost) exit {step.exit_code}, {step.rtt_samples} rtt samples"
            + (f", stalls {step.stalls}" if step.stalls else "")
        )
        unclean = 0 if step.clean else unclean + 1
        if unclean >= args.stop_after:
            log(f"stopping: {unclean} unclean steps in a row")
            break
        time.sleep(args.pause)
    return steps


def cpu_ratio(ringback: list[Step], kamailio: list[Step]) -> dict[str, float]:
    """Server CPU µs per call of each at the highest offered rate both held clean (their
    steps at or below it, the one nearest), and Kamailio's over ringback's."""
    rb_clean = [s for s in ringback if s.clean and s.server_us_per_call]
    kam_clean = [s for s in kamailio if s.clean and s.server_us_per_call]
    if not rb_clean or not kam_clean:
        return {}
    common = min(max(s.offered for s in rb_clean), max(s.offered for s in kam_clean))
    rb = max((s for s in rb_clean if s.offered <= common), key=lambda s: s.offered, default=None)
    kam = max((s for s in kam_clean if s.offered <= common), key=lambda s: s.offered, default=None)
    if rb is None or kam is None or not rb.server_us_per_call or not kam.server_us_per_call:
        return {}
    return {
        "ringback_us_per_call": rb.server_us_per_call,
        "ringback_us_at": rb.offered,
        "kamailio_us_per_call": kam.server_us_per_call,
        "kamailio_us_at": kam.offered,
        "cpu_ratio": kam.server_us_per_call / rb.server_us_per_call,
        "kamailio_sipp_busy_failed": max(
            (s.client_cpu_busy for s in kamailio if not s.clean), default=math.nan
        ),
    }


def best_clean(steps: list[Step]) -> Step | None:
    clean = [s for s in steps if s.clean]
    return max(clean, key=lambda s: s.offered) if clean else None


def ringback_title(args: argparse.Namespace) -> str:
    where = f"CPU {args.server_cpu}" if args.workers == 1 else f"CPUs {args.server_cpus}"
    return (
        f"ringback serve ({args.workers} worker{'s' if args.workers > 1 else ''}, uvloop, "
        f"{args.numbers:,} listed numbers in the index, {where})"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    who = ap.add_mutually_exclusive_group()
    who.add_argument("--target", help="HOST:PORT of a running server (not started here)")
    who.add_argument(
        "--kamailio-peer", action="store_true", help="start Kamailio stateless redirect peer"
    )
    who.add_argument(
        "--ringback",
        action="store_true",
        help="start `ringback serve` (uvloop) on an embedded PostgreSQL holding "
        "--numbers listings, pinned to --server-cpu",
    )
    who.add_argument(
        "--compare",
        action="store_true",
        help="start both ringback and the Kamailio peer (same CPU pinning), sweep each in "
        "turn in this one run, then ringback at 70 %% of its top rate; print the ratio",
    )
    ap.add_argument("--rates", default=DEFAULT_RATES, help=f"calls/s steps ({DEFAULT_RATES})")
    ap.add_argument(
        "--kamailio-rates", help="calls/s steps for the peer with --compare (default: --rates)"
    )
    ap.add_argument("--step-seconds", type=float, default=10.0, help="load per step (10 s)")
    ap.add_argument(
        "--stop-after", type=int, default=2, help="stop after N unclean steps in a row (2)"
    )
    ap.add_argument("--numbers", type=int, default=100_000, help="Kamailio htable size")
    ap.add_argument("--kamailio-children", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1, help="ringback serve --workers (1)")
    ap.add_argument("--server-cpu", type=int, default=0, help="CPU for servers started here")
    ap.add_argument(
        "--server-cpus", default="0,1", help="CPUs for ringback with --workers > 1 (0,1)"
    )
    ap.add_argument("--client-cpu", type=int, default=1, help="CPU for sipp (UAC)")
    ap.add_argument("--pause", type=float, default=2.0, help="seconds between steps")
    ap.add_argument(
        "--settle",
        type=float,
        default=40.0,
        help="ringback: before each step wait (at most this many s) until the last step's "
        "transactions have ended (Timer I 5 s; Timer H 32 s after an overloaded step), as "
        "a stateless peer starts every step clean; 0: do not wait (40)",
    )
    ap.add_argument(
        "--at70-seconds",
        type=float,
        default=60.0,
        help="--compare: length of the step at 70 %% of ringback's top rate, which always "
        "runs with the latency probe (100 calls/s) (60)",
    )
    ap.add_argument(
        "--probe-rate",
        type=float,
        default=100.0,
        help="calls/s of the Python latency probe run alongside sipp (100; 0: off). It "
        "shares the client CPU with sipp: use 0 when looking for the top rate",
    )
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run this bench and everything it starts (both servers, sipp, the probe) at this "
        "niceness, e.g. -10 on a shared machine, so that other users' processes take less "
        "of their CPUs; the same for every process measured (0: unchanged)",
    )
    ap.add_argument(
        "--timer-resol",
        type=int,
        default=TIMER_RESOL_MS,
        help="sipp -timer_resol in ms (1; sipp's own default is 10). sipp reads the time from "
        "CLOCK_MONOTONIC_COARSE, 4 ms steps here, and wakes its call generator only when "
        "more than this has passed: every 4 ms with 1, every 12 ms with 10. Each wake sends "
        "every call due since the last in one burst, and a server on one core answers a burst "
        "in (its CPU share x the period): at 70 %% CPU, 8.4 ms for 12 ms bursts, 2.8 ms for "
        "4 ms ones. With 10, any server's p99 at 70 %% of a CPU-bound top reads 8 ms or more "
        "(bench/RESULTS.md, session 8)",
    )
    ap.add_argument(
        "--sipp-clock",
        choices=SIPP_CLOCKS,
        default="packaged",
        help="sipp's clock for the rate sweeps: packaged (the installed sipp's own, "
        "CLOCK_MONOTONIC_COARSE: 4 ms steps here) or monotonic (CLOCK_MONOTONIC, as upstream "
        "sipp reads it since February 2026, through an LD_PRELOAD shim) (packaged). The clock "
        "also paces sipp: with -timer_resol 1 it wakes its call generator every 2 ms on the "
        "fine clock (every 4 ms on the packaged one), and the generator stops opening calls "
        "once its millisecond changes, without opening the rest later (bench/RESULTS.md, "
        "session 11)",
    )
    ap.add_argument(
        "--at70-clocks",
        default=",".join(SIPP_CLOCKS),
        help="--compare: sipp clocks the 70 %% steps run with, each in turn (packaged,monotonic)",
    )
    ap.add_argument("--json", type=Path, help="also write the steps (and summary) as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    at70_clocks = [c for c in args.at70_clocks.split(",") if c]
    if unknown := set(at70_clocks) - set(SIPP_CLOCKS):
        ap.error(f"--at70-clocks: unknown sipp clock(s) {sorted(unknown)}; use {SIPP_CLOCKS}")

    harness.require_binary("sipp")
    harness.require_binary("taskset")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what was started
    # the probe thread (and nothing else of ours) shares the client CPU with sipp
    os.sched_setaffinity(0, {args.client_cpu})
    if args.nice:  # inherited by every process started here
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    kamailio_rates = (
        [int(r) for r in args.kamailio_rates.split(",") if r.strip()]
        if args.kamailio_rates
        else rates
    )
    workdir = Path(tempfile.mkdtemp(prefix="sip-bench-", dir=memory_dir()))
    processes = harness.ProcessSet()
    results: dict[str, list[Step]] = {}
    summary: dict[str, object] = {}
    try:
        scenario = lean_scenario(workdir / "invite_302_lean.xml")
        numbers = called_numbers(workdir / "called.csv")

        def run(
            target: tuple[str, int],
            steps_rates: list[int],
            metrics: RingbackMetrics | None = None,
            server_pid: int | None = None,
            **kwargs: Any,
        ) -> list[Step]:
            kwargs.setdefault("sipp_clock", args.sipp_clock)
            return sweep(
                target,
                steps_rates,
                args,
                workdir,
                processes,
                scenario,
                numbers,
                metrics=metrics,
                server_pid=server_pid,
                **kwargs,
            )

        if args.compare:
            kam, kam_pid = start_kamailio_peer(
                processes,
                workdir,
                numbers=args.numbers,
                children=args.kamailio_children,
                cpu=args.server_cpu,
            )
            rb, rb_metrics, rb_pid = start_ringback(
                processes,
                workdir,
                numbers=args.numbers,
                cpu=args.server_cpu,
                workers=args.workers,
                cpus=args.server_cpus,
            )
            kam_title = (
                f"Kamailio 5.6 stateless redirect + htable ({args.numbers:,} numbers, "
                f"{args.kamailio_children} UDP workers, CPU {args.server_cpu})"
            )
            results[kam_title] = run(kam, kamailio_rates, server_pid=kam_pid)
            rb_title = ringback_title(args)
            results[rb_title] = run(rb, rates, rb_metrics, server_pid=rb_pid)
            rb_best, kam_best = best_clean(results[rb_title]), best_clean(results[kam_title])
            # Each server at 70 % of its own top for --at70-seconds, with the probe: the
            # latency target is ringback's; Kamailio's is the same measure of the peer. Then
            # each at the other's 70 % rate: both servers' latency at one offered load, so
            # that a miss can be told apart from what sipp and this host allow at that rate.
            # With each sipp clock in --at70-clocks: the packaged sipp's 4 ms clock cannot
            # resolve 5 ms (and sends its calls in 4 ms bursts); the monotonic one's summary
            # keys name it: "ringback_monotonic_p99_ms_at_70".
            at70_runs = [
                (clock, *server)
                for clock in at70_clocks
                for server in (
                    ("ringback", "ringback", rb_best, rb, rb_metrics, rb_pid, "its"),
                    ("kamailio", "Kamailio", kam_best, kam, None, kam_pid, "its"),
                    ("ringback_at_peer", "ringback", kam_best, rb, rb_metrics, rb_pid,
                     "Kamailio's"),
                    ("kamailio_at_ringback", "Kamailio", rb_best, kam, None, kam_pid,
                     "ringback's"),
                )
            ]  # fmt: skip
            for clock, name, server, best, target, metrics, pid, whose in at70_runs:
                if best is None:
                    continue
                at70 = int(round(best.offered * 0.7, -2))
                time.sleep(args.pause)
                at70_title = (
                    f"{server} at 70 % of {whose} top rate ({at70:,} calls/s, "
                    f"{args.at70_seconds:g} s, probe 100 calls/s, sipp clock: {clock})"
                )
                results[at70_title] = run(
                    target,
                    [at70],
                    metrics,
                    server_pid=pid,
                    step_seconds=args.at70_seconds,
                    probe_rate=100.0,
                    sipp_clock=clock,
                )
                at70_step = results[at70_title][0]
                if clock != "packaged":
                    name = f"{name}_{clock}"
                summary[f"{name}_rate_at_70"] = at70
                summary[f"{name}_p99_ms_at_70"] = at70_step.p99
                summary[f"{name}_probe_p99_us_at_70"] = at70_step.probe_p99_us
                summary[f"{name}_retransmissions_at_70"] = at70_step.retransmissions
                summary[f"{name}_slow_share_at_70"] = at70_step.slow_share
                summary[f"{name}_steal_at_70"] = [
                    at70_step.server_cpu_steal,
                    at70_step.client_cpu_steal,
                ]
                if at70_step.stalls:
                    summary[f"{name}_own_p99_ms_at_70"] = at70_step.stalls["turnaround_p99_ms"]
                    summary[f"{name}_own_over5_share_at_70"] = at70_step.stalls[
                        "turnaround_over5_share"
                    ]
            summary["ringback_top"] = rb_best.offered if rb_best else 0
            summary["kamailio_top"] = kam_best.offered if kam_best else 0
            if rb_best and kam_best:
                summary["ratio"] = rb_best.offered / kam_best.offered
                # The tops measure whichever gives out first, the server or sipp (one
                # thread, one CPU): the server CPU each spends per call, at the highest
                # rate both held clean, is a second per-core ratio sipp cannot cap.
                summary.update(cpu_ratio(results[rb_title], results[kam_title]))
        elif args.target:
            host, _, port = args.target.rpartition(":")
            target = (host or harness.LOCALHOST, int(port))
            results[f"server at {args.target}"] = run(target, rates)
        elif args.ringback:
            target, target_metrics, target_pid = start_ringback(
                processes,
                workdir,
                numbers=args.numbers,
                cpu=args.server_cpu,
                workers=args.workers,
                cpus=args.server_cpus,
            )
            results[ringback_title(args)] = run(
                target, rates, target_metrics, server_pid=target_pid
            )
        elif args.kamailio_peer:
            target, target_pid = start_kamailio_peer(
                processes,
                workdir,
                numbers=args.numbers,
                children=args.kamailio_children,
                cpu=args.server_cpu,
            )
            title = (
                f"Kamailio 5.6 stateless redirect + htable ({args.numbers:,} numbers, "
                f"{args.kamailio_children} UDP workers, CPU {args.server_cpu})"
            )
            results[title] = run(target, rates, server_pid=target_pid)
        else:
            standin, _ = harness.start_standin(
                processes,
                workdir,
                cpu=args.server_cpu,
                extra_args=["-buff_size", BUFF, "-max_recv_loops", "5000"],
                trace_msg=False,
                transports=("u1",),
            )
            log(f"stand-in on {standin.hostport}")
            title = f"sipp stand-in (UAS on CPU {args.server_cpu}; shows the driver works)"
            results[title] = run(standin.addr, rates)
    finally:
        processes.stop_all()
        for db in DATABASES:
            db.remove()
        if args.keep:
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    for title, steps in results.items():
        print(table(title, steps))
        print()
        if any(step.stalls is not None for step in steps):
            print(stall_table(title, steps))
            print()
    if args.compare:
        ratio = summary.get("ratio")
        print(
            f"**Per core, same run: ringback {summary['ringback_top']:,} calls/s, Kamailio "
            f"{summary['kamailio_top']:,} calls/s, ratio "
            f"{'-' if ratio is None else f'{ratio:.2f}'}**" + at70_phrases(summary)
        )
        if monotonic := at70_phrases(summary, "_monotonic"):
            print()
            print(
                "**The same 70 % steps with sipp reading CLOCK_MONOTONIC** (upstream sipp's "
                "clock; the packaged one moves in 4 ms steps)" + monotonic
            )
        if "cpu_ratio" in summary:
            print()
            print(
                f"**Per core by CPU, same run: ringback {summary['ringback_us_per_call']:.1f} µs "
                f"of server CPU per call (at {summary['ringback_us_at']:,} calls/s), Kamailio "
                f"{summary['kamailio_us_per_call']:.1f} µs (at {summary['kamailio_us_at']:,}), "
                f"ratio {summary['cpu_ratio']:.2f}** (the servers' processes' own CPU time)"
                + (
                    f"; sipp's CPU was up to {summary['kamailio_sipp_busy_failed']:.0%} busy in "
                    "Kamailio's steps that failed (near 100 %: sipp, not Kamailio, may have set "
                    "Kamailio's top)"
                    if not math.isnan(summary["kamailio_sipp_busy_failed"])  # type: ignore[arg-type]
                    else ""
                )
            )
        print()
    print(
        "sipp UAC: INVITE (no SDP) -> 302 -> ACK over UDP, one socket (-t u1), "
        f"-buff_size {BUFF}, -timer_resol {args.timer_resol} ms, pinned to CPU "
        f"{args.client_cpu}; response time = INVITE sent "
        "-> 302 received, from -trace_rtt (the packaged sipp's clock moves in 4 ms steps "
        "here; steps marked 'sipp clock: monotonic' read CLOCK_MONOTONIC). Probe: "
        f"{args.probe_rate:g} extra calls/s from Python (perf_counter_ns, same CPU as sipp) in "
        "the middle 60 % of each step, INVITE -> final response; includes Python's overhead."
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "summary": summary,
                    "runs": {
                        t: [{**asdict(s), "clean": s.clean} for s in steps]
                        for t, steps in results.items()
                    },
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
