"""Shared set-up of the API benchmarks: a Service on a throw-away embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from ringback.config import load_config
from ringback.registry.embedded import EmbeddedPostgres
from ringback.server import Service


@contextlib.asynccontextmanager
async def bench_service(data_dir: str | None = None) -> AsyncIterator[Service]:
    """A Service (HTTP on a free loopback port, SIP on a free port) on its own database."""
    tmp = Path(data_dir or tempfile.mkdtemp(prefix="ringback-bench-"))
    pg = EmbeddedPostgres(tmp / "pg")
    dsn = await asyncio.to_thread(pg.start)
    config = load_config(None, env={})
    config.database.url = dsn
    config.http.port = 0
    config.sip.port = 0
    config.log.level = "warning"
    service = Service(config)
    await service.start()
    try:
        deadline = time.monotonic() + 30
        while not service.sync.loaded:
            if time.monotonic() > deadline:
                raise RuntimeError("index never loaded")
            await asyncio.sleep(0.02)
        yield service
    finally:
        await service.stop()
        await asyncio.to_thread(pg.stop)
        if data_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def run(main: object) -> None:
    try:
        import uvloop

        uvloop.run(main)  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover
        asyncio.run(main)  # type: ignore[arg-type]
