"""`bench/run --smoke`: every benchmark still runs, end to end, at a tiny size.

The figures of a smoke run mean nothing (the suite shares the machine); what is checked
is that each benchmark starts what it needs, finishes inside its time limit, and prints a
figure `bench/run` can read into its one table.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_run_smoke_prints_one_table_with_every_figure(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run"), "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| figure | value | target | Kamailio ratio")
    body = rows[1:]
    names = "\n".join(body)
    for figure in (
        "SIP redirect, highest clean rate per core",
        "ringback p99 at 70 % of its top rate (sipp, monotonic clock)",
        "call core per redirected call",
        "50,000-change burst",
        "standby node",
        "index bytes per number",
        "RTP:",
        "clearance",
        "bulk import",
        "proof of play: writes sustained",
        "/v1/stats at",
    ):
        assert figure in names, proc.stdout
    for row in body:
        assert "failed" not in row and "timed out" not in row and "no figure" not in row, row
    (own_row,) = [
        r for r in body if r.startswith("| ringback p99 at 70 % of its top rate (sipp, monotonic")
    ]
    assert re.search(r"ringback's own clock: [\d.]+ % > 5 ms", own_row), own_row
    (ratio_row,) = [r for r in body if r.startswith("| SIP redirect, highest clean rate")]
    assert " vs " in ratio_row and "calls/s" in ratio_row
