"""bench/relay.py, smoke-sized: 20 bridged calls through a real `ringback serve` in ringback
mode for 3 s of RTP both ways, so CI runs the benchmark's whole path (the figures themselves
are recorded in bench/RESULTS.md, never asserted as wall-clock bounds here)."""

from __future__ import annotations

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
