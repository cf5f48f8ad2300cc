"""What the call core asks its shell to do, besides sending bytes.

The core never calls out: it queues these and the shell takes them with
:meth:`~ringback.calls.controller.CallController.take_effects` (aioquic's ``next_event()``
style). The shell reports back through the controller's ``warning_*`` methods.
"""

from __future__ import annotations

from dataclasses import dataclass

from ringback.media.offer_answer import Selection
from ringback.registry.listing_index import Entry
from ringback.sip.sdp import Attribute
from ringback.sip.transaction import TxKey

Address = tuple[str, int]
WARNING = "warning"  # the court's recording, as early media
LAB_TONE = "lab_tone"  # the lab callee's tone, after its 200


@dataclass(frozen=True, slots=True)
class StartWarning:
    """Play ``entry``'s recording for the held INVITE ``key``: get a media port and the
    audio, then report ``warning_ready`` (or ``warning_ended`` with the reason it could not
    start), and ``warning_ended`` when the stream is over."""

    key: TxKey
    entry: Entry
    media: Selection
    # Where RTP may go, in order of preference (the offer's address, then the INVITE's
    # source): already checked against the destination policy; the only latch hosts.
    destinations: tuple[Address, ...]
    caller: str | None  # the caller's URI, for proof of play where configured
    purpose: str = WARNING
    # RFC 3312 precondition lines for the answer, and whether the audio must wait for a
    # ResumeWarning (the caller's own resources are not reserved yet).
    sdp_attributes: tuple[Attribute, ...] = ()
    wait: bool = False


@dataclass(frozen=True, slots=True)
class StopWarning:
    """Stop the warning of ``key`` at once (CANCEL, or no PRACK); no report is needed."""

    key: TxKey


@dataclass(frozen=True, slots=True)
class ResumeWarning:
    """The caller's preconditions are met: start the audio of a warning that waited."""

    key: TxKey


Effect = StartWarning | StopWarning | ResumeWarning
