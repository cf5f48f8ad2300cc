"""`ringback serve | demo | migrate | court create | audit verify | dial`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from tqdm import tqdm

from ringback.config import Config, ConfigError, load_config
from ringback.dial import add_parser as add_dial_parser
from ringback.dial import main as dial
from ringback.logs import setup_logging
from ringback.registry.audit import verify_chain
from ringback.registry.common import Conflict, Principal
from ringback.registry.embedded import EmbeddedPostgres, EmbeddedPostgresError
from ringback.registry.import_csv import ImportRejected
from ringback.registry.migrate import migrate_as_owner
from ringback.registry.roles import RUNTIME_LOGIN
from ringback.registry.store import Store, create_pool
from ringback.runtime import run_loop, until_signalled
from ringback.workers import WorkerRole

log = logging.getLogger("ringback")
CLI = Principal("cli", "operator")


@contextlib.asynccontextmanager
async def _store(config: Config, applied: list[str] | None = None) -> AsyncIterator[Store]:
    """A store on the configured database (embedded when no URL is set), migrated first as
    the owner role (`database.owner_url`); `applied` gets the migrations applied now."""
    embedded = None
    dsn = config.database.url
    owner = config.database.owner_url or dsn
    if not dsn:
        embedded = EmbeddedPostgres(Path(config.database.data_dir))
        dsn = owner = await asyncio.to_thread(embedded.start)
    try:
        done = await migrate_as_owner(owner, runtime_login=RUNTIME_LOGIN if embedded else None)
        if applied is not None:
            applied.extend(done)
        pool = await create_pool(dsn, min_size=1, max_size=2)
        try:
            yield Store(pool)
        finally:
            await pool.close()
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


async def _serve(config: Config, role: WorkerRole | None = None) -> int:
    # The service (HTTP app, portal, audio processing) is imported only by the commands that
    # run it: `ringback dial` and the small commands start in a fraction of a second.
    from ringback.server import Service

    service = Service(config, worker=role)
    await service.start()
    service.take_over_gc()
    try:
        await until_signalled()
        await service.drain()
    finally:
        await service.stop()
    return 0


async def _migrate(config: Config) -> int:
    applied: list[str] = []
    async with _store(config, applied):
        pass
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


async def _court_create(config: Config, name: str) -> int:
    async with _store(config) as store:
        try:
            court, token, secret = await store.courts.create(name, CLI)
        except Conflict as exc:
            print(f"ringback: {exc}", file=sys.stderr)
            return 1
    print(f"court id:       {court['id']}")
    print(f"court token:    {token}")
    print(f"webhook secret: {secret}")
    print("Both secrets are shown once only; ringback keeps the token hashed.")
    return 0


async def _court_id(store: Store, court: str) -> uuid.UUID | None:
    """The court named by id or by name (None, with a message, when there is none)."""
    try:
        row = await store.courts.get(uuid.UUID(court))
    except ValueError:
        row = await store.courts.by_name(court)
    if row is None:
        print(f"ringback: no court {court!r}", file=sys.stderr)
        return None
    court_id: uuid.UUID = row["id"]
    return court_id


async def _token_create(config: Config, role: str, court: str | None, label: str) -> int:
    if (role == "court") != (court is not None):
        print("ringback: --court is needed for role court, and only for it", file=sys.stderr)
        return 2
    async with _store(config) as store:
        court_id = None
        if court is not None:
            court_id = await _court_id(store, court)
            if court_id is None:
                return 1
        _, secret = await store.tokens.issue(role, court_id, label, CLI)
    print(f"{role} token: {secret}")
    print("Shown once only; ringback keeps the token hashed.")
    return 0


def _checkpoint(text: str) -> tuple[int, bytes]:
    """HASH@SEQ (as exported by the audit.checkpoint event) → (seq, hash)."""
    digest, _, seq = text.partition("@")
    try:
        value = bytes.fromhex(digest)
        if len(value) != 32 or not seq.isdigit():
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a checkpoint is HASH@SEQ (64 hex digits, @, the event id)"
        ) from None
    return int(seq), value


async def _audit_verify(config: Config, checkpoints: Sequence[tuple[int, bytes]] = ()) -> int:
    async with _store(config) as store, store.pool.acquire() as conn:
        result = await verify_chain(conn, checkpoints=checkpoints)
    if result.ok:
        print(f"audit trail intact: {result.rows} events, hash chain verified", end="")
        print(f"; {len(checkpoints)} checkpoint(s) match" if checkpoints else "")
        return 0
    print(f"audit trail BROKEN at event {result.first_bad_id}: {result.problem}", file=sys.stderr)
    return 1


class _ProgressBar:
    """The import's progress on stderr (tqdm): the share of the file read, rows so far, and
    the stage; redrawn in place on a terminal, about once a second otherwise."""

    def __init__(self, label: str) -> None:
        self.bar = tqdm(
            desc=label,
            total=1,
            file=sys.stderr,
            ascii=" #",
            bar_format="{desc} [{bar:30}] {percentage:3.0f}%{postfix} ({elapsed})",
            mininterval=0.1 if sys.stderr.isatty() else 1.0,
        )

    def __call__(self, stage: str, rows: int, done: int, total: int) -> None:
        if total <= 0:  # an empty file is all read
            done = total = 1
        self.bar.total = total
        self.bar.set_postfix_str(f"{rows:,} rows {stage}", refresh=False)
        self.bar.update(done - self.bar.n)
        if stage in ("loading", "done"):
            self.bar.refresh()

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


async def _import(config: Config, file: str, court: str | None, reason: str | None) -> int:
    path = Path(file)
    if not path.is_file():
        print(f"ringback: {file}: no such file", file=sys.stderr)
        return 1
    async with _store(config) as store:
        if court is None:
            rows = await store.courts.page(None, 2)
            if len(rows) != 1:
                print("ringback: give --court ID (there is not exactly one court)", file=sys.stderr)
                return 1
            court_id = rows[0]["id"]
        else:
            found = await _court_id(store, court)
            if found is None:
                return 1
            court_id = found
        job_id = await store.imports.create_job(court_id, CLI, path.name)
        try:
            with _ProgressBar(path.name) as progress:
                job = await store.imports.run(
                    job_id,
                    court_id,
                    CLI,
                    path,
                    config.import_options(reason),
                    filename=path.name,
                    progress=progress,
                )
        except ImportRejected as exc:
            print(f"ringback: {path.name}: {exc.message} (nothing was imported)", file=sys.stderr)
            return 1
    print(
        f"imported {path.name}: {job['rows_total']} rows, {job['listed']} listed, "
        f"{job['updated']} updated (import {job['id']}, sha256 {bytes(job['sha256']).hex()})"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ringback", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", "-c", metavar="PATH", help="TOML config file")
        return p

    serve = with_config(sub.add_parser("serve", help="run the service"))
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes on the same SIP and HTTP ports, one per core (default 1)",
    )
    demo = with_config(sub.add_parser("demo", help="run with a demo court and test numbers"))
    demo.add_argument("--data-dir", default="ringback-demo", help="embedded database folder")
    demo.add_argument("--sip-port", type=int, default=5060)
    demo.add_argument("--http-port", type=int, default=8080)
    demo.add_argument(
        "--mode",
        choices=("redirect", "ringback"),
        help="how listed calls go (default: the config's ringback.mode, else redirect)",
    )
    with_config(sub.add_parser("migrate", help="apply database migrations"))
    court = sub.add_parser("court", help="manage courts").add_subparsers(
        dest="action", required=True
    )
    create = with_config(court.add_parser("create", help="create a court with its first token"))
    create.add_argument("name")
    imp = with_config(sub.add_parser("import", help="bulk-list numbers from a CSV file"))
    imp.add_argument("file", help="CSV: number,case_ref,expires_at[,effective_at] with a header")
    imp.add_argument("--court", metavar="ID", help="court id or name (default: the only court)")
    imp.add_argument(
        "--effective-reason", help="why rows may start before the notice period ends (audited)"
    )
    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="action", required=True)
    token_create = with_config(token.add_parser("create", help="issue an API token (shown once)"))
    token_create.add_argument("--role", required=True, choices=("operator", "switch", "court"))
    token_create.add_argument("--court", metavar="ID|NAME", help="the court (role court)")
    token_create.add_argument("--label", default="", help="what the token is for")
    audit = sub.add_parser("audit", help="audit trail").add_subparsers(dest="action", required=True)
    verify = with_config(audit.add_parser("verify", help="check the audit trail's hash chain"))
    verify.add_argument(
        "--checkpoint",
        metavar="HASH@SEQ",
        type=_checkpoint,
        action="append",
        default=[],
        help="an exported chain head (audit.checkpoint event); the chain must still reach it "
        "(detects a chain rewritten with its hashes recomputed)",
    )
    add_dial_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "dial":
        return dial(args)
    try:
        config = load_config(args.config)
        if args.command == "demo":
            config.database.data_dir = args.data_dir
            config.sip.port = args.sip_port
            config.http.port = args.http_port
            if args.mode:
                config.ringback.mode = args.mode
    except ConfigError as exc:
        print(f"ringback: config error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log.level, config.log.format)
    try:
        if args.command == "serve":
            from ringback.workers import supervise

            role = WorkerRole.from_env()
            if role is None and args.workers > 1:
                return supervise(config, args.config, args.workers)
            return run_loop(_serve(config, role))
        if args.command == "demo":
            from ringback.demo import run_demo  # see _serve

            return run_loop(run_demo(config))
        if args.command == "migrate":
            return run_loop(_migrate(config))
        if args.command == "court":
            return run_loop(_court_create(config, args.name))
        if args.command == "import":
            return run_loop(_import(config, args.file, args.court, args.effective_reason))
        if args.command == "audit":
            return run_loop(_audit_verify(config, args.checkpoint))
        if args.command == "token":
            return run_loop(_token_create(config, args.role, args.court, args.label))
    except EmbeddedPostgresError as exc:
        print(f"ringback: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ringback: {exc}", file=sys.stderr)
        return 1
    return 2


__all__ = ["main"]
