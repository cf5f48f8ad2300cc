"""When every RTP stream's packets are due: the pacer's schedule, sans-I/O.

The schedule owns a grid of ticks ``epoch + k * tick_s`` (5 ms by default; a packet
interval of 20 ms is 4 ticks). Every stream starts on a grid tick, so packet ``i`` of a
stream is due at grid tick ``start_k + 4 * i``: integer arithmetic from the start, so
there is no drift. :meth:`PacerSchedule.advance` handles every grid tick up to the one
nearest ``now`` (``round``), which tolerates the millisecond granularity of epoll timers
(a packet may leave up to half a tick early); a late call makes every packet that has
fallen due sendable at once (catch-up: nothing is dropped or shifted). New streams go on
the least-loaded of the next four phases (a start is delayed by at most 15 ms), so a
burst of calls does not make one heavy tick.

Nothing here touches a socket, a clock or the event loop: the shell passes ``now`` in,
sends what :meth:`~PacerSchedule.advance` marks due, and wakes at
:meth:`~PacerSchedule.next_deadline`.
"""

from __future__ import annotations

import math

from ringback.media.rtp import PTIME_S, StreamSchedule

__all__ = ["PacerSchedule", "Slot"]


class Slot:
    """One stream's place in the schedule. The shell subclasses it to carry its socket.

    After :meth:`PacerSchedule.advance`, packets ``send_from`` up to (not including)
    ``i`` are due now; ``completed`` says the last frame has played out.
    """

    __slots__ = (
        "completed",
        "count",
        "i",
        "id",
        "latch_deadline",
        "next_k",
        "phase",
        "schedule",
        "send_from",
    )

    def __init__(self, count: int) -> None:
        self.id = 0
        self.count = count
        self.i = 0
        self.send_from = 0
        self.next_k = 0
        self.phase = 0
        self.completed = False
        self.latch_deadline = 0.0
        self.schedule = StreamSchedule(0.0, count)


class PacerSchedule:
    """The grid of ticks shared by every stream of a process."""

    def __init__(
        self,
        epoch: float,
        *,
        tick_s: float = 0.005,
        ptime_s: float = PTIME_S,
        latch_timeout_s: float = 2.0,
    ) -> None:
        ticks = ptime_s / tick_s
        if tick_s <= 0 or abs(ticks - round(ticks)) > 1e-9:
            raise ValueError(f"tick_s must divide {ptime_s} s, got {tick_s}")
        self.epoch = epoch
        self.tick_s = tick_s
        self.tpp = round(ticks)  # ticks per packet
        self.latch_timeout_s = latch_timeout_s
        self.last_k = 0  # the last grid tick handled
        self.buckets: list[list[Slot]] = [[] for _ in range(self.tpp)]
        self.slots: dict[int, Slot] = {}
        self._next_id = 1
        # Counters for /metrics.
        self.max_catch_up = 0  # most grid ticks handled by one call (1 = on time)
        self.wakes = 0
        self.late_wakes = 0  # wakes more than half a tick after their grid time
        self.max_lateness_s = 0.0  # the latest wake seen, after its grid time

    def __len__(self) -> int:
        return len(self.slots)

    def k_at(self, t: float) -> int:
        """The grid tick nearest to time ``t``."""
        return math.floor((t - self.epoch) / self.tick_s + 0.5)

    def add(self, slot: Slot, now: float, start_at: float | None = None) -> int:
        """Put ``slot`` on the grid from ``start_at`` (default ``now``), rounded up to a grid
        tick plus up to 3 ticks for phase balancing. Returns the slot's id."""
        if not self.slots:  # idle: move the grid's "handled" mark up to now
            self.last_k = max(self.last_k, self.k_at(now))
        when = now if start_at is None else max(start_at, now)
        k0 = max(self.last_k + 1, math.ceil((when - self.epoch) / self.tick_s - 1e-9))
        tpp = self.tpp
        start_k = min(range(k0, k0 + tpp), key=lambda k: len(self.buckets[k % tpp]))
        slot.id = self._next_id
        self._next_id += 1
        slot.next_k = start_k
        slot.phase = start_k % tpp
        start = self.epoch + start_k * self.tick_s
        slot.latch_deadline = start + self.latch_timeout_s
        slot.schedule = StreamSchedule(start, slot.count)
        self.buckets[slot.phase].append(slot)
        self.slots[slot.id] = slot
        return slot.id

    def remove(self, slot: Slot) -> bool:
        """Take ``slot`` off the grid; False if it was not on it."""
        if self.slots.pop(slot.id, None) is None:
            return False
        self.buckets[slot.phase].remove(slot)
        return True

    def next_deadline(self) -> float | None:
        """Grid time of the next tick to handle, or None when no stream is on the grid."""
        if not self.slots:
            return None
        return self.epoch + (self.last_k + 1) * self.tick_s

    def advance(self, now: float, woke_for: float | None = None) -> list[Slot]:
        """Handle every grid tick up to the one nearest ``now``: the hot loop.

        Returns the slots with packets due (``send_from`` .. ``i``). Slots whose last frame
        has played out are marked ``completed`` and taken off the grid. ``woke_for`` is the
        deadline the caller slept until, for the lateness counters.
        """
        self.wakes += 1
        if woke_for is not None:
            lateness = now - woke_for
            if lateness > self.max_lateness_s:
                self.max_lateness_s = lateness
            if lateness > self.tick_s / 2:
                self.late_wakes += 1
        k_now = self.k_at(now)
        last = self.last_k
        if k_now <= last:
            return []
        self.last_k = k_now
        tpp = self.tpp
        if k_now - last >= tpp:
            buckets = self.buckets
        else:
            buckets = [self.buckets[k % tpp] for k in range(last + 1, k_now + 1)]
        if k_now - last > self.max_catch_up:
            self.max_catch_up = k_now - last
        due: list[Slot] = []
        finished = False
        for bucket in buckets:
            for slot in bucket:
                k = slot.next_k
                if k > k_now:
                    continue
                i = slot.i
                n = (k_now - k) // tpp + 1  # ticks of this slot's phase now due
                end = i + n
                if end > slot.count:  # a tick after the last frame: it has played out
                    end = slot.count
                    slot.completed = finished = True
                slot.send_from = i
                slot.i = end
                slot.next_k = k + n * tpp
                due.append(slot)
        if finished:
            for phase in {s.phase for s in due if s.completed}:
                self.buckets[phase] = [s for s in self.buckets[phase] if not s.completed]
            for slot in due:
                if slot.completed:
                    del self.slots[slot.id]
        return due
