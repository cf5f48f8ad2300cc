"""Finding the session description in an INVITE body, where trunks put it.

SIP-I/SIP-T trunks (ITU-T Q.1912.5, RFC 3204) send ``multipart/mixed`` bodies holding
``application/sdp`` and ``application/isup``; RFC 5621 describes the framing. Only the
first level is searched: nested multiparts do not occur in practice.
"""

from __future__ import annotations

__all__ = ["sdp_of"]


def _media_type(content_type: str) -> tuple[str, dict[str, str]]:
    """(lower-case type/subtype, parameters) of a Content-Type value."""
    head, *params = content_type.split(";")
    values: dict[str, str] = {}
    for param in params:
        name, sep, value = param.partition("=")
        if sep:
            values[name.strip().lower()] = value.strip().strip('"')
    return head.strip().lower(), values


def sdp_of(content_type: str | None, body: bytes) -> bytes | None:
    """The SDP in ``body``: the body itself for ``application/sdp``, the first
    ``application/sdp`` part of a ``multipart/mixed`` (or ``multipart/alternative``) body,
    else None."""
    if not body or content_type is None:
        return None
    media_type, params = _media_type(content_type)
    if media_type == "application/sdp":
        return body
    if not media_type.startswith("multipart/") or not params.get("boundary"):
        return None
    delimiter = b"--" + params["boundary"].encode("utf-8", "replace")
    chunks = body.split(delimiter)
    for chunk in chunks[1:]:  # chunks[0] is the preamble
        if chunk.startswith(b"--"):
            break  # the close delimiter
        part = chunk[2:] if chunk.startswith(b"\r\n") else chunk.lstrip(b"\n")
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            head, sep, content = part.partition(b"\n\n")
            if not sep:
                continue
        part_type = "text/plain"  # RFC 2046 §5.1: the default inside multipart/mixed
        for line in head.decode("utf-8", "replace").splitlines():
            name, colon, value = line.partition(":")
            if colon and name.strip().lower() in ("content-type", "c"):
                part_type = value
        if _media_type(part_type)[0] == "application/sdp":
            # The CRLF before the next delimiter belongs to the delimiter (RFC 2046 §5.1.1).
            if content.endswith(b"\r\n"):
                content = content[:-2]
            elif content.endswith(b"\n"):
                content = content[:-1]
            return content or None
    return None
