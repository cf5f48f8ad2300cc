"""Whom an INVITE calls and whether that number is listed: Request-URI → E.164 → index.

Every way this can go wrong is an outcome too (a bad number, the index not loaded): the
caller redirects in every case (fail open), counted by outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from ringback.registry.listing_index import Entry, ListingIndex
from ringback.registry.numbers import (
    AmbiguousNumber,
    NumberError,
    NumberingPlan,
    dialled_number,
)
from ringback.sip.errors import SipParseError
from ringback.sip.fast import fast_sip_uri
from ringback.sip.uri import parse_uri

# Decision outcomes (label values of ringback_sip_decisions_total).
NOT_LISTED = "not_listed"
LOOP_MARKED = "loop_marked"
INDEX_NOT_READY = "index_not_ready"
BAD_NUMBER = "bad_number"
AMBIGUOUS_NUMBER = "ambiguous_number"
LISTED = "listed"
ANNOUNCED = "announced"
LISTED_UNANNOUNCED = "listed_unannounced"
INTERNAL_ERROR = "internal_error"
INDEX_STALE = "index_stale"


class Decision(NamedTuple):
    """A tuple, not a frozen dataclass: one is made per INVITE, and a tuple is made in a
    third of the time."""

    outcome: str
    contact: str  # the loop-marked Request-URI the 302 points to
    entry: Entry | None = None  # the listing, when the number is to be warned
    skipped: bool = False  # listed, but not to be warned (the 302 says why)


class Decider:
    """Looks the callee of a Request-URI up in the index; pure apart from the index."""

    def __init__(
        self,
        index: ListingIndex,
        plan: NumberingPlan,
        *,
        index_ready: Callable[[], bool],
        index_staleness: Callable[[], float] = lambda: 0.0,
        max_staleness_s: float = 600.0,
        loop_marker: str = "rbk",
        test_numbers: dict[int, int] | None = None,
    ) -> None:
        self.index = index
        # Operator-defined test numbers (number -> recording id), always warned; their
        # entries carry listing id 0, so they never count in court statistics.
        self.test_entries = {
            n: Entry(0, recording_id, 0, 2**32 - 1)
            for n, recording_id in (test_numbers or {}).items()
        }
        self.plan = plan
        self.index_ready = index_ready
        self.index_staleness = index_staleness
        self.max_staleness_s = max_staleness_s
        self.marker = loop_marker.lower()

    def decide(self, ruri: str, wall_now: float) -> Decision:
        """Raises :class:`~ringback.sip.errors.SipParseError` for a malformed URI."""
        fast = fast_sip_uri(ruri)
        user: str | None
        params: dict[str, str | None] | None = None
        if fast is not None and "phone-context" not in fast[1]:
            user, names = fast
            if self.marker in names:
                return Decision(LOOP_MARKED, ruri)
            contact = ruri + ";" + self.marker
        else:
            uri = parse_uri(ruri)
            if uri.has_param(self.marker):
                return Decision(LOOP_MARKED, ruri)
            contact = str(uri.with_param(self.marker))
            user = uri.user_unescaped or None
            params = {name.lower(): value for name, value in uri.params}
        if user is None:
            return Decision(BAD_NUMBER, contact)
        if not self.index_ready():
            return Decision(INDEX_NOT_READY, contact)
        number = _fast_e164(user)
        if number is None:
            try:
                number = dialled_number(user, params, self.plan)
            except AmbiguousNumber:
                return Decision(AMBIGUOUS_NUMBER, contact)  # refused, never guessed
            except NumberError:
                return Decision(BAD_NUMBER, contact)
        entry = self.index.lookup(number, wall_now)
        if entry is None:
            entry = self.test_entries.get(number) if self.test_entries else None
            if entry is None:
                return Decision(NOT_LISTED, contact)
        if self.index_staleness() > self.max_staleness_s:
            # Cut off from the database for too long: the listing may have been cleared.
            return Decision(INDEX_STALE, contact, skipped=True)
        return Decision(LISTED, contact, entry)

    def number_of(self, ruri: str) -> int | None:
        """The E.164 number a Request-URI (loop-marked or not) calls, or None."""
        try:
            uri = parse_uri(ruri)
            user = uri.user_unescaped
            if not user:
                return None
            params = {name.lower(): value for name, value in uri.params}
            return _fast_e164(user) or dialled_number(user, params, self.plan)
        except (NumberError, SipParseError):
            return None

    def fallback_contact(self, ruri: str) -> str:
        """Best-effort loop marking when the URI could not be handled: append the parameter."""
        head, sep, tail = ruri.partition("?")
        return f"{head};{self.marker}{sep}{tail}"


def _fast_e164(user: str) -> int | None:
    if user.startswith("+") and 9 <= len(user) <= 16 and user[1:].isdigit() and user[1] != "0":
        return int(user[1:])
    return None
