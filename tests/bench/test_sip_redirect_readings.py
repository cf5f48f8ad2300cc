"""bench/sip_redirect.py's readings of ringback's own clock, and where its work directory goes."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "interop"))

from sip_redirect import memory_dir, turnaround_share_over  # noqa: E402

NAME = "ringback_sip_udp_turnaround_seconds"
LE_5MS = f'{NAME}_bucket{{le="0.005"}}'


def test_share_over_5_ms_is_the_steps_datagrams_above_the_bucket() -> None:
    before = {f"{NAME}_count": 100.0, LE_5MS: 90.0}
    after = {f"{NAME}_count": 300.0, LE_5MS: 280.0}  # the step: 200 datagrams, 190 within 5 ms
    assert turnaround_share_over(before, after, 0.005) == pytest.approx(10 / 200)


def test_share_over_without_datagrams_is_not_a_number() -> None:
    reading = {f"{NAME}_count": 5.0, LE_5MS: 5.0}
    assert math.isnan(turnaround_share_over(reading, reading, 0.005))


def test_work_directory_goes_to_memory_only_where_it_fits(tmp_path: Path) -> None:
    assert memory_dir(str(tmp_path), need_bytes=1) == str(tmp_path)
    assert memory_dir(str(tmp_path / "missing")) is None
    assert memory_dir(str(tmp_path), need_bytes=1 << 62) is None
