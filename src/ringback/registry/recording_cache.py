"""Every warning recording this node may play, held on local disk.

A node cut off from PostgreSQL must still play a listed number's warning, so it cannot
fetch the recording on first use. `RecordingCache` keeps each recording's PCM in
``<dir>/<id>-<sha256>.<sample rate>.pcm`` (a name without the rate is 8 kHz; written to a
temporary name, fsynced, then renamed, so a crash never leaves a half-written file under a
real name). The digest in the name is PostgreSQL's ``sha256(pcm)``, computed at the source;
a file whose content no longer matches it is deleted and fetched again (checked when the
folder is scanned and on every read).

The cache follows the ``recordings`` table by (id, digest), using the table's stored
``pcm_sha256``: a recording missing here or with another digest (a restored or different
database behind the same folder) is fetched, one gone from the table is removed. `sync()`
does that; `RecordingSync` runs it at start, whenever the change feed applied changes (a
listing or a court's default may now name another recording), and every `poll_s`.
Fetches use their own small pool (never the one bulk imports hold) and a timeout.

Until the first `sync()` has matched the folder against the database, a call's recording
is fetched from the database first and the disk is the fallback (the folder may hold
another database's recordings under the same ids); after a database failure the disk is
used directly for `RETRY_DATABASE_S`, so calls do not each wait for a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from ringback.registry.common import DATABASE_ERRORS

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d+)-([0-9a-f]{64})(?:\.(\d+))?\.pcm$")
RETRY_DATABASE_S = 5.0


@dataclass(frozen=True, slots=True)
class CachedFile:
    path: Path
    sha256: str
    rate: int = 8000  # samples per second of the PCM


class RecordingCache:
    """Recordings on local disk, fetched from the database with a timeout."""

    def __init__(self, directory: Path, pool: asyncpg.Pool, *, timeout_s: float = 5.0) -> None:
        self.directory = directory
        self.pool = pool
        self.timeout_s = timeout_s
        self.files: dict[int, CachedFile] = {}
        self.fetched = 0
        self.corrupt = 0
        self.load_failures = 0
        self.synced = False  # True once the cache matched the table (at least once)
        self._database_failed_at = -RETRY_DATABASE_S

    # ------------------------------------------------------------------ disk
    def scan(self) -> None:
        """Index the folder, dropping files whose content does not match their digest
        and leftovers of interrupted writes. Blocking: run it in a thread."""
        self.directory.mkdir(parents=True, exist_ok=True)
        found: dict[int, CachedFile] = {}
        for path in self.directory.iterdir():
            match = _NAME.match(path.name)
            if match is None:
                if path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)
                continue
            recording_id, digest = int(match[1]), match[2]
            rate = int(match[3] or 8000)
            if _sha256_file(path) != digest:
                self._drop_corrupt(path)
                continue
            old = found.get(recording_id)
            if old is not None:  # two good copies: keep one
                old.path.unlink(missing_ok=True)
            found[recording_id] = CachedFile(path, digest, rate)
        self.files = found
        log.info("recording cache: %d recordings in %s", len(found), self.directory)

    def _drop_corrupt(self, path: Path) -> None:
        log.warning("recording cache: %s does not match its digest; removed", path.name)
        self.corrupt += 1
        path.unlink(missing_ok=True)

    def read(self, recording_id: int) -> bytes | None:
        """The cached PCM, checked against its digest (None: not cached or corrupt).
        Blocking: run it in a thread."""
        audio = self.read_audio(recording_id)
        return None if audio is None else audio[0]

    def read_audio(self, recording_id: int) -> tuple[bytes, int] | None:
        """(PCM, sample rate) as :meth:`read`."""
        cached = self.files.get(recording_id)
        if cached is None:
            return None
        try:
            pcm = cached.path.read_bytes()
        except OSError:
            self.files.pop(recording_id, None)
            return None
        if hashlib.sha256(pcm).hexdigest() != cached.sha256:
            self.files.pop(recording_id, None)
            self._drop_corrupt(cached.path)
            return None
        return pcm, cached.rate

    def _write(self, recording_id: int, pcm: bytes, digest: str, rate: int = 8000) -> None:
        if hashlib.sha256(pcm).hexdigest() != digest:
            raise ValueError(f"recording {recording_id}: audio does not match its digest")
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{recording_id}-{digest}" + ("" if rate == 8000 else f".{rate}")
        final = self.directory / f"{name}.pcm"
        tmp = self.directory / f"{name}.pcm.{secrets.token_hex(4)}.tmp"
        with open(tmp, "wb") as f:
            f.write(pcm)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        _fsync_dir(self.directory)
        old = self.files.get(recording_id)
        self.files[recording_id] = CachedFile(final, digest, rate)
        if old is not None and old.path != final:
            old.path.unlink(missing_ok=True)

    def _remove(self, recording_id: int) -> None:
        cached = self.files.pop(recording_id, None)
        if cached is not None:
            cached.path.unlink(missing_ok=True)

    # -------------------------------------------------------------- database
    async def _fetch(self, recording_id: int) -> tuple[bytes, int] | None:
        row = await asyncio.wait_for(
            self.pool.fetchrow(
                "SELECT pcm, sample_rate, encode(pcm_sha256, 'hex') AS digest "
                "FROM recordings WHERE id = $1",
                recording_id,
            ),
            self.timeout_s,
        )
        if row is None:
            return None
        pcm, rate = bytes(row["pcm"]), int(row["sample_rate"])
        await asyncio.to_thread(self._write, recording_id, pcm, row["digest"], rate)
        self.fetched += 1
        return pcm, rate

    async def pcm(self, recording_id: int) -> bytes | None:
        """A recording's PCM (see :meth:`audio`)."""
        audio = await self.audio(recording_id)
        return None if audio is None else audio[0]

    async def audio(self, recording_id: int) -> tuple[bytes, int] | None:
        """(PCM, sample rate) of a recording: from disk, else from the database (then kept
        on disk); see the module's docstring for the order before the first sync. None
        when it exists in neither or the database cannot be reached in time."""
        loop = asyncio.get_running_loop()
        trust_disk = self.synced or loop.time() - self._database_failed_at < RETRY_DATABASE_S
        if trust_disk:
            audio = await asyncio.to_thread(self.read_audio, recording_id)
            if audio is not None:
                return audio
        try:
            return await self._fetch(recording_id)
        except DATABASE_ERRORS as exc:
            self._database_failed_at = loop.time()
            audio = None if trust_disk else await asyncio.to_thread(self.read_audio, recording_id)
            if audio is None:
                self.load_failures += 1
                log.warning("recording %d: not cached and not loadable (%s)", recording_id, exc)
            return audio

    async def sync(self) -> int:
        """Make the folder hold exactly the recordings in the table; returns how many
        were fetched. Raises the database's error when it cannot be reached."""
        rows = await asyncio.wait_for(
            self.pool.fetch("SELECT id, encode(pcm_sha256, 'hex') FROM recordings"),
            self.timeout_s,
        )
        digests: dict[int, str] = {r[0]: r[1] for r in rows}
        fetched = 0
        for recording_id, digest in sorted(digests.items()):
            cached = self.files.get(recording_id)
            if cached is not None and cached.sha256 == digest:
                continue
            if await self._fetch(recording_id) is not None:
                fetched += 1
        for gone in self.files.keys() - digests.keys():
            await asyncio.to_thread(self._remove, gone)
        self.synced = True
        return fetched


class RecordingSync:
    """Runs `RecordingCache.sync` at start, on `wake()` (the change feed applied changes)
    and every `poll_s`, retrying while the database is away."""

    def __init__(
        self,
        cache: RecordingCache,
        *,
        poll_s: float = 10.0,
        on_synced: Callable[[], object] | None = None,
    ) -> None:
        self.cache = cache
        self.poll_s = poll_s
        self.on_synced = on_synced  # after each sync that matched the table
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="recording-sync")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # Bounded: a query cancelled mid-flight waits for the server's answer.
            await asyncio.wait({task}, timeout=5.0)

    async def _run(self) -> None:
        await asyncio.to_thread(self.cache.scan)
        backoff = 0.5
        away = False
        while True:
            self._wake.clear()
            try:
                fetched = await self.cache.sync()
                if fetched:
                    log.info("recording cache: fetched %d recordings", fetched)
                if self.on_synced is not None:
                    self.on_synced()
                if away:
                    log.info("recording cache: database back; cache matches it")
                backoff, away = 0.5, False
                wait = self.poll_s
            except asyncio.CancelledError:
                raise
            except DATABASE_ERRORS as exc:
                if not away:  # once per outage, not once per retry
                    log.warning("recording cache: database unavailable (%s); retrying", exc)
                away = True
                wait, backoff = backoff, min(backoff * 2, self.poll_s)
            except Exception:
                log.exception("recording cache: sync failed; retrying")
                wait = self.poll_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)


def _sha256_file(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
