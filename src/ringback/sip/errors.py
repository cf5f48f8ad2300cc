"""The one exception of the SIP parsers, and helpers that build its messages."""

from __future__ import annotations

from .headers import Headers

__all__ = ["SipParseError"]


class SipParseError(Exception):
    """A message (or a part of it) is not valid SIP.

    ``status``/``reason`` are what to answer with; ``reason`` is plain ASCII-safe text
    suitable for a reason phrase. ``answerable`` is True when Via, From, To, Call-ID
    and CSeq were readable so a response can be built (see
    :func:`ringback.sip.responses.error_response`, which uses ``headers``); otherwise
    the caller should drop the message silently.
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


def bad_request(reason: str) -> SipParseError:
    """A 400 with ``reason`` after "Bad Request: "."""
    return SipParseError(400, "Bad Request: " + reason)


def clip(text: str, n: int = 40) -> str:
    """``text`` shortened to ``n`` characters for an error message."""
    return text if len(text) <= n else text[: n - 3] + "..."
