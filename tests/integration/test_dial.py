"""`ringback dial` as carriers run it: the real CLI against a real service in lab mode."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import wave
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ringback.config import load_config
from ringback.registry.common import Principal
from ringback.server import Service

WHO = Principal("test", "operator")
LISTED = "+8613800138000"
UNLISTED = "+8613700137000"
SUSPENDED = "+8613800138001"
CLEARED = "+8613800138002"
NOT_YET = "+8613800138003"
SECONDS = 1.5
TONE_S = 1.0


def chirp(seconds: float) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000
    wave_ = 0.4 * np.sin(2 * np.pi * (440 + 300 * t) * t)  # rising: aligns unambiguously
    return (wave_ * 32767).astype("<i2").tobytes()


def write_wav(path: Path, pcm: bytes) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(pcm)
    return path


@pytest.fixture
async def service(database: str) -> AsyncIterator[tuple[Service, Any, bytes]]:
    config = load_config(None, env={})
    config.database.url = database
    config.http.port = 0
    config.sip.port = 0
    config.index.heartbeat_s = 0.2
    config.announcement.gap_ms = 0
    config.lab.enabled = True
    config.lab.callee_tone_s = TONE_S
    service = Service(config)
    await service.start()
    store = service.store
    court, _, _ = await store.courts.create("Dialled Court", WHO)
    pcm = chirp(SECONDS)
    recording = await store.recordings.add(court["id"], "chirp", pcm, WHO)
    now = datetime.now(UTC)
    await store.listings.put(
        court["id"],
        int(LISTED[1:]),
        "CASE-1",
        now + timedelta(days=1),
        WHO,
        effective_at=now - timedelta(seconds=5),
        recording_id=recording["id"],
    )
    await until_indexed(service, LISTED)
    yield service, court, pcm
    await service.stop()


async def until_indexed(service: Service, number: str) -> None:
    for _ in range(250):
        if service.sync.loaded and service.index.get(int(number[1:])) is not None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{number} never reached the index")


async def dial(service: Service, number: str, *args: str) -> tuple[int, dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ringback",
        "dial",
        number,
        "--via",
        f"127.0.0.1:{service.sip_port}",
        "--json",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    assert b"Traceback" not in err, err.decode()
    lines = out.decode().splitlines()
    assert len(lines) == 1, (out, err)
    return process.returncode, json.loads(lines[0])


def assert_lab_callee_answered(result: dict[str, Any], transport: str = "udp") -> None:
    answered = result["answered"]
    assert answered["status"] == 200 and answered["after_redirect"] is True, result
    assert answered["audio_s"] == pytest.approx(TONE_S, abs=0.1)
    assert answered["ended_by"] == "far end"  # the lab callee's BYE after its tone
    assert min(abs(answered["dominant_hz"] - f) for f in (1000, 1400)) < 10
    peaks = sorted(round(f, -2) for f in answered["frequencies_hz"][:2])
    assert peaks == [1000, 1400], answered
    assert result["transport"] == transport


async def test_listed_number_warns_matches_the_courts_recording_then_the_callee_answers(
    service: tuple[Service, Any, bytes], tmp_path: Path
) -> None:
    svc, _, pcm = service
    courts = write_wav(tmp_path / "court.wav", pcm)
    noise = np.random.default_rng(3).normal(0, 6000, len(pcm) // 2).astype("<i2").tobytes()
    other = write_wav(tmp_path / "other.wav", noise)
    record = tmp_path / "heard.wav"
    (code, result), (other_code, other_result), (no_code, _) = await asyncio.gather(
        dial(svc, LISTED, "--expect", str(courts), "--expect-warning", "--record", str(record)),
        dial(svc, LISTED, "--expect", str(other), "--codec", "pcma"),
        dial(svc, LISTED, "--expect-no-warning", "--no-follow"),
    )
    assert code == 0, result
    warning = result["warning"]
    assert warning["heard"] is True
    assert warning["duration_s"] == pytest.approx(SECONDS, abs=0.05)
    assert warning["codec"] == "PCMU"
    assert -15 < warning["rms_dbfs"] < -8  # a sweep at 0.4 of full scale: about -11 dBFS
    assert result["expect"]["matches"] is True
    assert result["expect"]["correlation"] > 0.95
    assert abs(result["expect"]["offset_s"]) < 0.05
    assert result["warning_header"] == "played"
    assert result["redirects"] == [f"sip:{LISTED}@127.0.0.1:{svc.sip_port};rbk"]
    assert 0 < result["post_dial_delay_ms"] < 2000
    assert [a["responses"][-1] for a in result["attempts"]] == [302, 200]
    assert result["error"] is None
    assert_lab_callee_answered(result)
    with wave.open(str(record)) as heard:
        assert (heard.getframerate(), heard.getnchannels(), heard.getsampwidth()) == (8000, 1, 2)
        assert heard.getnframes() / 8000 == pytest.approx(SECONDS + TONE_S, abs=0.1)

    assert other_code == 1, other_result
    assert other_result["warning"]["heard"] is True and other_result["warning"]["codec"] == "PCMA"
    assert other_result["expect"]["matches"] is False
    assert other_result["expect"]["correlation"] < 0.3

    assert no_code == 1  # --expect-no-warning, and the warning played
    # ACKs: the 302 and the lab callee's 200 of two calls, the 302 of the third
    assert svc.controller is not None
    assert svc.controller.metrics.requests.get("ACK") >= 5


async def test_numbers_without_an_effective_listing_hear_no_warning(
    service: tuple[Service, Any, bytes],
) -> None:
    svc, court, _ = service
    listings = svc.store.listings
    now = datetime.now(UTC)
    for number in (SUSPENDED, CLEARED):
        await listings.put(court["id"], int(number[1:]), "CASE-2", now + timedelta(days=1), WHO)
    await listings.change_status(court["id"], int(SUSPENDED[1:]), "suspended", WHO, reason="x")
    await listings.change_status(court["id"], int(CLEARED[1:]), "cleared", WHO, reason="paid")
    await listings.put(
        court["id"],
        int(NOT_YET[1:]),
        "CASE-3",
        now + timedelta(days=2),
        WHO,
        effective_at=now + timedelta(days=1),
    )
    sentinel = "+8613800138009"  # the change feed is ordered: once this is in, so is the rest
    await listings.put(court["id"], int(sentinel[1:]), "CASE-4", now + timedelta(days=1), WHO)
    await until_indexed(svc, sentinel)

    runs = await asyncio.gather(
        dial(svc, UNLISTED, "--expect-warning"),
        *(dial(svc, n, "--expect-no-warning") for n in (SUSPENDED, CLEARED, NOT_YET)),
    )
    (unlisted_code, unlisted), *others = runs
    assert unlisted_code == 1  # --expect-warning, and no warning
    assert unlisted["warning"] == {
        "heard": False,
        "duration_s": 0.0,
        "codec": None,
        "rms_dbfs": None,
        "packets": 0,
    }
    assert unlisted["warning_header"] is None
    assert unlisted["redirects"] == [f"sip:{UNLISTED}@127.0.0.1:{svc.sip_port};rbk"]
    assert_lab_callee_answered(unlisted)
    for code, result in others:
        assert code == 0, result
        assert result["warning"]["heard"] is False and result["warning"]["packets"] == 0
        assert result["attempts"][0]["responses"] == [302]
        assert_lab_callee_answered(result)


async def test_100rel_is_pracked_and_tcp_carries_the_whole_call(
    service: tuple[Service, Any, bytes],
) -> None:
    svc, _, _ = service
    (udp_code, udp), (tcp_code, tcp) = await asyncio.gather(
        dial(svc, LISTED, "--100rel", "--no-follow", "--expect-warning"),
        dial(svc, LISTED, "--100rel", "--transport", "tcp", "--expect-warning"),
    )
    assert udp_code == 0, udp
    (attempt,) = udp["attempts"]
    assert attempt["uri"] == f"sip:{LISTED}@127.0.0.1:{svc.sip_port}"
    assert [s for s in attempt["responses"] if s > 100] == [183, 302]  # 100: recording loading
    assert attempt["pracks"] == 1
    assert udp["warning"]["heard"] is True
    assert udp["final"] == {"status": 302, "reason": "Moved Temporarily"}
    assert udp["answered"] is None

    assert tcp_code == 0, tcp
    assert tcp["attempts"][0]["pracks"] == 1
    assert tcp["warning"]["heard"] is True
    assert tcp["warning"]["duration_s"] == pytest.approx(SECONDS, abs=0.05)
    assert_lab_callee_answered(tcp, "tcp")
    assert svc.controller is not None
    metrics = svc.controller.metrics
    assert metrics.requests.get("PRACK") == 2
    assert metrics.responses.get("481") == 0  # each PRACK matched its reliable 183


async def test_exit_3_without_a_final_response_and_2_for_usage_errors(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # takes the INVITE, never answers
        port = silent.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ringback",
            "dial",
            LISTED,
            "--via",
            f"127.0.0.1:{port}",
            "--timeout",
            "1",
            "--json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 3
        result = json.loads(out)
        assert result["no_final_response"] is True
        assert result["error"] == {"status": None, "reason": "no final response within 1 s"}
        assert silent.recv(65535).startswith(b"INVITE sip:" + LISTED.encode())

    for args in (["12345"], [LISTED, "--expect", str(tmp_path / "missing.wav")], [LISTED, "--x"]):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ringback",
            "dial",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 2, (args, err)
        assert out == b"" and b"Traceback" not in err


@pytest.mark.parametrize(
    ("codec", "reported"),
    [("g722", "G722"), ("opus", "opus"), ("amr", "AMR/be"), ("amr-wb", "AMR-WB/be")],
)
async def test_dial_offers_each_codec_and_decodes_what_it_hears(
    service: tuple[Service, Any, bytes], tmp_path: Path, codec: str, reported: str
) -> None:
    """`--codec g722|opus|amr|amr-wb`: ringback answers in that codec (the AMRs
    bandwidth-efficient, as offered), and the tool decodes it (ffmpeg) for its verdict."""
    svc, _, pcm = service
    courts = write_wav(tmp_path / "court.wav", pcm)
    code, result = await dial(
        svc, LISTED, "--codec", codec, "--expect", str(courts), "--expect-warning", "--no-follow"
    )
    assert code == 0, result
    warning = result["warning"]
    assert warning["codec"] == reported
    assert warning["heard"] is True
    assert warning["duration_s"] == pytest.approx(SECONDS, abs=0.1)
    assert result["expect"]["matches"] is True
    assert result["expect"]["correlation"] > 0.8, result["expect"]
