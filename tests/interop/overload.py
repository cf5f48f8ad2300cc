"""Overload end to end (issue 10 item 3), shared by tests/interop/test_overload.py and
bench/overload.py: sipp callers -> Kamailio running config/switches/kamailio-redirect.cfg
UNCHANGED (a short RINGBACK_FR_MS given with -A) -> ringback -> Kamailio -> sipp callee.

ringback is the only part held to a CPU budget: a cgroup (v1 `cpu` controller, or v2
`cpu.max`) gives its process a fixed fraction of one core, so that on a 2-core machine
shared with Kamailio, two sipps and other people's tests, ringback (not the switch or the
load generator) is what saturates, and "twice the rate ringback sustains" is an offer the
rest of the chain carries easily. Both the budget and the rates are scaled down together;
the figures say so.

What is measured per run: calls offered and failed at the caller (sipp), calls the switch
sent on after ringback's 302 and calls it routed directly (its own log lines: "ringback
302" / "fail open"), ringback's shed INVITEs and decisions (/metrics), ringback's peak RSS
(VmHWM from /proc), and the latency of `GET /v1/lookup/{number}` probed during the load.
Plain Python (no pytest), like harness.py.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    KamailioProcess,
    PeerFailed,
    ProcessSet,
    RingbackNode,
    SippResult,
    SippServer,
    kamailio_string,
    run_sipp,
    start_sipp_uas,
    start_switch_recipe,
    write_dispatcher_list,
)

CGROUP_V1 = Path("/sys/fs/cgroup/cpu")
CGROUP_V2 = Path("/sys/fs/cgroup/unified")
CPU_PERIOD_US = 10_000  # 10 ms (longer for budgets under 10 %: the quota is at least 1 ms)


@contextlib.contextmanager
def cpu_budget(pid: int, fraction: float) -> Iterator[Path]:
    """Hold process `pid` to `fraction` of one core (CFS bandwidth control) until exit.

    PeerFailed when no writable cgroup CPU controller exists (the test needs one: run it as
    root on Linux; nothing is skipped)."""
    period = max(CPU_PERIOD_US, round(1000 / fraction))
    quota = max(1000, round(period * fraction))  # the kernel's minimum quota: 1 ms
    name = f"ringback-overload-{pid}"
    group: Path | None = None
    procs_of_parent: Path | None = None
    try:
        if (CGROUP_V1 / "cpu.cfs_quota_us").exists():
            group = CGROUP_V1 / name
            group.mkdir()
            (group / "cpu.cfs_period_us").write_text(str(period))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
            procs_of_parent = CGROUP_V1 / "cgroup.procs"
        elif (CGROUP_V2 / "cgroup.controllers").exists() or Path(
            "/sys/fs/cgroup/cgroup.controllers"
        ).exists():
            root = (
                CGROUP_V2 if (CGROUP_V2 / "cgroup.controllers").exists() else Path("/sys/fs/cgroup")
            )
            if "cpu" not in (root / "cgroup.subtree_control").read_text().split():
                (root / "cgroup.subtree_control").write_text("+cpu")
            group = root / name
            group.mkdir()
            (group / "cpu.max").write_text(f"{quota} {period}")
            procs_of_parent = root / "cgroup.procs"
        else:
            raise PeerFailed("no cgroup CPU controller under /sys/fs/cgroup")
        (group / "cgroup.procs").write_text(str(pid))
    except OSError as exc:
        if group is not None and group.exists():
            with contextlib.suppress(OSError):
                group.rmdir()
        raise PeerFailed(
            f"cannot give ringback a CPU budget through a cgroup ({exc}); the overload test "
            "needs root and a cgroup CPU controller (cgroup v1 cpu or v2 cpu.max)"
        ) from None
    try:
        yield group
    finally:
        # move whatever is left back to the parent group, then remove ours
        with contextlib.suppress(OSError):
            for task in (group / "cgroup.procs").read_text().split():
                assert procs_of_parent is not None
                with contextlib.suppress(OSError):
                    procs_of_parent.write_text(task)
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.05)


def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped for the UDP socket bound to 127.0.0.1:`port` (its receive
    buffer was full), from /proc/net/udp; 0 when no such socket."""
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted:
            return int(fields[-1])
    return 0


def peak_rss_kb(pid: int) -> int:
    """The process's peak resident set (VmHWM), in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for {pid}")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class LookupProbe:
    """GET /v1/lookup/{number} every `interval` s in a thread; latencies in seconds."""

    def __init__(self, node: RingbackNode, token: str, number: str, interval: float) -> None:
        self.url = f"{node.http_url}/v1/lookup/{number.replace('+', '%2B')}"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.interval = interval
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lookup-probe", daemon=True)

    def __enter__(self) -> LookupProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                request = urllib.request.Request(self.url, headers=self.headers)
                with urllib.request.urlopen(request, timeout=5) as r:
                    r.read()
                    if r.status != 200:
                        self.errors.append(f"HTTP {r.status}")
                self.latencies.append(time.perf_counter() - started)
            except (OSError, urllib.error.URLError) as exc:
                self.errors.append(str(exc))
            self._stop.wait(max(0.0, self.interval - (time.perf_counter() - started)))

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class OverloadRun:
    offered_rate: float
    calls: int
    listed_share: float
    caller: SippResult
    via_ringback: int  # the switch followed ringback's 302
    routed_directly: int  # the switch gave up on ringback (timeout or non-3xx) and went on
    late_answers: int  # ringback's answers that came after the switch had given up
    shed: int
    decisions: dict[str, int]
    peak_rss_kb: int
    rss_before_kb: int
    lookup_p50_s: float
    lookup_p99_s: float
    lookup_max_s: float
    lookup_count: int
    lookup_errors: list[str] = field(default_factory=list)
    # datagrams the switch's socket dropped (receive buffer full): SIP's retransmissions
    # must repair every one, so a drop is not a failure, but it explains a slow call
    switch_drops: int = 0

    @property
    def failed(self) -> int:
        return self.caller.failed

    @property
    def answered_share(self) -> float:
        return self.via_ringback / self.calls if self.calls else 0.0

    def row(self) -> str:
        return (
            f"| {self.offered_rate:,.0f} | {self.calls:,} | {self.caller.successful:,} "
            f"| {self.failed:,} | {self.via_ringback:,} | {self.routed_directly:,} "
            f"| {self.late_answers:,} | {self.shed:,} "
            f"| {self.decisions.get('listed_capacity', 0):,} "
            f"| {self.peak_rss_kb / 1024:.0f} | {self.lookup_p50_s * 1000:.1f} "
            f"| {self.lookup_p99_s * 1000:.1f} | {self.lookup_count} |"
        )


HEADER = (
    "| offered calls/s | calls | completed at caller | failed at caller | via ringback's 302 "
    "| routed directly by switch | ringback 302s too late | shed by ringback "
    "| warnings skipped (capacity) | ringback peak RSS MB | lookup p50 ms | lookup p99 ms "
    "| lookups |\n"
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def write_numbers(path: Path, calls: int, listed: str, listed_every: int) -> Path:
    """sipp -inf file: one called number per call, every `listed_every`-th the listed one
    (0: none), the others distinct unlisted numbers."""
    lines = ["SEQUENTIAL"]
    for i in range(calls):
        if listed_every and i % listed_every == listed_every - 1:
            lines.append(listed)
        else:
            lines.append(f"+86137{i % 100_000_000:08d}")
    path.write_text("\n".join(lines) + "\n")
    return path


def start_chain(
    processes: ProcessSet,
    workdir: Path,
    node: RingbackNode,
    *,
    ringback_fr_ms: int,
    workers: int = 4,
) -> tuple[KamailioProcess, SippServer]:
    """The callee (sipp UAS answering any INVITE) and Kamailio running the redirect recipe
    unchanged, in front of `node`."""
    callee = start_sipp_uas(
        processes,
        "uas_answer_any",
        workdir=workdir,
        trace_msg=False,
        extra_args=["-buff_size", "4194304"],
    )
    ds_list = write_dispatcher_list(workdir / "dispatcher.list", [node])
    switch = start_switch_recipe(
        processes,
        "kamailio-redirect.cfg",
        workdir=workdir,
        defines={
            "NEXT_HOP": kamailio_string(f"sip:{callee.addr}"),
            "DISPATCHER_LIST": kamailio_string(str(ds_list)),
            "PING_FROM": kamailio_string("sip:ringback-probe@127.0.0.1"),
            "RINGBACK_FR_MS": ringback_fr_ms,
            "WORKERS": workers,
            # probe every second: a node the switch marked down (it stayed silent) is back
            # after two answered probes instead of ten seconds
            "DS_PING_INTERVAL": 1,
        },
        # shared memory for the transactions of hundreds of calls a second (64 MB by
        # default: it ran out at 600 calls/s here); a command-line option, not the recipe's
        extra_args=["-m", "256"],
    )
    return switch, callee


def _count(text: str, needle: str) -> int:
    return text.count(needle)


def run_overload(
    processes: ProcessSet,
    workdir: Path,
    node: RingbackNode,
    switch: KamailioProcess,
    *,
    rate: float,
    seconds: float,
    listed: str,
    listed_every: int,
    token: str,
    probe_interval: float = 0.05,
    timeout: float | None = None,
) -> OverloadRun:
    """Offer `rate` calls/s for `seconds` through `switch`; collect the figures."""
    calls = max(1, int(rate * seconds))
    numbers = write_numbers(workdir / f"numbers-{int(rate)}.csv", calls, listed, listed_every)
    log_before = switch.process.log_path.read_text(errors="replace")
    drops_before = udp_drops(switch.port)
    metrics_before = node.metrics()
    rss_before = rss_kb(node.process.pid)
    with LookupProbe(node, token, listed, probe_interval) as probe:
        caller = run_sipp(
            Path(__file__).parent / "sipp" / "uac_call_through_switch_csv.xml",
            (switch.host, switch.port),
            calls=calls,
            rate=rate,
            timeout=timeout if timeout is not None else seconds + 30,
            workdir=workdir,
            trace_msg=False,
            processes=processes,
            extra_args=["-inf", str(numbers), "-buff_size", "4194304"],
        )
    log = switch.process.log_path.read_text(errors="replace")[len(log_before) :]
    metrics = node.metrics()
    decisions = {
        key.split('"')[1]: int(value - metrics_before.get(key, 0))
        for key, value in metrics.items()
        if key.startswith("ringback_sip_decisions_total{")
    }
    shed = int(
        metrics.get("ringback_sip_shed_total", 0) - metrics_before.get("ringback_sip_shed_total", 0)
    )
    lat = probe.latencies
    return OverloadRun(
        offered_rate=rate,
        calls=calls,
        listed_share=1 / listed_every if listed_every else 0.0,
        caller=caller,
        via_ringback=_count(log, "ringback 302 ("),
        routed_directly=_count(log, ": fail open") + _count(log, "straight on (fail open)"),
        late_answers=_count(log, "stored: 408, received: 302"),
        shed=shed,
        decisions=decisions,
        peak_rss_kb=peak_rss_kb(node.process.pid),
        rss_before_kb=rss_before,
        lookup_p50_s=statistics.median(lat) if lat else float("nan"),
        lookup_p99_s=probe.percentile(0.99),
        lookup_max_s=max(lat) if lat else float("nan"),
        lookup_count=len(lat),
        lookup_errors=probe.errors,
        switch_drops=udp_drops(switch.port) - drops_before,
    )


def describe(run: OverloadRun) -> str:
    return (
        f"{HEADER}\n{run.row()}\ndecisions: {run.decisions}\n"
        f"datagrams the switch's socket dropped (repaired by retransmission): {run.switch_drops}\n"
        f"lookup errors: {run.lookup_errors[:5]}\ncaller:\n{run.caller.describe()}"
    )
