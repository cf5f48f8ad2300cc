"""What the fault tests share: a real `ringback serve` subprocess on loopback, a PostgreSQL
killed with SIGKILL like a crashed host would, and the seeding they start from."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from ringback.registry.embedded import EmbeddedPostgres


def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP right now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def tone(hz: float, seconds: float) -> bytes:
    """8 kHz 16-bit mono PCM of a sine tone: a recording with audio a test can tell apart."""
    t = np.arange(int(8000 * seconds)) / 8000
    return (0.3 * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2").tobytes()


# ------------------------------------------------------------------ PostgreSQL crashes
def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def postmaster_pid(server: EmbeddedPostgres) -> int:
    return int((server.pgdata / "postmaster.pid").read_text().split()[0])


def kill_postmaster(server: EmbeddedPostgres) -> None:
    """SIGKILL the postmaster, as a crash would, then wait until its orphaned backends
    notice and exit (PostgreSQL refuses to start again while they hold shared memory)."""
    pid = postmaster_pid(server)
    backends = children(pid)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in [pid, *backends]):
        if time.monotonic() > deadline:  # stragglers: a crash would not wait either
            for p in backends:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
        time.sleep(0.05)
    # The dead postmaster is reparented to PID 1, which in a container may leave it a
    # zombie for a while; pg_ctl and postgres would take the zombie's PID in the lock
    # files for a live server. The process is gone: its lock files go too.
    for lock in ("postmaster.pid", ".s.PGSQL.5432.lock"):
        (server.socket_dir / lock).unlink(missing_ok=True)


# ------------------------------------------------------------------ ringback serve
@dataclass
class Node:
    """One `ringback serve` process on loopback; output in `log_path`."""

    proc: subprocess.Popen[bytes]
    sip_port: int
    http_port: int
    log_path: Path
    config_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL, as a crashed host or the OOM killer would."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    async def get(self, path: str) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(self.url + path, timeout=aiohttp.ClientTimeout(total=10)) as response,
        ):
            return response.status, await response.json(content_type=None)

    async def metrics(self) -> dict[str, float]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(self.url + "/metrics", timeout=aiohttp.ClientTimeout(total=10)) as r,
        ):
            text = await r.text()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[key] = float(value)
        return out

    async def wait_until(self, what: str, check: Any, timeout: float = 30.0) -> None:
        """Poll the async predicate `check()` until true, or fail naming `what`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"ringback exited ({self.proc.returncode}):\n{self.log()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                if await check():
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()[-3000:]}")

    async def wait_ready(self, timeout: float = 30.0) -> None:
        async def ready() -> bool:
            return (await self.get("/readyz"))[0] == 200

        await self.wait_until("/readyz 200", ready, timeout)


def start_node(
    workdir: Path,
    database_url: str,
    *,
    extra_toml: str = "",
    sip_port: int | None = None,
    http_port: int | None = None,
    name: str = "node",
    args: tuple[str, ...] = (),
) -> Node:
    """`ringback serve` on `database_url` with its cache in `workdir/cache`; returns once
    it listens (not necessarily ready: the database may be down)."""
    workdir.mkdir(parents=True, exist_ok=True)
    sip_port = sip_port or free_port()
    http_port = http_port or free_port()
    config = workdir / f"{name}.toml"
    config.write_text(
        f"[database]\nurl = '{database_url}'\nconnect_timeout_s = 2.0\n"
        f"data_dir = '{workdir / 'data'}'\n"
        f"[sip]\nport = {sip_port}\n"
        f"[http]\nport = {http_port}\n"
        "[index]\nheartbeat_s = 0.2\n"
        "[listings]\nnotice_period_days = 0\n"
        f"[cache]\ndir = '{workdir / 'cache'}'\npoll_s = 1.0\n"
        "[events]\nenabled = false\n"
        "[announcement]\ngap_ms = 0\n"
        "[log]\nformat = 'json'\n" + extra_toml
    )
    log_path = workdir / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ringback", "serve", "--config", str(config), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    node = Node(proc, sip_port, http_port, log_path, config)
    deadline = time.monotonic() + 30
    while not re.search(r"HTTPS? listening", node.log()):
        if proc.poll() is not None or time.monotonic() > deadline:
            node.kill()
            raise AssertionError(f"ringback serve did not start:\n{node.log()}")
        time.sleep(0.05)
    return node


async def api(
    node: Node, method: str, path: str, token: str, body: Any = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method,
            node.url + path,
            json=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=15),
        ) as response,
    ):
        text = await response.text()
        return response.status, json.loads(text) if text else {}
