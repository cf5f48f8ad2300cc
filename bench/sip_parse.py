"""Micro-benchmark of the SIP hot path: parse, transaction, 302.

Run: .venv/bin/python bench/sip_parse.py
"""

from __future__ import annotations

import timeit

from ringback.sip.message import parse_message
from ringback.sip.model import Request
from ringback.sip.responses import make_response
from ringback.sip.transaction import ServerTransactionLayer

SDP = (
    b"v=0\r\no=- 123456 654321 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)
HEAD = (
    "INVITE sip:+4930123456@ringback.example.net:5060;user=phone SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
    "Max-Forwards: 70\r\n"
    "To: <sip:+4930123456@ringback.example.net;user=phone>\r\n"
    'From: "Alice" <sip:+4940987654@switch.example.com;user=phone>;tag=1928301774\r\n'
    "Call-ID: a84b4c76e66710@pc33.switch.example.com\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:+4940987654@192.0.2.10:5060;transport=udp>\r\n"
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE\r\n"
    "Supported: 100rel, timer, replaces\r\n"
    "User-Agent: ExampleSwitch/4.2\r\n"
    "P-Asserted-Identity: <sip:+4940987654@switch.example.com;user=phone>\r\n"
    "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(SDP)}\r\n\r\n"
)
INVITE = HEAD.encode() + SDP
CONTACT = [("Contact", "<sip:+4930123456@ringback.example.net:5060;user=phone;rbk=1>")]


def main() -> None:
    n = 50_000
    req = parse_message(INVITE)
    assert isinstance(req, Request)
    t_parse = timeit.timeit(lambda: parse_message(INVITE), number=n) / n
    t_resp = (
        timeit.timeit(
            lambda: make_response(req, 302, to_tag="abc123", extra_headers=CONTACT).to_bytes(),
            number=n,
        )
        / n
    )
    layer = ServerTransactionLayer()
    counter = iter(range(10**9))

    def full() -> None:
        data = INVITE.replace(b"z9hG4bK776asdhds", b"z9hG4bK%09d" % next(counter))
        r = parse_message(data)
        assert isinstance(r, Request)
        layer.receive_request(r, ("192.0.2.10", 5060), False, 0.0)
        layer.send_response(r, make_response(r, 302, to_tag="abc123", extra_headers=CONTACT), 0.0)
        layer.take_outgoing()

    t_full = timeit.timeit(full, number=n) / n
    print(f"message size            {len(INVITE)} bytes")
    print(f"parse INVITE            {t_parse * 1e6:6.2f} us")
    print(f"make 302 + to_bytes     {t_resp * 1e6:6.2f} us")
    print(f"parse+tx+302+queue      {t_full * 1e6:6.2f} us  (~{1 / t_full:,.0f}/s)")


if __name__ == "__main__":
    main()
