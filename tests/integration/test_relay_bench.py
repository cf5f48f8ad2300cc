"""bench/relay.py, smoke-sized: 20 bridged calls through a real `ringback serve` in ringback
mode for 3 s of RTP both ways, so CI runs the benchmark's whole path (the figures themselves
are recorded in bench/RESULTS.md, never asserted as wall-clock bounds here)."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
CALLS = 20
SECONDS = 3.0


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("relay_bench", BENCH / "relay.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("via", ["ringback", "ringback-rtpengine"])
def test_relay_bench_relays_every_packet_of_every_call(
    via: str, database: str, tmp_path: Path
) -> None:
    """The built-in relay, and ringback with the rtpengine backend (a real daemon)."""
    relay = load_bench()
    argv = ["--counts", str(CALLS), "--seconds", str(SECONDS), "--no-pin", "--via", via]
    argv += ["--database", database, "--workdir", str(tmp_path), "--keep"]
    (step,) = relay.main(argv)
    log = (tmp_path / "ringback.log").read_text(errors="replace")[-3000:]
    assert step["answered"] == CALLS, (step["finals"], log)
    packets_each_way = CALLS * int(SECONDS * 50)
    for direction in ("caller_to_callee", "callee_to_caller"):
        got: dict[str, Any] = step[direction]
        assert got["streams_heard"] == CALLS, (direction, got)
        assert got["sent"] == packets_each_way, (direction, got)
        assert got["lost"] == 0 and got["duplicates"] == 0, (direction, got)
        assert got["received"] == packets_each_way, (direction, got)
        # the transit of every packet was measured: the fastest is a real, positive time
        assert got["transit_min_ms"] > 0, (direction, got)
    # the relay's own counters agree with the receivers (rtpengine's totals also count the
    # few warning packets it carried to the caller before the answer)
    if via == "ringback":
        assert step["relay_packets"] == 2 * packets_each_way
    else:
        assert 2 * packets_each_way <= step["relay_packets"] < 2 * packets_each_way + 50 * CALLS
    assert step["relay_refused"] == 0
    assert step["server_cpu_pct"] > 0
    # every call ended on both legs: the caller's BYE answered, the callee leg hung up
    assert step["bye_ok"] == CALLS
    assert step["callee_byes"] == CALLS


def test_calls_fail_open_when_rtpengine_does_not_answer(database: str, tmp_path: Path) -> None:
    """`media = "rtpengine"` with no daemon at `rtpengine_ng`: every listed call gets the
    302 redirect mode would have sent (fail open), and no callee leg is started."""
    load_bench()  # puts bench/ on sys.path
    import asyncio

    peers = importlib.import_module("call_peers")
    silent = peers.harness.free_port("udp")

    async def run() -> tuple[list[Any], Any]:
        processes = peers.harness.ProcessSet()
        try:
            callee = peers.Callee({})
            await callee.start()
            server = peers.start_ringback(
                processes,
                tmp_path,
                database=database,
                next_hop=(peers.LOCALHOST, callee.port),
                cpu=None,
                ringback_toml=(
                    f"media = 'rtpengine'\nrtpengine_ng = '127.0.0.1:{silent}'\n"
                    "rtpengine_timeout_s = 0.2\n"
                ),
            )
            caller = peers.Caller(server.sip)
            await caller.start()
            calls = [peers.Call(i, peers.rtp_socket(), peers.rtp_socket()) for i in range(3)]
            callee.calls.update({c.index: c for c in calls})
            await peers.place_calls(caller, calls, rate=10, timeout=10)
            return calls, callee
        finally:
            processes.stop_all()

    calls, callee = asyncio.run(run())
    assert [c.final for c in calls] == [302, 302, 302]
    assert callee.invites == 0
    assert all(c.answered_ns == 0 for c in calls)  # no 2xx ever came
