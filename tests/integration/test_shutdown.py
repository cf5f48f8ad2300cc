"""SIGTERM drains `ringback serve`: no INVITE is left without its final response."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from datetime import UTC, datetime, timedelta

import aiohttp
import numpy as np

from ringback.registry.common import Principal
from ringback.registry.store import Store
from ringback.sip.message import parse_message
from ringback.sip.model import Response

LISTED = 8613800138000
WARNING_S = 4.0


def invite(sip_port: int, local_port: int, branch: str, rtp_port: int) -> bytes:
    sdp = (
        "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()
    return (
        f"INVITE sip:+{LISTED}@127.0.0.1:{sip_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=f\r\n"
        f"To: <sip:+{LISTED}@127.0.0.1>\r\nCall-ID: {branch}\r\nCSeq: 1 INVITE\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n"
    ).encode() + sdp


async def responses_until_final(sock: socket.socket, timeout: float) -> list[Response]:
    loop = asyncio.get_running_loop()
    out: list[Response] = []
    while not out or out[-1].status < 200:
        message = parse_message(await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout))
        assert isinstance(message, Response)
        out.append(message)
    return out


async def test_sigterm_with_warnings_in_flight(store: Store, database: str) -> None:
    who = Principal("test", "operator")
    court, _, _ = await store.courts.create("Draining Court", who)
    t = np.arange(int(8000 * WARNING_S)) / 8000
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes()
    recording = await store.recordings.add(court["id"], "long", pcm, who)
    now = datetime.now(UTC)
    await store.listings.put(
        court["id"],
        LISTED,
        "CASE-TERM",
        now + timedelta(days=1),
        who,
        effective_at=now - timedelta(seconds=5),
        recording_id=recording["id"],
    )
    env = {
        **os.environ,
        "RINGBACK_DATABASE_URL": database,
        "RINGBACK_SIP_PORT": "0",
        "RINGBACK_HTTP_PORT": "0",
        "RINGBACK_ANNOUNCEMENT_GAP_MS": "0",
        "RINGBACK_SHUTDOWN_DRAIN_S": "1.0",
        "RINGBACK_LOG_FORMAT": "text",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ringback",
        "serve",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    socks = []
    try:
        assert proc.stderr is not None
        port = http_port = 0
        while not (port and http_port):
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, "ringback serve exited before listening"
            if found := re.search(r"SIP listening on .* port (\d+)", line):
                port = int(found.group(1))
            if found := re.search(r"HTTP listening on [^ ]*:(\d+)", line):
                http_port = int(found.group(1))
        async with aiohttp.ClientSession() as http:
            for _ in range(100):  # ready: the index is loaded and current
                async with http.get(f"http://127.0.0.1:{http_port}/readyz") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        calls = []
        for i in range(3):  # three warnings playing
            sip, rtp = (
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
            )
            for s in (sip, rtp):
                s.bind(("127.0.0.1", 0))
                s.setblocking(False)
            socks += [sip, rtp]
            branch = f"z9hG4bK-term{i}"
            sip.sendto(
                invite(port, sip.getsockname()[1], branch, rtp.getsockname()[1]),
                ("127.0.0.1", port),
            )
            first = parse_message(await asyncio.wait_for(loop.sock_recv(sip, 65535), 5))
            assert isinstance(first, Response) and first.status in (100, 183)
            calls.append(sip)
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        started = loop.time()
        # A new call during the drain: redirected at once, unwarned.
        late = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        late.bind(("127.0.0.1", 0))
        late.setblocking(False)
        socks.append(late)
        await asyncio.sleep(0.1)
        late.sendto(invite(port, late.getsockname()[1], "z9hG4bK-late", 40000), ("127.0.0.1", port))
        [late_final] = await responses_until_final(late, 2)
        assert late_final.status == 302
        assert late_final.headers.get("X-Ringback-Warning") == "skipped; reason=listed_draining"
        # Every held call gets its final 302 when the drain limit (1 s) runs out.
        for sip in calls:
            final = (await responses_until_final(sip, 5))[-1]
            assert final.status == 302
            assert final.headers.get("X-Ringback-Warning") == "skipped; reason=shutdown"
        assert loop.time() - started < WARNING_S  # the drain limit, not the warning's end
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        for s in socks:
            s.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    rows = await store.pool.fetch("SELECT outcome FROM announcements")
    assert sorted(r["outcome"] for r in rows) == ["cancelled"] * 3  # proof of play flushed
