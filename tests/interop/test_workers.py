"""`ringback serve --workers 2` against sipp sending from ONE socket.

SO_REUSEPORT alone would hash that one 4-tuple to one worker; the Request-URI hash spreads
the calls, and every request of a transaction (INVITE, ACK, retransmissions) must reach the
worker that holds it — a stray ACK would leave the 302 being retransmitted, which sipp
counts. The per-worker counters in /metrics show the split.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import LISTED, _seed, _start_ringback, worker_counters
from harness import LOCALHOST, SCENARIOS, ProcessSet, RtpReceiver, SippResult

pytestmark = pytest.mark.interop

Uac = Callable[..., SippResult]
CALLS = 1200


def numbered_scenario(workdir: Path) -> tuple[Path, Path]:
    """invite_302.xml calling the number in each line of a CSV (sipp -inf), and the CSV."""
    text = (SCENARIOS / "invite_302.xml").read_text().replace("[service]", "[field0]")
    scenario = workdir / "invite_302_numbers.xml"
    scenario.write_text(text)
    numbers = workdir / "numbers.csv"
    lines = ["SEQUENTIAL"] + [f"+4940{20_000_000 + i};" for i in range(CALLS)]
    numbers.write_text("\n".join(lines) + "\n")
    return scenario, numbers


async def test_two_workers_share_one_switch_socket_evenly(
    uac: Uac,
    processes: ProcessSet,
    interop_dir: Path,
    database: str,
    court_audio: bytes,
) -> None:
    await _seed(database, court_audio)
    sip_port, http_port = await _start_ringback(processes, interop_dir, database, workers=2)
    scenario, numbers = numbered_scenario(interop_dir)
    result = uac(
        scenario,
        (LOCALHOST, sip_port),
        calls=CALLS,
        rate=400,
        timeout=30,
        trace_msg=False,
        extra_args=["-inf", str(numbers)],
    )
    result.assert_all_ok(CALLS)
    assert result.retransmissions == 0, result.describe()  # every ACK found its worker
    deadline = time.monotonic() + 5
    while True:  # the workers publish their counters once a second
        invites = worker_counters(http_port, "sip_invites")
        if sum(invites.values()) >= CALLS or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sum(invites.values()) == CALLS, invites
    assert sorted(invites) == [0, 1], invites
    assert min(invites.values()) >= 0.4 * CALLS, f"uneven split: {invites}"
    requests = worker_counters(http_port, "sip_requests")
    assert requests == {w: 2 * n for w, n in invites.items()}, "each ACK met its INVITE"


async def test_a_warning_with_prack_through_two_workers(
    uac: Uac,
    processes: ProcessSet,
    interop_dir: Path,
    database: str,
    court_audio: bytes,
) -> None:
    """The PRACK goes to the 183's Contact: the worker's own port, not the shared one."""
    await _seed(database, court_audio)
    sip_port, _ = await _start_ringback(processes, interop_dir, database, workers=2)
    with RtpReceiver() as rtp:
        result = uac(
            "invite_100rel_prack",
            (LOCALHOST, sip_port),
            service=LISTED,
            extra_args=["-key", "rtp_port", str(rtp.port)],
            timeout=12,
        )
    result.assert_all_ok(1)
    (early,) = [m for m in result.messages if m.direction == "received" and m.status == 183]
    contact = early.header("Contact") or ""
    assert f":{sip_port}>" not in contact and f":{sip_port};" not in contact, contact
    (redirect,) = [m for m in result.messages if m.direction == "received" and m.status == 302]
    assert redirect.header("X-Ringback-Warning") == "played"
    assert len(rtp.packets) == 100
