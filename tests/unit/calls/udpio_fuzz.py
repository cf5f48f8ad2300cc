"""Drive the batched UDP I/O (src/ringback/_udpio.c) with random datagrams, batch sizes and
destinations, good and bad, checking every answer (run as a script by
test_fastsip_sanitizers.py, in a process with AddressSanitizer and UBSan preloaded)."""

from __future__ import annotations

import random
import select
import socket
import sys

from ringback import _udpio

BAD = [("localhost", 5060), ("::1", 5060), ("127.0.0.1", 70000), ("127.0.0.1", -1), ("", 0)]


def main(seed: int, rounds: int) -> None:
    rnd = random.Random(seed)
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for sock in (a, b):
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    a.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_TIMESTAMPNS", 35), 1)
    to_a = a.getsockname()
    received = 0
    for _ in range(rounds):
        count = rnd.randint(1, 70)
        sizes = [rnd.choice((0, 1, 4, 700, rnd.randint(0, 65507))) for _ in range(count)]
        messages: list[tuple[bytes, tuple[str, int]]] = []
        expected_fail = []
        for i, size in enumerate(sizes):
            if rnd.random() < 0.1:
                messages.append((b"x", rnd.choice(BAD)))
                expected_fail.append(i)
            else:
                messages.append((rnd.randbytes(size), to_a))
        failures = _udpio.send_batch(b.fileno(), socket.AF_INET, messages) or []
        assert [i for i, _ in failures] == expected_fail, failures
        want = [m for i, m in enumerate(messages) if i not in expected_fail]
        got: list[bytes] = []
        while len(got) < len(want):
            assert select.select([a], [], [], 2)[0], (len(got), len(want))
            batch = _udpio.recv_batch(a.fileno(), rnd.randint(1, 64), rnd.random() < 0.5)
            for data, host, port, stamp in batch:
                assert (host, port) == b.getsockname() and stamp >= 0.0
                got.append(data)
        assert got == [data for data, _ in want]
        received += len(got)
    print("received", received)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
