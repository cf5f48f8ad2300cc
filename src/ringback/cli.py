"""`ringback serve | demo | migrate | court create | audit verify`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from ringback.config import Config, ConfigError, load_config
from ringback.logs import setup_logging
from ringback.registry.embedded import EmbeddedPostgres, EmbeddedPostgresError
from ringback.registry.store import Conflict, Principal, Store, create_pool

log = logging.getLogger("ringback")


def _run_loop(main: asyncio.Future[int] | object) -> int:
    try:
        import uvloop

        return int(uvloop.run(main))  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return int(asyncio.run(main))  # type: ignore[arg-type]


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@contextlib.asynccontextmanager
async def _store(config: Config) -> AsyncIterator[Store]:
    """A migrated store on the configured database (embedded when no URL is set)."""
    embedded = None
    dsn = config.database.url
    if not dsn:
        embedded = EmbeddedPostgres(Path(config.database.data_dir))
        dsn = await asyncio.to_thread(embedded.start)
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        store = Store(pool)
        await store.migrate()
        yield store
    finally:
        await pool.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


async def _serve(config: Config) -> int:
    from ringback.server import Service

    service = Service(config)
    await service.start()
    try:
        await _until_signalled()
    finally:
        await service.stop()
    return 0


async def _migrate(config: Config) -> int:
    async with _store(config) as store:
        applied = await store.migrate()
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


async def _court_create(config: Config, name: str) -> int:
    async with _store(config) as store:
        try:
            court, token, secret = await store.create_court(name, Principal("cli", "operator"))
        except Conflict as exc:
            print(f"ringback: {exc}", file=sys.stderr)
            return 1
    print(f"court id:       {court['id']}")
    print(f"court token:    {token}")
    print(f"webhook secret: {secret}")
    print("Both secrets are shown once only; ringback keeps the token hashed.")
    return 0


async def _audit_verify(config: Config) -> int:
    from ringback.registry.audit import verify_chain

    async with _store(config) as store, store.pool.acquire() as conn:
        result = await verify_chain(conn)
    if result.ok:
        print(f"audit trail intact: {result.rows} events, hash chain verified")
        return 0
    print(f"audit trail BROKEN at event {result.first_bad_id}: {result.problem}", file=sys.stderr)
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ringback", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", "-c", metavar="PATH", help="TOML config file")
        return p

    with_config(sub.add_parser("serve", help="run the service"))
    demo = with_config(sub.add_parser("demo", help="run with a demo court and test numbers"))
    demo.add_argument("--data-dir", default="ringback-demo", help="embedded database folder")
    demo.add_argument("--sip-port", type=int, default=5060)
    demo.add_argument("--http-port", type=int, default=8080)
    with_config(sub.add_parser("migrate", help="apply database migrations"))
    court = sub.add_parser("court", help="manage courts").add_subparsers(
        dest="action", required=True
    )
    create = with_config(court.add_parser("create", help="create a court with its first token"))
    create.add_argument("name")
    audit = sub.add_parser("audit", help="audit trail").add_subparsers(dest="action", required=True)
    with_config(audit.add_parser("verify", help="check the audit trail's hash chain"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
        if args.command == "demo":
            config.database.data_dir = args.data_dir
            config.sip.port = args.sip_port
            config.http.port = args.http_port
    except ConfigError as exc:
        print(f"ringback: config error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log.level, config.log.format)
    try:
        if args.command == "serve":
            return _run_loop(_serve(config))
        if args.command == "demo":
            from ringback.demo import run_demo

            return _run_loop(run_demo(config))
        if args.command == "migrate":
            return _run_loop(_migrate(config))
        if args.command == "court":
            return _run_loop(_court_create(config, args.name))
        if args.command == "audit":
            return _run_loop(_audit_verify(config))
    except EmbeddedPostgresError as exc:
        print(f"ringback: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ringback: {exc}", file=sys.stderr)
        return 1
    return 2


__all__ = ["main"]
