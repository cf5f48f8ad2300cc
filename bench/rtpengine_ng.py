"""rtpengine for the relay benchmark: the daemon (Debian 12 package `rtpengine-daemon`
10.5, userspace forwarding only: ``--table=-1``, no kernel module) and a minimal client of
its ng control protocol (bencoded dictionaries over UDP, each prefixed with a cookie),
blocking, for the bench's own set-up (ringback's is :mod:`ringback.net.rtpengine`).

    daemon = start_rtpengine(processes, workdir, cpu=0)
    ng = NgClient(daemon.ng)
    offer = ng.command("offer", {"call-id": "c1", "from-tag": "a", "sdp": caller_sdp})
    answer = ng.command("answer", {"call-id": "c1", "from-tag": "a", "to-tag": "b",
                                   "sdp": callee_sdp})
    ng.command("delete", {"call-id": "c1"})
"""

from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from call_peers import LOCALHOST, harness

from ringback.net.rtpengine import NgError, bdecode, bencode


class NgClient:
    """Blocking ng requests (the bench sets calls up one by one; not for a service)."""

    def __init__(self, address: tuple[str, int], timeout: float = 2.0) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(timeout)

    def command(self, name: str, args: dict[str, Any] | None = None) -> dict[bytes, Any]:
        cookie = secrets.token_hex(6).encode()
        self.sock.sendto(cookie + b" " + bencode({"command": name, **(args or {})}), self.address)
        while True:
            data, _ = self.sock.recvfrom(65535)
            got, _, body = data.partition(b" ")
            if got == cookie:
                break
        reply = bdecode(body)
        if reply.get(b"result") not in (b"ok", b"pong"):
            raise NgError(f"{name}: {reply}")
        return dict(reply)

    def close(self) -> None:
        self.sock.close()


@dataclass
class Rtpengine:
    ng: tuple[str, int]
    process: harness.ManagedProcess

    @property
    def pid(self) -> int:
        return self.process.pid


def start_rtpengine(
    processes: harness.ProcessSet,
    workdir: Path,
    *,
    cpu: int | None,
    port_min: int = 10000,  # below the kernel's ephemeral range (32768-60999), where the
    port_max: int = 19999,  # bench's own sockets are; ringback's RTP range is 20000-29999
    threads: int = 1,
    rt: bool = False,
) -> Rtpengine:
    """The rtpengine daemon in the foreground on 127.0.0.1, userspace only."""
    binary = harness.require_binary("rtpengine", "rtpengine-daemon")
    port = harness.free_port("udp")
    argv = [
        binary,
        "--config-file=none",
        "--table=-1",  # no kernel forwarding table: userspace only
        f"--interface={LOCALHOST}",
        f"--listen-ng={LOCALHOST}:{port}",
        f"--port-min={port_min}",
        f"--port-max={port_max}",
        f"--num-threads={threads}",
        "--endpoint-learning=immediate",  # with ringback's "strict source": no take-over
        "--delete-delay=0",  # a deleted call's ports come back at once (default: 30 s)
        "--foreground",
        "--log-stderr",
        "--log-level=4",
        f"--pidfile={workdir / 'rtpengine.pid'}",
    ]
    if rt:
        argv = [harness.require_binary("chrt", "util-linux"), "-r", "10", *argv]
    proc = processes.start("rtpengine", argv, log_path=workdir / "rtpengine.log", cpu=cpu)
    client = NgClient((LOCALHOST, port), timeout=0.2)
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            if not proc.alive():
                break
            try:
                client.command("ping")
                return Rtpengine((LOCALHOST, port), proc)
            except (TimeoutError, OSError):
                continue
    finally:
        client.close()
    raise harness.PeerFailed("rtpengine did not answer ping:\n" + proc.log())
