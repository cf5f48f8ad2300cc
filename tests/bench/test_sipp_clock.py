"""bench/sipp_fine_clock.c gives the packaged sipp a fine clock, as its name says.

The packaged sipp (3.6.1) reads CLOCK_MONOTONIC_COARSE, so every response time it records is a
whole number of kernel ticks (4 ms on a HZ=250 kernel). With the shim preloaded, as
`bench/sip_redirect.py --at70-clocks …,monotonic` runs it, sipp reads CLOCK_MONOTONIC and its
response times of calls on loopback fall between the ticks. Both halves are checked against
the real sipp, so the test fails if the shim stops taking effect.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "interop"))

from harness import ProcessSet, run_sipp, start_sipp_uas  # noqa: E402
from sip_redirect import sipp_clock_env  # noqa: E402

CALLS = 20
CLOCK_MONOTONIC_COARSE = 6  # Linux's id; the time module does not name it


def on_tick(ms: float, tick_ms: float) -> bool:
    steps = ms / tick_ms
    return abs(steps - round(steps)) < 1e-3


def response_times(tmp_path: Path, env: dict[str, str]) -> list[float]:
    processes = ProcessSet()
    try:
        callee = start_sipp_uas(processes, "uas_answer_any", workdir=tmp_path, trace_msg=False)
        result = run_sipp(
            "uac_call_through_switch",
            (callee.host, callee.port),
            calls=CALLS,
            rate=50,
            service="+8613700000001",
            workdir=tmp_path,
            trace_msg=False,
            trace_rtt=True,
            processes=processes,
            env=env,
        )
    finally:
        processes.stop_all()
    result.assert_all_ok(CALLS)
    assert len(result.rtt_ms) == CALLS, result.describe()  # every call: -rtt_freq 1 here
    return result.rtt_ms


def test_the_shim_gives_sipp_a_clock_finer_than_the_kernel_tick(tmp_path: Path) -> None:
    tick_ms = time.clock_getres(CLOCK_MONOTONIC_COARSE) * 1000
    assert tick_ms >= 1.0, f"the coarse clock ticks every {tick_ms} ms: nothing to tell apart"
    packaged = response_times(tmp_path, {})
    assert all(on_tick(ms, tick_ms) for ms in packaged), packaged
    fine = response_times(tmp_path, sipp_clock_env("monotonic", tmp_path))
    between = [ms for ms in fine if not on_tick(ms, tick_ms)]
    assert len(between) >= CALLS // 2, fine
