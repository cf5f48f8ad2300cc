"""Reading SIP messages off the wire (RFC 3261 §7, §18.3): :func:`parse_message` for a
datagram or a frame, :func:`split_stream` to frame a stream, and the :class:`Limits`
both enforce.

Design for the hot path: :func:`parse_message` splits the head once, builds the
header list (unfolding and compact-form expansion included) and validates only what
every consumer needs anyway (start line, Call-ID/CSeq/From/To/Via presence, CSeq,
Max-Forwards, Content-Length, the top Via). Everything else -- URIs, name-addr,
further Via values -- is parsed lazily by the helper functions when asked.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SipParseError, bad_request, clip
from .grammar import scheme_match, token_match
from .headers import ENCODING, ENCODING_ERRORS, SINGLETONS, Headers, canonical, split_list
from .model import Request, Response, parse_cseq, parse_max_forwards
from .via import parse_via

__all__ = ["DEFAULT_LIMITS", "Limits", "parse_message", "split_stream"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard bounds applied before and while parsing (anti-DoS)."""

    max_message_size: int = 65535
    max_header_count: int = 128
    max_line_length: int = 8192


DEFAULT_LIMITS = Limits()

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
        lines = data[start:idx].decode(ENCODING, ENCODING_ERRORS).split("\r\n")
        no_blank = False
    else:
        idx = data.find(b"\n\n", start)
        if idx >= 0:  # tolerate bare-LF senders
            body_start = idx + 2
            head = data[start:idx].decode(ENCODING, ENCODING_ERRORS)
        else:
            body_start = len(data)
            head = data[start:].decode(ENCODING, ENCODING_ERRORS).rstrip("\r\n")
        lines = [ln.rstrip("\r") for ln in head.split("\n")]
        no_blank = idx < 0
    if not lines or not lines[0]:
        raise bad_request("empty message")

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
                error = error or bad_request("continuation line before first header")
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
            error = error or bad_request(f"header line without colon: {clip(line)!r}")
            continue
        name = name.rstrip()
        ent = _NAME_CACHE_GET(name)
        if ent is None:
            ent = canonical(name.lower())
            if ent is None:
                if not token_match(name):
                    error = error or bad_request(f"invalid header name {clip(name)!r}")
                    continue
                ent = (name, name.lower())
            if len(_NAME_CACHE) < 1024:
                _NAME_CACHE[name] = ent
        name, key = ent
        if key in SINGLETONS:
            value = value.strip()
            if key in seen:
                if key != "content-length" or seen[key] != value:
                    error = error or bad_request(f"multiple {name} header fields")
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
        raise fail(
            bad_request("malformed Request-Line (expected 'Method SP Request-URI SP SIP/2.0')")
        )
    uri = parts[1]
    if not token_match(method):
        raise fail(bad_request(f"invalid method {clip(method)!r}"))
    if parts[2] != "SIP/2.0":
        if parts[2].upper() == "SIP/2.0":
            pass
        elif parts[2].upper().startswith("SIP/"):
            raise fail(SipParseError(505, f"Version Not Supported: {clip(parts[2])}"))
        else:
            raise fail(bad_request(f"invalid SIP-Version {clip(parts[2])!r}"))
    if not scheme_match(uri) or "<" in uri or ">" in uri:
        raise fail(bad_request(f"invalid Request-URI {clip(uri)!r}"))
    low_uri = uri[:5].lower()
    if (low_uri.startswith("sip:") or low_uri == "sips:") and "?" in uri:
        # RFC 4475 §3.1.2.11 escruri: headers are not allowed in a Request-URI
        answer_uri = uri.split("@", 1)[-1]
        if "?" in answer_uri:
            raise fail(bad_request("escaped headers not allowed in the Request-URI"))
    if error is not None:
        raise fail(error)
    if no_blank:
        raise fail(bad_request("no empty line after the header fields"))
    for k in _REQUIRED:
        if k not in seen and not (k == "via" and has_via):
            raise fail(bad_request(f"missing {_REQUIRED_NAMES[k]} header"))
    if not seen["call-id"]:
        raise fail(bad_request("empty Call-ID header"))
    try:
        cseq = parse_cseq(seen["cseq"])
        if cseq[1] != method:
            raise bad_request(f"CSeq method {clip(cseq[1])!r} does not match {clip(method)!r}")
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
        raise SipParseError(505, f"Version Not Supported: {clip(version)}")
    if len(parts) < 2:
        raise bad_request("malformed Status-Line")
    code = parts[1]
    if len(code) != 3 or not code.isdigit() or not "100" <= code <= "699":
        raise bad_request(f"invalid status code {clip(code)!r}")
    if error is not None:
        raise error
    if no_blank:
        raise bad_request("no empty line after the header fields")
    for k in _REQUIRED:
        if k != "via" and k not in seen:
            raise bad_request(f"missing {_REQUIRED_NAMES[k]} header")
    if "via" not in headers:
        raise bad_request("missing Via header")
    parse_cseq(seen["cseq"])
    body = _body(data, body_start, seen.get("content-length"), DEFAULT_LIMITS)
    return Response(int(code), parts[2] if len(parts) > 2 else "", headers, body)


def _body(data: bytes, body_start: int, cl: str | None, limits: Limits) -> bytes:
    if cl is None:
        return data[body_start:]
    if not cl.isdigit() or not cl.isascii():
        raise bad_request(f"invalid Content-Length {clip(cl)!r}")
    n = int(cl)
    if n > limits.max_message_size:
        raise SipParseError(413, f"Request Entity Too Large: Content-Length {n} exceeds limit")
    avail = len(data) - body_start
    if avail < n:
        raise bad_request(f"body shorter than Content-Length ({avail} < {n})")
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
                raise bad_request("invalid Content-Length on a stream transport")
            cl = int(v)
            break
    if cl is None:
        raise bad_request("missing Content-Length on a stream transport")
    end = idx + 4 + cl
    if end - start > limits.max_message_size:
        raise SipParseError(513, "Message Too Large: exceeds stream message limit")
    if end > n:
        return None, start
    return buffer[start:end], end
