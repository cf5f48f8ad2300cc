"""A real PostgreSQL primary and a streaming hot standby from the embedded binaries.

`pg_basebackup -R` copies the primary over its Unix socket and writes the standby's
`primary_conninfo` and `standby.signal`; the standby then starts as a read-only hot
standby replaying the primary's WAL (it refuses LISTEN, as production replicas do).
"""

from __future__ import annotations

import os
from pathlib import Path

from ringback.registry.embedded import PORT, EmbeddedPostgres, EmbeddedPostgresError


def start_pair(workdir: Path) -> tuple[EmbeddedPostgres, EmbeddedPostgres]:
    """(primary, standby), both started; stop them with ``.stop()``."""
    primary = EmbeddedPostgres(workdir / "primary")
    primary.start()
    standby = EmbeddedPostgres(workdir / "standby")
    standby._prepare()  # the folder, owned by the service user when we are root
    done = primary._run(
        "pg_basebackup",
        "-D",
        str(standby.pgdata),
        "-R",
        "-X",
        "stream",
        "-c",
        "fast",
        "-d",
        f"host={primary.socket_dir} port={PORT} user=postgres",
        timeout=120,
    )
    if done.returncode != 0:
        primary.stop()
        raise EmbeddedPostgresError(f"pg_basebackup failed: {done.stderr.strip()[-500:]}")
    os.chmod(standby.pgdata, 0o700)
    # The primary's socket lives in its data folder: the copy carries its lock file (and
    # the primary's log), which would make the standby think a server is running there.
    for name in (f".s.PGSQL.{PORT}.lock", "server.log", "postmaster.opts"):
        (standby.pgdata / name).unlink(missing_ok=True)
    standby.start()  # with its own -k: it listens in its own folder
    return primary, standby
