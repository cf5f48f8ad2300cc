"""The rtpengine media plane (net/rtpengine.py) against the real rtpengine daemon (Debian
package rtpengine-daemon, userspace forwarding), started by the test on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ringback.net.rtp_pacer import RtpPortPool
from ringback.net.rtpengine import NgClient, NgError, RtpengineRelay, bdecode, bencode

KEY = ("call", "1")
Address = tuple[str, int]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def rtpengine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Address]:
    """The daemon in the foreground; its ng address. Stopped by PID."""
    binary = shutil.which("rtpengine")
    if binary is None:
        pytest.fail(
            "`rtpengine` is not installed: apt-get install -y rtpengine-daemon", pytrace=False
        )
    workdir = tmp_path_factory.mktemp("rtpengine")
    port = free_udp_port()
    argv = [
        binary,
        "--config-file=none",
        "--table=-1",
        "--interface=127.0.0.1",
        f"--listen-ng=127.0.0.1:{port}",
        "--port-min=37000",
        "--port-max=37999",
        "--num-threads=1",
        "--endpoint-learning=immediate",  # with the strict source flag: no take-over
        "--foreground",
        "--log-stderr",
        f"--pidfile={workdir / 'pid'}",
    ]
    log = open(workdir / "rtpengine.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.settimeout(0.2)
            for _ in range(50):
                assert proc.poll() is None, (workdir / "rtpengine.log").read_text()
                probe.sendto(b"p1 d7:command4:pinge", ("127.0.0.1", port))
                try:
                    if probe.recv(100) == b"p1 d6:result4:ponge":
                        break
                except TimeoutError:
                    continue
            else:
                pytest.fail("rtpengine did not answer ping:\n" + Path(log.name).read_text())
        yield ("127.0.0.1", port)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


@pytest.fixture
async def relay(rtpengine: Address) -> AsyncIterator[RtpengineRelay]:
    ng = NgClient(rtpengine)
    await ng.start()
    relay = RtpengineRelay({4: RtpPortPool("127.0.0.1", 38000, 38999)}, ng)
    yield relay
    relay.close_all()
    await relay.drain()
    ng.close()


def rtp(seq: int, ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + b"\xff" * 160


def peer() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2.0)
    return s


def addr(s: socket.socket) -> Address:
    host, port = s.getsockname()
    return host, port


async def heard(s: socket.socket, ssrc: int) -> bytes:
    """The next packet of ``ssrc`` on ``s`` (others are skipped)."""
    while True:
        data = await asyncio.to_thread(s.recv, 2048)
        if struct.unpack("!I", data[8:12])[0] == ssrc:
            return data


def test_bencode_round_trip() -> None:
    value = {"command": "offer", "flags": ["a", "b"], "n": 3, "sdp": b"v=0\r\n"}
    encoded = bencode(value)
    assert encoded == b"d7:command5:offer5:flagsl1:a1:be1:ni3e3:sdp5:v=0\r\ne"
    assert bdecode(encoded) == {b"command": b"offer", b"flags": [b"a", b"b"], b"n": 3,
                                b"sdp": b"v=0\r\n"}  # fmt: skip
    for bad in (b"d3:abc", b"5:ab", b"i3", b"l1:a", b"d1:ai1ee trailing"):
        with pytest.raises(ValueError):
            bdecode(bad)


async def test_warning_then_bridged_media_through_rtpengine(relay: RtpengineRelay) -> None:
    caller, callee = peer(), peer()
    caller_side, callee_side = await relay.open(KEY, (addr(caller),), 4)
    assert caller_side[0] == callee_side[0] == "127.0.0.1"
    assert caller_side[1] != callee_side[1]
    # Ringing: the warning goes out of ringback's socket, through rtpengine, to the caller.
    warning = relay.caller_socket(KEY)
    assert warning is not None
    (to,) = relay.warning_destinations(KEY, (addr(caller),))
    assert to == callee_side
    warning.sock.sendto(rtp(1, 0xAAAA), to)
    assert await heard(caller, 0xAAAA) == rtp(1, 0xAAAA)
    # Answered: the callee's RTP reaches the caller and the caller's reaches the callee.
    assert relay.bridge(KEY, (addr(caller),), None, (addr(callee),))
    await relay.drain()
    for seq in range(3):
        caller.sendto(rtp(seq, 0x1111), caller_side)
        assert await heard(callee, 0x1111) == rtp(seq, 0x1111)
        callee.sendto(rtp(seq, 0x2222), callee_side)
        assert await heard(caller, 0x2222) == rtp(seq, 0x2222)
    relay.close(KEY)
    await relay.drain()
    assert KEY not in relay.sessions
    assert relay.packets_relayed >= 7  # rtpengine's own count, from the delete's totals


async def test_a_third_party_can_neither_inject_nor_take_the_call_over(
    relay: RtpengineRelay,
) -> None:
    caller, callee = peer(), peer()
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    intruder.bind(("127.0.0.2", 0))
    intruder.settimeout(0.5)
    caller_side, callee_side = await relay.open(KEY, (addr(caller),), 4)
    relay.bridge(KEY, (addr(caller),), None, (addr(callee),))
    await relay.drain()
    for seq in range(3):  # both parties are heard, so both are learned
        caller.sendto(rtp(seq, 0x1111), caller_side)
        assert await heard(callee, 0x1111) == rtp(seq, 0x1111)
        callee.sendto(rtp(seq, 0x2222), callee_side)
        assert await heard(caller, 0x2222) == rtp(seq, 0x2222)
    for seq in range(5):
        intruder.sendto(rtp(seq, 0x6666), caller_side)
    callee.sendto(rtp(9, 0x2222), callee_side)
    caller.sendto(rtp(9, 0x1111), caller_side)
    # in order on one path: the callee's next packet is the caller's, not the intruder's
    assert await heard(caller, 0x2222) == rtp(9, 0x2222)  # not taken over
    data = await asyncio.to_thread(callee.recv, 2048)
    assert data == rtp(9, 0x1111)  # nothing of the intruder's came first
    with pytest.raises(TimeoutError):
        intruder.recv(2048)


async def test_a_callee_moving_its_media_is_followed(relay: RtpengineRelay) -> None:
    caller, callee = peer(), peer()
    caller_side, _ = await relay.open(KEY, (addr(caller),), 4)
    relay.bridge(KEY, (addr(caller),), None, (addr(callee),))
    await relay.drain()
    caller.sendto(rtp(1, 0x1111), caller_side)
    assert await heard(callee, 0x1111) == rtp(1, 0x1111)
    other = peer()  # the callee moves its media to another port (re-INVITE)
    relay.move(KEY, "callee", addr(other))
    await relay.drain()
    caller.sendto(rtp(2, 0x1111), caller_side)
    assert await heard(other, 0x1111) == rtp(2, 0x1111)


async def test_an_unreachable_rtpengine_fails_within_its_timeout() -> None:
    ng = NgClient(("127.0.0.1", free_udp_port()), timeout_s=0.1)
    await ng.start()
    relay = RtpengineRelay({4: RtpPortPool("127.0.0.1", 38000, 38999)}, ng)
    pool = relay.pools[4]
    with pytest.raises(NgError):
        await asyncio.wait_for(relay.open(KEY, (("127.0.0.1", 40000),), 4), 2.0)
    assert pool.in_use == 0 and not relay.sessions  # its warning socket went back
    ng.close()
