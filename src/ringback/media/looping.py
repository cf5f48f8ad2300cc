"""A warning repeated, with its gap, for as long as a phone may ring, without a list that
long: ringback mode plays it in place of the ringing tone until the callee answers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import overload


class Looped(Sequence[bytes]):
    """Frames ``play`` then ``gap`` copies of ``silence``, repeated; whole plays only, at
    least one, enough to fill ``fill_frames`` (the last play has no gap after it)."""

    __slots__ = ("_count", "_gap", "_play", "_silence")

    def __init__(self, play: Sequence[bytes], gap: int, silence: bytes, fill_frames: int) -> None:
        if not play:
            raise ValueError("nothing to loop")
        self._play, self._gap, self._silence = play, gap, silence
        plays = max(1, math.ceil(fill_frames / self.period))
        self._count = plays * self.period - gap

    @property
    def period(self) -> int:
        """Frames from the start of one play to the start of the next."""
        return len(self._play) + self._gap

    @property
    def play_frames(self) -> int:
        return len(self._play)

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, i: int) -> bytes: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[bytes]: ...
    def __getitem__(self, i: int | slice) -> bytes | Sequence[bytes]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._count))]
        if i < 0:
            i += self._count
        if not 0 <= i < self._count:
            raise IndexError(i)
        k = i % self.period
        return self._play[k] if k < len(self._play) else self._silence

    def end_of_play(self, i: int, *, first_only: bool = False) -> int:
        """The frame count at which the play that frame ``i`` belongs to ends (the first
        play, with ``first_only``); ``i`` itself when it lies in a gap or past that play."""
        end = len(self._play) if first_only else (i // self.period) * self.period + len(self._play)
        return max(end, i)
