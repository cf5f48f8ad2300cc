"""The rules of a listing's times, shared by every way a court lists a number (the API's
`PUT /v1/listings/{number}` and the portal's form), so each rule has one code path.

- `expires_at` is in the future and at most `max_duration_days` away;
- a listing starts after the notice period (`notice_period_days`) unless it gives
  `effective_at` earlier, and then it needs `effective_reason` (which is audited);
- `effective_at` is not in the past (a few minutes of clock skew are tolerated);
- `expires_at` is after the time the listing starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# effective_at may be this far in the past (clock skew between a court's system and ours).
PAST_TOLERANCE = timedelta(minutes=5)
STATUSES = ("active", "suspended", "cleared", "expired")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class RuleViolation(ValueError):
    """A listing that breaks a rule. `code` is the API's error code and `message` its
    English text; `rule` and `params` let a person's interface say it in their language."""

    def __init__(self, code: str, rule: str, message: str, **params: Any) -> None:
        super().__init__(message)
        self.code = code
        self.rule = rule
        self.message = message
        self.params = params


@dataclass(frozen=True)
class ListingTimes:
    effective_at: datetime | None  # to store; None: the existing one, or notice_end if new
    effective_reason: str | None  # to store (only with an effective_at of its own)
    notice_end: datetime  # when a new listing starts by default
    starts_at: datetime  # when the listing will start, as checked


def listing_status(row: Any, now: datetime) -> str:
    """A listing's status as people see it: an open listing past its expiry is expired."""
    status: str = row["status"]
    if status in ("active", "suspended") and row["expires_at"] <= now:
        return "expired"
    return status


def check_listing_times(
    now: datetime,
    *,
    notice_period_days: float,
    max_duration_days: float,
    expires_at: datetime,
    effective_at: datetime | None,
    effective_reason: str | None,
    existing_effective_at: datetime | None,
) -> ListingTimes:
    """Check a listing's times (`existing_effective_at`: of the court's open listing of the
    number, which this one updates); `RuleViolation` when a rule is broken."""
    notice_end = now + timedelta(days=notice_period_days)
    max_expiry = now + timedelta(days=max_duration_days)
    if expires_at <= now:
        raise RuleViolation(
            "invalid_field",
            "expires_in_past",
            f"expires_at: {_iso(expires_at)} is in the past",
            expires_at=expires_at,
        )
    if expires_at > max_expiry:
        raise RuleViolation(
            "expiry_too_late",
            "expiry_too_late",
            f"expires_at: at most {max_duration_days} days from now "
            f"(latest {_iso(max_expiry)}), got {_iso(expires_at)}",
            days=max_duration_days,
            latest=max_expiry,
            expires_at=expires_at,
        )
    if existing_effective_at is not None and effective_at == existing_effective_at:
        effective_at = None  # unchanged: no new justification needed
    if effective_at is not None:
        if effective_at < now - PAST_TOLERANCE:
            raise RuleViolation(
                "invalid_field",
                "effective_in_past",
                f"effective_at: {_iso(effective_at)} is in the past",
                effective_at=effective_at,
            )
        if effective_at < notice_end and effective_reason is None:
            raise RuleViolation(
                "effective_reason_required",
                "effective_reason_required",
                f"effective_at {_iso(effective_at)} is before the end of the "
                f"{notice_period_days:g}-day notice period ({_iso(notice_end)}); "
                "an earlier start needs effective_reason (it is audited)",
                effective_at=effective_at,
                days=notice_period_days,
                notice_end=notice_end,
            )
    starts_at = effective_at or existing_effective_at or notice_end
    if expires_at <= starts_at:
        raise RuleViolation(
            "invalid_field",
            "expires_before_start",
            f"expires_at ({_iso(expires_at)}) must be after effective_at ({_iso(starts_at)})",
            expires_at=expires_at,
            effective_at=starts_at,
        )
    return ListingTimes(
        effective_at,
        effective_reason if effective_at is not None else None,
        notice_end,
        starts_at,
    )
