"""Hand-written readers for the hot path, each a shortcut past one of the full parsers.

Each reads one thing from the commonest spelling and returns None for anything
unusual, so that the caller falls back to the full parser. They do not validate: for
input the full parser rejects they may still answer, so use them where the answer is
only looked up or checked again. For input the full parser accepts, they agree with it
(``tests/unit/sip/test_fast.py`` compares them).
"""

from __future__ import annotations

import re

from .headers import ENCODING, ENCODING_ERRORS
from .via import default_port

__all__ = ["fast_sip_uri", "fast_via_branch", "top_via_value"]

# The first header line that starts with a V: group 1 is its value when it is a plain
# "Via:" (or "v:") line, None when it is anything else (the caller gives up then).
_FIRST_V_LINE = re.compile(rb"\r\n(?:(?:Via|v)[ \t]*:([^\r\n]*)|v)", re.IGNORECASE).search
_PLAIN_USER = frozenset("+0123456789-.()")


def top_via_value(data: bytes) -> str | None:
    """The top Via header field's value in a raw SIP message, not parsed.

    Hand-written for speed: measured ~4x faster than ``parse_message`` on an ACK.
    None for anything unusual: no CRLF-terminated head, another header starting with a
    V before the Via, several Via values in the field, folded lines, a bare CR or LF in
    the Via line.
    """
    end = data.find(b"\r\n\r\n")
    if end <= 0 or data.startswith(b"\r\n"):
        return None
    match = _FIRST_V_LINE(data, 0, end + 2)
    if match is None:
        return None
    raw = match.group(1)
    after = match.end()
    if raw is None or data[after : after + 2] != b"\r\n":
        return None
    if b"," in raw or b"\n " in data or b"\n\t" in data:
        return None  # several Vias in one line, or folded headers
    return raw.decode(ENCODING, ENCODING_ERRORS).strip()


def fast_via_branch(value: str) -> tuple[str, str, str] | None:
    """(branch, host in lower case, port) of a Via value in the common spelling
    ``SIP/2.0/UDP host[:port];...;branch=...``; without a port, the transport's default.

    Hand-written for speed: measured ~3x faster than ``parse_via`` on an ACK's Via.
    None for anything else: no branch, an IPv6 literal, spaces, quotes, an odd port.
    """
    if not value.startswith("SIP/2.0/"):
        return None
    space = value.find(" ", 8)
    semi = value.find(";", space)
    if space < 0 or semi < 0:
        return None
    sent_by, params = value[space + 1 : semi], value[semi + 1 :]
    if not sent_by or sent_by[0] == "[" or " " in sent_by:
        return None
    if " " in params or "\t" in params or '"' in params:
        return None
    host, _, port = sent_by.partition(":")
    if port:
        if not port.isdigit() or port[0] == "0" or len(port) > 5:
            return None
    else:
        port = str(default_port(value[8:space].upper()))
    for param in params.split(";"):
        name = param[:7].lower()
        if name == "branch=":
            return param[7:], host.lower(), port
        if name == "branch":
            return None  # a valueless branch first: Via.branch is None
    return None


def fast_sip_uri(ruri: str) -> tuple[str, set[str]] | None:
    """(user, lower-case parameter names) of ``sip:+8613800138000@host[:port][;params]``.

    Hand-written for speed: measured ~4x faster than ``parse_uri`` on a Request-URI.
    None for anything else: another scheme, no user or one that is not a plain number,
    a password, %-escapes, quotes, URI headers. The host and the parameters are not
    checked (``parse_uri`` rejects a malformed host; this answers for it).
    """
    if not ruri.startswith("sip:"):
        return None
    at = ruri.find("@", 4)
    if at < 0 or "?" in ruri or "%" in ruri or '"' in ruri:
        return None
    user = ruri[4:at]
    if not user or not _PLAIN_USER.issuperset(user):
        return None
    rest = ruri[at + 1 :]
    if not rest or rest[0] == ";":
        return None
    semi = rest.find(";")
    if semi < 0:
        return user, set()
    return user, {p.split("=", 1)[0].lower() for p in rest[semi + 1 :].split(";")}
