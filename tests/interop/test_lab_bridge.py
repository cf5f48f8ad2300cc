"""Lab mode, a softphone registered as the debtor's phone: linphonec (Debian linphone-cli
5.1) calls the listed number, hears the warning, and is put through to pyVoIP 1.6.8
registered for that number; each hears the other's tone (audio both ways through the
relay). Neither peer was written by this project."""

from __future__ import annotations

import asyncio
import math
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import LAB_PASSWORD, LAB_USER, LabTarget
from harness import (
    PeerFailed,
    ProcessSet,
    free_port,
    match_reference,
    read_wav,
    resample_to_8k,
    send_line,
    wait_for_log,
)
from test_lab_mode import Linphone, dominant_hz
from test_softphones import assert_court_audio

pytestmark = pytest.mark.interop

WARNING_S = 2.0
CALLER_HZ = 900.0  # linphonec's microphone (a WAV file)
CALLEE_HZ = 600.0  # pyVoIP's
TALK_S = 4.0


def tone_wav(path: Path, hz: float, seconds: float) -> Path:
    t = np.arange(int(8000 * seconds)) / 8000
    pcm = (0.5 * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(pcm.tobytes())
    return path


class PyVoipCallee:
    """pyVoIP registered for the lab user; answers, sends a tone, keeps what it hears."""

    def __init__(self, target: LabTarget) -> None:
        from pyVoIP.VoIP import VoIPPhone  # imports audioop: Python < 3.13 only

        self.heard = bytearray()
        self.answered = threading.Event()
        self.done = threading.Event()
        rtp = free_port("udp", span=40)
        self.phone = VoIPPhone(
            target.host,
            target.sip_port,
            LAB_USER,
            LAB_PASSWORD,
            myIP="127.0.0.1",
            callCallback=self._answer,
            sipPort=free_port("udp"),
            rtpPortLow=rtp,
            rtpPortHigh=rtp + 38,
        )

    def _answer(self, call: object) -> None:
        from pyVoIP.VoIP import CallState

        call.answer()  # type: ignore[attr-defined]
        self.answered.set()
        frame = bytes(
            int(128 + 90 * math.sin(2 * math.pi * CALLEE_HZ * i / 8000)) for i in range(160)
        )
        started = time.monotonic()
        while call.state == CallState.ANSWERED and time.monotonic() - started < 30:  # type: ignore[attr-defined]
            call.write_audio(frame)  # type: ignore[attr-defined]
            self.heard.extend(call.read_audio(160, blocking=False))  # type: ignore[attr-defined]
            time.sleep(0.02)
        self.done.set()


async def test_a_registered_pyvoip_callee_is_reached_after_the_warning_with_two_way_audio(
    linphonec_binary: str,
    processes: ProcessSet,
    interop_dir: Path,
    lab_target: LabTarget,
    court_reference: np.ndarray,
) -> None:
    t = lab_target
    callee = PyVoipCallee(t)
    await asyncio.to_thread(callee.phone.start)  # REGISTERs (digest) and waits for 200
    caller = Linphone(linphonec_binary, processes, interop_dir / "caller", "caller")
    try:
        send_line(caller.proc, f"play {tone_wav(interop_dir / 'caller-tone.wav', CALLER_HZ, 60)}")
        send_line(caller.proc, f"call sip:{LAB_USER}@{t.host}:{t.sip_port}")
        await asyncio.to_thread(wait_for_log, caller.proc, r"Call \d+ with .* early media", 10)
        await asyncio.to_thread(wait_for_log, caller.proc, r"Call \d+ with .* connected", 15)
        assert await asyncio.to_thread(callee.answered.wait, 5), "pyVoIP never rang"
        await asyncio.sleep(TALK_S)
        send_line(caller.proc, "terminate")
        assert await asyncio.to_thread(callee.done.wait, 10), "the BYE never reached pyVoIP"
        send_line(caller.proc, "quit")
        await asyncio.to_thread(caller.proc.popen.wait, 10)
    except PeerFailed as exc:
        pytest.fail(f"{exc}\n{caller.log()[-3000:]}", pytrace=False)
    finally:
        caller.proc.stop()
        await asyncio.to_thread(callee.phone.stop)
    # The caller: the court's warning, then pyVoIP's tone.
    samples, rate = read_wav(caller.recording)
    assert_court_audio(samples, rate, court_reference, "the warning")
    match = match_reference(resample_to_8k(samples, rate), court_reference)
    after = samples[int((match.lag_s + WARNING_S + 1.0) * rate) :].astype(np.float64)
    assert len(after) > rate, "nothing recorded after the warning"
    assert abs(dominant_hz(after, rate) - CALLEE_HZ) < 15, "the caller did not hear pyVoIP"
    # pyVoIP: the caller's tone (8-bit unsigned linear from pyVoIP's decoder).
    heard = np.frombuffer(bytes(callee.heard), dtype=np.uint8).astype(np.float64) - 128
    loud = heard[np.abs(heard) > 0]
    assert len(loud) > 8000, f"pyVoIP heard {len(loud)} non-silent samples"
    assert abs(dominant_hz(heard[-16000:], 8000) - CALLER_HZ) < 15, "pyVoIP did not hear the caller"
    assert t.decisions("lab_registered") == 1
    assert t.decisions("loop_refused") == 0
