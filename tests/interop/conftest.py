"""Fixtures for the SIP interop tests (sipp, Kamailio). The helpers themselves are in harness.py.

The server under test comes from ONE fixture, `redirect_target`: the real ringback
(`ringback serve` on 127.0.0.1, UDP+TCP on one free port, on a database seeded so that
`SipTarget.held` is listed with a 2 s warning), stopped by PID through `processes`. Or, with
no code change, point the tests at a server that is already running:

    RINGBACK_INTEROP_TARGET=127.0.0.1:5060 [RINGBACK_INTEROP_HELD=+...] \
    [RINGBACK_INTEROP_UNLISTED=+...] [RINGBACK_INTEROP_HOLD_SECONDS=12] pytest -m interop

RINGBACK_INTEROP_STANDIN=1 runs the same tests against the sipp stand-in that validated
this harness before it was pointed at ringback (sipp/uas_redirect_standin.xml); it is kept
to check the harness itself, and the "checks bite" tests use a broken copy of it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from harness import (
    KAMAILIO_TEMPLATES,
    LOCALHOST,
    KamailioProcess,
    MissingBinary,
    PeerFailed,
    ProcessSet,
    RingbackCluster,
    RingbackNode,
    SippResult,
    SippServer,
    SipTarget,
    free_port,
    render_switch_cfg,
    require_binary,
    run_sipp,
    start_kamailio,
    start_ringback,
    start_sipp_uas,
    start_standin,
)

from ringback.registry.common import Principal
from ringback.registry.store import Store, create_pool


@pytest.fixture(autouse=True)
def _interop_binaries() -> None:
    """Fail (never skip) with the Debian package to install when a peer is missing."""
    try:
        require_binary("sipp")
        require_binary("kamailio")
    except MissingBinary as exc:
        problem = str(exc)
    else:
        return
    pytest.fail(problem, pytrace=False)


@pytest.fixture
def processes() -> Iterator[ProcessSet]:
    """Every process a test starts; all are stopped by PID at teardown, pass or fail."""
    owned = ProcessSet()
    try:
        yield owned
    finally:
        owned.stop_all()


@pytest.fixture
def interop_dir(tmp_path: Path) -> Path:
    """Where this test's configs, logs and sipp traces go (kept by pytest for inspection)."""
    return tmp_path


@pytest.fixture
def sipp_uas(processes: ProcessSet, interop_dir: Path) -> Callable[..., SippServer]:
    """Factory: `sipp_uas(scenario, *, transport="u1", port=None, extra_args=())` starts a
    sipp UAS in the background on 127.0.0.1 (free port unless given) and returns a
    SippServer(host, port, transport, process, workdir) once it is bound."""

    def start(
        scenario: str | Path,
        *,
        transport: str = "u1",
        port: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> SippServer:
        try:
            return start_sipp_uas(
                processes,
                scenario,
                workdir=interop_dir,
                transport=transport,
                port=port,
                extra_args=extra_args,
            )
        except PeerFailed as exc:
            problem = str(exc)
        pytest.fail(problem, pytrace=False)

    return start


@pytest.fixture
def kamailio_switch(
    processes: ProcessSet, interop_dir: Path
) -> Callable[[str, str], KamailioProcess]:
    """Factory: `kamailio_switch(ringback_addr, callee_addr)` renders kamailio/switch.cfg
    ("host:port" strings), checks it with `kamailio -c`, runs it in the foreground on a free
    UDP port and returns KamailioProcess(host, port, cfg, process)."""

    def start(ringback_addr: str, callee_addr: str) -> KamailioProcess:
        port = free_port("udp")
        cfg = render_switch_cfg(
            KAMAILIO_TEMPLATES / "switch.cfg",
            interop_dir / f"switch-{port}.cfg",
            listen_port=port,
            ringback_addr=ringback_addr,
            callee_addr=callee_addr,
        )
        try:
            return start_kamailio(processes, cfg, port=port, workdir=interop_dir)
        except PeerFailed as exc:
            problem = str(exc)
        pytest.fail(problem, pytrace=False)

    return start


LISTED = "+8613800138000"
WARNING_SECONDS = 2.0


def chirp(seconds: float) -> bytes:
    """A rising tone: court audio that cross-correlation can find unambiguously."""
    t = np.arange(int(8000 * seconds)) / 8000
    return (0.4 * np.sin(2 * np.pi * (400 + 400 * t) * t) * 32767).astype("<i2").tobytes()


async def _seed(dsn: str, pcm: bytes, numbers: tuple[str, ...] = (LISTED,)) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        store = Store(pool)
        await store.migrate()
        who = Principal("interop", "operator")
        court, _, _ = await store.courts.create("Interop Court", who)
        recording = await store.recordings.add(court["id"], "chirp", pcm, who)
        now = datetime.now(UTC)
        for i, number in enumerate(numbers, 1):
            await store.listings.put(
                court["id"],
                int(number[1:]),
                f"INTEROP-{i}",
                now + timedelta(days=1),
                who,
                effective_at=now - timedelta(minutes=1),
                recording_id=recording["id"],
            )
    finally:
        await pool.close()


@pytest.fixture
def court_audio() -> bytes:
    return chirp(WARNING_SECONDS)


@pytest.fixture
async def redirect_target(
    processes: ProcessSet, interop_dir: Path, database: str, court_audio: bytes
) -> AsyncIterator[SipTarget]:
    """THE server under test: `ringback serve` on a seeded database (LISTED plays a 2 s
    warning), or a server already running (RINGBACK_INTEROP_TARGET=host:port), or the sipp
    stand-in that validated this harness (RINGBACK_INTEROP_STANDIN=1)."""
    external = os.environ.get("RINGBACK_INTEROP_TARGET")
    if external:
        host, _, port = external.rpartition(":")
        defaults = SipTarget(LOCALHOST, 0, "")
        yield SipTarget(
            host or LOCALHOST,
            int(port),
            f"external {external}",
            unlisted=os.environ.get("RINGBACK_INTEROP_UNLISTED", defaults.unlisted),
            held=os.environ.get("RINGBACK_INTEROP_HELD", defaults.held),
            hold_seconds=float(
                os.environ.get("RINGBACK_INTEROP_HOLD_SECONDS", defaults.hold_seconds)
            ),
        )
        return
    if os.environ.get("RINGBACK_INTEROP_STANDIN"):
        try:
            target, _servers = start_standin(processes, interop_dir)
        except PeerFailed as exc:
            pytest.fail(str(exc), pytrace=False)
        yield target
        return
    await _seed(database, court_audio)
    sip_port, _ = await _start_ringback(processes, interop_dir, database)
    yield SipTarget(LOCALHOST, sip_port, "ringback", held=LISTED, hold_seconds=WARNING_SECONDS + 3)


async def _start_ringback(
    processes: ProcessSet, interop_dir: Path, database: str, extra: str = "", workers: int = 1
) -> tuple[int, int]:
    """`ringback serve` on ``database`` (already seeded); (SIP port, HTTP port) once ready.
    ``workers`` > 1: `--workers N`, ready once every worker answers /readyz."""
    sip_port, http_port = free_port("both"), free_port("tcp")
    config = interop_dir / "ringback.toml"
    config.write_text(
        f"[database]\nurl = '{database}'\n"
        f"[sip]\nport = {sip_port}\n"
        f"[http]\nport = {http_port}\n"
        "[index]\nheartbeat_s = 0.2\n"
        "[announcement]\ngap_ms = 0\nrtp_port_min = 32000\nrtp_port_max = 32999\n"
        "[log]\nformat = 'json'\nlevel = 'debug'\n" + extra
    )
    argv = [sys.executable, "-m", "ringback", "serve", "--config", str(config)]
    if workers > 1:
        argv += ["--workers", str(workers)]
    proc = processes.start("ringback", argv, log_path=interop_dir / "ringback.log")
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1) as r:
                if r.status == 200 and len(worker_counters(http_port, "cpu_milliseconds")) >= (
                    workers if workers > 1 else 0
                ):
                    break
        except OSError:
            pass
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            pytest.fail("ringback did not become ready:\n" + proc.log(), pytrace=False)
        await asyncio.sleep(0.1)
    return sip_port, http_port


def worker_counters(http_port: int, name: str) -> dict[int, int]:
    """`ringback_worker_<name>_total` by worker, for the workers that have reported."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=2) as r:
        text = r.read().decode()
    prefix = f'ringback_worker_{name}_total{{worker="'
    out = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            worker, _, value = line[len(prefix) :].partition('"} ')
            if int(value) > 0:
                out[int(worker)] = int(value)
    return out


LAB_USER, LAB_PASSWORD = "+8613900139000", "lab-secret-1"
LAB_TONE_SECONDS = 3.0


@dataclass(frozen=True)
class LabTarget:
    host: str
    sip_port: int
    http_port: int
    listed: str = LISTED
    unlisted: str = "+8613700137000"
    user: str = LAB_USER
    password: str = LAB_PASSWORD

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://{self.host}:{self.http_port}/metrics") as r:
            return str(r.read().decode())

    def decisions(self, outcome: str) -> int:
        prefix = f'ringback_sip_decisions_total{{outcome="{outcome}"}} '
        for line in self.metrics().splitlines():
            if line.startswith(prefix):
                return int(float(line[len(prefix) :]))
        return 0


@pytest.fixture
async def lab_target(
    processes: ProcessSet, interop_dir: Path, database: str, court_audio: bytes
) -> LabTarget:
    """`ringback serve` in lab mode, as `ringback demo` runs it: no switch; LISTED plays a
    2 s warning, then the lab callee (or a softphone registered as LAB_USER) takes the call."""
    await _seed(database, court_audio, (LISTED, LAB_USER))
    sip_port, http_port = await _start_ringback(
        processes,
        interop_dir,
        database,
        f"[lab]\nenabled = true\nusers = ['{LAB_USER}:{LAB_PASSWORD}']\n"
        f"callee_tone_s = {LAB_TONE_SECONDS}\n",
    )
    return LabTarget(LOCALHOST, sip_port, http_port)


@pytest.fixture
def uac(processes: ProcessSet, interop_dir: Path) -> Callable[..., SippResult]:
    """`uac(scenario, target, *, transport="u1", calls=1, rate=None, extra_args=(),
    timeout=15, service=None, ...)`: harness.run_sipp with this test's process set and
    directory."""

    def run(scenario: str | Path, target: tuple[str, int], **kwargs: Any) -> SippResult:
        kwargs.setdefault("workdir", interop_dir)
        kwargs.setdefault("processes", processes)
        return run_sipp(scenario, target, **kwargs)

    return run


# --------------------------------------------------------------------------- announcements
# Added for test_softphones.py / test_announcement_sipp.py.


def _required(name: str) -> str:
    from harness import SOFTPHONE_PACKAGES

    try:
        return require_binary(name, SOFTPHONE_PACKAGES.get(name))
    except MissingBinary as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)


@pytest.fixture
def linphonec_binary() -> str:
    """Path of linphonec; the test FAILS naming the Debian package (linphone-cli) if absent."""
    return _required("linphonec")


@pytest.fixture
def baresip_binary() -> str:
    """Path of baresip; the test FAILS naming the Debian package (baresip) if absent."""
    return _required("baresip")


@pytest.fixture
def court_reference(court_audio: bytes) -> np.ndarray:
    """The court's recording as float samples at 8 kHz: what callers must hear."""
    return np.frombuffer(court_audio, dtype="<i2").astype(np.float64) / 32768.0


# --------------------------------------------------------------------------- switch recipes
# Added for test_switch_recipes.py: several ringback nodes on one seeded database.

UNLISTED = "+8613700137000"


async def _issue_switch_token(dsn: str) -> str:
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        _, token = await Store(pool).tokens.issue(
            "switch", None, "interop switch", Principal("interop", "operator")
        )
    finally:
        await pool.close()
    return token


@pytest.fixture
async def ringback_cluster(
    processes: ProcessSet, interop_dir: Path, database: str, court_audio: bytes
) -> RingbackCluster:
    """The seeded database (LISTED listed with `court_audio`, a switch token issued) and a
    way to start real `ringback serve` nodes on it; every node is stopped by PID at teardown."""
    await _seed(database, court_audio)
    token = await _issue_switch_token(database)

    def start(name: str, **kwargs: Any) -> RingbackNode:
        try:
            return start_ringback(processes, interop_dir, database=database, name=name, **kwargs)
        except PeerFailed as exc:
            problem = str(exc)
        pytest.fail(problem, pytrace=False)

    return RingbackCluster(database, token, LISTED, UNLISTED, start)
