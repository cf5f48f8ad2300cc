"""SIP and tel URIs (RFC 3261 §19.1, RFC 3966) and name-addr values (From, To, Contact)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from .errors import SipParseError, bad_request, clip
from .grammar import (
    find_param,
    format_params,
    hostport_match,
    parse_params,
    scheme_match,
    token_match,
)
from .headers import ENCODING, ENCODING_ERRORS

__all__ = ["NameAddr", "SipUri", "TelUri", "parse_name_addr", "parse_uri"]

_BAD_URI_CHARS = frozenset(' \t\r\n<>"\x00')


@dataclass(frozen=True, slots=True)
class SipUri:
    """A sip:/sips: URI. Text fields are kept exactly as written (still %-escaped),
    so ``str()`` round-trips; use :attr:`user_unescaped` for the application value.
    ``host`` keeps IPv6 brackets."""

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    headers: str | None = None

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out += [":", self.password]
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(format_params(self.params))
        if self.headers is not None:
            out += ["?", self.headers]
        return "".join(out)

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unquote(self.user, ENCODING, ENCODING_ERRORS)

    def has_param(self, name: str) -> bool:
        return find_param(self.params, name)[0]

    def get_param(self, name: str) -> str | None:
        """Value of a URI parameter (None if absent or valueless)."""
        return find_param(self.params, name)[1]

    def with_param(self, name: str, value: str | None = None) -> SipUri:
        """Copy with ``name`` set (replacing an existing one, case-insensitively)."""
        low = name.lower()
        params = (*tuple(p for p in self.params if p[0].lower() != low), (name, value))
        return SipUri(
            self.scheme,
            self.user,
            self.password,
            self.host,
            self.port,
            params,
            self.headers,
        )

    def without_param(self, name: str) -> SipUri:
        low = name.lower()
        params = tuple(p for p in self.params if p[0].lower() != low)
        return SipUri(
            self.scheme,
            self.user,
            self.password,
            self.host,
            self.port,
            params,
            self.headers,
        )


@dataclass(frozen=True, slots=True)
class TelUri:
    """A tel: URI (RFC 3966): ``number`` as written plus parameters."""

    number: str
    params: tuple[tuple[str, str | None], ...] = ()

    scheme = "tel"

    def __str__(self) -> str:
        return f"tel:{self.number}{format_params(self.params)}"

    @property
    def user_unescaped(self) -> str:
        return unquote(self.number, ENCODING, ENCODING_ERRORS)

    @property
    def is_global(self) -> bool:
        return self.number.startswith("+")

    def has_param(self, name: str) -> bool:
        return find_param(self.params, name)[0]

    def get_param(self, name: str) -> str | None:
        return find_param(self.params, name)[1]

    def with_param(self, name: str, value: str | None = None) -> TelUri:
        low = name.lower()
        params = (*tuple(p for p in self.params if p[0].lower() != low), (name, value))
        return TelUri(self.number, params)


def _uri_params(text: str) -> tuple[tuple[str, str | None], ...]:
    out: list[tuple[str, str | None]] = []
    for part in text.split(";")[1:]:
        name, eq, value = part.partition("=")
        if not name:
            raise bad_request("empty URI parameter")
        out.append((name, value if eq else None))
    return tuple(out)


def parse_uri(text: str) -> SipUri | TelUri:
    """Parse a sip:, sips: or tel: URI. Other schemes raise a 416 error."""
    if not text or any(c in _BAD_URI_CHARS for c in text):
        raise bad_request(f"invalid URI {clip(text)!r}")
    scheme, sep, rest = text.partition(":")
    low = scheme.lower()
    if not sep:
        raise bad_request(f"URI without scheme {clip(text)!r}")
    if low == "tel":
        semi = rest.find(";")
        number = rest if semi < 0 else rest[:semi]
        if not number:
            raise bad_request("empty tel: number")
        return TelUri(number, _uri_params(rest[semi:]) if semi >= 0 else ())
    if low not in ("sip", "sips"):
        raise SipParseError(416, f"Unsupported URI Scheme: {clip(scheme)}")
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        if colon:
            password = pw
        if not user:
            raise bad_request("empty user part in SIP URI")
    headers: str | None = None
    q = rest.find("?")
    if q >= 0:
        headers = rest[q + 1 :]
        rest = rest[:q]
    semi = rest.find(";")
    hostport = rest if semi < 0 else rest[:semi]
    params = _uri_params(rest[semi:]) if semi >= 0 else ()
    m = hostport_match(hostport)
    if m is None:
        raise bad_request(f"invalid host in SIP URI {clip(hostport)!r}")
    port: int | None = None
    if m.group(2) is not None:
        port = int(m.group(2))
        if port > 65535:
            raise bad_request(f"port out of range in SIP URI: {port}")
    return SipUri(scheme, user, password, m.group(1), port, params, headers)


@dataclass(frozen=True, slots=True)
class NameAddr:
    """From/To/Contact/Route value. ``uri`` is the URI text (any scheme; call
    :attr:`sip_uri` to parse it); ``params`` are the header parameters."""

    display_name: str | None
    uri: str
    params: tuple[tuple[str, str | None], ...] = ()
    bracketed: bool = True

    @property
    def tag(self) -> str | None:
        return find_param(self.params, "tag")[1]

    def get_param(self, name: str) -> str | None:
        return find_param(self.params, name)[1]

    def has_param(self, name: str) -> bool:
        return find_param(self.params, name)[0]

    @property
    def sip_uri(self) -> SipUri | TelUri:
        return parse_uri(self.uri)

    def __str__(self) -> str:
        dn = ""
        if self.display_name is not None:
            esc = self.display_name.replace("\\", "\\\\").replace('"', '\\"')
            dn = f'"{esc}" '
        if self.bracketed or dn:
            return f"{dn}<{self.uri}>{format_params(self.params)}"
        return f"{self.uri}{format_params(self.params)}"


def _unquote_qs(text: str, start: int) -> tuple[str, int]:
    """Read a quoted-string starting at ``text[start] == '"'``; return (value, end)."""
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 >= n:
                break
            out.append(text[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise bad_request("unterminated quoted string in display name")


def parse_name_addr(value: str) -> NameAddr:
    """Parse ``[display-name] <uri> *(;param)`` or ``addr-spec *(;param)``.

    In addr-spec form the parameters belong to the header, not the URI (RFC 3261
    §20.10), and the URI may not contain ``;``, ``?`` or ``,``.
    """
    s = value.strip()
    if not s:
        raise bad_request("empty name-addr")
    display: str | None = None
    if s[0] == '"':
        display, end = _unquote_qs(s, 0)
        rest = s[end:].lstrip()
        if not rest.startswith("<"):
            raise bad_request("quoted display name not followed by <URI>")
        s = rest
    lt = s.find("<")
    if lt >= 0:
        if display is None and lt > 0:
            dn = s[:lt].strip()
            for word in dn.split():
                if not token_match(word):
                    raise bad_request(f"invalid unquoted display name {clip(dn)!r}")
            display = " ".join(dn.split()) or None
        gt = s.find(">", lt)
        if gt < 0:
            raise bad_request("unterminated <URI> in name-addr")
        uri = s[lt + 1 : gt]
        if not scheme_match(uri) or uri != uri.strip():
            raise bad_request(f"invalid URI in name-addr {clip(uri)!r}")
        params = parse_params(s[gt + 1 :])
        return NameAddr(display, uri, tuple(params), True)
    semi = s.find(";")
    uri = s if semi < 0 else s[:semi].rstrip()
    if not scheme_match(uri) or "?" in uri or "," in uri:
        raise bad_request(f"invalid addr-spec {clip(uri)!r}")
    params = parse_params(s[semi:]) if semi >= 0 else []
    return NameAddr(None, uri, tuple(params), False)
