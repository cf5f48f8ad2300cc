"""The embedded PostgreSQL runs with the settings a bulk import needs (`SERVER_SETTINGS`)."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from ringback.registry.embedded import SERVER_SETTINGS, EmbeddedPostgres


async def test_embedded_server_runs_with_the_bulk_import_settings(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "db")
    url = server.start()
    try:
        conn = await asyncpg.connect(url)
        try:
            shown = {name: await conn.fetchval(f"SHOW {name}") for name in SERVER_SETTINGS}
            checksums = await conn.fetchval("SHOW data_checksums")
        finally:
            await conn.close()
    finally:
        server.remove()
    assert shown == SERVER_SETTINGS
    assert checksums == "on"  # kept: the settings work around their cost, not by dropping them
