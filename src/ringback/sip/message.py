"""SIP message parsing and serialization (RFC 3261 §7, §18.3, §20, §25).

Design for the hot path: :func:`parse_message` splits the head once, builds the
header list (unfolding and compact-form expansion included) and validates only what
every consumer needs anyway (start line, Call-ID/CSeq/From/To/Via presence, CSeq,
Max-Forwards, Content-Length, the top Via). Everything else -- URIs, name-addr,
further Via values -- is parsed lazily by the helper functions when asked.

Header values are kept as ``str`` decoded as UTF-8 with ``surrogateescape`` so
arbitrary bytes survive a parse/serialize round trip.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote

__all__ = [
    "DEFAULT_LIMITS",
    "REASON_PHRASES",
    "Headers",
    "Limits",
    "NameAddr",
    "Request",
    "Response",
    "SipParseError",
    "SipUri",
    "TelUri",
    "Via",
    "error_response",
    "make_response",
    "parse_cseq",
    "parse_max_forwards",
    "parse_message",
    "parse_name_addr",
    "parse_params",
    "parse_uri",
    "parse_via",
    "split_list",
    "split_stream",
]

_ENC = "utf-8"
_ERRORS = "surrogateescape"
MAX_UINT32 = 2**32 - 1


class SipParseError(Exception):
    """A message (or a part of it) is not valid SIP.

    ``status``/``reason`` are what to answer with; ``reason`` is plain ASCII-safe text
    suitable for a reason phrase. ``answerable`` is True when Via, From, To, Call-ID
    and CSeq were readable so a response can be built (see :func:`error_response`,
    which uses ``headers``); otherwise the caller should drop the message silently.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        answerable: bool = False,
        headers: Headers | None = None,
        method: str | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = _safe_reason(reason)
        self.answerable = answerable
        self.headers = headers
        self.method = method


def _safe_reason(text: str) -> str:
    """Printable ASCII only, bounded length: safe inside a Reason-Phrase."""
    out = "".join(c if " " <= c <= "~" else "?" for c in text)
    return out if len(out) <= 200 else out[:197] + "..."


def _bad(reason: str) -> SipParseError:
    return SipParseError(400, "Bad Request: " + reason)


def _clip(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


# --------------------------------------------------------------------------- headers

_CANONICAL_NAMES = [
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "Identity",
    "In-Reply-To",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Organization",
    "P-Asserted-Identity",
    "Priority",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Session-Expires",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
]
_COMPACT = {
    "v": "Via",
    "i": "Call-ID",
    "f": "From",
    "t": "To",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "e": "Content-Encoding",
    "s": "Subject",
    "o": "Event",
    "r": "Refer-To",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "b": "Referred-By",
    "y": "Identity",
    "n": "Identity-Info",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
}
#: lower-case spelling (full or compact) -> (canonical name, lookup key)
_CANON: dict[str, tuple[str, str]] = {n.lower(): (n, n.lower()) for n in _CANONICAL_NAMES}
for _short, _full in _COMPACT.items():
    _CANON[_short] = (_full, _full.lower())
_CANON_GET = _CANON.get

#: headers whose grammar is a comma-separated list (get_all splits them)
_LIST_HEADERS = frozenset(
    k.lower()
    for k in (
        "Via",
        "Route",
        "Record-Route",
        "Contact",
        "Supported",
        "Require",
        "Proxy-Require",
        "Allow",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Unsupported",
        "Allow-Events",
        "Content-Encoding",
        "Content-Language",
        "In-Reply-To",
        "Alert-Info",
        "Call-Info",
        "Error-Info",
        "Warning",
        "Reply-To",
        "Path",
        "Service-Route",
        "P-Asserted-Identity",
        "Accept-Contact",
        "Reject-Contact",
        "Request-Disposition",
        "Reason",
        "Security-Client",
        "Security-Server",
        "Security-Verify",
    )
)
_SINGLETONS = frozenset(
    ("from", "to", "call-id", "cseq", "max-forwards", "content-length", "content-type")
)


def _key(name: str) -> tuple[str, str]:
    ent = _CANON_GET(name.lower())
    if ent is None:
        return name, name.lower()
    return ent


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, not inside quotes or ``<...>``.

    Empty elements (``a,,b``) are dropped, as the RFC 3261 ``#rule`` allows.
    """
    if "," not in value:
        v = value.strip()
        return [v] if v else []
    out: list[str] = []
    start = 0
    in_q = False
    in_a = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if in_q:
            if c == "\\":
                i += 1
            elif c == '"':
                in_q = False
        elif c == '"':
            in_q = True
        elif c == "<":
            in_a = True
        elif c == ">":
            in_a = False
        elif c == "," and not in_a:
            part = value[start:i].strip()
            if part:
                out.append(part)
            start = i + 1
        i += 1
    part = value[start:].strip()
    if part:
        out.append(part)
    return out


class Headers:
    """Ordered, case-insensitive multi-map of (canonical name, raw value).

    Compact forms are expanded on insertion; unknown names keep their spelling.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _from_raw(cls, items: list[tuple[str, str, str]]) -> Headers:
        h = cls.__new__(cls)
        h._items = items
        return h

    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of ``name`` (any spelling, compact or full), raw."""
        key = _key(name)[1]
        for k, _, v in self._items:
            if k == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value in order; list-grammar headers are split on commas."""
        key = _key(name)[1]
        values = [v for k, _, v in self._items if k == key]
        if key not in _LIST_HEADERS:
            return values
        out: list[str] = []
        for v in values:
            out.extend(split_list(v))
        return out

    def get_raw(self, name: str) -> list[str]:
        """Every header line's value for ``name``, without comma splitting."""
        key = _key(name)[1]
        return [v for k, _, v in self._items if k == key]

    def add(self, name: str, value: str) -> None:
        canon, key = _key(name.strip())
        self._items.append((key, canon, value.strip()))

    def set(self, name: str, value: str) -> None:
        """Replace the first occurrence (keeping its position), drop the others."""
        canon, key = _key(name.strip())
        out: list[tuple[str, str, str]] = []
        done = False
        for item in self._items:
            if item[0] == key:
                if not done:
                    out.append((key, canon, value.strip()))
                    done = True
            else:
                out.append(item)
        if not done:
            out.append((key, canon, value.strip()))
        self._items = out

    def remove(self, name: str) -> int:
        """Remove every occurrence; return how many were removed."""
        key = _key(name)[1]
        before = len(self._items)
        self._items = [i for i in self._items if i[0] != key]
        return before - len(self._items)

    def replace_first_value(self, name: str, value: str) -> None:
        """Replace the first list element of ``name`` (e.g. the top Via)."""
        key = _key(name)[1]
        for idx, (k, n, v) in enumerate(self._items):
            if k == key:
                if "," in v and key in _LIST_HEADERS:
                    parts = split_list(v)
                    parts[0] = value
                    value = ", ".join(parts)
                self._items[idx] = (k, n, value)
                return
        raise KeyError(name)

    def copy(self) -> Headers:
        return Headers._from_raw(list(self._items))

    def items(self) -> list[tuple[str, str]]:
        return [(n, v) for _, n, v in self._items]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _key(name)[1]
        return any(k == key for k, _, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((n, v) for _, n, v in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"

    def _head(self) -> str:
        return "".join([f"{n}: {v}\r\n" for k, n, v in self._items if k != "content-length"])


# --------------------------------------------------------------------------- messages


def _semantic(h: Headers) -> list[tuple[str, str]]:
    """Headers as compared by message equality: Content-Length is derived data."""
    return [(k, v) for k, _, v in h._items if k != "content-length"]


@dataclass(slots=True, eq=False)
class Request:
    """A SIP request. ``uri`` is the Request-URI text (see :func:`parse_uri`)."""

    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    _via: Via | None = field(default=None, repr=False)
    _cseq: tuple[int, str] | None = field(default=None, repr=False)
    _tx_key: tuple[str, ...] | None = field(default=None, repr=False)  # see transaction.py

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return (self.method, self.uri, _semantic(self.headers), self.body) == (
            other.method,
            other.uri,
            _semantic(other.headers),
            other.body,
        )

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        """(sequence number, method), parsed once."""
        if self._cseq is None:
            self._cseq = parse_cseq(self.headers.get("CSeq") or "")
        return self._cseq

    @property
    def top_via(self) -> Via:
        """The topmost Via value, parsed once (raises :class:`SipParseError`)."""
        if self._via is None:
            v = self.headers.get("Via")
            if v is None:
                raise _bad("missing Via header")
            self._via = parse_via(split_list(v)[0] if "," in v else v)
        return self._via

    @property
    def from_tag(self) -> str | None:
        v = self.headers.get("From")
        return None if v is None else parse_name_addr(v).tag

    @property
    def to_tag(self) -> str | None:
        v = self.headers.get("To")
        return None if v is None else parse_name_addr(v).tag

    @property
    def max_forwards(self) -> int | None:
        v = self.headers.get("Max-Forwards")
        return None if v is None else parse_max_forwards(v)

    def to_bytes(self) -> bytes:
        """Serialize; Content-Length is always (re)written from ``body``."""
        head = (
            f"{self.method} {self.uri} SIP/2.0\r\n{self.headers._head()}"
            f"Content-Length: {len(self.body)}\r\n\r\n"
        )
        return head.encode(_ENC, _ERRORS) + self.body


@dataclass(slots=True, eq=False)
class Response:
    """A SIP response."""

    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return (self.status, self.reason, _semantic(self.headers), self.body) == (
            other.status,
            other.reason,
            _semantic(other.headers),
            other.body,
        )

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.headers.get("CSeq") or "")

    @property
    def top_via(self) -> Via:
        v = self.headers.get("Via")
        if v is None:
            raise _bad("missing Via header")
        return parse_via(split_list(v)[0] if "," in v else v)

    @property
    def to_tag(self) -> str | None:
        v = self.headers.get("To")
        return None if v is None else parse_name_addr(v).tag

    def to_bytes(self) -> bytes:
        """Serialize; Content-Length is always (re)written from ``body``."""
        head = (
            f"SIP/2.0 {self.status} {self.reason}\r\n{self.headers._head()}"
            f"Content-Length: {len(self.body)}\r\n\r\n"
        )
        return head.encode(_ENC, _ERRORS) + self.body


# --------------------------------------------------------------------------- limits


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard bounds applied before and while parsing (anti-DoS)."""

    max_message_size: int = 65535
    max_header_count: int = 128
    max_line_length: int = 8192


DEFAULT_LIMITS = Limits()

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_token_match = _TOKEN_RE.match
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:\S+\Z")
_scheme_match = _SCHEME_RE.match
_REQUIRED = ("via", "from", "to", "call-id", "cseq")
# Header names as they arrive -> (canonical name, key): the same few spellings come in
# every message, so one dict lookup replaces lower() + canonical lookup + token check.
_NAME_CACHE: dict[str, tuple[str, str]] = {}
_NAME_CACHE_GET = _NAME_CACHE.get
_REQUIRED_NAMES = {"via": "Via", "from": "From", "to": "To", "call-id": "Call-ID", "cseq": "CSeq"}


def parse_message(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Request | Response:
    """Parse one SIP message from a datagram (or a frame from :func:`split_stream`).

    Body length comes from Content-Length; without it the body is the rest of the
    datagram. A body shorter than Content-Length is a 400; octets beyond it are
    discarded (RFC 3261 §18.3).
    """
    if len(data) > limits.max_message_size:
        raise SipParseError(
            513,
            f"Message Too Large: {len(data)} bytes exceeds limit of {limits.max_message_size}",
        )
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    idx = data.find(b"\r\n\r\n", start)
    if idx >= 0:
        body_start = idx + 4
        lines = data[start:idx].decode(_ENC, _ERRORS).split("\r\n")
        no_blank = False
    else:
        idx = data.find(b"\n\n", start)
        if idx >= 0:  # tolerate bare-LF senders
            body_start = idx + 2
            head = data[start:idx].decode(_ENC, _ERRORS)
        else:
            body_start = len(data)
            head = data[start:].decode(_ENC, _ERRORS).rstrip("\r\n")
        lines = [ln.rstrip("\r") for ln in head.split("\n")]
        no_blank = idx < 0
    if not lines or not lines[0]:
        raise _bad("empty message")

    # ---- headers (parsed before judging the start line, to know "answerable")
    if len(lines) > limits.max_header_count + 1:
        raise SipParseError(
            513,
            f"Message Too Large: more than {limits.max_header_count} header lines",
        )
    if body_start - start > limits.max_line_length:
        for ln in lines:
            if len(ln) > limits.max_line_length:
                raise SipParseError(
                    513,
                    f"Message Too Large: line of {len(ln)} characters exceeds limit of "
                    f"{limits.max_line_length}",
                )
    items: list[tuple[str, str, str]] = []
    append = items.append
    seen: dict[str, str] = {}
    top_via: str | None = None
    top_via_at = -1
    error: SipParseError | None = None
    for line in lines[1:]:
        if not line:
            continue
        c = line[0]
        if c == " " or c == "\t":
            if not items:
                error = error or _bad("continuation line before first header")
                continue
            k, n, v = items[-1]
            cont = line.strip()
            items[-1] = (k, n, f"{v} {cont}" if v else cont)
            if top_via_at == len(items) - 1:
                top_via = items[-1][2]
            if k in seen:
                seen[k] = items[-1][2]
            continue
        name, sep, value = line.partition(":")
        if not sep:
            error = error or _bad(f"header line without colon: {_clip(line)!r}")
            continue
        name = name.rstrip()
        ent = _NAME_CACHE_GET(name)
        if ent is None:
            ent = _CANON_GET(name.lower())
            if ent is None:
                if not _token_match(name):
                    error = error or _bad(f"invalid header name {_clip(name)!r}")
                    continue
                ent = (name, name.lower())
            if len(_NAME_CACHE) < 1024:
                _NAME_CACHE[name] = ent
        name, key = ent
        if key in _SINGLETONS:
            value = value.strip()
            if key in seen:
                if key != "content-length" or seen[key] != value:
                    error = error or _bad(f"multiple {name} header fields")
            else:
                seen[key] = value
            append((key, name, value))
            continue
        value = value.strip()
        if top_via is None and key == "via":
            top_via, top_via_at = value, len(items)
        append((key, name, value))
    if len(items) > limits.max_header_count:
        raise SipParseError(
            513,
            f"Message Too Large: {len(items)} header fields exceed limit of "
            f"{limits.max_header_count}",
        )
    headers = Headers._from_raw(items)

    # ---- start line
    first = lines[0]
    if first.startswith("SIP/"):
        return _finish_response(first, headers, seen, data, body_start, error, no_blank)

    first = first.rstrip(" \t")  # trailing SP (RFC 4475 trws): be liberal
    parts = first.split(" ")
    has_via = top_via is not None
    answerable = has_via and all(k in seen for k in ("from", "to", "call-id", "cseq"))
    method = parts[0]

    def fail(exc: SipParseError) -> SipParseError:
        exc.answerable = answerable
        exc.headers = headers
        exc.method = method
        return exc

    if len(parts) != 3:
        raise fail(_bad("malformed Request-Line (expected 'Method SP Request-URI SP SIP/2.0')"))
    uri = parts[1]
    if not _token_match(method):
        raise fail(_bad(f"invalid method {_clip(method)!r}"))
    if parts[2] != "SIP/2.0":
        if parts[2].upper() == "SIP/2.0":
            pass
        elif parts[2].upper().startswith("SIP/"):
            raise fail(SipParseError(505, f"Version Not Supported: {_clip(parts[2])}"))
        else:
            raise fail(_bad(f"invalid SIP-Version {_clip(parts[2])!r}"))
    if not _scheme_match(uri) or "<" in uri or ">" in uri:
        raise fail(_bad(f"invalid Request-URI {_clip(uri)!r}"))
    low_uri = uri[:5].lower()
    if (low_uri.startswith("sip:") or low_uri == "sips:") and "?" in uri:
        # RFC 4475 §3.1.2.11 escruri: headers are not allowed in a Request-URI
        answer_uri = uri.split("@", 1)[-1]
        if "?" in answer_uri:
            raise fail(_bad("escaped headers not allowed in the Request-URI"))
    if error is not None:
        raise fail(error)
    if no_blank:
        raise fail(_bad("no empty line after the header fields"))
    for k in _REQUIRED:
        if k not in seen and not (k == "via" and has_via):
            raise fail(_bad(f"missing {_REQUIRED_NAMES[k]} header"))
    if not seen["call-id"]:
        raise fail(_bad("empty Call-ID header"))
    try:
        cseq = parse_cseq(seen["cseq"])
        if cseq[1] != method:
            raise _bad(f"CSeq method {_clip(cseq[1])!r} does not match {_clip(method)!r}")
        mf = seen.get("max-forwards")
        if mf is not None:
            parse_max_forwards(mf)
        assert top_via is not None
        via = parse_via(split_list(top_via)[0] if "," in top_via else top_via)
        body = _body(data, body_start, seen.get("content-length"), limits)
    except SipParseError as exc:
        raise fail(exc) from None
    return Request(method, uri, headers, body, via, cseq)


def _finish_response(
    first: str,
    headers: Headers,
    seen: dict[str, str],
    data: bytes,
    body_start: int,
    error: SipParseError | None,
    no_blank: bool,
) -> Response:
    parts = first.split(" ", 2)
    version = parts[0]
    if version.upper() != "SIP/2.0":
        raise SipParseError(505, f"Version Not Supported: {_clip(version)}")
    if len(parts) < 2:
        raise _bad("malformed Status-Line")
    code = parts[1]
    if len(code) != 3 or not code.isdigit() or not "100" <= code <= "699":
        raise _bad(f"invalid status code {_clip(code)!r}")
    if error is not None:
        raise error
    if no_blank:
        raise _bad("no empty line after the header fields")
    for k in _REQUIRED:
        if k != "via" and k not in seen:
            raise _bad(f"missing {_REQUIRED_NAMES[k]} header")
    if "via" not in headers:
        raise _bad("missing Via header")
    parse_cseq(seen["cseq"])
    body = _body(data, body_start, seen.get("content-length"), DEFAULT_LIMITS)
    return Response(int(code), parts[2] if len(parts) > 2 else "", headers, body)


def _body(data: bytes, body_start: int, cl: str | None, limits: Limits) -> bytes:
    if cl is None:
        return data[body_start:]
    if not cl.isdigit() or not cl.isascii():
        raise _bad(f"invalid Content-Length {_clip(cl)!r}")
    n = int(cl)
    if n > limits.max_message_size:
        raise SipParseError(413, f"Request Entity Too Large: Content-Length {n} exceeds limit")
    avail = len(data) - body_start
    if avail < n:
        raise _bad(f"body shorter than Content-Length ({avail} < {n})")
    return data[body_start : body_start + n]


def split_stream(buffer: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[bytes | None, int]:
    """Frame one message from a stream buffer (TCP/TLS) by Content-Length.

    Returns ``(message, consumed)``; ``message`` is None when more data is needed
    (``consumed`` then counts only skipped CRLF keep-alives). A head without
    Content-Length, or an invalid one, is a framing error: the caller should close.
    """
    start = 0
    n = len(buffer)
    while start + 1 < n and buffer[start] == 13 and buffer[start + 1] == 10:
        start += 2
    idx = buffer.find(b"\r\n\r\n", start)
    if idx < 0:
        if n - start > limits.max_message_size:
            raise SipParseError(513, "Message Too Large: header section too long")
        return None, start
    cl: int | None = None
    for line in buffer[start:idx].split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() in (b"content-length", b"l"):
            v = value.strip()
            if not v.isdigit():
                raise _bad("invalid Content-Length on a stream transport")
            cl = int(v)
            break
    if cl is None:
        raise _bad("missing Content-Length on a stream transport")
    end = idx + 4 + cl
    if end - start > limits.max_message_size:
        raise SipParseError(513, "Message Too Large: exceeds stream message limit")
    if end > n:
        return None, start
    return buffer[start:end], end


# --------------------------------------------------------------------------- responses

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    433: "Anonymity Disallowed",
    436: "Bad Identity-Info",
    437: "Unsupported Certificate",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}
_CLASS_REASON = {
    1: "Trying",
    2: "OK",
    3: "Redirect",
    4: "Client Error",
    5: "Server Error",
    6: "Global Failure",
}


def new_tag() -> str:
    """A fresh random tag (RFC 3261 §19.3: at least 32 bits of randomness)."""
    return secrets.token_hex(6)


def _has_tag(value: str) -> bool:
    gt = value.rfind(">")
    tail = value[gt + 1 :] if gt >= 0 else value
    if "tag" not in tail.lower():
        return False
    return any(p.split("=", 1)[0].strip().lower() == "tag" for p in tail.split(";")[1:])


_COPIED = frozenset(("via", "from", "to", "call-id", "cseq"))


def _response_from(
    items_src: list[tuple[str, str, str]],
    status: int,
    reason: str | None,
    to_tag: str | None,
    extra_headers: Iterable[tuple[str, str]],
    body: bytes,
    content_type: str | None,
) -> Response:
    items: list[tuple[str, str, str]] = []
    copied: set[str] = set()
    for item in items_src:
        k = item[0]
        if k in _COPIED:
            if k != "via":
                if k in copied:
                    continue  # a malformed request may repeat them: answer with one
                copied.add(k)
            if k == "to" and status > 100 and not _has_tag(item[2]):
                item = (k, item[1], f"{item[2]};tag={to_tag or new_tag()}")
            items.append(item)
    headers = Headers._from_raw(items)
    for name, value in extra_headers:
        headers.add(name, value)
    if content_type is not None:
        headers.add("Content-Type", content_type)
    if reason is None:
        reason = REASON_PHRASES.get(status) or _CLASS_REASON.get(status // 100, "")
    return Response(status, reason, headers, body)


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    """Build a response per RFC 3261 §8.2.6.

    Copies every Via (in order), From, To, Call-ID and CSeq; adds a To tag (the given
    one, else a random one) when the status is above 100 and To has none.
    """
    return _response_from(
        request.headers._items, status, reason, to_tag, extra_headers, body, content_type
    )


def error_response(exc: SipParseError, *, to_tag: str | None = None) -> Response | None:
    """The response for an answerable :class:`SipParseError`, else None (drop)."""
    if not exc.answerable or exc.headers is None:
        return None
    return _response_from(exc.headers._items, exc.status, exc.reason, to_tag, (), b"", None)


# --------------------------------------------------------------------------- params


def parse_params(text: str, what: str = "header") -> list[tuple[str, str | None]]:
    """Parse ``;name[=value]`` parameters (LWS tolerated, quoted values allowed).

    ``text`` must start with ``;`` (or be empty). Names keep their case; compare
    case-insensitively.
    """
    out: list[tuple[str, str | None]] = []
    if '"' not in text and " " not in text and "\t" not in text:
        # fast path: no LWS, no quoted values (the overwhelmingly common case)
        parts = text.split(";")
        if parts[0]:
            raise _bad(f"unexpected {parts[0][0]!r} in {what} parameters")
        for part in parts[1:]:
            name, eq, value = part.partition("=")
            if not name or not _token_match(name):
                raise _bad(f"empty or invalid {what} parameter name")
            if eq and not value:
                raise _bad(f"invalid value for {what} parameter {_clip(name)!r}")
            out.append((name, value if eq else None))
        return out
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in " \t":
            i += 1
            continue
        if c != ";":
            raise _bad(f"unexpected {c!r} in {what} parameters")
        i += 1
        j = i
        while j < n and text[j] not in "=;":
            j += 1
        name = text[i:j].strip()
        if not name or not _token_match(name):
            raise _bad(f"empty or invalid {what} parameter name")
        if j < n and text[j] == "=":
            j += 1
            while j < n and text[j] in " \t":
                j += 1
            if j < n and text[j] == '"':
                k = j + 1
                while k < n and text[k] != '"':
                    k += 2 if text[k] == "\\" else 1
                if k >= n:
                    raise _bad(f"unterminated quoted {what} parameter value")
                out.append((name, text[j : k + 1]))
                i = k + 1
                continue
            k = j
            while k < n and text[k] != ";":
                k += 1
            value = text[j:k].strip()
            if not value or " " in value or "\t" in value:
                raise _bad(f"invalid value for {what} parameter {_clip(name)!r}")
            out.append((name, value))
            i = k
        else:
            out.append((name, None))
            i = j
    return out


def _param(params: Iterable[tuple[str, str | None]], name: str) -> tuple[bool, str | None]:
    low = name.lower()
    for k, v in params:
        if k.lower() == low:
            return True, v
    return False, None


def _fmt_params(params: Iterable[tuple[str, str | None]]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


# --------------------------------------------------------------------------- URIs

_HOST_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_\-.]+)(?::([0-9]{1,5}))?\Z")
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
        out.append(_fmt_params(self.params))
        if self.headers is not None:
            out += ["?", self.headers]
        return "".join(out)

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unquote(self.user, _ENC, _ERRORS)

    def has_param(self, name: str) -> bool:
        return _param(self.params, name)[0]

    def get_param(self, name: str) -> str | None:
        """Value of a URI parameter (None if absent or valueless)."""
        return _param(self.params, name)[1]

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
        return f"tel:{self.number}{_fmt_params(self.params)}"

    @property
    def user_unescaped(self) -> str:
        return unquote(self.number, _ENC, _ERRORS)

    @property
    def is_global(self) -> bool:
        return self.number.startswith("+")

    def has_param(self, name: str) -> bool:
        return _param(self.params, name)[0]

    def get_param(self, name: str) -> str | None:
        return _param(self.params, name)[1]

    def with_param(self, name: str, value: str | None = None) -> TelUri:
        low = name.lower()
        params = (*tuple(p for p in self.params if p[0].lower() != low), (name, value))
        return TelUri(self.number, params)


def _uri_params(text: str) -> tuple[tuple[str, str | None], ...]:
    out: list[tuple[str, str | None]] = []
    for part in text.split(";")[1:]:
        name, eq, value = part.partition("=")
        if not name:
            raise _bad("empty URI parameter")
        out.append((name, value if eq else None))
    return tuple(out)


def parse_uri(text: str) -> SipUri | TelUri:
    """Parse a sip:, sips: or tel: URI. Other schemes raise a 416 error."""
    if not text or any(c in _BAD_URI_CHARS for c in text):
        raise _bad(f"invalid URI {_clip(text)!r}")
    scheme, sep, rest = text.partition(":")
    low = scheme.lower()
    if not sep:
        raise _bad(f"URI without scheme {_clip(text)!r}")
    if low == "tel":
        semi = rest.find(";")
        number = rest if semi < 0 else rest[:semi]
        if not number:
            raise _bad("empty tel: number")
        return TelUri(number, _uri_params(rest[semi:]) if semi >= 0 else ())
    if low not in ("sip", "sips"):
        raise SipParseError(416, f"Unsupported URI Scheme: {_clip(scheme)}")
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
            raise _bad("empty user part in SIP URI")
    headers: str | None = None
    q = rest.find("?")
    if q >= 0:
        headers = rest[q + 1 :]
        rest = rest[:q]
    semi = rest.find(";")
    hostport = rest if semi < 0 else rest[:semi]
    params = _uri_params(rest[semi:]) if semi >= 0 else ()
    m = _HOST_RE.match(hostport)
    if m is None:
        raise _bad(f"invalid host in SIP URI {_clip(hostport)!r}")
    port: int | None = None
    if m.group(2) is not None:
        port = int(m.group(2))
        if port > 65535:
            raise _bad(f"port out of range in SIP URI: {port}")
    return SipUri(scheme, user, password, m.group(1), port, params, headers)


# --------------------------------------------------------------------------- name-addr


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
        return _param(self.params, "tag")[1]

    def get_param(self, name: str) -> str | None:
        return _param(self.params, name)[1]

    def has_param(self, name: str) -> bool:
        return _param(self.params, name)[0]

    @property
    def sip_uri(self) -> SipUri | TelUri:
        return parse_uri(self.uri)

    def __str__(self) -> str:
        dn = ""
        if self.display_name is not None:
            esc = self.display_name.replace("\\", "\\\\").replace('"', '\\"')
            dn = f'"{esc}" '
        if self.bracketed or dn:
            return f"{dn}<{self.uri}>{_fmt_params(self.params)}"
        return f"{self.uri}{_fmt_params(self.params)}"


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
    raise _bad("unterminated quoted string in display name")


def parse_name_addr(value: str) -> NameAddr:
    """Parse ``[display-name] <uri> *(;param)`` or ``addr-spec *(;param)``.

    In addr-spec form the parameters belong to the header, not the URI (RFC 3261
    §20.10), and the URI may not contain ``;``, ``?`` or ``,``.
    """
    s = value.strip()
    if not s:
        raise _bad("empty name-addr")
    display: str | None = None
    if s[0] == '"':
        display, end = _unquote_qs(s, 0)
        rest = s[end:].lstrip()
        if not rest.startswith("<"):
            raise _bad("quoted display name not followed by <URI>")
        s = rest
    lt = s.find("<")
    if lt >= 0:
        if display is None and lt > 0:
            dn = s[:lt].strip()
            for word in dn.split():
                if not _token_match(word):
                    raise _bad(f"invalid unquoted display name {_clip(dn)!r}")
            display = " ".join(dn.split()) or None
        gt = s.find(">", lt)
        if gt < 0:
            raise _bad("unterminated <URI> in name-addr")
        uri = s[lt + 1 : gt]
        if not _scheme_match(uri) or uri != uri.strip():
            raise _bad(f"invalid URI in name-addr {_clip(uri)!r}")
        params = parse_params(s[gt + 1 :])
        return NameAddr(display, uri, tuple(params), True)
    semi = s.find(";")
    uri = s if semi < 0 else s[:semi].rstrip()
    if not _scheme_match(uri) or "?" in uri or "," in uri:
        raise _bad(f"invalid addr-spec {_clip(uri)!r}")
    params = parse_params(s[semi:]) if semi >= 0 else []
    return NameAddr(None, uri, tuple(params), False)


# --------------------------------------------------------------------------- Via


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
        return _param(self.params, "branch")[1]

    @property
    def received(self) -> str | None:
        return _param(self.params, "received")[1]

    @property
    def maddr(self) -> str | None:
        return _param(self.params, "maddr")[1]

    @property
    def has_rport(self) -> bool:
        return _param(self.params, "rport")[0]

    @property
    def rport(self) -> int | None:
        v = _param(self.params, "rport")[1]
        return int(v) if v else None

    @property
    def ttl(self) -> int | None:
        v = _param(self.params, "ttl")[1]
        return int(v) if v else None

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {self.host}{port}{_fmt_params(self.params)}"


_VIA_PREFIX = re.compile(
    r"\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*"
    r"([A-Za-z0-9\-.!%*_+`'~]+)\s+([^;\s]+)\s*"
)
_via_match = _VIA_PREFIX.match


def parse_via(value: str) -> Via:
    """Parse one Via value (already split from a comma list)."""
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
        raise _bad(f"malformed Via {_clip(value)!r}")
    proto, version, transport, sent_by = m.groups()
    return _finish_via(value, proto, version, transport, sent_by, m.end())


def _finish_via(
    value: str, proto: str, version: str, transport: str, sent_by: str, end: int
) -> Via:
    hm = _HOST_RE.match(sent_by)
    if hm is None:
        raise _bad(f"invalid sent-by in Via {_clip(sent_by)!r}")
    port: int | None = None
    if hm.group(2) is not None:
        port = int(hm.group(2))
        if port > 65535:
            raise _bad(f"Via port out of range: {port}")
    rest = value[end:]
    params: tuple[tuple[str, str | None], ...] = ()
    if rest:
        plist = parse_params(rest, "Via")
        for name, v in plist:
            low = name.lower()
            if low == "ttl" and (v is None or not v.isdigit() or int(v) > 255):
                raise _bad("Via ttl must be 0-255")
            if low == "rport" and v is not None and (not v.isdigit() or int(v) > 65535):
                raise _bad("invalid Via rport value")
        params = tuple(plist)
    return Via(transport.upper(), hm.group(1), port, params, f"{proto}/{version}")


# --------------------------------------------------------------------------- scalars


def parse_cseq(value: str) -> tuple[int, str]:
    """``CSeq: <number> <method>`` -> (number, method); number is 0..2**32-1."""
    parts = value.split()
    if len(parts) != 2:
        raise _bad(f"malformed CSeq {_clip(value)!r}")
    num, method = parts
    if not num.isdigit() or not num.isascii() or len(num) > 20:
        raise _bad(f"invalid CSeq number {_clip(num)!r}")
    n = int(num)
    if n > MAX_UINT32:
        raise _bad("CSeq number exceeds 2**32-1")
    if not _token_match(method):
        raise _bad(f"invalid CSeq method {_clip(method)!r}")
    return n, method


def parse_max_forwards(value: str) -> int:
    """Max-Forwards as an int, 0..255."""
    v = value.strip()
    if not v.isdigit() or not v.isascii() or len(v) > 10:
        raise _bad(f"invalid Max-Forwards {_clip(v)!r}")
    n = int(v)
    if n > 255:
        raise _bad(f"Max-Forwards {n} out of range 0-255")
    return n
