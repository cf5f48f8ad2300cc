"""Ringback mode on real sockets: `ringback dial` calls a listed number of a service whose
callee legs come back to its own lab callee (as `ringback demo --mode ringback` runs it). The
caller hears the court's warning while the callee rings, then the callee; proof of play
says how it went; a court's own choice of mode takes effect; a drain hangs bridged calls up.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_dial import LISTED, TONE_S, WHO, chirp, dial, until_indexed, write_wav

from ringback.config import load_config
from ringback.registry.listing_index import Entry
from ringback.server import Service

RING_S = 2.0  # the lab callee rings this long before it answers
WARNING_S = 0.8


async def start(
    database: str, mode: str, *, tone_s: float = TONE_S, ring_s: float = RING_S
) -> tuple[Service, Any, bytes]:
    config = load_config(None, env={})
    config.database.url = database
    config.http.port = 0
    config.sip.port = 0
    config.index.heartbeat_s = 0.2
    config.announcement.gap_ms = 200
    config.lab.enabled = True
    config.lab.callee_tone_s = tone_s
    config.lab.answer_after_s = ring_s
    config.ringback.mode = mode
    config.ringback.next_hop = "self"
    config.shutdown.drain_s = 1.0
    service = Service(config)
    await service.start()
    court, _, _ = await service.store.courts.create(f"Ringback Court {mode}", WHO)
    pcm = chirp(WARNING_S)
    recording = await service.store.recordings.add(court["id"], "chirp", pcm, WHO)
    now = datetime.now(UTC)
    await service.store.listings.put(
        court["id"],
        int(LISTED[1:]),
        "CASE-R",
        now + timedelta(days=1),
        WHO,
        effective_at=now - timedelta(seconds=5),
        recording_id=recording["id"],
    )
    await until_indexed(service, LISTED)
    return service, court, pcm


@pytest.fixture
async def ringback(database: str) -> AsyncIterator[tuple[Service, Any, bytes]]:
    service = await start(database, "ringback")
    yield service
    await service[0].stop()


@pytest.fixture
async def talkative(database: str) -> AsyncIterator[tuple[Service, Any, bytes]]:
    """The callee answers at once and talks for a minute."""
    service = await start(database, "ringback", tone_s=60.0, ring_s=0.5)
    yield service
    await service[0].stop()


@pytest.fixture
async def redirect(database: str) -> AsyncIterator[tuple[Service, Any, bytes]]:
    service = await start(database, "redirect")
    yield service
    await service[0].stop()


def assert_warned_while_ringing_then_connected(result: dict[str, Any]) -> None:
    warning = result["warning"]
    assert warning["heard"] is True and warning["codec"] == "PCMU", result
    # The warning (looped with its gap) fills the ringing time, then the call is answered.
    assert warning["duration_s"] == pytest.approx(RING_S, abs=0.3)
    assert result["expect"]["matches"] is True, result["expect"]
    assert result["redirects"] == []  # no 302: ringback stays in the call
    assert [a["responses"][-1] for a in result["attempts"]] == [200]
    assert 0 < result["post_dial_delay_ms"] < 1000
    answered = result["answered"]
    assert answered["status"] == 200 and answered["after_redirect"] is False
    assert answered["ended_by"] == "far end"  # the callee hung up; its BYE came through us
    peaks = sorted(round(f, -2) for f in answered["frequencies_hz"][:2])
    assert peaks == [1000, 1400], answered


async def proof_rows(service: Service) -> list[Any]:
    async with service.pool.acquire() as conn:
        for _ in range(100):
            rows = await conn.fetch(
                "SELECT mode, outcome, stop_reason, answered, caller, "
                "extract(epoch FROM finished_at - started_at) AS seconds FROM announcements"
            )
            if rows:
                return list(rows)
            await asyncio.sleep(0.05)
    raise AssertionError("no proof of play written")


async def test_the_warning_plays_while_the_callee_rings_then_the_call_connects(
    ringback: tuple[Service, Any, bytes], tmp_path: Path
) -> None:
    svc, _, pcm = ringback
    expect = write_wav(tmp_path / "court.wav", pcm)
    code, result = await dial(svc, LISTED, "--expect", str(expect), "--expect-warning")
    assert code == 0, result
    assert_warned_while_ringing_then_connected(result)
    [row] = await proof_rows(svc)
    assert (row["mode"], row["stop_reason"], row["answered"]) == ("ringback", "answered", True)
    assert row["outcome"] == "cancelled"  # stopped by the answer, not played to its end
    assert row["caller"] is None  # no caller number unless configured
    assert float(row["seconds"]) == pytest.approx(RING_S, abs=0.3)
    assert svc.controller is not None
    b2bua = svc.controller.metrics.b2bua
    assert b2bua.get("answered") == 1 and b2bua.get("bye_from_callee") == 1
    assert svc.controller.metrics.decisions.get("announced") == 1


async def test_a_courts_own_choice_of_ringback_mode_overrides_the_deployments(
    redirect: tuple[Service, Any, bytes], tmp_path: Path
) -> None:
    svc, court, pcm = redirect
    await svc.store.courts.set_call_mode(uuid.UUID(str(court["id"])), "ringback", None, WHO)
    entry = svc.index.get(int(LISTED[1:]))
    assert isinstance(entry, Entry)
    for _ in range(100):  # refreshed off the call path
        if svc.court_modes(entry) == ("ringback", "answer"):
            break
        await asyncio.sleep(0.05)
    expect = write_wav(tmp_path / "court.wav", pcm)
    code, result = await dial(svc, LISTED, "--expect", str(expect))
    assert code == 0, result
    assert_warned_while_ringing_then_connected(result)


async def test_a_drain_lets_a_bridged_call_go_on_then_hangs_up_both_legs(
    talkative: tuple[Service, Any, bytes],
) -> None:
    svc, _, _ = talkative
    assert svc.controller is not None
    call = asyncio.create_task(dial(svc, LISTED, "--listen", "20"))
    for _ in range(200):
        if svc.controller.metrics.b2bua.get("answered") == 1:
            break
        await asyncio.sleep(0.05)
    assert svc.controller.metrics.b2bua.get("answered") == 1
    assert len(svc.controller.b2bua) == 1  # bridged and talking
    started = asyncio.get_running_loop().time()
    await svc.drain()  # shutdown.drain_s = 1
    assert asyncio.get_running_loop().time() - started == pytest.approx(1.0, abs=0.3)
    _, result = await asyncio.wait_for(call, 30)
    assert result["answered"]["ended_by"] == "far end"  # our BYE, long before its 20 s
    assert result["answered"]["audio_s"] < 5
    assert svc.controller.metrics.b2bua.get("bye_from_callee") == 0
