"""The pacer's schedule alone: times in, due packets out; no loop, no socket."""

from __future__ import annotations

import pytest

from ringback.media.pacing import PacerSchedule, Slot

EPOCH = 1000.0
TICK = 0.005


def sent(due: list[Slot]) -> dict[int, list[int]]:
    return {s.id: list(range(s.send_from, s.i)) for s in due}


def test_packets_fall_due_every_20_ms_from_the_start_tick_with_no_drift() -> None:
    grid = PacerSchedule(EPOCH, tick_s=TICK)
    slot = Slot(count=1000)
    sid = grid.add(slot, now=EPOCH + 0.0012)
    start = slot.schedule.start
    assert start >= EPOCH + 0.0012 and (start - EPOCH) / TICK == pytest.approx(
        round((start - EPOCH) / TICK)
    )
    got: list[int] = []
    for i in range(999):  # one wake exactly on each packet's due time
        got += sent(grid.advance(start + i * 0.020)).get(sid, [])
    assert got == list(range(999))
    assert slot.schedule.due(998) == pytest.approx(start + 998 * 0.020, abs=1e-9)


def test_a_late_wake_catches_up_without_dropping_or_shifting() -> None:
    grid = PacerSchedule(EPOCH, tick_s=TICK)
    slot = Slot(count=100)
    sid = grid.add(slot, now=EPOCH)
    start = slot.schedule.start
    assert sent(grid.advance(start)) == {sid: [0]}
    assert sent(grid.advance(start + 0.107)) == {sid: [1, 2, 3, 4, 5]}  # 5 due by 107 ms
    assert grid.max_catch_up == round(0.107 / TICK)
    assert sent(grid.advance(start + 0.120)) == {sid: [6]}  # back on the grid


def test_a_stream_completes_one_interval_after_its_last_frame() -> None:
    grid = PacerSchedule(EPOCH, tick_s=TICK)
    slot = Slot(count=3)
    grid.add(slot, now=EPOCH)
    start = slot.schedule.start
    for i in range(3):
        [due] = grid.advance(start + i * 0.020)
        assert not due.completed
    [due] = grid.advance(start + 3 * 0.020)
    assert due.completed and due.send_from == due.i == 3
    assert len(grid) == 0 and grid.next_deadline() is None


def test_new_streams_spread_over_the_four_phases() -> None:
    grid = PacerSchedule(EPOCH, tick_s=TICK)
    slots = [Slot(count=50) for _ in range(8)]
    for slot in slots:
        grid.add(slot, now=EPOCH)
    assert sorted(len(b) for b in grid.buckets) == [2, 2, 2, 2]
    assert max(s.schedule.start for s in slots) - EPOCH <= 4 * TICK + 1e-9


def test_removed_stream_is_never_due_and_the_deadline_follows_the_grid() -> None:
    grid = PacerSchedule(EPOCH, tick_s=TICK)
    a, b = Slot(count=50), Slot(count=50)
    grid.add(a, now=EPOCH)
    grid.add(b, now=EPOCH)
    assert grid.remove(a) and not grid.remove(a)
    deadline = grid.next_deadline()
    assert deadline == pytest.approx(EPOCH + TICK)
    for step in range(1, 40):
        assert a not in grid.advance(EPOCH + step * TICK)


def test_lateness_is_counted_against_the_deadline_slept_for() -> None:
    grid = PacerSchedule(EPOCH, tick_s=TICK)
    grid.add(Slot(count=10), now=EPOCH)
    deadline = grid.next_deadline()
    assert deadline is not None
    grid.advance(deadline + 0.004, woke_for=deadline)
    assert grid.late_wakes == 1 and grid.max_lateness_s == pytest.approx(0.004)


def test_tick_must_divide_the_packet_interval() -> None:
    with pytest.raises(ValueError):
        PacerSchedule(EPOCH, tick_s=0.003)
