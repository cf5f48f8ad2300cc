"""Tamper evidence that survives the service's own database role: the service runs as a
member of ringback_runtime, which cannot disable the audit triggers or rewrite audit rows
(the embedded database is set up the same way); the chain's head is exported as a
checkpoint, and `ringback audit verify --checkpoint HASH@SEQ` detects a chain rewritten by
a superuser with every hash recomputed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from court_api_support import SETUP, Api, days, listing, make_config, until

from ringback.registry.audit import verify_chain
from ringback.registry.migrate import migrate_as_owner
from ringback.registry.roles import as_user
from ringback.server import Service

RINGBACK = str(Path(sys.executable).parent / "ringback")

TAMPERING = (
    "ALTER TABLE audit_events DISABLE TRIGGER ALL",
    "ALTER TABLE audit_events DISABLE TRIGGER audit_no_update",
    "DROP TRIGGER audit_no_update ON audit_events",
    "DROP TRIGGER audit_chain ON audit_events",
    "UPDATE audit_events SET actor = 'nobody'",
    "DELETE FROM audit_events",
    "TRUNCATE audit_events",
    "UPDATE audit_head SET last_id = 0",
    "CREATE OR REPLACE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql "
    "AS $$ BEGIN RETURN NEW; END $$",
    "ALTER FUNCTION audit_chain() SECURITY INVOKER",
    "SET session_replication_role = replica",
    "DELETE FROM audit_checkpoints",
    "INSERT INTO schema_migrations (version, name) VALUES (999, 'x')",
    "ALTER TABLE audit_events OWNER TO CURRENT_USER",
)


async def _refused_all(conn: asyncpg.Connection) -> None:
    for sql in TAMPERING:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(sql)


@pytest.fixture
async def runtime_login(database: str) -> AsyncIterator[str]:
    """A login that is only a member of ringback_runtime (migrations run as the owner)."""
    await migrate_as_owner(database)
    login = "rt_" + uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(database)
    await admin.execute(f"CREATE ROLE {login} LOGIN IN ROLE ringback_runtime")
    try:
        yield login
    finally:
        await admin.execute(f"DROP OWNED BY {login}")
        await admin.execute(f"DROP ROLE {login}")
        await admin.close()


async def test_the_service_runs_as_a_runtime_role_that_cannot_touch_the_audit_trail(
    database: str, runtime_login: str, tmp_path: Path
) -> None:
    config = make_config(as_user(database, runtime_login))
    config.database.owner_url = database
    config.audit.checkpoint_interval_s = 0.1
    service = Service(config)
    await service.start()
    try:
        assert await service.pool.fetchval("SELECT current_user") == runtime_login
        _, op = await service.store.tokens.issue("operator", None, "op", SETUP)
        async with aiohttp.ClientSession() as http:
            api = Api(service, http)
            # every kind of write works as the runtime role
            court = await api.court(op, "Runtime Court")
            token, court_id = court["token"], court["court"]["id"]
            r = await api.put("/v1/listings/+8613800138000", token, listing("C-1"))
            assert r.status == 201, r.body
            r = await api.post("/v1/listings/+8613800138000/suspend", token, {"reason": "x"})
            assert r.status == 200, r.body
            expires = days(30)
            csv = f"number,case_ref,expires_at\n+8613800138001,C-2,{expires}\n"
            r = await api.call(
                "POST", "/v1/imports", token, data=csv.encode(),
                headers={"Content-Type": "text/csv"},
            )  # fmt: skip
            assert r.status == 201 and r.body["listed"] == 1, r.body
            payment = {
                "court_id": court_id,
                "payment_id": "p-1",
                "case_ref": "C-1",
                "paid_at": "2026-01-01T00:00:00Z",
            }
            r = await api.hook(court["webhook_secret"], payment)
            assert r.status == 200 and r.body["cleared"] == ["+8613800138000"], r.body
            r = await api.post(f"/v1/courts/{court_id}/webhook-secret/rotate", op, {})
            assert r.status == 200, r.body
            r = await api.post(f"/v1/courts/{court_id}/tokens", op, {"label": "second"})
            assert r.status == 201, r.body
            assert (await api.call("DELETE", f"/v1/tokens/{r.body['id']}", op)).status == 200
            assert await until(lambda: service.checkpoint is not None, 10)
        # ... but nothing that could hide a change in the audit trail
        conn = await asyncpg.connect(service.dsn)
        try:
            before = await conn.fetchval("SELECT count(*) FROM audit_events")
            await _refused_all(conn)
            assert await conn.fetchval("SELECT count(*) FROM audit_events") == before
            assert (await verify_chain(conn)).ok
        finally:
            await conn.close()
    finally:
        await service.stop()


async def test_the_embedded_database_is_set_up_the_same_way() -> None:
    data = tempfile.mkdtemp(prefix="rbte", dir="/tmp")  # short: the socket path is limited
    config = make_config("")
    config.database.url = ""
    config.database.data_dir = data
    service = Service(config)
    try:
        await service.start()
        user = await service.pool.fetchval("SELECT current_user")
        assert user == "ringback_app"
        assert not await service.pool.fetchval(
            "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
        )
        _, op = await service.store.tokens.issue("operator", None, "op", SETUP)
        async with aiohttp.ClientSession() as http:
            court = await Api(service, http).court(op, "Embedded Court")
            assert court["court"]["name"] == "Embedded Court"
        async with service.pool.acquire() as conn:
            await _refused_all(conn)
    finally:
        await service.stop()
        import shutil

        if service.embedded is not None:
            service.embedded.remove()
        shutil.rmtree(data, ignore_errors=True)


REWRITE = """
DO $$
DECLARE
    prev bytea := '\\x' || repeat('00', 32);
    r audit_events%ROWTYPE;
BEGIN
    ALTER TABLE audit_events DISABLE TRIGGER USER;
    UPDATE audit_events SET actor = 'someone else' WHERE id = 2;
    FOR r IN SELECT * FROM audit_events ORDER BY id LOOP
        UPDATE audit_events SET prev_hash = prev, hash = audit_digest(prev, r) WHERE id = r.id;
        prev := audit_digest(prev, r);
    END LOOP;
    UPDATE audit_head SET last_hash = prev;
    ALTER TABLE audit_events ENABLE TRIGGER USER;
END $$;
"""


def _verify(database: str, *checkpoints: str) -> subprocess.CompletedProcess[str]:
    args = [RINGBACK, "audit", "verify"]
    for point in checkpoints:
        args += ["--checkpoint", point]
    env = {**os.environ, "RINGBACK_DATABASE_URL": database}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)


async def test_a_checkpoint_detects_a_chain_rewritten_by_a_superuser(database: str) -> None:
    config = make_config(database)
    config.audit.checkpoint_interval_s = 0.1
    service = Service(config)
    await service.start()
    try:
        _, op = await service.store.tokens.issue("operator", None, "op", SETUP)
        async with aiohttp.ClientSession() as http:
            api = Api(service, http)
            court = await api.court(op, "Checkpoint Court")
            for i in range(3):
                r = await api.put(f"/v1/listings/+861380013800{i}", court["token"], listing())
                assert r.status == 201
            head = await service.pool.fetchval("SELECT last_id FROM audit_head")
            assert await until(lambda: (service.checkpoint or _NONE).seq >= head, 10)
            metrics = (await api.get("/metrics")).raw.decode()
        assert f"ringback_audit_checkpoint_seq {service.checkpoint.seq}" in metrics  # type: ignore[union-attr]
        # the export: an audit.checkpoint event in the outbox, for every subscriber
        rows = await service.pool.fetch(
            "SELECT payload::text FROM event_outbox WHERE event_type = 'audit.checkpoint' "
            "ORDER BY id"
        )
        checkpoint = json.loads(rows[-1][0])["checkpoint"]
        assert checkpoint == str(service.checkpoint)
    finally:
        await service.stop()

    ok = await asyncio.to_thread(_verify, database, checkpoint)
    assert ok.returncode == 0 and "1 checkpoint(s) match" in ok.stdout, ok.stderr
    admin = await asyncpg.connect(database)
    try:
        await admin.execute(REWRITE)
        actor = await admin.fetchval("SELECT actor FROM audit_events WHERE id = 2")
        assert actor == "someone else"
    finally:
        await admin.close()
    # the rewritten chain is self-consistent: without a checkpoint it verifies ...
    plain = await asyncio.to_thread(_verify, database)
    assert plain.returncode == 0, plain.stderr
    # ... with the exported head it does not
    caught = await asyncio.to_thread(_verify, database, checkpoint)
    assert caught.returncode == 1
    assert f"checkpoint {checkpoint} does not match" in caught.stderr, caught.stderr
    bad = await asyncio.to_thread(_verify, database, "nothex@5")
    assert bad.returncode == 2 and "HASH@SEQ" in bad.stderr


class _None:
    seq = -1


_NONE = _None()
