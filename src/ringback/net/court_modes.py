"""Each court's own call mode, kept in memory for the call core's synchronous decision.

Listings in the index carry a recording id, not a court; a court's choice therefore reaches
the listings that play one of its recordings (its default or a listing's own). Listings on
the shipped recording follow the deployment's mode. Refreshed every ``refresh_s`` seconds;
while the database is away the last known choices stay in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ringback.registry.common import DATABASE_ERRORS
from ringback.registry.listing_index import Entry

log = logging.getLogger(__name__)

Modes = dict[int, tuple[str | None, str | None]]


class CourtModes:
    def __init__(
        self,
        load: Callable[[], Awaitable[Modes]],
        *,
        mode: str,
        answer_after: str,
        refresh_s: float = 2.0,
    ) -> None:
        self.load = load
        self.mode, self.answer_after = mode, answer_after
        self.refresh_s = refresh_s
        self.by_recording: Modes = {}
        self._task: asyncio.Task[None] | None = None

    def __call__(self, entry: Entry) -> tuple[str, str] | None:
        """(mode, answer_after) for a listing whose court chose either; else None."""
        chosen = self.by_recording.get(entry.recording_id)
        if chosen is None:
            return None
        return chosen[0] or self.mode, chosen[1] or self.answer_after

    async def refresh(self) -> None:
        self.by_recording = await self.load()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="court-modes")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except DATABASE_ERRORS as exc:
                log.debug("court call modes not refreshed: %s", exc)
            await asyncio.sleep(self.refresh_s)
