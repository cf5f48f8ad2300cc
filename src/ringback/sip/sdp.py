"""SDP parse/serialize (RFC 4566), tolerant of sloppy softphones, strict on
what makes an offer unusable.

Tolerated: LF-only line ends, trailing whitespace, blank lines, unknown line types
(kept verbatim in ``extra``). Rejected with :class:`SdpError`: a missing/invalid
``v=``, ``o=``, ``m=`` line, or a media section with no connection address.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Attribute",
    "Connection",
    "MediaDescription",
    "Origin",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "parse_sdp",
]

_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


class SdpError(ValueError):
    """The SDP cannot be used; ``str(exc)`` says precisely why."""


@dataclass(slots=True)
class Origin:
    username: str
    sess_id: str
    sess_version: str
    nettype: str
    addrtype: str
    address: str

    def __str__(self) -> str:
        return (
            f"{self.username} {self.sess_id} {self.sess_version} {self.nettype} "
            f"{self.addrtype} {self.address}"
        )


@dataclass(slots=True)
class Connection:
    """``c=<nettype> <addrtype> <address>`` (address may carry /ttl/count)."""

    nettype: str
    addrtype: str
    address: str

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"

    @property
    def host(self) -> str:
        """The address without a multicast /ttl/count suffix."""
        return self.address.split("/", 1)[0]


@dataclass(slots=True)
class Attribute:
    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class RtpMap:
    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None


def _attr(attrs: list[Attribute], name: str) -> str | None:
    for a in attrs:
        if a.name == name:
            return a.value if a.value is not None else ""
    return None


def _direction(attrs: list[Attribute]) -> str | None:
    for a in attrs:
        if a.name in _DIRECTIONS:
            return a.name
    return None


@dataclass(slots=True)
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    info: str | None = None
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)

    def attribute(self, name: str) -> str | None:
        """Value of the first ``a=name[:value]`` ('' if valueless, None if absent)."""
        return _attr(self.attributes, name)

    def rtpmaps(self) -> dict[int, RtpMap]:
        """``a=rtpmap`` entries by payload type; static types 0/8/9/18 implied."""
        out: dict[int, RtpMap] = {}
        for fmt in self.formats:
            if fmt in _STATIC:
                out[int(fmt)] = _STATIC[fmt]
        for a in self.attributes:
            if a.name != "rtpmap" or not a.value:
                continue
            pt_s, _, spec = a.value.partition(" ")
            parts = spec.strip().split("/")
            if not pt_s.isdigit() or len(parts) < 2 or not parts[1].isdigit():
                raise SdpError(f"malformed a=rtpmap:{a.value}")
            ch = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
            out[int(pt_s)] = RtpMap(int(pt_s), parts[0], int(parts[1]), ch)
        return out

    def fmtp(self, payload_type: int) -> str | None:
        prefix = f"{payload_type} "
        for a in self.attributes:
            if a.name == "fmtp" and a.value and a.value.startswith(prefix):
                return a.value[len(prefix) :].strip()
        return None

    @property
    def ptime(self) -> int | None:
        v = self.attribute("ptime")
        try:
            return int(float(v)) if v else None
        except ValueError:
            return None

    @property
    def direction(self) -> str | None:
        """Explicit direction attribute of this media section, if any."""
        return _direction(self.attributes)

    def lines(self) -> list[str]:
        port = self.port if self.port_count is None else f"{self.port}/{self.port_count}"
        out = [f"m={self.media} {port} {self.proto} {' '.join(self.formats)}".rstrip()]
        if self.info is not None:
            out.append(f"i={self.info}")
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [f"b={b}" for b in self.bandwidths]
        if self.key is not None:
            out.append(f"k={self.key}")
        out += [f"a={a}" for a in self.attributes]
        out += [f"{t}={v}" for t, v in self.extra]
        return out


_STATIC = {
    "0": RtpMap(0, "PCMU", 8000, 1),
    "8": RtpMap(8, "PCMA", 8000, 1),
    "9": RtpMap(9, "G722", 8000, 1),
    "18": RtpMap(18, "G729", 8000, 1),
}


@dataclass(slots=True)
class SessionDescription:
    origin: Origin
    session_name: str = "-"
    version: int = 0
    info: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    times: list[str] = field(default_factory=lambda: ["0 0"])
    repeats: list[str] = field(default_factory=list)
    zone: str | None = None
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)

    def attribute(self, name: str) -> str | None:
        return _attr(self.attributes, name)

    def direction_of(self, media: MediaDescription) -> str:
        """Effective direction (media level, else session level, else sendrecv)."""
        return media.direction or _direction(self.attributes) or "sendrecv"

    def connection_of(self, media: MediaDescription) -> Connection:
        c = media.connection or self.connection
        if c is None:  # parse_sdp guarantees this does not happen
            raise SdpError("media section without a connection address")
        return c

    def to_str(self) -> str:
        out = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        if self.info is not None:
            out.append(f"i={self.info}")
        if self.uri is not None:
            out.append(f"u={self.uri}")
        out += [f"e={e}" for e in self.emails]
        out += [f"p={p}" for p in self.phones]
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [f"b={b}" for b in self.bandwidths]
        for i, t in enumerate(self.times):
            out.append(f"t={t}")
            if i == 0:
                out += [f"r={r}" for r in self.repeats]
        if self.zone is not None:
            out.append(f"z={self.zone}")
        if self.key is not None:
            out.append(f"k={self.key}")
        out += [f"a={a}" for a in self.attributes]
        out += [f"{t}={v}" for t, v in self.extra]
        for m in self.media:
            out += m.lines()
        return "\r\n".join(out) + "\r\n"

    def to_bytes(self) -> bytes:
        return self.to_str().encode("utf-8", "surrogateescape")


def _connection(value: str, where: str) -> Connection:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"malformed c= line in {where}: {value[:60]!r}")
    addr = parts[2].split("/", 1)[0]
    if parts[1] == "IP4" and not _ipv4ish(addr):
        raise SdpError(f"invalid IPv4 address in c= line in {where}: {addr[:60]!r}")
    if parts[1] == "IP6" and (":" not in addr and "." not in addr):
        raise SdpError(f"invalid IPv6 address in c= line in {where}: {addr[:60]!r}")
    return Connection(*parts)


def _ipv4ish(addr: str) -> bool:
    """An IPv4 literal, or a FQDN (RFC 4566 allows names)."""
    if not addr:
        return False
    return all(c.isalnum() or c in ".-" for c in addr)


def _attribute(value: str) -> Attribute:
    name, sep, val = value.partition(":")
    if not name:
        raise SdpError(f"empty attribute name in a={value[:60]!r}")
    return Attribute(name, val if sep else None)


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse an SDP body. Raises :class:`SdpError` when the description is unusable."""
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    lines = [ln.rstrip() for ln in text.replace("\r\n", "\n").split("\n")]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise SdpError("empty SDP body")
    if lines[0].replace(" ", "") != "v=0":
        raise SdpError(f"SDP must start with v=0, got {lines[0][:60]!r}")
    origin: Origin | None = None
    sd: SessionDescription | None = None
    cur: MediaDescription | None = None
    session_name = "-"
    pending: list[tuple[str, str]] = []
    for ln in lines[1:]:
        if len(ln) < 2 or ln[1] != "=":
            raise SdpError(f"malformed SDP line {ln[:60]!r}")
        t, v = ln[0], ln[2:]
        if sd is None:
            if t == "o":
                parts = v.split()
                if len(parts) != 6:
                    raise SdpError(f"o= line must have 6 fields, got {len(parts)}")
                origin = Origin(*parts)
                continue
            if t == "s":
                session_name = v
                continue
            if origin is None:
                raise SdpError(f"SDP line {ln[:40]!r} before o= line")
            sd = SessionDescription(origin, session_name, times=[])
            for pt, pv in pending:
                _session_line(sd, pt, pv)
        if t == "m":
            cur = _media(v)
            sd.media.append(cur)
        elif cur is None:
            _session_line(sd, t, v)
        elif t == "c":
            cur.connection = _connection(v, f"media {len(sd.media) - 1}")
        elif t == "a":
            cur.attributes.append(_attribute(v))
        elif t == "b":
            cur.bandwidths.append(v)
        elif t == "i":
            cur.info = v
        elif t == "k":
            cur.key = v
        else:
            cur.extra.append((t, v))
    if sd is None:
        if origin is None:
            raise SdpError("missing o= line")
        sd = SessionDescription(origin, session_name, times=[])
    if not sd.times:
        sd.times = ["0 0"]
    for i, m in enumerate(sd.media):
        if m.connection is None and sd.connection is None and m.port != 0:
            raise SdpError(f"no connection address (c=) for media {i} ({m.media})")
    return sd


def _session_line(sd: SessionDescription, t: str, v: str) -> None:
    if t == "c":
        sd.connection = _connection(v, "session")
    elif t == "a":
        sd.attributes.append(_attribute(v))
    elif t == "t":
        sd.times.append(v)
    elif t == "r":
        sd.repeats.append(v)
    elif t == "b":
        sd.bandwidths.append(v)
    elif t == "i":
        sd.info = v
    elif t == "u":
        sd.uri = v
    elif t == "e":
        sd.emails.append(v)
    elif t == "p":
        sd.phones.append(v)
    elif t == "z":
        sd.zone = v
    elif t == "k":
        sd.key = v
    elif t == "s":
        sd.session_name = v
    else:
        sd.extra.append((t, v))


def _media(v: str) -> MediaDescription:
    parts = v.split()
    if len(parts) < 3:
        raise SdpError(f"m= line needs media, port, proto: {v[:60]!r}")
    port_s, _, count_s = parts[1].partition("/")
    if not port_s.isdigit() or int(port_s) > 65535:
        raise SdpError(f"invalid media port {parts[1][:20]!r}")
    count: int | None = None
    if count_s:
        if not count_s.isdigit():
            raise SdpError(f"invalid media port count {parts[1][:20]!r}")
        count = int(count_s)
    if parts[2].upper().startswith("RTP/") and len(parts) < 4:
        raise SdpError(f"m= line without formats: {v[:60]!r}")
    return MediaDescription(parts[0], int(port_s), parts[2], parts[3:], count)
