"""RTP aimed by a spoofed SDP offer: no packet leaves for an address outside the policy.

The service runs in a network namespace this test creates (`unshare -n`), with a
non-loopback address (192.0.2.10, TEST-NET-1) put on the namespace's own `lo`: a real
address the warning could be aimed at, from which nothing can leave the namespace. The
database is reached through its Unix socket, which namespaces do not separate.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from ringback.registry.common import Principal
from ringback.registry.store import Store

LISTED = 8613800138000
VICTIM = "192.0.2.10"

CHILD = r"""
import asyncio, json, socket, sys, time
from ringback.config import load_config
from ringback.server import Service
from ringback.sip.message import parse_message
from ringback.sip.model import Response

LISTED, VICTIM = sys.argv[2], sys.argv[3]

def receiver(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, port))
    s.setblocking(False)
    return s

def drain(s):
    n = 0
    while True:
        try:
            s.recv(2048)
            n += 1
        except BlockingIOError:
            return n

def invite(sip_port, local_port, branch, c, m):
    sdp = (f"v=0\r\no=x 1 1 IN IP4 {c}\r\ns=-\r\nc=IN IP4 {c}\r\nt=0 0\r\n"
           f"m=audio {m} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n").encode()
    return (f"INVITE sip:{LISTED}@127.0.0.1:{sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=f\r\nTo: <sip:{LISTED}@127.0.0.1>\r\n"
            f"Call-ID: {branch}\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(sdp)}\r\n\r\n").encode() + sdp

async def call(svc, sip, c, m, branch):
    loop = asyncio.get_running_loop()
    data = invite(svc.sip_port, sip.getsockname()[1], branch, c, m)
    sip.sendto(data, ("127.0.0.1", svc.sip_port))
    statuses = []
    while True:
        data = await asyncio.wait_for(loop.sock_recv(sip, 65535), 10)
        r = parse_message(data)
        statuses.append(r.status)
        if r.status >= 200:
            return statuses, r.headers.get("X-Ringback-Warning")

async def main():
    config = load_config(None, env={})
    config.database.url = sys.argv[1]
    config.http.port = 0
    config.sip.port = 0
    config.announcement.gap_ms = 0
    svc = Service(config)
    await svc.start()
    for _ in range(200):
        if svc.sync.loaded and svc.index.get(int(LISTED[1:])) is not None:
            break
        await asyncio.sleep(0.02)
    sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip.bind(("127.0.0.1", 0))
    sip.setblocking(False)
    victim, victim53 = receiver(VICTIM, 40000), receiver(VICTIM, 53)
    source40000, source53 = receiver("127.0.0.1", 40000), receiver("127.0.0.1", 53)
    out = {}
    out["aimed"] = await call(svc, sip, VICTIM, 40000, "z9hG4bK-aim1")
    out["aimed_53"] = await call(svc, sip, VICTIM, 53, "z9hG4bK-aim2")
    await asyncio.sleep(0.2)
    out["victim_packets"] = drain(victim) + drain(victim53)
    out["source_packets"] = drain(source40000)
    out["source_53_packets"] = drain(source53)
    out["refused"] = svc.metrics.render().count('outcome="listed_media_destination_refused"} 1')
    await svc.stop()
    print(json.dumps(out))

asyncio.run(main())
"""


@pytest.fixture
def unshare() -> str:
    path = shutil.which("unshare")
    assert path is not None, "unshare (util-linux) is needed: apt-get install util-linux"
    return path


async def test_sdp_aimed_outside_the_policy_sends_nothing_there(
    store: Store, database: str, unshare: str
) -> None:
    who = Principal("test", "operator")
    court, _, _ = await store.courts.create("Aimed Court", who)
    pcm = b"\x00\x10" * 8000  # 1 s
    recording = await store.recordings.add(court["id"], "one second", pcm, who)
    now = datetime.now(UTC)
    await store.listings.put(
        court["id"],
        LISTED,
        "CASE-AIM",
        now + timedelta(days=1),
        who,
        effective_at=now - timedelta(seconds=5),
        recording_id=recording["id"],
    )
    script = (
        f"ip link set lo up && ip addr add {VICTIM}/32 dev lo && "
        f'exec "$0" -c "$1" "$2" "+{LISTED}" {VICTIM}'
    )
    proc = await asyncio.create_subprocess_exec(
        unshare,
        "-n",
        "sh",
        "-c",
        script,
        sys.executable,
        CHILD,
        database,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()[-3000:]
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    # Offer aimed at 192.0.2.10:40000: the warning plays, but to the INVITE's source only.
    statuses, warning = result["aimed"]
    assert statuses[-1] == 302 and 183 in statuses and warning == "played"
    assert result["source_packets"] == 50
    # Offer aimed at port 53: refused outright, the call passes unwarned, counted.
    statuses, warning = result["aimed_53"]
    assert statuses == [302]
    assert warning == "skipped; reason=listed_media_destination_refused"
    assert result["refused"] == 1
    # And not one packet reached the aimed address, nor port 53 anywhere.
    assert result["victim_packets"] == 0
    assert result["source_53_packets"] == 0
