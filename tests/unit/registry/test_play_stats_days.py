"""When the portal's per-day proof-of-play counts may come from the hourly rollup: only if
every local midnight of the period is a whole UTC hour (else a bucket spans two days)."""

from __future__ import annotations

from datetime import date

import pytest

from ringback.config import ConfigError, load_config
from ringback.registry.proof_of_play import days_align_with_hours


@pytest.mark.parametrize(
    "zone",
    ["Asia/Shanghai", "UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"],
)
def test_whole_hour_zones_use_the_rollup_across_a_year_with_dst(zone: str) -> None:
    assert days_align_with_hours(date(2026, 1, 1), date(2026, 12, 31), zone)


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "Asia/Kathmandu", "Australia/Adelaide"])
def test_half_and_quarter_hour_zones_read_raw_rows(zone: str) -> None:
    assert not days_align_with_hours(date(2026, 6, 1), date(2026, 6, 30), zone)


def test_a_zone_whose_offset_changes_to_a_half_hour_in_the_period() -> None:
    # Lord Howe Island: +10:30 in winter, +11 in summer (DST starts 2026-10-04)
    assert not days_align_with_hours(date(2026, 10, 1), date(2026, 10, 10), "Australia/Lord_Howe")


def test_retention_below_the_floor_is_refused_zero_keeps_for_ever() -> None:
    env = {"RINGBACK_ANNOUNCEMENTS_RETENTION_DAYS": "7"}
    with pytest.raises(ConfigError, match=r"announcements\.retention_days: must be 0"):
        load_config(None, env=env)
    assert load_config(None, env={}).announcements.retention_days == 400
    env = {"RINGBACK_ANNOUNCEMENTS_RETENTION_DAYS": "0"}
    assert load_config(None, env=env).announcements.retention_days == 0
    env = {"RINGBACK_ANNOUNCEMENTS_PARTITIONS_AHEAD_DAYS": "0"}
    with pytest.raises(ConfigError, match=r"announcements\.partitions_ahead_days"):
        load_config(None, env=env)
