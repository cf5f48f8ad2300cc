"""Redirect mode: the 302 that sends every call on, and the INVITE held while its warning
plays before that 302."""

from __future__ import annotations

from dataclasses import dataclass

from ringback.sip.model import Request

WARNING_HEADER = "X-Ringback-Warning"


@dataclass(slots=True)
class Held:
    """An INVITE held open while its warning plays."""

    invite: Request
    transport: str
    contact: str  # where the 302 at the end points
    to_tag: str
    reliable: bool  # the INVITE said `Require: 100rel`: the 183 goes reliably (RFC 3262)
    ready: bool = False  # the 183 (or the lab callee's 200) has gone out; audio plays
    purpose: str = "warning"  # or "lab_tone": the lab callee answering


def redirect_headers(
    contact: str, *, played: bool | None = None, why: str = ""
) -> tuple[tuple[str, str], ...]:
    """The 302's own headers: the loop-marked Contact, and whether a warning played."""
    extra: tuple[tuple[str, str], ...] = (("Contact", f"<{contact}>"),)
    if played is True:
        extra += ((WARNING_HEADER, "played"),)
    elif played is False:
        extra += ((WARNING_HEADER, f"skipped; reason={why}"),)
    return extra
