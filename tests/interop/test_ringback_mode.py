"""Ringback mode (issue 13) end to end with real peers: the warning plays while the debtor's
phone rings, then the call connects.

Through Kamailio running `config/switches/kamailio-ringback.cfg` unchanged (only its
`#!define`s on the command line) in front of a real `ringback serve` node in ringback mode
whose `ringback.next_hop` is that Kamailio:

- linphonec (Debian linphone-cli 5.1) calls the listed number; a second linphonec is the
  debtor's phone (Kamailio's NEXT_HOP) and answers 6 s after its INVITE arrived. Each plays a
  tone file as its microphone (caller 500 Hz, callee 2600 Hz) and records what it hears. The
  caller's recording must hold the court's recording (a 2 s chirp, repeated with no gap) from
  its start until the answer, then the callee's 2600 Hz; the callee's recording holds the
  caller's 500 Hz and never the warning. Post-dial delay (dialling to the 183) under 1 s; the
  callee leg's INVITE leaves Kamailio for the phone within 200 ms of the caller's INVITE
  reaching Kamailio (Kamailio's own log times, `$TV(Sn)`). BYE from the caller ends both legs;
  a second call is hung up by the callee.
- sipp as caller and callee (both traced, one clock): CANCEL while the callee rings ends the
  callee leg with 487; a busy callee's 486 reaches the caller.
- baresip 1.0 as the caller: its decoded audio holds the warning, then the callee's tone.

And `ringback demo --mode ringback` with no Kamailio: linphonec hears the shipped warning (as
the API serves it) while the lab callee rings 6 s, then the lab callee's 1 kHz / 1.4 kHz beeps.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import urllib.request
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import LISTED, UNLISTED
from harness import (
    LOCALHOST,
    SOFTPHONE_TEMPLATES,
    AudioMatch,
    KamailioProcess,
    MissingBinary,
    PeerFailed,
    ProcessSet,
    RingbackCluster,
    RingbackNode,
    SippResult,
    SippServer,
    TraceMessage,
    free_port,
    kamailio_string,
    match_reference,
    read_wav,
    resample_to_8k,
    send_line,
    start_piped,
    start_switch_recipe,
    wait_bound,
    wait_for_log,
    write_dispatcher_list,
)
from test_lab_mode import Linphone
from test_softphones import fill

pytestmark = pytest.mark.interop

WARNING_S = 2.0  # conftest's court_audio: a 2 s rising chirp (400 -> 2000 Hz)
RING_S = 6.0  # the callee answers this long after its INVITE arrived
CALLER_HZ, CALLEE_HZ = 500.0, 2600.0
RINGBACK_TOML = "[ringback]\nmode = 'ringback'\nnext_hop = '{next_hop}'\n"


# --------------------------------------------------------------------------- audio


def tone_wav(path: Path, hz: float, seconds: float = 60.0) -> Path:
    """An 8 kHz mono WAV of one steady tone: a phone's microphone in these tests."""
    t = np.arange(int(8000 * seconds)) / 8000
    pcm = (0.3 * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm.tobytes())
    return path


def tones(samples: np.ndarray, rate: int, block_s: float = 0.1) -> list[tuple[float, float]]:
    """(start second, dominant frequency) of every block louder than -30 dBFS."""
    block = int(rate * block_s)
    out = []
    window = np.hanning(block)
    freqs = np.fft.rfftfreq(block, 1 / rate)
    for i in range(0, len(samples) - block + 1, block):
        chunk = samples[i : i + block]
        if np.sqrt(np.mean(chunk**2)) > 0.03:
            peak = freqs[int(np.argmax(np.abs(np.fft.rfft(chunk * window))))]
            out.append((i / rate, float(peak)))
    return out


def seconds_of(found: list[tuple[float, float]], hz: float, block_s: float = 0.1) -> float:
    return sum(block_s for _, f in found if abs(f - hz) <= 30)


@dataclass(frozen=True)
class Heard:
    """What a caller's recording holds: the warning played `plays` times back to back from
    `warning_start` to `warning_end` (seconds into the recording; the last play cut by the
    answer), the worst correlation and matched share of the full plays, then the callee's
    tone from `callee_from`, for `callee_seconds` in all."""

    warning_start: float
    warning_end: float
    plays: int
    correlation: float
    matched: float
    callee_from: float
    callee_seconds: float
    detail: str


def warning_then_callee(samples: np.ndarray, rate: int, reference: np.ndarray) -> Heard:
    """Find the plays of the warning one after the other (each matched on its own: a jitter
    buffer may shift the audio by 10 ms between plays), then the callee's tone after them."""
    rec = resample_to_8k(samples, rate)
    length = len(reference) / 8000
    found: list[tuple[float, AudioMatch]] = []
    pos = 0.0
    while pos < len(rec) / 8000 - 0.2:
        lo = max(0.0, pos - 0.1)
        match = match_reference(rec[int(lo * 8000) : int((pos + length + 0.1) * 8000)], reference)
        begins = lo + match.lag_s
        if match.matched_fraction < 0.05 or not -0.05 <= begins - pos <= 0.3:
            break  # no further play (or one that does not follow the last)
        found.append((begins, match))
        pos = begins + length
    if not found:
        return Heard(0, 0, 0, 0, 0, float("inf"), 0, "no play of the warning found")
    full = [m for _, m in found[:-1]] or [found[-1][1]]
    start = found[0][0]
    last_start, last = found[-1]
    end = last_start + last.chirp_seconds
    after = [(t, f) for t, f in tones(rec, 8000) if t >= end - 0.05]
    callee = [t for t, f in after if abs(f - CALLEE_HZ) <= 30]
    plays = "; ".join(f"at {t:.2f} s: {m.describe()}" for t, m in found)
    return Heard(
        warning_start=start,
        warning_end=end,
        plays=len(found),
        correlation=min(m.correlation for m in full),
        matched=min(m.matched_fraction for m in full),
        callee_from=callee[0] if callee else float("inf"),
        callee_seconds=seconds_of(after, CALLEE_HZ),
        detail=f"plays {plays}; after the warning: {after[:30]}",
    )


# --------------------------------------------------------------------------- peers


class Phone(Linphone):
    """A headless linphonec whose microphone is a tone file and which records what it hears.
    (linphonec 5.1 cannot take calls: it answers every INVITE 503, "Linphone core global state
    is not on"; the debtor's phone is baresip, `Baresip` below.)"""

    def __init__(
        self, binary: str, processes: ProcessSet, workdir: Path, name: str, hz: float
    ) -> None:
        super().__init__(binary, processes, workdir, name)
        send_line(self.proc, f"play {tone_wav(workdir / f'{name}-says.wav', hz)}")

    def wait(self, pattern: str, timeout: float) -> float:
        """time.time() when `pattern` showed in the console (polled every 20 ms)."""
        try:
            wait_for_log(self.proc, pattern, timeout)
        except PeerFailed as exc:
            pytest.fail(f"{exc}\n", pytrace=False)
        return time.time()

    def quit(self) -> None:
        send_line(self.proc, "quit")
        try:
            self.proc.popen.wait(10)
        finally:
            self.proc.stop()


class Baresip:
    """A headless baresip 1.0 whose microphone is a tone file (aufile); its sndfile module
    dumps what it hears to dump-*-dec.wav. Commands go in through the stdio module
    (`/accept`, `/hangup`); `user` is its account's user part: baresip takes only calls whose
    Request-URI names it."""

    def __init__(
        self,
        binary: str,
        processes: ProcessSet,
        workdir: Path,
        name: str,
        hz: float,
        *,
        user: str = "baresip",
        dial: str | None = None,
    ) -> None:
        confdir, self.dumps = workdir / f"{name}-conf", workdir / f"{name}-dumps"
        confdir.mkdir(parents=True)
        self.dumps.mkdir()
        # baresip binds RTP on an even port and RTCP on the next: 4 free ports hold a pair
        self.sip_port, rtp = free_port("both"), free_port("udp", span=4)
        config = fill(
            SOFTPHONE_TEMPLATES / "baresip" / "config.in",
            confdir / "config",
            {
                "SIP_PORT": str(self.sip_port),
                "RTP_PORTS": f"{rtp}-{rtp + 3}",
                "SILENCE": str(tone_wav(workdir / f"{name}-says.wav", hz)),
                "DUMP_DIR": str(self.dumps),
            },
        )
        with open(config, "a") as f:
            f.write("module\t\t\tstdio.so\n")  # console commands from stdin
        (confdir / "accounts").write_text(f"<sip:{user}@{LOCALHOST}>;regint=0\n")
        extra = ["-e", f"/dial {dial}"] if dial else []
        self.proc = start_piped(
            processes,
            name,
            [binary, "-4", "-f", str(confdir), *extra],
            log_path=workdir / f"{name}.log",
            cwd=workdir,
            env={**os.environ, "HOME": str(confdir)},
        )
        self.wait(r"baresip is ready", 10)

    @property
    def uri(self) -> str:
        return f"{LOCALHOST}:{self.sip_port}"

    def wait(self, pattern: str, timeout: float) -> float:
        try:
            wait_for_log(self.proc, pattern, timeout)
        except PeerFailed as exc:
            pytest.fail(str(exc), pytrace=False)
        return time.time()

    def command(self, line: str) -> None:
        send_line(self.proc, line)

    def heard(self) -> tuple[np.ndarray, int]:
        (decoded,) = sorted(self.dumps.glob("dump-*-dec.wav"))
        return read_wav(decoded)


def kamailio_times(switch: KamailioProcess, number: str) -> tuple[float, float, float]:
    """(caller's INVITE -> ringback, callee leg -> the phone, ringback's first 18x back) as
    Kamailio logged them."""
    log = switch.process.log(1_000_000)
    early = re.findall(r"ringback 18\d \(first 18x\) at ([\d.]+)", log)
    to_ringback = re.findall(
        rf"INVITE {re.escape(number)} from \S+ -> ringback \S+ at ([\d.]+)", log
    )
    to_phone = re.findall(
        rf"loop-marked INVITE {re.escape(number)} from \S+ -> next hop at ([\d.]+)", log
    )
    assert len(to_ringback) == 1 and len(to_phone) == 1 and len(early) == 1, log[-4000:]
    return float(to_ringback[0]), float(to_phone[0]), float(early[0])


@dataclass
class Deployment:
    node: RingbackNode
    switch: KamailioProcess

    def uri(self, number: str) -> str:
        return f"sip:{number}@{self.switch.host}:{self.switch.port}"

    def outcomes(self) -> dict[str, float]:
        prefix = 'ringback_b2bua_calls_total{outcome="'
        return {
            k[len(prefix) : -2]: v for k, v in self.node.metrics().items() if k.startswith(prefix)
        }


@pytest.fixture
def deploy(
    processes: ProcessSet, interop_dir: Path, ringback_cluster: RingbackCluster
) -> Callable[..., Deployment]:
    """`deploy("host:port of the debtor's phone", **defines)`: a ringback node in ringback
    mode on the seeded database (LISTED plays a 2 s chirp) with next_hop = Kamailio, and
    Kamailio running kamailio-ringback.cfg unchanged with NEXT_HOP = the phone (and any
    other `#!define`s given). The node starts with the fixture, before the test starts any
    phone: linphonec binds random TCP/TLS ports, which once took the node's port."""
    kamailio_port = free_port("udp")
    node = ringback_cluster.start(
        "ringback", extra_toml=RINGBACK_TOML.format(next_hop=f"{LOCALHOST}:{kamailio_port}")
    )

    def start(callee: str, **more: str | int) -> Deployment:
        ds_list = write_dispatcher_list(interop_dir / "dispatcher.list", [node])
        defines: dict[str, str | int] = {
            "NEXT_HOP": kamailio_string(f"sip:{callee}"),
            "DISPATCHER_LIST": kamailio_string(str(ds_list)),
            "PING_FROM": kamailio_string("sip:ringback-probe@127.0.0.1"),
            **more,
        }
        try:
            switch = start_switch_recipe(
                processes,
                "kamailio-ringback.cfg",
                workdir=interop_dir,
                defines=defines,
                port=kamailio_port,
            )
        except (PeerFailed, MissingBinary) as exc:
            pytest.fail(str(exc), pytrace=False)
        return Deployment(node, switch)

    return start


# --------------------------------------------------------------------------- linphonec


def debtor_phone(baresip: str, processes: ProcessSet, workdir: Path) -> Baresip:
    return Baresip(baresip, processes, workdir, "callee", CALLEE_HZ, user=LISTED)


INCOMING = r"Incoming call from"


def test_linphonec_hears_the_warning_while_the_callee_rings_then_talks_to_the_callee(
    linphonec_binary: str,
    baresip_binary: str,
    processes: ProcessSet,
    interop_dir: Path,
    deploy: Callable[..., Deployment],
    court_reference: np.ndarray,
) -> None:
    callee = debtor_phone(baresip_binary, processes, interop_dir)
    caller = Phone(linphonec_binary, processes, interop_dir / "caller", "caller", CALLER_HZ)
    site = deploy(callee.uri)

    dialled = time.time()
    send_line(caller.proc, f"call {site.uri(LISTED)}")
    early = caller.wait(r"Call \d+ with .* early media", 10)
    rang = callee.wait(INCOMING, 10)
    time.sleep(max(0.0, rang + RING_S - time.time()))
    answered = time.time()
    callee.command("/accept")
    caller.wait(r"Call \d+ with .* connected", 5)
    time.sleep(2.5)  # both talk
    send_line(caller.proc, "terminate")
    caller.wait(r"Call \d+ with .* ended", 10)
    callee.wait(r"terminated \(duration", 10)  # the caller's BYE ended the callee leg too
    caller.quit()
    callee.proc.stop()

    # post-dial delay, as the caller saw it (an upper bound: the console is polled)
    assert early - dialled < 1.0, f"post-dial delay {early - dialled:.3f} s"
    # the callee leg left the switch for the phone within 200 ms of the caller's INVITE
    at_switch, to_phone, progress = kamailio_times(site.switch, LISTED)
    assert 0 <= to_phone - at_switch < 0.2, f"callee leg {1000 * (to_phone - at_switch):.1f} ms"
    # and the post-dial delay at the switch: the caller's INVITE in, ringback's 183 back
    assert 0 <= progress - at_switch < 1.0, f"183 {progress - at_switch:.3f} s after the INVITE"

    samples, rate = read_wav(caller.recording)
    heard = warning_then_callee(samples, rate, court_reference)
    ring = answered - early  # how long the caller should have heard the warning
    print(
        f"post-dial delay <= {1000 * (early - dialled):.0f} ms at the phone, "
        f"{1000 * (progress - at_switch):.1f} ms at the switch; callee leg "
        f"{1000 * (to_phone - at_switch):.1f} ms after the caller's INVITE; warning "
        f"{heard.warning_start:.2f}-{heard.warning_end:.2f} s (ringing {ring:.2f} s), callee's "
        f"tone from {heard.callee_from:.2f} s for {heard.callee_seconds:.1f} s"
    )
    assert heard.correlation > 0.8 and heard.matched > 0.85, heard.detail
    assert heard.warning_start < 0.5, f"the warning started late: {heard.detail}"
    assert heard.plays >= 3, heard.detail
    assert abs((heard.warning_end - heard.warning_start) - ring) < 0.6, (ring, heard.detail)
    assert heard.callee_from - heard.warning_end < 0.4, f"a gap after the warning: {heard}"
    assert heard.callee_seconds >= 2.0, heard.detail

    samples, rate = callee.heard()
    found = tones(resample_to_8k(samples, rate), 8000)
    assert seconds_of(found, CALLER_HZ) >= 2.0, f"the callee did not hear the caller: {found}"
    warning_at_callee = match_reference(resample_to_8k(samples, rate), court_reference)
    assert warning_at_callee.matched_fraction < 0.2, warning_at_callee.describe()

    assert site.outcomes().get("answered") == 1, site.outcomes()
    assert site.outcomes().get("bye_from_caller") == 1, site.outcomes()


def test_callee_hangs_up_and_both_legs_end(
    linphonec_binary: str,
    baresip_binary: str,
    processes: ProcessSet,
    interop_dir: Path,
    deploy: Callable[..., Deployment],
) -> None:
    callee = debtor_phone(baresip_binary, processes, interop_dir)
    caller = Phone(linphonec_binary, processes, interop_dir / "caller", "caller", CALLER_HZ)
    site = deploy(callee.uri)
    send_line(caller.proc, f"call {site.uri(LISTED)}")
    caller.wait(r"Call \d+ with .* early media", 10)
    callee.wait(INCOMING, 10)
    time.sleep(1.0)
    callee.command("/accept")
    caller.wait(r"Call \d+ with .* connected", 5)
    time.sleep(1.0)
    callee.command("/hangup")
    callee.wait(r"terminated \(duration", 10)
    caller.wait(r"Call \d+ with .* ended", 10)  # ringback's BYE on the caller's leg
    caller.quit()
    callee.proc.stop()
    assert site.outcomes().get("bye_from_callee") == 1, site.outcomes()


def test_hold_and_resume_are_relayed_to_the_callee(
    linphonec_binary: str,
    baresip_binary: str,
    processes: ProcessSet,
    interop_dir: Path,
    deploy: Callable[..., Deployment],
) -> None:
    """linphonec puts the bridged call on hold and takes it back (two re-INVITEs): ringback
    relays each to the callee and its answer back (linphonec reports the state only on the
    relayed 200), and the callee's tone is heard again after the resume."""
    callee = debtor_phone(baresip_binary, processes, interop_dir)
    caller = Phone(linphonec_binary, processes, interop_dir / "caller", "caller", CALLER_HZ)
    site = deploy(callee.uri)
    send_line(caller.proc, f"call {site.uri(LISTED)}")
    callee.wait(INCOMING, 10)
    callee.command("/accept")
    caller.wait(r"Call \d+ with .* connected", 5)
    time.sleep(1.0)
    send_line(caller.proc, "pause")
    caller.wait(r"Call \d+ with .* is now paused", 5)
    time.sleep(1.0)
    send_line(caller.proc, "resume")
    resumed = caller.wait(r"Resuming call", 5)
    time.sleep(2.0)
    send_line(caller.proc, "terminate")
    caller.wait(r"Call \d+ with .* ended", 10)
    caller.quit()
    callee.proc.stop()
    assert site.node.sip_requests("INVITE") == 3, "the call's INVITE and two re-INVITEs"
    samples, rate = read_wav(caller.recording)
    rec = resample_to_8k(samples, rate)
    tail = tones(rec[-int(1.5 * 8000) :], 8000)  # the last 1.5 s: after the resume
    assert seconds_of(tail, CALLEE_HZ) >= 1.0, f"no callee after the resume ({resumed}): {tail}"
    assert site.outcomes().get("bye_from_caller") == 1, site.outcomes()


# --------------------------------------------------------------------------- sipp


def sent(result: SippResult, method: str) -> TraceMessage:
    return next(m for m in result.messages if m.direction == "sent" and m.method == method)


def requests(server: SippServer) -> list[TraceMessage]:
    return [m for m in server.messages if m.direction == "received" and not m.is_response]


def test_cancel_while_ringing_ends_the_callee_leg_with_487(
    deploy: Callable[..., Deployment],
    sipp_uas: Callable[..., SippServer],
    uac: Callable[..., SippResult],
) -> None:
    callee = sipp_uas("uas_ring_cancel")
    site = deploy(callee.addr)
    result = uac(
        "rb_uac_cancel",
        (site.switch.host, site.switch.port),
        service=LISTED,
        extra_args=["-d", "1500"],
        timeout=15,
    )
    result.assert_all_ok(1)  # 183, then CANCEL -> 200, 487 -> ACK, as the caller saw it
    deadline = time.monotonic() + 5
    while [m.method for m in requests(callee)] != ["INVITE", "CANCEL", "ACK"]:
        assert time.monotonic() < deadline, [m.first_line for m in callee.messages]
        time.sleep(0.05)
    invite = requests(callee)[0]
    assert invite.request_uri == f"{site.uri(LISTED)};rbk", invite.text
    delay = (invite.time - sent(result, "INVITE").time).total_seconds()
    assert delay < 0.2, f"callee leg {delay * 1000:.0f} ms after the caller's INVITE"
    sent_487 = [m for m in callee.messages if m.direction == "sent" and m.status == 487]
    assert len(sent_487) >= 1
    assert site.outcomes().get("caller_cancelled") == 1, site.outcomes()


def test_busy_callee_486_reaches_the_caller(
    deploy: Callable[..., Deployment],
    sipp_uas: Callable[..., SippServer],
    uac: Callable[..., SippResult],
) -> None:
    callee = sipp_uas("uas_486")
    site = deploy(callee.addr)
    result = uac("rb_uac_busy", (site.switch.host, site.switch.port), service=LISTED, timeout=15)
    result.assert_all_ok(1)
    (busy,) = [m for m in result.messages if m.direction == "received" and m.status == 486]
    # the callee's 486 came when the current play of the 2 s warning ended, not later
    waited = (busy.time - sent(result, "INVITE").time).total_seconds()
    assert waited <= WARNING_S + 1.0, f"486 after {waited:.2f} s"
    # one INVITE at the callee: the switch passed the 486 on instead of failing open
    deadline = time.monotonic() + 5
    while [m.method for m in requests(callee)] != ["INVITE", "ACK"]:
        assert time.monotonic() < deadline, [m.first_line for m in callee.messages]
        time.sleep(0.05)
    assert site.outcomes().get("callee_486") == 1, site.outcomes()


def test_unlisted_goes_straight_on_and_a_stopped_node_fails_open(
    deploy: Callable[..., Deployment],
    sipp_uas: Callable[..., SippServer],
    uac: Callable[..., SippResult],
) -> None:
    """Redirect-recipe behaviour kept in ringback mode: an unlisted number's 302 is followed
    at once; with the node stopped (OPTIONS probing out of the way) a listed call waits one
    fr_timer (2 s) and goes on unwarned with its original Request-URI."""
    callee = sipp_uas("uas_answer_any")
    # one worker: with two, the callee's 180 and 200 were once relayed out of order
    site = deploy(callee.addr, DS_PING_INTERVAL=3600, WORKERS=1)
    switch = (site.switch.host, site.switch.port)
    unlisted = uac("uac_call_through_switch", switch, service=UNLISTED, timeout=10)
    unlisted.assert_all_ok(1)
    site.node.process.stop()
    listed = uac("uac_call_through_switch", switch, service=LISTED, timeout=15)
    listed.assert_all_ok(1)
    setups = [(answered(r) - sent(r, "INVITE").time).total_seconds() for r in (unlisted, listed)]
    assert setups[0] < 0.5 and 1.9 <= setups[1] <= 3.0, setups
    got = [m.request_uri for m in requests(callee) if m.method == "INVITE"]
    assert got == [f"{site.uri(UNLISTED)};rbk", site.uri(LISTED)], got
    assert not [m for m in listed.messages if m.status == 183], "a stopped node played nothing"


def answered(result: SippResult) -> datetime:
    (ok,) = [
        m
        for m in result.messages
        if m.direction == "received" and m.status == 200 and m.method == "INVITE"
    ]
    return ok.time


# --------------------------------------------------------------------------- baresip


def test_baresip_caller_hears_the_warning_then_the_callee(
    baresip_binary: str,
    processes: ProcessSet,
    interop_dir: Path,
    deploy: Callable[..., Deployment],
    court_reference: np.ndarray,
) -> None:
    callee = debtor_phone(baresip_binary, processes, interop_dir)
    site = deploy(callee.uri)
    caller = Baresip(
        baresip_binary, processes, interop_dir, "caller", CALLER_HZ, dial=site.uri(LISTED)
    )
    caller.wait(r"SIP Progress: 183 Session Progress \(application/sdp\)", 10)
    callee.wait(INCOMING, 10)
    time.sleep(4.0)
    callee.command("/accept")
    caller.wait(r"Call established", 5)
    time.sleep(2.5)
    callee.command("/hangup")
    caller.wait(r"terminated \(duration", 10)
    caller.proc.stop()
    callee.proc.stop()
    samples, rate = caller.heard()
    heard = warning_then_callee(samples, rate, court_reference)
    assert heard.correlation > 0.8 and heard.matched > 0.85, heard.detail
    assert heard.plays >= 2 and heard.warning_start < 0.5, heard.detail
    assert heard.callee_from - heard.warning_end < 0.4, f"a gap after the warning: {heard}"
    assert heard.callee_seconds >= 2.0, heard.detail


# --------------------------------------------------------------------------- the demo


@pytest.fixture
def ringback_demo(processes: ProcessSet, interop_dir: Path) -> Iterator[dict[str, object]]:
    """`ringback demo --mode ringback` (embedded PostgreSQL, lab mode, no switch); its
    demo.json once it is ready."""
    data = interop_dir / "demo"
    sip_port, http_port = free_port("both"), free_port("tcp")
    proc = processes.start(
        "ringback demo",
        [
            sys.executable,
            "-m",
            "ringback",
            "demo",
            "--mode",
            "ringback",
            "--data-dir",
            str(data),
            "--sip-port",
            str(sip_port),
            "--http-port",
            str(http_port),
        ],
        log_path=interop_dir / "demo.log",
    )
    try:
        wait_bound(proc, sip_port, ("udp",), timeout=45)
        wait_for_log(proc, r"Stop with Ctrl-C", 45)
    except PeerFailed as exc:
        pytest.fail(str(exc), pytrace=False)
    yield json.loads((data / "demo.json").read_text())
    # Ctrl-C, as a user stops it: the demo drains (warnings get up to 30 s) and stops its
    # embedded PostgreSQL. A SIGKILL after a short grace would leave the postmaster running.
    postmaster = data / "pg" / "postmaster.pid"
    assert postmaster.exists()
    pg_pid = int(postmaster.read_text().split()[0])
    os.kill(proc.pid, signal.SIGINT)
    assert proc.popen.wait(40) == 0, proc.log()
    assert not postmaster.exists(), "the demo left its PostgreSQL running"
    assert not running(pg_pid), "the demo's PostgreSQL is still running"


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie nobody reaped yet has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def served_warning(demo: dict[str, object]) -> np.ndarray:
    """The demo court's warning exactly as callers hear it (8 kHz PCM from the API)."""
    token = str(demo["operator_token"])

    def get(path: str) -> bytes:
        request = urllib.request.Request(
            f"{demo['http']}{path}", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            return bytes(r.read())

    (recording,) = json.loads(get("/v1/recordings"))["recordings"]
    path = Path(f"/tmp/rbi-served-{os.getpid()}.wav")
    path.write_bytes(get(f"{recording['audio_url']}?codec=pcm"))
    try:
        samples, rate = read_wav(path)
    finally:
        path.unlink()
    assert rate == 8000
    return samples


def test_demo_in_ringback_mode_warns_while_the_lab_callee_rings(
    linphonec_binary: str,
    processes: ProcessSet,
    interop_dir: Path,
    ringback_demo: dict[str, object],
) -> None:
    demo = ringback_demo
    sip = demo["sip"]
    assert isinstance(sip, dict) and demo["mode"] == "ringback"
    reference = served_warning(demo)
    caller = Phone(linphonec_binary, processes, interop_dir / "caller", "caller", CALLER_HZ)
    dialled = time.time()
    send_line(caller.proc, f"call sip:{LISTED}@{sip['host']}:{sip['port']}")
    early = caller.wait(r"Call \d+ with .* early media", 10)
    connected = caller.wait(r"Call \d+ with .* connected", RING_S + 5)
    time.sleep(2.0)  # the lab callee's beeps
    send_line(caller.proc, "terminate")
    caller.wait(r"Call \d+ with .* ended", 10)
    caller.quit()

    assert early - dialled < 1.0, f"post-dial delay {early - dialled:.3f} s"
    assert RING_S - 0.5 <= connected - early <= RING_S + 1.0, connected - early
    samples, rate = read_wav(caller.recording)
    rec = resample_to_8k(samples, rate)
    # the warning from the start (the shipped recording is 18 s: only its first 5 s can play)
    match = match_reference(rec, reference[: 5 * 8000])
    assert match.correlation > 0.8 and match.matched_fraction > 0.85, match.describe()
    assert match.lag_s < 0.5, match.describe()
    # then the lab callee: beeps at 1 kHz / 1.4 kHz once the call connected
    answer_at = match.lag_s + (connected - early)
    beeps = [(t, f) for t, f in tones(rec, 8000) if t > answer_at + 0.3]
    assert seconds_of(beeps, 1000.0) + seconds_of(beeps, 1400.0) >= 0.8, beeps
    assert {round(f, -2) for _, f in beeps} <= {1000.0, 1400.0}, beeps
