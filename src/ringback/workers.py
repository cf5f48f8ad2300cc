"""`ringback serve --workers N`: N service processes on one SIP port, one per core.

The supervisor (this module's :func:`supervise`) starts the embedded PostgreSQL if there
is no database URL, applies the migrations once, then starts N ``ringback serve`` worker
processes and forwards SIGTERM/SIGINT to them (each drains as a single process does).
A worker that dies is started again.

Each worker binds the SIP port with SO_REUSEPORT and the group spreads datagrams by
Request-URI (:mod:`ringback.net.reuseport`): every request of a transaction reaches the
worker holding it, calls spread evenly even from one switch socket. The 302's To tag is
derived from the INVITE with a key all workers share (:mod:`ringback.sip.tags`), so the
answer does not depend on which worker gives it. HTTP is bound with SO_REUSEPORT too.

Per-worker counters live in a small shared file (:class:`WorkerCounters`) that every
worker updates once a second and every worker's ``/metrics`` shows for all of them
(``ringback_worker_*{worker="i"}``); the other series of ``/metrics`` are those of the
worker that answered the scrape.
"""

from __future__ import annotations

import logging
import mmap
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ringback.config import Config
from ringback.registry.common import DATABASE_ERRORS
from ringback.sip.tags import TAG_KEY_BYTES

log = logging.getLogger(__name__)

ENV_INDEX = "RINGBACK_WORKER_INDEX"  # not config keys: there is no [worker] section
ENV_COUNT = "RINGBACK_WORKER_COUNT"
ENV_TAG_KEY = "RINGBACK_WORKER_TAG_KEY"
ENV_COUNTERS = "RINGBACK_WORKER_COUNTERS"

COUNTER_NAMES = (
    ("sip_requests", "SIP requests received"),
    ("sip_invites", "INVITE decisions made"),
    ("sip_responses", "SIP responses sent (first send)"),
    ("cpu_milliseconds", "CPU time used by the worker process, in milliseconds"),
)


@dataclass(frozen=True)
class WorkerRole:
    """What a worker process is told by its supervisor."""

    index: int
    count: int
    tag_key: bytes
    counters_path: str

    @classmethod
    def from_env(cls) -> WorkerRole | None:
        if ENV_INDEX not in os.environ:
            return None
        return cls(
            int(os.environ[ENV_INDEX]),
            int(os.environ[ENV_COUNT]),
            bytes.fromhex(os.environ[ENV_TAG_KEY]),
            os.environ[ENV_COUNTERS],
        )


class WorkerCounters:
    """A table of int64 counters, one row per worker, in a shared memory-mapped file."""

    def __init__(self, path: str | Path, workers: int, *, create: bool = False) -> None:
        self.workers = workers
        self.width = len(COUNTER_NAMES)
        size = 8 * workers * self.width
        if create:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(bytes(size))
        with open(path, "r+b") as f:
            self._map = mmap.mmap(f.fileno(), size)
        self._view = memoryview(self._map).cast("q")

    def write(self, worker: int, values: list[int]) -> None:
        base = worker * self.width
        for i, value in enumerate(values):
            self._view[base + i] = value

    def read(self) -> list[list[int]]:
        w = self.width
        return [list(self._view[i * w : (i + 1) * w]) for i in range(self.workers)]

    def render(self) -> str:
        rows = self.read()
        lines: list[str] = []
        for column, (name, help_text) in enumerate(COUNTER_NAMES):
            metric = f"ringback_worker_{name}_total"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
            lines += [f'{metric}{{worker="{i}"}} {row[column]}' for i, row in enumerate(rows)]
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self._view.release()
        self._map.close()


def migrate_once(dsn: str) -> None:
    """Apply the migrations before any worker starts (they would wait on each other)."""
    import asyncio

    from ringback.registry.store import Store, create_pool

    async def migrate() -> None:
        pool = await create_pool(dsn, min_size=1, max_size=1)
        try:
            await Store(pool).migrate()
        finally:
            await pool.close()

    asyncio.run(migrate())


def supervise(config: Config, config_path: str | None, workers: int) -> int:
    """Run ``workers`` worker processes until SIGTERM/SIGINT; the exit code is the worst."""
    env = dict(os.environ)
    embedded = None
    if not config.database.url:
        from ringback.registry.embedded import EmbeddedPostgres

        embedded = EmbeddedPostgres(Path(config.database.data_dir))
        env["RINGBACK_DATABASE_URL"] = embedded.start()
    try:
        try:
            migrate_once(
                config.database.write_url or env.get("RINGBACK_DATABASE_URL") or config.database.url
            )
        except DATABASE_ERRORS as exc:
            # Fail open: the workers start all the same (serving from the host's index
            # snapshot if there is one) and migrate when the database returns (under an
            # advisory lock, one at a time).
            log.warning("database unavailable at start (%s); the workers migrate later", exc)
        cache = Path(config.cache.path(config.database.data_dir))
        counters_path = cache / f"workers-{os.getpid()}.counters"
        WorkerCounters(counters_path, workers, create=True).close()
        # Every worker binds the same ports: a port left to the system is chosen here.
        if config.sip.port == 0:
            env["RINGBACK_SIP_PORT"] = str(_free_port(config.sip.listen[0], both=True))
        if config.http.port == 0:
            env["RINGBACK_HTTP_PORT"] = str(_free_port(config.http.host, both=False))
        env[ENV_COUNT] = str(workers)
        env[ENV_TAG_KEY] = secrets.token_bytes(TAG_KEY_BYTES).hex()
        env[ENV_COUNTERS] = str(counters_path)
        argv = [sys.executable, "-m", "ringback", "serve"]
        if config_path:
            argv += ["--config", config_path]

        def start(i: int) -> subprocess.Popen[bytes]:
            return subprocess.Popen(argv, env={**env, ENV_INDEX: str(i)})

        children = [start(i) for i in range(workers)]
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("started %d workers: %s", workers, ", ".join(str(c.pid) for c in children))
        while not stopping:
            time.sleep(0.2)
            for i, child in enumerate(children):
                if child.poll() is not None and not stopping:
                    log.error("worker %d exited with %s; starting it again", i, child.returncode)
                    children[i] = start(i)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + config.shutdown.drain_s + 15
        codes = []
        for child in children:
            try:
                codes.append(child.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                child.kill()
                codes.append(child.wait())
        counters_path.unlink(missing_ok=True)
        return max((abs(c) for c in codes), default=0)
    finally:
        if embedded is not None:
            embedded.stop()


def _free_port(host: str, *, both: bool) -> int:
    """A port free for TCP (and UDP too when ``both``) on ``host`` right now."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            if not both:
                return port
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port
    raise OSError(f"no free port on {host}")
