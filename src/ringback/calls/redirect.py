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
    early_media: bool = False  # the INVITE offered P-Early-Media (RFC 5009): say sendonly
    precondition: bool = False  # `Require: precondition` (RFC 3312): the 183 says so too
    waiting_qos: bool = False  # audio waits for the caller's UPDATE: its resources are met
    sdp: bytes = b""  # our last SDP answer (the 183's; an UPDATE's 200 revises it)


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
