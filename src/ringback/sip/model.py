"""SIP requests and responses as objects (RFC 3261 §7), and their serialization.

The fields every transaction and dialog reads (Call-ID, CSeq, the top Via, tags) are
parsed from the header text when asked for; a :class:`Request` keeps its CSeq and top
Via once parsed (:func:`ringback.sip.message.parse_message` hands them over).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import bad_request, clip
from .grammar import token_match
from .headers import ENCODING, ENCODING_ERRORS, Headers, split_list
from .uri import parse_name_addr
from .via import Via, parse_via

__all__ = ["Message", "Request", "Response", "parse_cseq", "parse_max_forwards"]

MAX_UINT32 = 2**32 - 1


def _semantic(h: Headers) -> list[tuple[str, str]]:
    """Headers as compared by message equality: Content-Length is derived data."""
    return [(k, v) for k, _, v in h._items if k != "content-length"]


class Message:
    """What :class:`Request` and :class:`Response` share: header fields, a body, the
    dialog and transaction fields read from them, equality and serialization.

    Two messages are equal when their start lines, header fields (in order, apart from
    Content-Length, which is derived from the body) and bodies are."""

    __slots__ = ()

    headers: Headers
    body: bytes

    def _start(self) -> tuple[object, ...]:
        """The start-line fields, as compared by equality."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, type(self)):
            return NotImplemented
        return (self._start(), _semantic(self.headers), self.body) == (
            other._start(),
            _semantic(other.headers),
            other.body,
        )

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        """(sequence number, method)."""
        return parse_cseq(self.headers.get("CSeq") or "")

    @property
    def top_via(self) -> Via:
        """The topmost Via value (raises :class:`~ringback.sip.errors.SipParseError`)."""
        return self._read_top_via()

    def _read_top_via(self) -> Via:
        v = self.headers.get("Via")
        if v is None:
            raise bad_request("missing Via header")
        return parse_via(split_list(v)[0] if "," in v else v)

    @property
    def from_tag(self) -> str | None:
        v = self.headers.get("From")
        return None if v is None else parse_name_addr(v).tag

    @property
    def to_tag(self) -> str | None:
        v = self.headers.get("To")
        return None if v is None else parse_name_addr(v).tag

    def to_bytes(self) -> bytes:
        """Serialize; Content-Length is always (re)written from ``body``."""
        raise NotImplementedError


@dataclass(slots=True, eq=False)
class Request(Message):
    """A SIP request. ``uri`` is the Request-URI text (see
    :func:`ringback.sip.uri.parse_uri`)."""

    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    _via: Via | None = field(default=None, repr=False)
    _cseq: tuple[int, str] | None = field(default=None, repr=False)
    _tx_key: tuple[str, ...] | None = field(default=None, repr=False)  # see transaction.py

    def _start(self) -> tuple[object, ...]:
        return (self.method, self.uri)

    def to_bytes(self) -> bytes:
        """Serialize; Content-Length is always (re)written from ``body``.

        Written out per class: measured faster than a shared method building the start
        line through a call, on the response hot path."""
        head = (
            f"{self.method} {self.uri} SIP/2.0\r\n{self.headers._head()}"
            f"Content-Length: {len(self.body)}\r\n\r\n"
        )
        return head.encode(ENCODING, ENCODING_ERRORS) + self.body

    @property
    def cseq(self) -> tuple[int, str]:
        """(sequence number, method), parsed once."""
        if self._cseq is None:
            self._cseq = parse_cseq(self.headers.get("CSeq") or "")
        return self._cseq

    @property
    def top_via(self) -> Via:
        """The topmost Via value, parsed once (raises
        :class:`~ringback.sip.errors.SipParseError`)."""
        if self._via is None:
            self._via = self._read_top_via()
        return self._via

    @property
    def max_forwards(self) -> int | None:
        v = self.headers.get("Max-Forwards")
        return None if v is None else parse_max_forwards(v)


@dataclass(slots=True, eq=False)
class Response(Message):
    """A SIP response."""

    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def _start(self) -> tuple[object, ...]:
        return (self.status, self.reason)

    def to_bytes(self) -> bytes:
        """Serialize; Content-Length is always (re)written from ``body``.

        Written out per class: measured faster than a shared method building the start
        line through a call, on the response hot path."""
        head = (
            f"SIP/2.0 {self.status} {self.reason}\r\n{self.headers._head()}"
            f"Content-Length: {len(self.body)}\r\n\r\n"
        )
        return head.encode(ENCODING, ENCODING_ERRORS) + self.body


def parse_cseq(value: str) -> tuple[int, str]:
    """``CSeq: <number> <method>`` -> (number, method); number is 0..2**32-1."""
    parts = value.split()
    if len(parts) != 2:
        raise bad_request(f"malformed CSeq {clip(value)!r}")
    num, method = parts
    if not num.isdigit() or not num.isascii() or len(num) > 20:
        raise bad_request(f"invalid CSeq number {clip(num)!r}")
    n = int(num)
    if n > MAX_UINT32:
        raise bad_request("CSeq number exceeds 2**32-1")
    if not token_match(method):
        raise bad_request(f"invalid CSeq method {clip(method)!r}")
    return n, method


def parse_max_forwards(value: str) -> int:
    """Max-Forwards as an int, 0..255."""
    v = value.strip()
    if not v.isdigit() or not v.isascii() or len(v) > 10:
        raise bad_request(f"invalid Max-Forwards {clip(v)!r}")
    n = int(v)
    if n > 255:
        raise bad_request(f"Max-Forwards {n} out of range 0-255")
    return n
