"""Shared fixtures: a real PostgreSQL for the whole session, a fresh database per test.

By default the suite starts the embedded PostgreSQL (the same one `ringback serve` uses).
Set RINGBACK_TEST_DATABASE_URL to run against another server instead (a superuser URL:
each test creates and drops its own database).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from ringback.registry.embedded import EmbeddedPostgres
from ringback.registry.store import Store, create_pool


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a PostgreSQL server (maintenance database) for the session."""
    external = os.environ.get("RINGBACK_TEST_DATABASE_URL")
    if external:
        yield external
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
    url = server.start()
    yield url
    server.remove()


@pytest.fixture
async def database(pg_server: str) -> AsyncIterator[str]:
    """A new, empty database for one test; dropped afterwards."""
    name = "t_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(pg_server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(pg_server, name)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def store(database: str) -> AsyncIterator[Store]:
    pool = await create_pool(database, min_size=1, max_size=5)
    store = Store(pool)
    await store.migrate()
    yield store
    await pool.close()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
