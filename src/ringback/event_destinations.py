"""Where outgoing event webhooks may go (server-side request forgery guard).

An operator's subscription URL must not become a way to reach the service's own network:
loopback, link-local (cloud metadata at 169.254.169.254), private, shared (CGNAT),
multicast, reserved and unspecified addresses are refused unless
`events.allowed_destinations` lists them (CIDRs). The check runs when a subscription is
made and again at every delivery, on the addresses the name resolves to then: the
connector's resolver (`GuardedResolver`) hands aiohttp only checked addresses, so the
connection goes to exactly the address that was checked (no second lookup a DNS rebinding
could answer differently).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefused(OSError):
    """The destination is not allowed; `reason` says why, for the operator."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _kind(ip: Address) -> str | None:
    """What makes `ip` internal (None: a public unicast address)."""
    for kind, test in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if test:
            return kind
    if not ip.is_global:
        return "non-public"
    return None


class WebhookPolicy:
    """Public unicast addresses, plus whatever `allowed` (CIDRs) lists."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.allowed = [ipaddress.ip_network(cidr, strict=False) for cidr in allowed]

    def refusal(self, address: str) -> str | None:
        """Why `address` may not be reached (None: it may)."""
        ip: Address = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.allowed):
            return None
        kind = _kind(ip)
        if kind is None:
            return None
        return f"{ip} is a {kind} address; allowed only if events.allowed_destinations lists it"

    async def check_url(self, url: str, timeout_s: float = 5.0) -> str | None:
        """Why a subscription to `url` is refused (None: every address it resolves to may
        be reached now)."""
        host = URL(url).raw_host or ""
        port = URL(url).port or 443
        try:
            addresses = [host] if _is_ip(host) else await _lookup(host, port, timeout_s)
        except (OSError, TimeoutError):
            return f"cannot resolve host {host!r}"
        for address in addresses:
            reason = self.refusal(address)
            if reason is not None:
                return f"{host} resolves to {reason}" if address != host else reason
        return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


async def _lookup(host: str, port: int, timeout_s: float) -> list[str]:
    infos = await asyncio.wait_for(
        asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout_s
    )
    return sorted({str(info[4][0]) for info in infos})


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, giving back only addresses the policy allows (and refusing the
    name outright when any address it resolves to is not allowed)."""

    def __init__(self, policy: WebhookPolicy) -> None:
        self.policy = policy
        self.inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        for result in results:
            reason = self.policy.refusal(result["host"])
            if reason is not None:
                raise DestinationRefused(f"{host} resolves to {reason}")
        return results

    async def close(self) -> None:
        await self.inner.close()


def url_refusal(policy: WebhookPolicy, url: str) -> str | None:
    """For a URL whose host is an IP literal (aiohttp does not resolve those): why it is
    refused. Names are checked by `GuardedResolver` when connecting."""
    host = (URL(url).raw_host or "").strip("[]")
    return policy.refusal(host) if _is_ip(host) else None


__all__ = [
    "DestinationRefused",
    "GuardedResolver",
    "WebhookPolicy",
    "url_refusal",
]
