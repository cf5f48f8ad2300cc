"""Building responses to requests (RFC 3261 §8.2.6): status, reason phrase, the copied
header fields and the To tag."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from .errors import SipParseError
from .headers import Headers
from .model import Request, Response

__all__ = ["REASON_PHRASES", "error_response", "make_response", "new_tag"]

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
    """Whether a To value has a ``tag`` parameter.

    Hand-written: measured ~10x faster than ``parse_name_addr(value).tag`` on the hot path.
    """
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
