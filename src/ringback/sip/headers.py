"""SIP header fields: the names table, compact forms and the :class:`Headers` container.

Header values are kept as ``str`` decoded as UTF-8 with ``surrogateescape`` (see
:data:`ENCODING`) so arbitrary bytes survive a parse/serialize round trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["Headers", "split_list"]

#: how header text is decoded from and encoded to bytes
ENCODING = "utf-8"
ENCODING_ERRORS = "surrogateescape"

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
#: lower-case spelling -> (canonical name, key), or None for a name not in the table
canonical = _CANON.get

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
#: headers that may occur once in a message (a second one is a 400)
SINGLETONS = frozenset(
    ("from", "to", "call-id", "cseq", "max-forwards", "content-length", "content-type")
)


def _key(name: str) -> tuple[str, str]:
    ent = canonical(name.lower())
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
    ``_items`` holds (lower-case key, name, value) triples; the parser and the
    response builder in this package read and build it directly (:meth:`_from_raw`).
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
