"""Real softphones nobody here wrote, driven headless on loopback, hear the court's warning.

linphonec (Debian linphone-cli 5.1) calls the listed number through the Kamailio switch and
RECORDS what it hears (`soundcard use files` + `record FILE.wav`); the recording must be the
court's recording (fixture `court_reference`, a 2.0 s rising chirp): cross-correlation
> 0.8 and the chirp audible for 2.0 s ± 100 ms. Then the switch follows ringback's 302 to a
sipp callee (INVITE with ;rbk), which answers; linphonec hangs up (BYE through the switch).
The same call to an unlisted number hears nothing and reaches the callee at once.

baresip (Debian baresip 1.0) calls the listed number directly; its `sndfile` module dumps the
decoded early media to dump-*-dec.wav, which must match the court's recording the same way.

How the audio is compared: harness.match_reference (FFT cross-correlation for the lag, then
20 ms blocks re-aligned within ±50 ms, because linphone's jitter buffer drops 10 ms mid-stream;
see AudioMatch). test_audio_match_rejects_other_audio shows the measure tells audio apart.
"""

from __future__ import annotations

import os
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from harness import (
    SOFTPHONE_PACKAGES,
    SOFTPHONE_TEMPLATES,
    KamailioProcess,
    ManagedProcess,
    MissingBinary,
    PeerFailed,
    ProcessSet,
    SippServer,
    SipTarget,
    TraceMessage,
    free_port,
    match_reference,
    read_wav,
    require_binary,
    resample_to_8k,
    rms_dbfs,
    send_line,
    start_piped,
    wait_for_log,
)

pytestmark = pytest.mark.interop

WARNING_S = 2.0
DURATION_TOLERANCE_S = 0.1


def fill(template: Path, dest: Path, values: dict[str, str]) -> Path:
    text = template.read_text()
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    assert "@@" not in text, f"unfilled placeholder in {template}"
    dest.write_text(text)
    return dest


def requests_received(server: SippServer) -> list[TraceMessage]:
    return [m for m in server.messages if m.direction == "received" and not m.is_response]


def wait_requests(server: SippServer, methods: list[str], timeout: float) -> list[TraceMessage]:
    deadline = time.monotonic() + timeout
    while True:
        got = requests_received(server)
        if [m.method for m in got] == methods or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def assert_court_audio(samples: np.ndarray, rate: int, reference: np.ndarray, what: str) -> None:
    heard = match_reference(resample_to_8k(samples, rate), reference)
    detail = f"{what}: {heard.describe()}"
    assert heard.correlation > 0.8, detail
    assert heard.matched_fraction > 0.9, detail
    assert abs(heard.chirp_seconds - WARNING_S) <= DURATION_TOLERANCE_S, detail


# --------------------------------------------------------------------------- linphonec


@dataclass
class LinphoneCall:
    process: ManagedProcess
    recording: Path
    dialled_at: float  # time.time() when `call` was typed
    log: str


def linphonec_call(
    binary: str, processes: ProcessSet, workdir: Path, uri: str, *, early_media: bool
) -> LinphoneCall:
    """One call from linphonec to `uri` that the far end answers: record, call, wait for
    the answer, hang up after 0.5 s, quit. The rc file is filled in per run."""
    home = workdir / "home"  # linphonec keeps its database under $HOME
    home.mkdir(parents=True, exist_ok=True)
    rc = fill(
        SOFTPHONE_TEMPLATES / "linphonerc.in",
        workdir / "linphonerc",
        {"RTP_PORT": str(free_port("udp", span=2))},
    )
    recording = workdir / "linphonec-heard.wav"
    env = {**os.environ, "HOME": str(home)}
    proc = start_piped(
        processes,
        "linphonec",
        [binary, "-c", str(rc), "-d", "0"],
        log_path=workdir / "linphonec.log",
        cwd=workdir,
        env=env,
    )
    try:
        send_line(proc, f"ports sip {free_port('both')}")  # the rc file's sip_port is ignored
        send_line(proc, "soundcard use files")
        send_line(proc, f"record {recording}")
        dialled_at = time.time()
        send_line(proc, f"call {uri}")
        if early_media:
            wait_for_log(proc, r"Call \d+ with .* early media", 10)
        wait_for_log(proc, r"Call \d+ with .* connected", 15)
        time.sleep(0.5)
        send_line(proc, "terminate")
        wait_for_log(proc, r"Call \d+ with .* ended", 10)
        send_line(proc, "quit")
        proc.popen.wait(10)
    except PeerFailed as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        proc.stop()
    return LinphoneCall(proc, recording, dialled_at, proc.log(100_000))


@pytest.fixture
def switch_with_callee(
    redirect_target: SipTarget,
    sipp_uas: Callable[..., SippServer],
    kamailio_switch: Callable[[str, str], KamailioProcess],
) -> tuple[SippServer, KamailioProcess]:
    """Kamailio in front of ringback, following its 302 to a sipp callee that answers
    (uas_answer.xml: asserts the ;rbk marker, expects INVITE, ACK, BYE)."""
    callee = sipp_uas("uas_answer")
    return callee, kamailio_switch(redirect_target.hostport, callee.addr)


def test_linphonec_records_the_warning_then_reaches_the_callee(
    linphonec_binary: str,
    processes: ProcessSet,
    interop_dir: Path,
    redirect_target: SipTarget,
    switch_with_callee: tuple[SippServer, KamailioProcess],
    court_reference: np.ndarray,
) -> None:
    callee, switch = switch_with_callee
    number = redirect_target.held
    call = linphonec_call(
        linphonec_binary,
        processes,
        interop_dir,
        f"sip:{number}@{switch.host}:{switch.port}",
        early_media=True,
    )

    # what linphonec heard is the court's recording, for its full length
    assert call.recording.exists(), f"linphonec recorded nothing\n{call.log[-3000:]}"
    samples, rate = read_wav(call.recording)
    assert_court_audio(samples, rate, court_reference, f"linphonec recording ({rate} Hz)")

    # then the call went on: the switch followed the 302 to the callee, which answered;
    # linphonec ACKed and hung up through the switch
    got = wait_requests(callee, ["INVITE", "ACK", "BYE"], 5)
    assert [m.method for m in got] == ["INVITE", "ACK", "BYE"], got
    invite = got[0]
    assert invite.request_uri == f"sip:{number}@{switch.host}:{switch.port};rbk"
    after = invite.time.timestamp() - call.dialled_at
    assert WARNING_S <= after <= WARNING_S + 1.5, f"callee reached {after:.2f} s after dialling"


def test_linphonec_to_unlisted_number_hears_nothing_and_goes_straight_through(
    linphonec_binary: str,
    processes: ProcessSet,
    interop_dir: Path,
    redirect_target: SipTarget,
    switch_with_callee: tuple[SippServer, KamailioProcess],
) -> None:
    callee, switch = switch_with_callee
    number = redirect_target.unlisted
    call = linphonec_call(
        linphonec_binary,
        processes,
        interop_dir,
        f"sip:{number}@{switch.host}:{switch.port}",
        early_media=False,
    )
    assert "early media" not in call.log, call.log[-3000:]
    # linphonec recorded the call (from the callee's answer to the hang-up): silence
    assert call.recording.exists(), f"linphonec recorded nothing\n{call.log[-3000:]}"
    samples, rate = read_wav(call.recording)
    assert len(samples) / rate >= 0.3, f"only {len(samples) / rate:.3f} s recorded"
    level = rms_dbfs(samples)
    peak = float(np.max(np.abs(samples)))
    assert level < -60 and peak < 0.01, f"heard {level:.1f} dBFS (peak {peak:.4f})"

    got = wait_requests(callee, ["INVITE", "ACK", "BYE"], 5)
    assert [m.method for m in got] == ["INVITE", "ACK", "BYE"], got
    invite = got[0]
    assert invite.request_uri == f"sip:{number}@{switch.host}:{switch.port};rbk"
    after = invite.time.timestamp() - call.dialled_at
    assert after < 1.0, f"callee reached only {after:.2f} s after dialling (302 at once?)"


# --------------------------------------------------------------------------- baresip


def silence_wav(path: Path, seconds: float) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * int(8000 * seconds))
    return path


def test_baresip_decodes_the_warning_as_early_media(
    baresip_binary: str,
    processes: ProcessSet,
    interop_dir: Path,
    redirect_target: SipTarget,
    court_reference: np.ndarray,
) -> None:
    confdir = interop_dir / "baresip"
    dumps = interop_dir / "baresip-dumps"
    confdir.mkdir()
    dumps.mkdir()
    rtp = free_port("udp", span=2)
    fill(
        SOFTPHONE_TEMPLATES / "baresip" / "config.in",
        confdir / "config",
        {
            "SIP_PORT": str(free_port("both")),
            "RTP_PORTS": f"{rtp}-{rtp + 1}",
            "SILENCE": str(silence_wav(interop_dir / "silence.wav", 10)),
            "DUMP_DIR": str(dumps),
        },
    )
    (confdir / "accounts").write_text((SOFTPHONE_TEMPLATES / "baresip" / "accounts").read_text())
    t = redirect_target
    uri = f"sip:{t.held}@{t.host}:{t.port}"
    proc = start_piped(
        processes,
        "baresip",
        [baresip_binary, "-4", "-f", str(confdir), "-e", f"/dial {uri}"],
        log_path=interop_dir / "baresip.log",
        cwd=interop_dir,
        env={**os.environ, "HOME": str(confdir)},
    )
    try:
        wait_for_log(proc, r"SIP Progress: 183 Session Progress \(application/sdp\)", 10)
        # ringback's 302 ends the early session (baresip 1.0 here closes it, it does not
        # follow it: the point of this test is the early media)
        wait_for_log(proc, r"session closed: 302", WARNING_S + 5)
    except PeerFailed as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        proc.stop()  # `-t N` may not end it: always by PID
    (decoded,) = sorted(dumps.glob("dump-*-dec.wav"))
    samples, rate = read_wav(decoded)
    assert_court_audio(samples, rate, court_reference, f"baresip {decoded.name} ({rate} Hz)")


# --------------------------------------------------------------------------- the measure


def test_audio_match_rejects_other_audio(court_reference: np.ndarray) -> None:
    """The comparison used above tells the court's recording from other sounds."""
    t = np.arange(len(court_reference)) / 8000
    rng = np.random.default_rng(7)
    others = {
        "falling chirp": 0.4 * np.sin(2 * np.pi * (1200 - 400 * t) * t),
        "reversed recording": court_reference[::-1].copy(),
        "1 kHz tone": 0.4 * np.sin(2 * np.pi * 1000 * t),
        "noise": rng.normal(0, 0.1, len(t)),
    }
    for name, audio in others.items():
        heard = match_reference(np.concatenate([np.zeros(400), audio]), court_reference)
        assert heard.correlation < 0.5 and heard.matched_fraction < 0.2, (name, heard)
    # and finds it through a 10 ms jump, a delay, a lower level and 48 kHz
    jumped = np.concatenate([np.zeros(300), court_reference[:7000], court_reference[7080:]])
    up = np.fft.irfft(np.fft.rfft(0.5 * jumped), len(jumped) * 6) * 6
    heard = match_reference(resample_to_8k(up, 48000), court_reference)
    assert heard.correlation > 0.95 and heard.global_correlation < 0.8, heard
    assert abs(heard.chirp_seconds - WARNING_S) <= 0.02, heard


def test_missing_softphone_fails_with_the_debian_package() -> None:
    for binary, package in SOFTPHONE_PACKAGES.items():
        with pytest.raises(MissingBinary, match=f"apt-get install -y {package}$"):
            require_binary(f"{binary}-not-installed-here", SOFTPHONE_PACKAGES[binary])
    assert SOFTPHONE_PACKAGES == {"linphonec": "linphone-cli", "baresip": "baresip"}
