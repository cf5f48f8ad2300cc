"""Feed the compiled SIP scan randomly cut, spliced and salted messages (run as a script by
test_fastsip_sanitizers.py, in a process with AddressSanitizer and UBSan preloaded)."""

from __future__ import annotations

import random
import sys

from ringback import _fastsip

INVITE = (
    b"INVITE sip:+4930123456@192.0.2.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-a1;rport\r\nMax-Forwards: 70\r\n"
    b'From: "Alice" <sip:alice@192.0.2.10>;tag=f1\r\nTo: <sip:+4930123456@192.0.2.1:5060>\r\n'
    b"Call-ID: abc@192.0.2.10\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.10:5070>\r\n"
    b"X-New: 1\r\nContent-Length: 0\r\n\r\n"
)
ACK = (
    b"ACK sip:+4930123456@192.0.2.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK-x;rport;received=1.2.3.4\r\n"
    b"Call-ID: x\r\nCSeq: 1 ACK\r\n\r\n"
)
SALT = b';:=,\r\n \t<>@"\\x0z9[]\x00\xff'


def mutate(rnd: random.Random, data: bytes) -> bytes:
    d = bytearray(data)
    for _ in range(rnd.randint(1, 6)):
        op = rnd.random()
        if op < 0.3 and d:
            start = rnd.randrange(len(d))
            del d[start : start + rnd.randint(1, 40)]
        elif op < 0.6:
            pos = rnd.randrange(len(d) + 1)
            d[pos:pos] = bytes(rnd.choice(SALT) for _ in range(rnd.randint(1, 8)))
        elif op < 0.8 and d:
            del d[rnd.randrange(len(d)) :]
        else:
            a, b = sorted((rnd.randrange(len(d) + 1), rnd.randrange(len(d) + 1)))
            d = d[:a] + d[b:] + d[a:b]
    return bytes(d)


def main() -> None:
    seed, count = int(sys.argv[1]), int(sys.argv[2])
    rnd = random.Random(seed)
    names: dict[bytes, str | None] = {b"Contact": None, b"X-New": None}
    accepted = 0
    for i in range(count):
        data = mutate(rnd, INVITE if i % 3 else ACK)
        answer = _fastsip.scan_invite(
            data, "192.0.2.10", 5070, bool(i & 1), 65535, 128, 8192, names
        )
        _fastsip.ack_key(data)
        cut = rnd.randrange(len(data) + 1)
        tag = _fastsip.derived_tag(data[:16].ljust(16, b"k"), data[:cut], data[cut:])
        assert len(tag) == 12, tag
        accepted += isinstance(answer, tuple)
    print(f"fuzzed {count} accepted {accepted}")


if __name__ == "__main__":
    main()
