"""Helpers for the SIP interop tests and the SIP benchmark: sipp and Kamailio as real peers.

Plain Python (no pytest import), so `bench/sip_redirect.py` uses it too; the pytest fixtures
that wrap it live in `conftest.py` beside this file.

Rules every helper keeps:
- everything listens on 127.0.0.1 only, on free ports chosen at run time (`free_port`);
- every process is started in its own session and stopped by its PID (`ManagedProcess.stop`),
  also when a test fails (the fixtures own a `ProcessSet`);
- every load is bounded: sipp always gets `-m` (call count) and `-timeout` (global time limit),
  and Python kills it by PID if it outlives that.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "sipp"
KAMAILIO_TEMPLATES = HERE / "kamailio"
KAMAILIO_MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
LOCALHOST = "127.0.0.1"

# binary -> Debian package that provides it
PACKAGES = {"sipp": "sip-tester", "kamailio": "kamailio", "taskset": "util-linux"}


class MissingBinary(RuntimeError):
    """A peer the interop tests need is not installed (the tests fail, never skip)."""


class PeerFailed(RuntimeError):
    """A peer process did not start or check its configuration."""


def require_binary(name: str, package: str | None = None) -> str:
    """Absolute path of `name`, or MissingBinary naming the Debian package to install."""
    path = shutil.which(name)
    if path is None:
        pkg = package or PACKAGES.get(name, name)
        raise MissingBinary(
            f"`{name}` is not installed: the SIP interop tests need it. "
            f"Install the Debian package: apt-get install -y {pkg}"
        )
    return path


# --------------------------------------------------------------------------- ports

_handed_out: set[tuple[str, int]] = set()


def _bindable(kind: str, port: int) -> bool:
    stype = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, stype) as s:
        try:
            s.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


def free_port(kind: Literal["udp", "tcp", "both"] = "udp", *, span: int = 1) -> int:
    """A port on 127.0.0.1 that is free now for `kind` ("both": UDP and TCP alike).

    `span` > 1 asks for `span` consecutive free ports starting at the returned one (sipp's
    media port uses port and port + 2). Ports handed out earlier in this process are never
    handed out again, so two peers started back to back cannot be given the same port.
    """
    kinds = ("udp", "tcp") if kind == "both" else (kind,)
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((LOCALHOST, 0))
            port = int(s.getsockname()[1])
        ports = range(port, port + span)
        if port + span > 65535:
            continue
        if any((k, p) in _handed_out for k in kinds for p in ports):
            continue
        if all(_bindable(k, p) for k in kinds for p in ports):
            _handed_out.update((k, p) for k in kinds for p in ports)
            return port
    raise RuntimeError(f"no free {kind} port on {LOCALHOST}")


def _bound_ports(kind: str) -> set[int]:
    """Local ports bound on 127.0.0.1 / 0.0.0.0 (UDP) or listening (TCP), from /proc/net."""
    found: set[int] = set()
    table = Path(f"/proc/net/{kind}")
    for line in table.read_text().splitlines()[1:]:
        cols = line.split()
        local, state = cols[1], cols[3]
        addr, port_hex = local.split(":")
        if kind == "tcp" and state != "0A":  # LISTEN
            continue
        if addr in ("0100007F", "00000000"):
            found.add(int(port_hex, 16))
    return found


# --------------------------------------------------------------------------- processes


@dataclass
class ManagedProcess:
    """A process we started, in its own session; stopped by PID (then its own group)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    def stop(self, grace: float = 3.0) -> int | None:
        """SIGTERM the PID, wait, then SIGKILL it and anything left in its process group.

        The group was created for this process (start_new_session), so it holds only the
        process and the children it forked itself (Kamailio's workers).
        """
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        return self.popen.returncode


class ProcessSet:
    """Owns every process a test (or the bench) started; `stop_all()` ends them, newest first."""

    def __init__(self) -> None:
        self.processes: list[ManagedProcess] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        cpu: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ManagedProcess:
        """Start `argv` (pinned to `cpu` when given), with `env` added to this environment."""
        argv = list(argv)
        if cpu is not None:
            argv = [require_binary("taskset"), "-c", str(cpu), *argv]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **env} if env else None,
            )
        proc = ManagedProcess(name, popen, log_path, argv)
        self.processes.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()


def wait_bound(
    proc: ManagedProcess,
    port: int,
    kinds: Iterable[str] = ("udp",),
    timeout: float = 5.0,
) -> None:
    """Wait until `port` is bound for every kind, or raise PeerFailed with the peer's log."""
    deadline = time.monotonic() + timeout
    kinds = tuple(kinds)
    while time.monotonic() < deadline:
        if not proc.alive():
            raise PeerFailed(
                f"{proc.name} exited with {proc.popen.returncode} before binding port {port}.\n"
                f"argv: {' '.join(proc.argv)}\n--- log ---\n{proc.log()}"
            )
        if all(port in _bound_ports(k) for k in kinds):
            return
        time.sleep(0.02)
    raise PeerFailed(
        f"{proc.name} did not bind {'/'.join(kinds)} port {port} in {timeout} s.\n"
        f"argv: {' '.join(proc.argv)}\n--- log ---\n{proc.log()}"
    )


# --------------------------------------------------------------------------- sipp results

_SEP = re.compile(
    r"^-{40,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n"
    r"(UDP|TCP|TLS|SCTP) message (sent|received) (?:\((\d+) bytes\)|\[(\d+)\] bytes ?):\n\n",
    re.M,
)


@dataclass(frozen=True)
class TraceMessage:
    """One SIP message from a sipp -trace_msg file."""

    time: datetime
    transport: str
    direction: Literal["sent", "received"]
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def is_response(self) -> bool:
        return self.first_line.startswith("SIP/2.0 ")

    @property
    def status(self) -> int | None:
        return int(self.first_line.split()[1]) if self.is_response else None

    @property
    def method(self) -> str:
        """Request method, or the CSeq method of a response."""
        if not self.is_response:
            return self.first_line.split()[0]
        cseq = self.header("CSeq") or ""
        return cseq.split()[-1] if cseq else ""

    @property
    def request_uri(self) -> str | None:
        return None if self.is_response else self.first_line.split()[1]

    def header(self, name: str) -> str | None:
        """First value of a header (case-insensitive; compact forms not mapped)."""
        for line in self.text.split("\n")[1:]:
            if not line.strip():
                break
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    @property
    def body(self) -> str:
        parts = re.split(r"\r?\n\r?\n", self.text, maxsplit=1)
        return parts[1] if len(parts) > 1 else ""


def parse_trace(text: str) -> list[TraceMessage]:
    """Split a sipp -trace_msg file into messages (other log lines are dropped)."""
    out: list[TraceMessage] = []
    matches = list(_SEP.finditer(text))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        chunk = text[m.end() : end]
        # sipp appends notes such as "Dead call ... received" after a message: cut them off
        chunk = re.split(r"\n-{40,}\n", chunk, maxsplit=1)[0]
        direction: Literal["sent", "received"] = "sent" if m.group(3) == "sent" else "received"
        out.append(
            TraceMessage(
                time=datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f"),
                transport=m.group(2),
                direction=direction,
                text=chunk.replace("\r\n", "\n").strip("\n") + "\n",
            )
        )
    return out


def parse_sipp_duration(value: str) -> float:
    """sipp's 'HH:MM:SS:uuuuuu' (or 'HH:MM:SS') as seconds."""
    parts = value.strip().split(":")
    if len(parts) == 4:
        h, m, s, us = (int(p) for p in parts)
        return h * 3600 + m * 60 + s + us / 1e6
    h, m, s = (int(p) for p in parts[:3])
    return float(h * 3600 + m * 60 + s)


def _int(stats: dict[str, str], key: str) -> int:
    try:
        return int(float(stats.get(key, "0") or 0))
    except ValueError:
        return 0


@dataclass
class SippResult:
    """What one sipp run left behind: exit code, final statistics and the trace files."""

    returncode: int
    argv: list[str]
    workdir: Path
    wall_seconds: float
    timed_out: bool
    stats: dict[str, str]  # last row of the -trace_stat CSV (cumulative "(C)" columns)
    messages_text: str  # -trace_msg file
    errors_text: str  # -trace_err file
    counts: dict[str, str]  # last row of -trace_counts (per scenario step, e.g. "3_302_Retrans")
    rtt_ms: list[float] = field(default_factory=list)  # -trace_rtt samples (response time 1)
    screen: str = ""  # sipp's stdout (its last screen)

    # exit codes documented by sipp
    EXIT_MEANINGS = {  # noqa: RUF012
        0: "all calls successful",
        1: "at least one call failed",
        97: "exit on internal command",
        99: "normal exit without calls processed",
        255: "fatal error",
        254: "fatal error binding a socket",
    }

    @property
    def successful(self) -> int:
        return _int(self.stats, "SuccessfulCall(C)")

    @property
    def failed(self) -> int:
        return _int(self.stats, "FailedCall(C)")

    @property
    def outgoing(self) -> int:
        return _int(self.stats, "OutgoingCall(C)")

    @property
    def retransmissions(self) -> int:
        """Messages sipp sent again (UAC: its INVITE/BYE retransmissions, because a response
        was late or lost; also re-sent ACKs when a final response came again)."""
        return _int(self.stats, "Retransmissions(C)")

    @property
    def elapsed(self) -> float:
        value = self.stats.get("ElapsedTime(C)")
        return parse_sipp_duration(value) if value else self.wall_seconds

    @property
    def failure_reasons(self) -> dict[str, int]:
        return {
            k.removesuffix("(C)"): _int(self.stats, k)
            for k in self.stats
            if k.startswith("Failed") and k.endswith("(C)") and _int(self.stats, k)
        }

    @property
    def response_time_repartition(self) -> dict[str, int]:
        """Buckets of response time 1, e.g. {"<1": 12, "<2": 3, ">=500": 0} (ms)."""
        prefix = "ResponseTimeRepartition1_"
        return {k[len(prefix) :]: _int(self.stats, k) for k in self.stats if k.startswith(prefix)}

    @property
    def messages(self) -> list[TraceMessage]:
        return parse_trace(self.messages_text)

    def step_count(self, suffix: str) -> int:
        """Sum of -trace_counts columns ending with `suffix`, e.g. "_302_Retrans"."""
        return sum(_int(self.counts, k) for k in self.counts if k.endswith(suffix))

    def describe(self) -> str:
        meaning = self.EXIT_MEANINGS.get(self.returncode, "?")
        return (
            f"sipp exit {self.returncode} ({meaning}){' TIMED OUT' if self.timed_out else ''}; "
            f"successful={self.successful} failed={self.failed} "
            f"retransmissions={self.retransmissions} reasons={self.failure_reasons}\n"
            f"argv: {' '.join(self.argv)}\nworkdir: {self.workdir}\n"
            f"--- errors ---\n{self.errors_text[-3000:]}\n"
            f"--- messages (tail) ---\n{self.messages_text[-4000:]}"
        )

    def assert_all_ok(self, calls: int) -> None:
        """Exit code 0, `calls` successful, none failed (AssertionError with the traces)."""
        ok = (
            self.returncode == 0
            and not self.timed_out
            and self.successful == calls
            and self.failed == 0
        )
        assert ok, f"expected {calls} successful calls and 0 failed\n{self.describe()}"


def _last_csv_row(path: Path | None) -> dict[str, str]:
    if path is None or not path.exists():
        return {}
    with open(path, newline="", errors="replace") as f:
        rows = [r for r in csv.reader(f, delimiter=";") if r]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {k: v for k, v in zip(header, last, strict=False) if k}


def _read_rtt(path: Path | None) -> list[float]:
    """-trace_rtt file: 'Date_ms;response_time_ms;rtd_no' lines; keep response time 1."""
    out: list[float] = []
    if path is None or not path.exists():
        return out
    with open(path, errors="replace") as f:
        for line in f:
            cols = line.strip().split(";")
            if len(cols) >= 3 and cols[2].strip() in ("1", "rtd1"):
                with contextlib.suppress(ValueError):
                    out.append(float(cols[1]))
    return out


def _one(workdir: Path, pattern: str) -> Path | None:
    found = sorted(workdir.glob(pattern))
    return found[-1] if found else None


def scenario_path(scenario: str | Path) -> Path:
    """A scenario name ("invite_302") or file name in tests/interop/sipp, or any path."""
    p = Path(scenario)
    if p.is_absolute() or p.exists():
        return p.resolve()
    name = p.name if p.suffix == ".xml" else p.name + ".xml"
    path = SCENARIOS / name
    if not path.exists():
        raise FileNotFoundError(path)
    return path


def sipp_common_args() -> list[str]:
    """Arguments every sipp we start gets: loopback control and media sockets on free ports."""
    return [
        "-nostdin",
        "-ci",
        LOCALHOST,
        "-cp",
        str(free_port("udp")),
        "-mi",
        LOCALHOST,
        "-mp",
        str(free_port("udp", span=3)),
    ]


def run_sipp(
    scenario: str | Path,
    target: tuple[str, int],
    *,
    transport: str = "u1",
    calls: int = 1,
    rate: float | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 15.0,
    service: str | None = None,
    limit: int | None = None,
    workdir: Path | None = None,
    trace_msg: bool = True,
    trace_rtt: bool = False,
    cpu: int | None = None,
    processes: ProcessSet | None = None,
    env: Mapping[str, str] | None = None,
) -> SippResult:
    """Run a sipp UAC scenario against `target` to completion and collect its results.

    The load is bounded: `-m calls`, a global `-timeout` of `timeout` seconds, and the
    process is killed by PID if it is still running `timeout` + 5 s later. All trace files go
    to a fresh directory under `workdir` (or a temporary directory), kept for inspection.
    `service` is the called number ([service] in the scenarios); `cpu` pins sipp (taskset);
    `env` is added to sipp's environment.
    """
    sipp = require_binary("sipp")
    path = scenario_path(scenario)
    base = workdir if workdir is not None else Path(tempfile.mkdtemp(prefix="sipp-"))
    base.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{path.stem}-", dir=base))
    host, port = target
    argv = [
        sipp,
        "-sf",
        str(path),
        f"{host}:{port}",
        "-t",
        transport,
        "-i",
        LOCALHOST,
        "-p",
        str(free_port("both" if transport.startswith("t") else "udp")),
        "-m",
        str(calls),
        "-timeout",
        f"{max(1, round(timeout))}s",
        "-trace_stat",
        "-stf",
        str(run_dir / "stat.csv"),
        "-fd",
        "1",
        "-trace_err",
        "-error_file",
        str(run_dir / "errors.log"),
        "-trace_counts",
        *sipp_common_args(),
    ]
    if rate is not None:
        argv += ["-r", f"{rate:g}"]
    if limit is not None:
        argv += ["-l", str(limit)]
    if service is not None:
        argv += ["-s", service]
    if trace_msg:
        argv += ["-trace_msg", "-message_file", str(run_dir / "messages.log")]
    if trace_rtt:
        # sipp writes the file every -rtt_freq calls and drops what is left at the end
        argv += ["-trace_rtt", "-rtt_freq", str(min(1000, max(1, calls // 20)))]
    argv += list(extra_args)

    owned = processes if processes is not None else ProcessSet()
    started = time.monotonic()
    proc = owned.start(
        f"sipp {path.stem}", argv, log_path=run_dir / "screen.log", cwd=run_dir, cpu=cpu, env=env
    )
    timed_out = False
    try:
        proc.popen.wait(timeout + 5)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        proc.stop()
        if processes is None:
            owned.stop_all()
        elif proc in owned.processes:
            owned.processes.remove(proc)
    wall = time.monotonic() - started

    def text(p: Path | None) -> str:
        return p.read_text(errors="replace") if p is not None and p.exists() else ""

    return SippResult(
        returncode=proc.popen.returncode,
        argv=argv,
        workdir=run_dir,
        wall_seconds=wall,
        timed_out=timed_out,
        stats=_last_csv_row(run_dir / "stat.csv"),
        messages_text=text(run_dir / "messages.log"),
        errors_text=text(run_dir / "errors.log"),
        counts=_last_csv_row(_one(run_dir, "*_counts.csv")),
        rtt_ms=_read_rtt(_one(run_dir, "*_rtt.csv")),
        screen=proc.log(20000),
    )


# --------------------------------------------------------------------------- background peers


@dataclass
class SippServer:
    """A sipp UAS running in the background (one transport per sipp process)."""

    host: str
    port: int
    transport: str
    process: ManagedProcess
    workdir: Path

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def messages(self) -> list[TraceMessage]:
        path = self.workdir / "messages.log"
        return parse_trace(path.read_text(errors="replace")) if path.exists() else []


def start_sipp_uas(
    processes: ProcessSet,
    scenario: str | Path,
    *,
    workdir: Path,
    transport: str = "u1",
    port: int | None = None,
    extra_args: Sequence[str] = (),
    trace_msg: bool = True,
    cpu: int | None = None,
) -> SippServer:
    """Start a sipp UAS scenario listening on 127.0.0.1:`port` and wait until it is bound."""
    sipp = require_binary("sipp")
    path = scenario_path(scenario)
    tcp = transport.startswith("t")
    port = port if port is not None else free_port("both" if tcp else "udp")
    run_dir = Path(tempfile.mkdtemp(prefix=f"{path.stem}-{transport}-", dir=workdir))
    argv = [
        sipp,
        "-sf",
        str(path),
        "-t",
        transport,
        "-i",
        LOCALHOST,
        "-p",
        str(port),
        "-trace_err",
        "-error_file",
        str(run_dir / "errors.log"),
        *sipp_common_args(),
    ]
    if trace_msg:
        argv += ["-trace_msg", "-message_file", str(run_dir / "messages.log")]
    argv += list(extra_args)
    proc = processes.start(
        f"sipp UAS {path.stem} ({transport})",
        argv,
        log_path=run_dir / "screen.log",
        cwd=run_dir,
        cpu=cpu,
    )
    wait_bound(proc, port, ("tcp",) if tcp else ("udp",))
    return SippServer(LOCALHOST, port, transport, proc, run_dir)


def render_switch_cfg(
    template: Path, dest: Path, *, listen_port: int, ringback_addr: str, callee_addr: str
) -> Path:
    text = template.read_text()
    for key, value in {
        "@@LISTEN_PORT@@": str(listen_port),
        "@@RINGBACK_ADDR@@": ringback_addr,
        "@@CALLEE_ADDR@@": callee_addr,
    }.items():
        text = text.replace(key, value)
    leftover = re.findall(r"@@[A-Z_]+@@", text)
    if leftover:
        raise ValueError(f"unfilled placeholders in {template}: {leftover}")
    dest.write_text(text)
    return dest


@dataclass
class KamailioProcess:
    host: str
    port: int
    cfg: Path
    process: ManagedProcess

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    def log(self) -> str:
        return self.process.log(20000)


def kamailio_defines(defines: Mapping[str, str | int]) -> list[str]:
    """`-A NAME=VALUE` arguments for Kamailio's preprocessor (a value that must be a string in
    the config carries its own double quotes, e.g. {"NEXT_HOP": '"sip:127.0.0.1:5070"'})."""
    out: list[str] = []
    for name, value in defines.items():
        out += ["-A", f"{name}={value}"]
    return out


def check_kamailio_cfg(cfg: Path, *, defines: Mapping[str, str | int] | None = None) -> None:
    """`kamailio -c`: parses the config (it does not initialise modules; a module that fails in
    mod_init only shows when Kamailio really starts, see start_kamailio). `defines`: the same
    `-A` preprocessor defines Kamailio will run with."""
    kamailio = require_binary("kamailio")
    check = subprocess.run(
        [
            kamailio,
            "-c",
            "-f",
            str(cfg),
            "-L",
            str(KAMAILIO_MODULES),
            *kamailio_defines(defines or {}),
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    if check.returncode != 0:
        raise PeerFailed(f"kamailio -c rejected {cfg}:\n{check.stdout}\n{check.stderr}")


def start_kamailio(
    processes: ProcessSet,
    cfg: Path,
    *,
    port: int,
    workdir: Path,
    cpu: int | None = None,
    extra_args: Sequence[str] = (),
    defines: Mapping[str, str | int] | None = None,
) -> KamailioProcess:
    """Check `cfg`, then run Kamailio in the foreground (-DD: main process not daemonised,
    -E: log to stderr) with its runtime files in `workdir`; wait until it listens on UDP.
    `defines` become `-A NAME=VALUE` preprocessor defines (for the check and the run)."""
    kamailio = require_binary("kamailio")
    if not KAMAILIO_MODULES.is_dir():
        raise MissingBinary(
            f"Kamailio modules not found in {KAMAILIO_MODULES}: apt-get install -y kamailio"
        )
    check_kamailio_cfg(cfg, defines=defines)
    run_dir = workdir / f"kamailio-{port}"
    run_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        kamailio,
        "-DD",
        "-E",
        "-f",
        str(cfg),
        "-L",
        str(KAMAILIO_MODULES),
        "-w",
        str(run_dir),
        "-Y",
        str(run_dir),
        "-P",
        str(run_dir / "kamailio.pid"),
        *kamailio_defines(defines or {}),
        *extra_args,
    ]
    proc = processes.start(
        f"kamailio {cfg.name}", argv, log_path=run_dir / "kamailio.log", cwd=run_dir, cpu=cpu
    )
    wait_bound(proc, port, ("udp",), timeout=60.0)  # a large htable loads slowly on a busy host
    return KamailioProcess(LOCALHOST, port, cfg, proc)


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class SipTarget:
    """The SIP server under test, as the interop tests see it.

    `unlisted`: a number the server redirects at once (302).
    `held`: a number the server holds pending (183 first): for ringback a listed number during
    its warning. `hold_seconds`: how long at most it holds before its 302.
    """

    host: str
    port: int
    name: str
    unlisted: str = "+4930555000"
    held: str = "+99955501"
    hold_seconds: float = 2.0
    transports: tuple[str, ...] = ("u1", "t1")

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    def __iter__(self) -> Iterator[str | int]:
        """`host, port = target` works as for a plain (host, port) pair."""
        return iter((self.host, self.port))


def start_standin(
    processes: ProcessSet,
    workdir: Path,
    *,
    cpu: int | None = None,
    extra_args: Sequence[str] = (),
    trace_msg: bool = True,
    transports: Sequence[str] = ("u1", "t1"),
) -> tuple[SipTarget, list[SippServer]]:
    """The sipp stand-in for ringback that validates the harness (RINGBACK_INTEROP_STANDIN=1):
    uas_redirect_standin.xml over UDP and TCP on one port (two sipp processes, since one
    sipp serves one transport)."""
    port = free_port("both")
    servers = [
        start_sipp_uas(
            processes,
            "uas_redirect_standin",
            workdir=workdir,
            transport=t,
            port=port,
            extra_args=extra_args,
            trace_msg=trace_msg,
            cpu=cpu,
        )
        for t in transports
    ]
    return SipTarget(LOCALHOST, port, "sipp stand-in", transports=tuple(transports)), servers


# --------------------------------------------------------------------------- announcements
# Added for the warning-announcement interop tests (test_announcement_sipp.py,
# test_softphones.py): softphones driven through their console, an RTP receiver the tests own,
# an independent G.711 decoder and the audio comparison against the court's recording.

import itertools  # noqa: E402  (imports of the helpers below, which were added later)
import threading  # noqa: E402

import numpy as np  # noqa: E402

SOFTPHONE_PACKAGES = {"linphonec": "linphone-cli", "baresip": "baresip"}
SOFTPHONE_TEMPLATES = HERE / "softphones"


def start_piped(
    processes: ProcessSet,
    name: str,
    argv: Sequence[str],
    *,
    log_path: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> ManagedProcess:
    """Like ProcessSet.start, but stdin is a pipe the test writes console commands into
    (`send_line`). Registered with `processes`, so it is stopped by PID at teardown."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    proc = ManagedProcess(name, popen, log_path, list(argv))
    processes.processes.append(proc)
    return proc


def send_line(proc: ManagedProcess, line: str) -> None:
    """Type one console command into a process started with `start_piped`."""
    assert proc.popen.stdin is not None
    proc.popen.stdin.write(line.encode() + b"\n")
    proc.popen.stdin.flush()


def wait_for_log(
    proc: ManagedProcess, pattern: str, timeout: float, *, since: int = 0
) -> re.Match[str]:
    """Wait until `pattern` (a regex) appears in the process's log after character `since`;
    PeerFailed with the log if the process exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern)
    while True:
        text = proc.log(10_000_000)
        found = regex.search(text, since)
        if found:
            return found
        if not proc.alive():
            raise PeerFailed(
                f"{proc.name} exited with {proc.popen.returncode} before /{pattern}/\n"
                f"--- log ---\n{text[-4000:]}"
            )
        if time.monotonic() > deadline:
            raise PeerFailed(
                f"{proc.name}: no /{pattern}/ within {timeout} s\n--- log ---\n{text[-4000:]}"
            )
        time.sleep(0.02)


# ---- RTP


@dataclass(frozen=True)
class RtpPacket:
    arrival: float  # time.time() when the receiving thread got it
    source: tuple[str, int]
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes


def parse_rtp(data: bytes, arrival: float, source: tuple[str, int]) -> RtpPacket | None:
    """A plain RTP v2 packet (CSRCs and extension skipped), or None for anything else
    (RTCP included)."""
    if len(data) < 12 or data[0] >> 6 != 2 or 192 <= data[1] <= 223:
        return None
    start = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:  # header extension
        if len(data) < start + 4:
            return None
        start += 4 + 4 * int.from_bytes(data[start + 2 : start + 4], "big")
    end = len(data) - (data[-1] if data[0] & 0x20 else 0)  # padding
    return RtpPacket(
        arrival=arrival,
        source=source,
        payload_type=data[1] & 0x7F,
        marker=bool(data[1] & 0x80),
        sequence=int.from_bytes(data[2:4], "big"),
        timestamp=int.from_bytes(data[4:8], "big"),
        ssrc=int.from_bytes(data[8:12], "big"),
        payload=data[start:end],
    )


class RtpReceiver:
    """A UDP socket on 127.0.0.1 (the RTP address a test offers in its SDP) and a thread that
    timestamps every datagram as it arrives. Use as a context manager; `packets` afterwards."""

    def __init__(self, port: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((LOCALHOST, port if port is not None else free_port("udp", span=2)))
        self.sock.settimeout(0.05)
        self.port = int(self.sock.getsockname()[1])
        self.datagrams: list[tuple[float, bytes, tuple[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rtp-{self.port}", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.datagrams.append((time.time(), data, source))

    def __enter__(self) -> RtpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        self.sock.close()

    @property
    def packets(self) -> list[RtpPacket]:
        out = []
        for arrival, data, source in list(self.datagrams):
            packet = parse_rtp(data, arrival, source)
            if packet is not None:
                out.append(packet)
        return out


def rtp_stream_problems(packets: Sequence[RtpPacket], payload_type: int) -> list[str]:
    """What is wrong with `packets` as ONE RFC 3550 stream of 20 ms G.711 frames (empty list:
    nothing): one SSRC, the expected payload type, consecutive sequence numbers, timestamps
    160 apart, 160-byte payloads, marker on the first packet only."""
    problems: list[str] = []
    if not packets:
        return ["no RTP packet received"]
    ssrcs = {p.ssrc for p in packets}
    if len(ssrcs) != 1:
        problems.append(f"{len(ssrcs)} SSRCs")
    pts = {p.payload_type for p in packets}
    if pts != {payload_type}:
        problems.append(f"payload types {sorted(pts)}, expected {payload_type}")
    for a, b in itertools.pairwise(packets):
        if (b.sequence - a.sequence) % 65536 != 1:
            problems.append(f"sequence {a.sequence} -> {b.sequence}")
        if (b.timestamp - a.timestamp) % (1 << 32) != 160:
            problems.append(f"timestamp {a.timestamp} -> {b.timestamp} at seq {b.sequence}")
    sizes = {len(p.payload) for p in packets}
    if sizes != {160}:
        problems.append(f"payload sizes {sorted(sizes)}")
    if not packets[0].marker or any(p.marker for p in packets[1:]):
        problems.append("marker bit not on the first packet only")
    return problems[:20]


# ---- G.711 decoding (ITU-T G.711, the classic Sun reference decoder; independent of
# ringback.media.g711, which encodes)


def _ulaw_table() -> list[int]:
    table = []
    for byte in range(256):
        u = ~byte & 0xFF
        sample = (((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)
        table.append(0x84 - sample if u & 0x80 else sample - 0x84)
    return table


def _alaw_table() -> list[int]:
    table = []
    for byte in range(256):
        a = byte ^ 0x55
        t = (a & 0x0F) << 4
        seg = (a & 0x70) >> 4
        if seg == 0:
            t += 8
        elif seg == 1:
            t += 0x108
        else:
            t = (t + 0x108) << (seg - 1)
        table.append(t if a & 0x80 else -t)
    return table


def g711_decode(payload: bytes, payload_type: int) -> np.ndarray:
    """PCMU (PT 0) or PCMA (PT 8) bytes as float samples in [-1, 1)."""
    table = np.array(_ulaw_table() if payload_type == 0 else _alaw_table(), dtype=np.float64)
    return table[np.frombuffer(payload, dtype=np.uint8)] / 32768.0


def rtp_audio(packets: Sequence[RtpPacket]) -> np.ndarray:
    """The decoded audio of a stream, in sequence order, gaps left out."""
    if not packets:
        return np.zeros(0)
    return np.concatenate([g711_decode(p.payload, p.payload_type) for p in packets])


# ---- audio comparison


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV as mono float samples in [-1, 1) and its rate. Tolerates what
    softphones leave behind: a data size in the header larger than the file (recording
    stopped without rewriting the header), extra chunks, any channel count (averaged)."""
    data = Path(path).read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file ({len(data)} bytes)")
    pos, fmt, pcm = 12, None, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = data[pos + 8 : pos + 8 + size]
        if chunk == b"fmt ":
            fmt = body
        elif chunk == b"data":
            pcm = body
            break
        pos += 8 + size + (size & 1)
    if fmt is None or pcm is None:
        raise ValueError(f"{path}: no fmt or data chunk")
    tag = int.from_bytes(fmt[0:2], "little")
    channels = int.from_bytes(fmt[2:4], "little")
    rate = int.from_bytes(fmt[4:8], "little")
    bits = int.from_bytes(fmt[14:16], "little")
    if tag not in (1, 0xFFFE) or bits != 16:
        raise ValueError(f"{path}: format tag {tag}, {bits} bits: only 16-bit PCM is read")
    frame = 2 * channels
    usable = len(pcm) // frame * frame
    samples = np.frombuffer(pcm[:usable], dtype="<i2").astype(np.float64) / 32768.0
    return samples.reshape(-1, channels).mean(axis=1), rate


def resample_to_8k(samples: np.ndarray, rate: int) -> np.ndarray:
    """Band-limited resampling (FFT: cut the spectrum at 4 kHz) to 8 kHz."""
    if rate == 8000 or len(samples) == 0:
        return samples
    n = len(samples)
    m = round(n * 8000 / rate)
    spectrum = np.fft.rfft(samples)[: m // 2 + 1]
    return np.fft.irfft(spectrum, m) * (m / n)


def rms_dbfs(samples: np.ndarray) -> float:
    if len(samples) == 0:
        return -200.0
    rms = float(np.sqrt(np.mean(np.square(samples))))
    return 20 * float(np.log10(max(rms, 1e-10)))


@dataclass(frozen=True)
class AudioMatch:
    """How a recording (8 kHz) compares with a reference (the court's recording).

    lag_s: where the reference starts in the recording (FFT cross-correlation peak).
    global_correlation: normalised correlation over the overlap at that one lag.
    correlation: the same, pooled over 20 ms blocks of the reference, each block re-aligned
      within ±max_shift_s of the global lag: a receiver's adaptive jitter buffer may drop or
      insert a few ms mid-stream (linphone drops 10 ms at a time), which one global lag
      cannot follow. Blocks outside the recording count as silence.
    matched_fraction: share of blocks whose own normalised correlation exceeds `threshold`.
    chirp_seconds: span of the recording from the first to the end of the last matched block
      (the audible length of the reference; a receiver's concealment tail is not included).
    energy_seconds: span where the 10 ms RMS is within 20 dB of the recording's peak
      (reported for diagnosis: it includes packet-loss concealment tails).
    """

    lag_s: float
    global_correlation: float
    correlation: float
    matched_fraction: float
    chirp_seconds: float
    energy_seconds: float
    recording_seconds: float
    rms_dbfs: float

    def describe(self) -> str:
        return (
            f"lag {self.lag_s * 1000:.1f} ms, correlation {self.correlation:.3f} "
            f"(one lag: {self.global_correlation:.3f}), matched blocks "
            f"{self.matched_fraction:.0%}, chirp {self.chirp_seconds:.3f} s, energy span "
            f"{self.energy_seconds:.3f} s, recording {self.recording_seconds:.3f} s at "
            f"{self.rms_dbfs:.1f} dBFS"
        )


def match_reference(
    recording: np.ndarray,
    reference: np.ndarray,
    *,
    rate: int = 8000,
    block_s: float = 0.02,
    max_shift_s: float = 0.05,
    threshold: float = 0.8,
) -> AudioMatch:
    rec = np.asarray(recording, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    seconds = len(rec) / rate
    level = rms_dbfs(rec)
    if len(rec) == 0 or not np.any(rec):
        return AudioMatch(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, seconds, level)
    size = 1 << (len(rec) + len(ref)).bit_length()
    xc = np.fft.irfft(np.fft.rfft(rec, size) * np.conj(np.fft.rfft(ref, size)), size)
    lag = int(np.argmax(xc))
    if lag > size // 2:
        lag -= size

    def ncorr(a: np.ndarray, b: np.ndarray) -> float:
        denom = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
        return float(np.dot(a, b)) / denom if denom > 0 else 0.0

    a0, b0 = max(lag, 0), max(-lag, 0)
    k = min(len(rec) - a0, len(ref) - b0)
    global_corr = ncorr(rec[a0 : a0 + k], ref[b0 : b0 + k]) if k > 0 else 0.0

    block, shift = round(block_s * rate), round(max_shift_s * rate)
    dot_sum = rec_energy = ref_energy = 0.0
    matched: list[int] = []  # recording positions of matched blocks
    blocks = 0
    for start in range(0, len(ref) - block + 1, block):
        blocks += 1
        b = ref[start : start + block]
        ref_energy += float(np.dot(b, b))
        lo = max(start + lag - shift, 0)
        hi = min(start + lag + shift + block, len(rec))
        if hi - lo < block:
            continue
        window = rec[lo:hi]
        dots = np.correlate(window, b, mode="valid")
        energies = np.convolve(np.square(window), np.ones(block), mode="valid")
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = np.where(energies > 0, dots / np.sqrt(energies * np.dot(b, b)), 0.0)
        best = int(np.argmax(scores))
        dot_sum += float(dots[best])
        rec_energy += float(energies[best])
        if scores[best] > threshold:
            matched.append(lo + best)
    pooled = dot_sum / np.sqrt(rec_energy * ref_energy) if rec_energy and ref_energy else 0.0
    chirp = (max(matched) + block - min(matched)) / rate if matched else 0.0

    win = rate // 100
    n = len(rec) // win
    rms = np.sqrt(np.mean(np.square(rec[: n * win].reshape(n, win)), axis=1))
    loud = np.nonzero(rms > rms.max() / 10)[0] if n else np.zeros(0, dtype=int)
    energy = (loud[-1] + 1 - loud[0]) * win / rate if len(loud) else 0.0
    return AudioMatch(
        lag_s=lag / rate,
        global_correlation=global_corr,
        correlation=float(pooled),
        matched_fraction=len(matched) / blocks if blocks else 0.0,
        chirp_seconds=chirp,
        energy_seconds=float(energy),
        recording_seconds=seconds,
        rms_dbfs=level,
    )


# --------------------------------------------------------------------------- switch recipes
# Added for test_switch_recipes.py: several real ringback nodes on one database, and the
# Kamailio recipes of config/switches/ started unchanged with loopback values as -A defines.

import sys  # noqa: E402
import urllib.request  # noqa: E402

REPO = HERE.parent.parent
SWITCH_RECIPES = REPO / "config" / "switches"


@dataclass
class RingbackNode:
    """One `ringback serve` process: SIP (UDP+TCP) and HTTP on loopback."""

    name: str
    host: str
    sip_port: int
    http_port: int
    config: Path
    process: ManagedProcess

    @property
    def sip_uri(self) -> str:
        return f"sip:{self.host}:{self.sip_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def metrics(self) -> dict[str, float]:
        """`/metrics` as {"name{labels}": value} (Prometheus text format, comments left out)."""
        with urllib.request.urlopen(f"{self.http_url}/metrics", timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[key] = float(value)
        return out

    def sip_requests(self, method: str) -> int:
        """ringback_sip_requests_total for `method` (0 when the series does not exist yet)."""
        return int(self.metrics().get(f'ringback_sip_requests_total{{method="{method}"}}', 0))


@dataclass
class RingbackCluster:
    """ringback nodes sharing one seeded database: `listed` plays the court's recording,
    `unlisted` is redirected at once; `switch_token` is an API token of role switch (the HTTP
    dip's). `start(name, **kwargs)` starts one more node on it (see `start_ringback`)."""

    database: str
    switch_token: str
    listed: str
    unlisted: str
    starter: Callable[..., RingbackNode]

    def start(self, name: str, **kwargs: Any) -> RingbackNode:
        return self.starter(name, **kwargs)


def start_ringback(
    processes: ProcessSet,
    workdir: Path,
    *,
    database: str,
    name: str = "ringback",
    sip_port: int | None = None,
    http_port: int | None = None,
    extra_toml: str = "",
    sip_toml: str = "",
    announcement_toml: str = "",
    log_level: str = "debug",
    timeout: float = 30.0,
) -> RingbackNode:
    """`ringback serve` on `database` (already migrated and seeded), listening on 127.0.0.1
    (free ports unless given: a node restarted on its old ports is the same node to a switch);
    returns once `/readyz` answers 200 (PeerFailed with its log otherwise). `sip_toml`,
    `announcement_toml`: more keys of those sections (TOML lines); `extra_toml`: more
    sections."""
    sip_port = sip_port if sip_port is not None else free_port("both")
    http_port = http_port if http_port is not None else free_port("tcp")
    config = workdir / f"{name}.toml"
    config.write_text(
        f"[database]\nurl = '{database}'\n"
        f"[sip]\nport = {sip_port}\n{sip_toml}\n"
        f"[http]\nport = {http_port}\n"
        "[index]\nheartbeat_s = 0.2\n"
        "[announcement]\ngap_ms = 0\nrtp_port_min = 32000\nrtp_port_max = 32999\n"
        f"{announcement_toml}\n"
        f"[log]\nformat = 'json'\nlevel = '{log_level}'\n" + extra_toml
    )
    proc = processes.start(
        name,
        [sys.executable, "-m", "ringback", "serve", "--config", str(config)],
        log_path=workdir / f"{name}.log",
    )
    node = RingbackNode(name, LOCALHOST, sip_port, http_port, config, proc)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{node.http_url}/readyz", timeout=1) as r:
                if r.status == 200:
                    return node
        except OSError:
            pass
        if not proc.alive() or time.monotonic() > deadline:
            raise PeerFailed(f"{name} did not become ready:\n{proc.log()}")
        time.sleep(0.1)


def kamailio_string(value: str) -> str:
    """A -A define whose value the config uses as a string: in double quotes."""
    return f'"{value}"'


def write_dispatcher_list(path: Path, nodes: Sequence[RingbackNode], setid: int = 1) -> Path:
    """A dispatcher list file (config/switches/dispatcher.list format) naming `nodes`."""
    lines = [f"{setid} {node.sip_uri} 0 0 duid={node.name}" for node in nodes]
    path.write_text("\n".join(lines) + "\n")
    return path


# Kamailio modules the recipes load that Debian ships outside the `kamailio` package
KAMAILIO_MODULE_PACKAGES = {
    "http_client": "kamailio-utils-modules",
    "json": "kamailio-json-modules",
    "tls": "kamailio-tls-modules",
}


def require_kamailio_modules(cfg: Path) -> None:
    """MissingBinary naming the Debian package of the first module `cfg` loads that is not
    installed (Kamailio itself would only say that it cannot open the .so)."""
    for name in re.findall(r'^loadmodule "(\w+)\.so"', cfg.read_text(), re.M):
        if not (KAMAILIO_MODULES / f"{name}.so").exists():
            package = KAMAILIO_MODULE_PACKAGES.get(name, "kamailio")
            raise MissingBinary(
                f"Kamailio module {name} is not installed ({cfg.name} loads it). "
                f"Install the Debian package: apt-get install -y {package}"
            )


def start_switch_recipe(
    processes: ProcessSet,
    recipe: str | Path,
    *,
    workdir: Path,
    defines: Mapping[str, str | int],
    extra_args: Sequence[str] = (),
    port: int | None = None,
) -> KamailioProcess:
    """A recipe from config/switches/ ("kamailio-redirect.cfg" or a path), unchanged, on a free
    loopback UDP port (or `port`, chosen earlier when ringback must know it first): LISTEN and
    WORKERS=2 are added to `defines`; `extra_args`: more command-line options (e.g. `-m 256`,
    the shared memory in MB)."""
    cfg = Path(recipe) if Path(recipe).is_absolute() else SWITCH_RECIPES / recipe
    require_kamailio_modules(cfg)
    port = port if port is not None else free_port("udp")
    all_defines: dict[str, str | int] = {
        "LISTEN": f"udp:{LOCALHOST}:{port}",
        "WORKERS": 2,
        **defines,
    }
    return start_kamailio(
        processes, cfg, port=port, workdir=workdir, defines=all_defines, extra_args=extra_args
    )


# --------------------------------------------------------------------------- TLS certificates


@dataclass(frozen=True)
class Pki:
    """PEM files made by `make_test_pki`: a CA, a server certificate for 127.0.0.1 signed by
    it, a client (switch) certificate signed by it, and a client certificate signed by a
    second CA nobody trusts."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    openssl = require_binary("openssl", "openssl")
    done = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise PeerFailed(f"openssl {' '.join(args)} failed:\n{done.stderr}")


def _ec_request(directory: Path, name: str, subject: str) -> None:
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=directory,
    )  # fmt: skip


def _sign(directory: Path, name: str, ca: str, extensions: str) -> None:
    (directory / f"{name}.ext").write_text(extensions + "\n")
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "2", "-sha256", "-out", f"{name}.crt",
        "-extfile", f"{name}.ext", cwd=directory,
    )  # fmt: skip


def make_test_pki(directory: Path) -> Pki:
    """A throw-away PKI in `directory` (P-256 keys, valid for two days), made with openssl."""
    directory.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "rogue-ca"):
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2",
            "-subj", f"/CN=ringback test {ca}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory,
        )  # fmt: skip
    leaf = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature"
    _ec_request(directory, "server", "/CN=127.0.0.1")
    _sign(
        directory,
        "server",
        "ca",
        f"{leaf}\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1",
    )
    _ec_request(directory, "client", "/CN=switch.test")
    _sign(directory, "client", "ca", f"{leaf}\nextendedKeyUsage=clientAuth,serverAuth")
    _ec_request(directory, "rogue", "/CN=rogue.test")
    _sign(directory, "rogue", "rogue-ca", f"{leaf}\nextendedKeyUsage=clientAuth")
    d = directory
    return Pki(
        d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key",
        d / "rogue.crt", d / "rogue.key",
    )  # fmt: skip
