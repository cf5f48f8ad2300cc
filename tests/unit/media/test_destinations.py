"""The RTP destination policy: only allowed networks, never a victim's service."""

from __future__ import annotations

import pytest

from ringback.media.destinations import DestinationPolicy

POLICY = DestinationPolicy(["127.0.0.0/8", "::1/128", "192.0.2.0/24"])


@pytest.mark.parametrize(
    ("host", "port"),
    [("127.0.0.1", 40000), ("192.0.2.77", 1024), ("::1", 30000), ("::ffff:192.0.2.5", 4000)],
)
def test_allowed(host: str, port: int) -> None:
    assert POLICY.allows(host, port)


@pytest.mark.parametrize(
    ("host", "port"),
    [
        ("8.8.8.8", 53),  # outside the networks, and a DNS server
        ("8.8.8.8", 40000),  # outside the networks
        ("127.0.0.1", 53),  # inside, but a well-known port
        ("127.0.0.1", 0),
        ("169.254.169.254", 8080),  # cloud metadata
        ("255.255.255.255", 40000),  # limited broadcast
        ("192.0.2.255", 40000),  # the allowed network's broadcast address
        ("0.0.0.0", 40000),
        ("::", 40000),
        ("224.0.0.1", 40000),  # multicast
        ("ff02::1", 40000),
        ("example.com", 40000),  # a name: never resolved in the call path
        ("127.0.0.1", 70000),
    ],
)
def test_refused(host: str, port: int) -> None:
    assert not POLICY.allows(host, port)


def test_broadcast_address_of_a_wide_network_is_refused_but_its_hosts_are_not() -> None:
    policy = DestinationPolicy(["10.0.0.0/8"])
    assert not policy.allows("10.255.255.255", 40000)
    assert policy.allows("10.1.2.3", 40000)
