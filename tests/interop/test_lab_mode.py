"""Lab mode, as `ringback demo` runs it: a softphone with no switch hears the warning and
then gets through — to the lab callee's beeps, or to a second softphone registered as the
debtor's phone. Real linphonec (Debian linphone-cli 5.1), recording what it hears."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import LAB_TONE_SECONDS, LabTarget
from harness import (
    SOFTPHONE_TEMPLATES,
    PeerFailed,
    ProcessSet,
    free_port,
    match_reference,
    read_wav,
    resample_to_8k,
    send_line,
    start_piped,
    wait_for_log,
)
from test_softphones import assert_court_audio, fill

pytestmark = pytest.mark.interop

WARNING_S = 2.0


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def beeps_heard(samples: np.ndarray, rate: int) -> list[float]:
    """Dominant frequencies of the loud 100 ms blocks."""
    block = rate // 10
    found = []
    for i in range(0, len(samples) - block, block):
        chunk = samples[i : i + block]
        if np.sqrt(np.mean(chunk**2)) > 0.05:
            found.append(dominant_hz(chunk, rate))
    return found


class Linphone:
    """One headless linphonec, driven through its console."""

    def __init__(self, binary: str, processes: ProcessSet, workdir: Path, name: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        home = workdir / "home"
        home.mkdir(exist_ok=True)
        rc = fill(
            SOFTPHONE_TEMPLATES / "linphonerc.in",
            workdir / "linphonerc",
            {"RTP_PORT": str(free_port("udp", span=2))},
        )
        self.recording = workdir / f"{name}-heard.wav"
        self.proc = start_piped(
            processes,
            f"linphonec-{name}",
            [binary, "-c", str(rc), "-d", "0"],
            log_path=workdir / f"{name}.log",
            cwd=workdir,
            env={**os.environ, "HOME": str(home)},
        )
        self.sip_port = free_port("both")
        send_line(self.proc, f"ports sip {self.sip_port}")
        send_line(self.proc, "soundcard use files")
        send_line(self.proc, f"record {self.recording}")

    def log(self) -> str:
        return self.proc.log(200_000)


def test_linphonec_hears_the_warning_then_the_lab_callee_and_never_loops(
    linphonec_binary: str,
    processes: ProcessSet,
    interop_dir: Path,
    lab_target: LabTarget,
    court_reference: np.ndarray,
) -> None:
    t = lab_target
    for number, warned in ((t.listed, True), (t.unlisted, False)):
        phone = Linphone(linphonec_binary, processes, interop_dir / number[1:], "caller")
        before = t.decisions("lab_callee")
        try:
            send_line(phone.proc, f"call sip:{number}@{t.host}:{t.sip_port}")
            if warned:
                wait_for_log(phone.proc, r"Call \d+ with .* early media", 10)
            wait_for_log(phone.proc, r"Call \d+ with .* connected", 15)
            # the lab callee hangs up after its tone
            wait_for_log(phone.proc, r"Call \d+ with .* ended", LAB_TONE_SECONDS + 5)
            send_line(phone.proc, "quit")
            phone.proc.popen.wait(10)
        except PeerFailed as exc:
            pytest.fail(f"{exc}\n{phone.log()[-3000:]}", pytrace=False)
        finally:
            phone.proc.stop()
        samples, rate = read_wav(phone.recording)
        heard = samples.astype(np.float64)
        if warned:
            assert_court_audio(samples, rate, court_reference, f"{number}: the warning")
            match = match_reference(resample_to_8k(samples, rate), court_reference)
            after_warning = int((match.lag_s + WARNING_S + 0.2) * rate)
            heard = heard[max(after_warning, 0) :]
        beeps = beeps_heard(heard, rate)
        assert len(beeps) >= 10, f"{number}: the lab callee's tone was not heard ({beeps})"
        assert {round(f, -2) for f in beeps} <= {1000.0, 1400.0}, beeps
        # one loop-marked INVITE per call, answered by the lab; never a loop
        assert t.decisions("lab_callee") == before + 1
    assert t.decisions("loop_refused") == 0
