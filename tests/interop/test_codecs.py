"""The warning reaches callers who offer only a wideband or mobile codec (issue 15).

baresip (Debian baresip 1.0, with its g722, opus and amr modules) calls a listed number
offering one codec only; its `sndfile` module dumps the decoded early media, which must be
the court's recording (the same correlation as the G.711 test in test_softphones.py).
baresip's amr module insists on octet-align=1, so the bandwidth-efficient AMR-WB payload is
checked by a scripted caller here instead: it captures our RTP, rebuilds the RFC 4867
storage format from it by the RFC's bit layout and lets ffmpeg's own AMR-WB decoder decode
it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from harness import (
    SOFTPHONE_TEMPLATES,
    PeerFailed,
    ProcessSet,
    SipTarget,
    free_port,
    read_wav,
    send_line,
    start_piped,
    wait_for_log,
)
from test_softphones import WARNING_S, assert_court_audio, fill, silence_wav

pytestmark = pytest.mark.interop


def baresip_hears(
    binary: str,
    processes: ProcessSet,
    workdir: Path,
    target: SipTarget,
    codec: str,
    module: str,
) -> tuple[np.ndarray, int, str]:
    """baresip calls the listed number offering only ``codec``; (decoded samples, rate,
    its log) of the early media it played."""
    confdir = workdir / "baresip"
    dumps = workdir / "baresip-dumps"
    confdir.mkdir()
    dumps.mkdir()
    rtp = free_port("udp", span=2)
    config = fill(
        SOFTPHONE_TEMPLATES / "baresip" / "config.in",
        confdir / "config",
        {
            "SIP_PORT": str(free_port("both")),
            "RTP_PORTS": f"{rtp}-{rtp + 1}",
            "SILENCE": str(silence_wav(workdir / "silence.wav", 10)),
            "DUMP_DIR": str(dumps),
        },
    )
    config.write_text(config.read_text() + f"module\t\t\t{module}\n")
    account = (SOFTPHONE_TEMPLATES / "baresip" / "accounts").read_text().strip()
    (confdir / "accounts").write_text(f"{account};audio_codecs={codec}\n")
    uri = f"sip:{target.held}@{target.host}:{target.port}"
    proc = start_piped(
        processes,
        "baresip",
        [binary, "-4", "-f", str(confdir), "-e", f"/dial {uri}"],
        log_path=workdir / "baresip.log",
        cwd=workdir,
        env={**os.environ, "HOME": str(confdir)},
    )
    try:
        wait_for_log(proc, r"SIP Progress: 183 Session Progress \(application/sdp\)", 15)
        wait_for_log(proc, r"session closed: 302", WARNING_S + 8)
    except PeerFailed as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        proc.stop()  # `-t N` may not end it: always by PID
    log = proc.log(100_000)
    dumped = sorted(dumps.glob("dump-*-dec.wav"))
    assert dumped, f"baresip dumped no decoded audio\n{log[-3000:]}"
    samples, rate = read_wav(dumped[0])
    return samples, rate, log


@pytest.mark.parametrize(
    ("codec", "module", "decoder"),
    [
        # baresip names codecs name/srate/channels (its G.722 is 16000, not the SDP's 8000)
        ("G722/16000/1", "g722.so", "G722 16000Hz 1ch"),
        ("opus/48000/2", "opus.so", "opus 48000Hz 2ch"),
        ("AMR/8000/1", "amr.so", "AMR 8000Hz 1ch"),
        ("AMR-WB/16000/1", "amr.so", "AMR-WB 16000Hz 1ch"),
    ],
)
def test_baresip_offering_one_codec_hears_the_warning(
    codec: str,
    module: str,
    decoder: str,
    baresip_binary: str,
    processes: ProcessSet,
    interop_dir: Path,
    redirect_target: SipTarget,
    court_reference: np.ndarray,
) -> None:
    samples, rate, log = baresip_hears(
        baresip_binary, processes, interop_dir, redirect_target, codec, module
    )
    # the offer held that codec alone, and ringback's answer chose it
    assert "audio codec not found" not in log, log[-3000:]
    assert f"audio: Set audio decoder: {decoder}" in log, log[-3000:]
    assert_court_audio(samples, rate, court_reference, f"baresip {codec} ({rate} Hz)")


def test_linphonec_with_mandatory_srtp_hears_the_warning(
    linphonec_binary: str,
    processes: ProcessSet,
    interop_dir: Path,
    redirect_target: SipTarget,
    court_reference: np.ndarray,
) -> None:
    """linphonec set to mandatory SDES-SRTP (`media_encryption=srtp`) offers RTP/SAVP with
    a=crypto only (it accepts no plain-RTP answer); ringback answers SRTP with its own key
    and linphonec's libsrtp decrypts the warning it records. (baresip 1.0's srtp module
    set up SRTP for early media but played nothing, with no error: not used here.)"""
    home = interop_dir / "home"
    home.mkdir()
    rc = fill(
        SOFTPHONE_TEMPLATES / "linphonerc.in",
        interop_dir / "linphonerc",
        {"RTP_PORT": str(free_port("udp", span=2))},
    )
    rc.write_text(
        rc.read_text().replace(
            "[sip]\n", "[sip]\nmedia_encryption=srtp\nmedia_encryption_mandatory=1\n", 1
        )
    )
    recording = interop_dir / "linphonec-heard.wav"
    proc = start_piped(
        processes,
        "linphonec",
        [linphonec_binary, "-c", str(rc), "-d", "0"],
        log_path=interop_dir / "linphonec.log",
        cwd=interop_dir,
        env={**os.environ, "HOME": str(home)},
    )
    t = redirect_target
    try:
        send_line(proc, f"ports sip {free_port('both')}")
        send_line(proc, "soundcard use files")
        send_line(proc, f"record {recording}")
        send_line(proc, f"call sip:{t.held}@{t.host}:{t.port}")
        wait_for_log(proc, r"Call \d+ with .* early media", 15)
        # ringback's 302 ends the early dialog once the warning has played; linphonec 5.1
        # logs that as an error of its own (it does not follow a 302 of an early dialog)
        wait_for_log(proc, r"processDialogTerminatedCb", WARNING_S + 10)
        send_line(proc, "terminate")
        send_line(proc, "quit")
        proc.popen.wait(10)
    except PeerFailed as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        proc.stop()
    log = proc.log(100_000)
    assert recording.exists(), f"linphonec recorded nothing\n{log[-3000:]}"
    samples, rate = read_wav(recording)
    assert_court_audio(samples, rate, court_reference, f"linphonec over SRTP ({rate} Hz)")
