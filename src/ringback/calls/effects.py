"""What the call core asks its shell to do, besides sending bytes.

The core never calls out: it queues these and the shell takes them with
:meth:`~ringback.calls.controller.CallController.take_effects` (aioquic's ``next_event()``
style). The shell reports back through the controller's ``warning_*`` and ``relay_*``
methods.
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
RINGBACK = "ringback"  # the warning in place of the ringing tone, on a relay's socket


@dataclass(frozen=True, slots=True)
class StartWarning:
    """Play ``entry``'s recording for the held INVITE ``key``: get a media port and the
    audio, then report ``warning_ready`` (or ``warning_ended`` with the reason it could not
    start), and ``warning_ended`` when the stream is over.

    With ``purpose`` RINGBACK the audio goes out of the caller side of ``key``'s relay (see
    :class:`OpenRelay`) and repeats, with its gap, for up to ``fill_s`` seconds."""

    key: TxKey
    entry: Entry
    media: Selection
    # Where RTP may go, in order of preference (the offer's address, then the INVITE's
    # source): already checked against the destination policy; the only latch hosts.
    destinations: tuple[Address, ...]
    caller: str | None  # the caller's URI, for proof of play where configured
    purpose: str = WARNING
    fill_s: float = 0.0
    # RFC 3312 precondition lines for the answer, and whether the audio must wait for a
    # ResumeWarning (the caller's own resources are not reserved yet).
    sdp_attributes: tuple[Attribute, ...] = ()
    wait: bool = False


@dataclass(frozen=True, slots=True)
class StopWarning:
    """Stop the warning of ``key`` at once (CANCEL, no PRACK, the callee answered); no
    report is needed."""

    key: TxKey


@dataclass(frozen=True, slots=True)
class ResumeWarning:
    """The caller's preconditions are met: start the audio of a warning that waited."""

    key: TxKey


@dataclass(frozen=True, slots=True)
class FinishWarning:
    """Let the play of the warning now under way end (only the first play, with
    ``first_only``), then report ``warning_ended(key, "completed")``; at once if that
    point has passed or nothing plays."""

    key: TxKey
    first_only: bool = False


@dataclass(frozen=True, slots=True)
class OpenRelay:
    """Open a media relay for ``key``: one socket facing the caller (of the caller's IP
    version), one facing the callee (``callee_family``). Report ``relay_opened`` with both
    local addresses, or ``relay_failed``. The caller side latches only to ``caller``."""

    key: TxKey
    caller: tuple[Address, ...]
    callee_family: int


@dataclass(frozen=True, slots=True)
class Bridge:
    """The callee answered: stop the warning at a frame boundary and relay RTP both ways;
    the callee side sends to ``callee[0]`` and latches only to one of ``callee``."""

    key: TxKey
    callee: tuple[Address, ...]


@dataclass(frozen=True, slots=True)
class RelayTo:
    """A re-INVITE or UPDATE moved one side's media: send that side's RTP to ``dest``
    (None: on hold, send nothing)."""

    key: TxKey
    side: str  # "caller" | "callee"
    dest: Address | None


@dataclass(frozen=True, slots=True)
class CloseRelay:
    """The call is over: stop any warning, close both sockets, and record proof of play
    (why the warning stopped, whether the call was answered)."""

    key: TxKey
    stop_reason: str
    answered: bool


Effect = (
    StartWarning
    | StopWarning
    | FinishWarning
    | OpenRelay
    | Bridge
    | RelayTo
    | CloseRelay
    | ResumeWarning
)
