"""Per-source SIP limit over real UDP sockets: an INVITE over the limit still gets its 302,
other requests over it are dropped, another source is not affected; all counted."""

from __future__ import annotations

import asyncio
import socket

from test_sip_overload_shedding import message

from ringback.calls import CallController, SipMetrics
from ringback.metrics import Registry
from ringback.net.sip_transport import SipEndpoint, TrustedSources
from ringback.ratelimit import TokenBuckets
from ringback.registry.listing_index import ListingIndex
from ringback.registry.numbers import NumberingPlan


async def test_a_source_over_its_limit_gets_302s_for_invites_and_nothing_else() -> None:
    registry = Registry()
    metrics = SipMetrics(registry)
    controller = CallController(
        ListingIndex(),
        NumberingPlan(),
        metrics,
        index_ready=lambda: True,
        rate_limit=TokenBuckets(rate=0.5, burst=3),
    )
    sip = SipEndpoint(controller, metrics, TrustedSources(["127.0.0.0/8"]))
    await sip.start(["127.0.0.1"], 0)
    flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flood.bind(("127.0.0.1", 0))
    flood.settimeout(5)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.2", 0))  # another source address on loopback
    other.settimeout(5)
    try:
        port, local = sip.port, flood.getsockname()[1]
        for n in range(10):
            flood.sendto(message("OPTIONS", port, local, n), ("127.0.0.1", port))
        for n in range(2):
            flood.sendto(message("INVITE", port, local, n), ("127.0.0.1", port))
        # answers arrive in the order the requests were handled: read up to the 2nd 302
        answers: list[bytes] = []
        loop = asyncio.get_running_loop()
        while sum(a.startswith(b"SIP/2.0 302") for a in answers) < 2:
            answers.append(await loop.run_in_executor(None, flood.recv, 65535))
        oks = [a for a in answers if a.startswith(b"SIP/2.0 200")]
        assert len(oks) == 3, answers  # the burst; the 7 other OPTIONS were dropped
        assert len(answers) == 5
        # the other source is served as usual
        other.sendto(message("OPTIONS", port, other.getsockname()[1], 99), ("127.0.0.1", port))
        reply = await loop.run_in_executor(None, other.recv, 65535)
        assert reply.startswith(b"SIP/2.0 200")
        assert metrics.rate_limited.get("OPTIONS", "dropped") == 7
        assert metrics.rate_limited.get("INVITE", "redirected") == 2
        text = registry.render()
        assert 'ringback_sip_rate_limited_total{method="OPTIONS",action="dropped"} 7' in text
    finally:
        flood.close()
        other.close()
        await sip.stop()
