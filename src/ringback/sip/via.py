"""The Via header field (RFC 3261 §20.42, RFC 3581 ``rport``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import bad_request, clip
from .grammar import find_param, format_params, hostport_match, parse_params

__all__ = ["Via", "default_port", "parse_via"]


@dataclass(slots=True)
class Via:
    """One Via value (RFC 3261 §20.42, RFC 3581 rport)."""

    transport: str
    host: str
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return find_param(self.params, "branch")[1]

    @property
    def received(self) -> str | None:
        return find_param(self.params, "received")[1]

    @property
    def maddr(self) -> str | None:
        return find_param(self.params, "maddr")[1]

    @property
    def has_rport(self) -> bool:
        return find_param(self.params, "rport")[0]

    @property
    def rport(self) -> int | None:
        v = find_param(self.params, "rport")[1]
        return int(v) if v else None

    @property
    def ttl(self) -> int | None:
        v = find_param(self.params, "ttl")[1]
        return int(v) if v else None

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"


def default_port(transport: str) -> int:
    """The port a sent-by without one stands for, by (upper-case) transport."""
    return 5061 if transport in ("TLS", "WSS") else 5060


_VIA_PREFIX = re.compile(
    r"\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*"
    r"([A-Za-z0-9\-.!%*_+`'~]+)\s+([^;\s]+)\s*"
)
_via_match = _VIA_PREFIX.match


def parse_via(value: str) -> Via:
    """Parse one Via value (already split from a comma list).

    Hand-written prefix for the canonical spelling: measured no faster than the
    ``_VIA_PREFIX`` regex, but the two differ at the edges (the prefix takes any
    transport text up to the space; the regex takes a token and any whitespace), so
    swapping one for the other would change which Vias are accepted.
    """
    if value.startswith("SIP/2.0/") and "\t" not in value and "  " not in value:
        # fast path for the canonical spelling "SIP/2.0/UDP host:port;params"
        transport, _, rest = value[8:].partition(" ")
        semi = rest.find(";")
        sent_by = rest if semi < 0 else rest[:semi]
        if " " in sent_by or not transport:
            return _parse_via_slow(value)
        proto, version, end = "SIP", "2.0", len(value) - len(rest) + len(sent_by)
    else:
        return _parse_via_slow(value)
    return _finish_via(value, proto, version, transport, sent_by, end)


def _parse_via_slow(value: str) -> Via:
    m = _via_match(value)
    if m is None:
        raise bad_request(f"malformed Via {clip(value)!r}")
    proto, version, transport, sent_by = m.groups()
    return _finish_via(value, proto, version, transport, sent_by, m.end())


def _finish_via(
    value: str, proto: str, version: str, transport: str, sent_by: str, end: int
) -> Via:
    hm = hostport_match(sent_by)
    if hm is None:
        raise bad_request(f"invalid sent-by in Via {clip(sent_by)!r}")
    port: int | None = None
    if hm.group(2) is not None:
        port = int(hm.group(2))
        if port > 65535:
            raise bad_request(f"Via port out of range: {port}")
    rest = value[end:]
    params: tuple[tuple[str, str | None], ...] = ()
    if rest:
        plist = parse_params(rest, "Via")
        for name, v in plist:
            low = name.lower()
            if low == "ttl" and (v is None or not v.isdigit() or int(v) > 255):
                raise bad_request("Via ttl must be 0-255")
            if low == "rport" and v is not None and (not v.isdigit() or int(v) > 65535):
                raise bad_request("invalid Via rport value")
        params = tuple(plist)
    return Via(transport.upper(), hm.group(1), port, params, f"{proto}/{version}")
