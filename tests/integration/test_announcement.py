"""A listed number through the real service: 183 + RTP of the court's audio, then 302."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import resource
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from ringback.config import load_config
from ringback.media.g711 import alaw_decode, ulaw_decode
from ringback.registry.common import Principal
from ringback.server import Service
from ringback.sip.message import parse_message
from ringback.sip.model import Response
from ringback.sip.sdp import parse_sdp

WHO = Principal("test", "operator")
LISTED = "+8613800138000"
SECONDS = 1.5


def tone(seconds: float, freq: float = 440.0) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000
    # a rising chirp, so that alignment by cross-correlation is unambiguous
    wave = 0.4 * np.sin(2 * np.pi * (freq + 300 * t) * t)
    return (wave * 32767).astype("<i2").tobytes()


@pytest.fixture
async def service(database: str) -> AsyncIterator[tuple[Service, bytes]]:
    config = load_config(None, env={})
    config.database.url = database
    config.http.port = 0
    config.sip.port = 0
    config.index.heartbeat_s = 0.2
    config.announcement.gap_ms = 0
    config.announcement.rtp_port_min = 31000
    config.announcement.rtp_port_max = 31999
    service = Service(config)
    await service.start()
    store = service.store
    court, _, _ = await store.courts.create("Announcing Court", WHO)
    pcm = tone(SECONDS)
    recording = await store.recordings.add(court["id"], "chirp", pcm, WHO)
    now = datetime.now(UTC)
    await store.listings.put(
        court["id"],
        int(LISTED[1:]),
        "CASE-1",
        now + timedelta(days=1),
        WHO,
        effective_at=now - timedelta(seconds=5),
        recording_id=recording["id"],
    )
    for _ in range(200):
        if service.sync.loaded and service.index.get(int(LISTED[1:])) is not None:
            break
        await asyncio.sleep(0.02)
    yield service, pcm
    await service.stop()


@dataclass
class Caller:
    """A minimal UAC with its own RTP socket: enough to see the bytes on the wire."""

    sip_port: int
    sip: socket.socket = field(init=False)
    rtp: socket.socket = field(init=False)
    packets: list[tuple[float, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind(("127.0.0.1", 0))
        self.sip.setblocking(False)
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp.setblocking(False)
        asyncio.get_running_loop().add_reader(self.rtp.fileno(), self._rtp_in)

    def _rtp_in(self) -> None:
        while True:
            try:
                data = self.rtp.recv(2048)
            except BlockingIOError:
                return
            self.packets.append((time.monotonic(), data))

    @property
    def rtp_port(self) -> int:
        return int(self.rtp.getsockname()[1])

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.rtp.fileno())
        self.sip.close()
        self.rtp.close()

    def invite(
        self, number: str, *, codecs: str = "8 0 101", extra: str = "", branch: str = "z9hG4bK-inv1"
    ) -> bytes:
        local = self.sip.getsockname()[1]
        sdp = (
            "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {self.rtp.getsockname()[1]} RTP/AVP {codecs}\r\n"
            "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
        ).encode()
        return (
            f"INVITE sip:{number}@127.0.0.1:{self.sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=c1\r\n"
            f"To: <sip:{number}@127.0.0.1>\r\nCall-ID: {branch}@test\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:caller@127.0.0.1:{local}>\r\n{extra}"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n"
        ).encode() + sdp

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendto(self.sip, data, ("127.0.0.1", self.sip_port))

    async def response(self, timeout: float = 5.0) -> Response:
        data = await asyncio.wait_for(
            asyncio.get_running_loop().sock_recv(self.sip, 65535), timeout
        )
        message = parse_message(data)
        assert isinstance(message, Response)
        return message


def decoded(packets: list[tuple[float, bytes]], payload_type: int) -> np.ndarray:
    payloads = [p[12:] for _, p in packets]
    assert all(p[1] & 0x7F == payload_type for _, p in packets)
    data = b"".join(payloads)
    return (alaw_decode(data) if payload_type == 8 else ulaw_decode(data)).astype(np.float64)


def correlation(received: np.ndarray, reference_pcm: bytes) -> float:
    ref = np.frombuffer(reference_pcm, "<i2").astype(np.float64)
    n = min(len(ref), len(received))
    a, b = received[:n], ref[:n]
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


async def test_listed_number_hears_the_courts_recording_then_302(
    service: tuple[Service, bytes],
) -> None:
    svc, pcm = service
    caller = Caller(svc.sip_port)
    try:
        await caller.send(caller.invite(LISTED))
        first = await caller.response()
        if first.status == 100:
            first = await caller.response()
        assert first.status == 183
        assert first.headers.get("Contact") == f"<sip:127.0.0.1:{svc.sip_port}>"
        answer = parse_sdp(first.body)
        media = answer.media[0]
        # PCMA: the offer's first preference; its telephone-event offered back (RFC 4733)
        assert media.formats == ["8", "101"]
        assert answer.direction_of(media) == "sendonly"
        assert media.ptime == 20
        final = await caller.response(timeout=SECONDS + 3)
        assert final.status == 302
        assert final.headers.get("X-Ringback-Warning") == "played"
        assert final.headers.get("Contact") == f"<sip:{LISTED}@127.0.0.1:{svc.sip_port};rbk>"
        assert final.to_tag == first.to_tag  # one dialog
        await asyncio.sleep(0.1)
        packets = caller.packets
        headers = [p[:12] for _, p in packets]
        assert len(packets) == round(SECONDS / 0.02)  # every frame, none lost
        seqs = [int.from_bytes(h[2:4], "big") for h in headers]
        assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))
        stamps = [int.from_bytes(h[4:8], "big") for h in headers]
        assert all((b - a) % 2**32 == 160 for a, b in itertools.pairwise(stamps))
        assert headers[0][1] & 0x80 and not any(h[1] & 0x80 for h in headers[1:])
        duration = packets[-1][0] - packets[0][0]
        assert abs(duration - (SECONDS - 0.02)) < 0.1
        assert correlation(decoded(packets, 8), pcm) > 0.95
    finally:
        caller.close()
    for _ in range(50):
        rows = await svc.pool.fetch("SELECT outcome, codec, caller FROM announcements")
        if rows:
            break
        await asyncio.sleep(0.1)
    assert [(r["outcome"], r["codec"], r["caller"]) for r in rows] == [("completed", "PCMA", None)]


async def test_cancel_mid_warning_stops_rtp_within_a_frame(service: tuple[Service, bytes]) -> None:
    svc, _ = service
    caller = Caller(svc.sip_port)
    try:
        invite = caller.invite(LISTED, codecs="0 8", branch="z9hG4bK-cancel")
        await caller.send(invite)
        response = await caller.response()
        while response.status != 183:
            response = await caller.response()
        assert parse_sdp(response.body).media[0].formats == ["0"]
        early_at = time.monotonic()
        await asyncio.sleep(0.5)
        local = caller.sip.getsockname()[1]
        cancel = (
            f"CANCEL sip:{LISTED}@127.0.0.1:{svc.sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-cancel;rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=c1\r\n"
            f"To: <sip:{LISTED}@127.0.0.1>\r\nCall-ID: z9hG4bK-cancel@test\r\n"
            "CSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        await caller.send(cancel)
        sent_at = time.monotonic()
        statuses = {(await caller.response()).status, (await caller.response()).status}
        assert statuses == {200, 487}
        await asyncio.sleep(0.3)
        after = [t for t, _ in caller.packets if t > sent_at + 0.02]
        assert after == []  # nothing more than one frame after the CANCEL
        # Paced at 20 ms, not burst: as many packets as the time the warning played allows
        # (the sleep above may take longer on a busy machine), and no fewer than 0.3 s' worth.
        played_s = sent_at - early_at
        assert 15 <= len(caller.packets) <= played_s / 0.020 + 3, played_s
    finally:
        caller.close()
    for _ in range(50):
        outcome = await svc.pool.fetchval("SELECT outcome FROM announcements")
        if outcome:
            break
        await asyncio.sleep(0.1)
    assert outcome == "cancelled"


async def test_require_100rel_gets_reliable_183_and_prack_200(
    service: tuple[Service, bytes],
) -> None:
    svc, _ = service
    caller = Caller(svc.sip_port)
    try:
        await caller.send(
            caller.invite(
                LISTED, extra="Require: 100rel\r\nSupported: 100rel\r\n", branch="z9hG4bK-rel"
            )
        )
        response = await caller.response()
        while response.status != 183:
            response = await caller.response()
        rseq = response.headers.get("RSeq")
        assert rseq is not None and "100rel" in (response.headers.get("Require") or "")
        # Unacknowledged, the reliable 183 is retransmitted after T1.
        again = await caller.response(timeout=1.0)
        assert again.status == 183 and again.headers.get("RSeq") == rseq
        local = caller.sip.getsockname()[1]
        prack = (
            f"PRACK sip:{LISTED}@127.0.0.1:{svc.sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-prack;rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=c1\r\n"
            f"To: {response.headers.get('To')}\r\nCall-ID: z9hG4bK-rel@test\r\n"
            f"CSeq: 2 PRACK\r\nRAck: {rseq} 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        await caller.send(prack)
        statuses = []
        deadline = time.monotonic() + SECONDS + 3
        while 302 not in statuses and time.monotonic() < deadline:
            statuses.append((await caller.response(timeout=SECONDS + 3)).status)
        assert 200 in statuses and statuses[-1] == 302
    finally:
        caller.close()


async def test_listed_number_without_sdp_offer_fails_open(service: tuple[Service, bytes]) -> None:
    svc, _ = service
    caller = Caller(svc.sip_port)
    try:
        invite = caller.invite(LISTED, branch="z9hG4bK-nosdp")
        head = invite.split(b"\r\n\r\n")[0].replace(b"Content-Type: application/sdp\r\n", b"")
        head = head.rsplit(b"Content-Length:", 1)[0] + b"Content-Length: 0"
        await caller.send(head + b"\r\n\r\n")
        response = await caller.response()
        assert response.status == 302
        assert response.headers.get("X-Ringback-Warning") == "skipped; reason=listed_no_sdp"
        assert caller.packets == []
    finally:
        caller.close()


async def test_no_common_codec_fails_open(service: tuple[Service, bytes]) -> None:
    svc, _ = service
    caller = Caller(svc.sip_port)
    try:
        invite = caller.invite(LISTED, codecs="18 101", branch="z9hG4bK-g729")
        await caller.send(invite.replace(b"a=rtpmap:0 PCMU/8000\r\n", b"a=rtpmap:18 G729/8000\r\n"))
        response = await caller.response()
        assert response.status == 302
        assert response.headers.get("X-Ringback-Warning") == "skipped; reason=listed_no_codec"
        await asyncio.sleep(0.2)
        assert caller.packets == []
    finally:
        caller.close()


async def test_announcement_capacity_reached_fails_open(service: tuple[Service, bytes]) -> None:
    svc, _ = service
    assert svc.controller is not None
    svc.controller.max_warnings = 1
    first, second = Caller(svc.sip_port), Caller(svc.sip_port)
    try:
        await first.send(first.invite(LISTED, branch="z9hG4bK-cap1"))
        response = await first.response()
        while response.status != 183:
            response = await first.response()
        await second.send(second.invite(LISTED, branch="z9hG4bK-cap2"))
        response = await second.response()
        assert response.status == 302
        assert response.headers.get("X-Ringback-Warning") == "skipped; reason=listed_capacity"
        assert (await first.response(timeout=SECONDS + 3)).status == 302  # the first one plays
    finally:
        first.close()
        second.close()
    text = svc.metrics.render()
    assert 'ringback_sip_decisions_total{outcome="listed_capacity"} 1' in text
    assert 'ringback_sip_decisions_total{outcome="announced"} 1' in text


async def test_spoofed_rtp_from_another_address_does_not_move_the_warning(
    service: tuple[Service, bytes],
) -> None:
    svc, pcm = service
    caller = Caller(svc.sip_port)
    spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spoofer.bind(("127.0.0.2", 0))  # another host on the loopback network
    caller_rtp = f"127.0.0.1:{caller.rtp_port}"
    spoofer.setblocking(False)
    try:
        await caller.send(caller.invite(LISTED, branch="z9hG4bK-spoof"))
        early = await caller.response()
        while early.status != 183:
            early = await caller.response()
        our_port = parse_sdp(early.body).media[0].port
        rtp_packet = bytes([0x80, 8]) + b"\x00" * 10 + b"\xd5" * 160
        for _ in range(5):  # what an attacker who guessed the port sends
            spoofer.sendto(rtp_packet, ("127.0.0.1", our_port))
            await asyncio.sleep(0.02)
        final = await caller.response(timeout=SECONDS + 3)
        assert final.headers.get("X-Ringback-Warning") == "played"
        await asyncio.sleep(0.1)
        with pytest.raises(BlockingIOError):
            spoofer.recv(2048)  # not one packet went to the spoofer
        assert len(caller.packets) == round(SECONDS / 0.02)  # the caller heard all of it
        assert correlation(decoded(caller.packets, 8), pcm) > 0.95
    finally:
        caller.close()
        spoofer.close()
    assert svc.pacer is not None and svc.pacer.latch_refused >= 5
    for _ in range(50):
        rows = await svc.pool.fetch("SELECT outcome, media_destination FROM announcements")
        if rows:
            break
        await asyncio.sleep(0.1)
    assert [(r["outcome"], r["media_destination"]) for r in rows] == [("completed", caller_rtp)]


async def test_a_warning_that_cannot_get_a_socket_still_gets_its_302_at_once(
    service: tuple[Service, bytes],
) -> None:
    """Out of file descriptors (a tiny `ulimit -n`): the RTP socket cannot be made."""
    svc, _ = service
    callers = [Caller(svc.sip_port) for _ in range(2)]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.dup(0)  # the lowest free descriptor number
    os.close(lowest_free)
    fillers: list[int] = []
    try:
        # No new fd at all: a limit just above what is open, and every free number below
        # it taken (the service's own threads and tasks open and close files meanwhile,
        # e.g. its index snapshot, so a number freed before this point must not be left).
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free + 8, hard))
        with contextlib.suppress(OSError):
            while True:
                fillers.append(os.dup(0))
        await callers[0].send(callers[0].invite(LISTED, branch="z9hG4bK-nofd"))
        response = await callers[0].response(timeout=2)
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert response.status == 302
        assert response.headers.get("X-Ringback-Warning") == "skipped; reason=listed_start_failed"
        # and the next call, with descriptors back, is warned as usual
        await callers[1].send(callers[1].invite(LISTED, branch="z9hG4bK-after"))
        early = await callers[1].response()
        while early.status == 100:
            early = await callers[1].response()
        assert early.status == 183
    finally:
        for caller in callers:
            caller.close()
