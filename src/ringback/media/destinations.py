"""Where RTP may go: the policy that keeps a spoofed SDP from aiming the warning at a victim.

A destination is allowed only when it is an IP literal inside one of the configured
networks (``announcement.allowed_destinations``; by default the trusted SIP networks), is
not unspecified, multicast, broadcast (the limited broadcast or an allowed network's own
broadcast address), and its port is 1024 or above (no well-known service).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["DestinationPolicy"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


class DestinationPolicy:
    def __init__(self, cidrs: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(c, strict=False) for c in cidrs]
        self._broadcasts = {
            n.broadcast_address
            for n in self.networks
            if isinstance(n, ipaddress.IPv4Network) and n.prefixlen < 31
        }

    def allows_host(self, host: str) -> bool:
        """May RTP go to ``host`` at all (any port of 1024 or above)?"""
        try:
            ip: IPAddress = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False  # a name would need DNS in the call path: never
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_unspecified or ip.is_multicast or ip == _LIMITED_BROADCAST:
            return False
        if ip in self._broadcasts:
            return False
        return any(ip in network for network in self.networks)

    def allows(self, host: str, port: int) -> bool:
        """May RTP go to ``host:port``?"""
        return 1024 <= port <= 65535 and self.allows_host(host)
