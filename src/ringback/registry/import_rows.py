"""The rules every row of a bulk import meets, and the staging rows they become.

`RowRules` checks one row (number normalised to E.164, ISO 8601 times with an offset, the
expiry cap and notice period of the config) and raises `ImportRejected` naming its line;
both readers (`ringback.registry.import_fast`, vectorised, and the csv module fallback in
`ringback.registry.import_csv`) apply exactly these rules. Valid rows become binary COPY
tuples for the ``import_staging`` table (`StagingBatch`).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from ringback.registry.numbers import NumberError, NumberingPlan, normalize

COLUMNS = ("number", "case_ref", "expires_at", "effective_at")
REQUIRED = ("number", "case_ref", "expires_at")
PAST_TOLERANCE = timedelta(minutes=5)

# (line, number, case_ref, effective_at, expires_at, effective_at given)
StagingRecord = tuple[int, int, str, datetime | None, datetime, bool]


class ImportRejected(Exception):
    """The file is refused; nothing was changed. `line` is 1-based (the header is line 1)."""

    def __init__(
        self,
        code: str,
        message: str,
        line: int | None = None,
        *,
        rule: str | None = None,
        **params: object,
    ) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.code = code
        self.line = line
        self.reason = message
        # What a translating interface (the portal) needs: which rule, and its values.
        self.rule = rule or code
        self.params = params

    @property
    def message(self) -> str:
        return str(self)


@dataclass(frozen=True)
class ImportOptions:
    plan: NumberingPlan = field(default_factory=NumberingPlan)
    max_duration_days: float = 365
    notice_period_days: float = 3.0
    effective_reason: str | None = None  # allows effective_at inside the notice period
    batch_rows: int = 20_000


@functools.lru_cache(maxsize=4096)
def parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("needs a UTC offset, e.g. 2027-01-31T00:00:00+08:00 or ...Z")
    if not 2000 <= parsed.astimezone(UTC).year <= 2100:
        raise ValueError("year out of range 2000-2100")
    return parsed.astimezone(UTC)


def _row_time(column: str, text: str, line: int) -> datetime:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise ImportRejected(
            "invalid_row",
            f"{column} {text!r}: not an ISO 8601 time ({exc})",
            line,
            rule="bad_time",
            column=column,
            text=text,
        ) from None


@dataclass(frozen=True)
class StagingBatch:
    """Validated rows as binary COPY tuples for ``import_staging`` (`STAGING_COLUMNS`),
    without the COPY header and trailer; ``numbers`` are their numbers (for the duplicate
    check)."""

    data: bytes
    rows: int
    numbers: NDArray[np.int64]


STAGING_COLUMNS = ("line", "number", "case_ref", "effective_at", "expires_at", "effective_given")
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
COPY_TRAILER = struct.pack("!h", -1)
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def pg_micros(when: datetime) -> int:
    """A timestamptz as binary COPY carries it: microseconds since 2000-01-01 UTC."""
    return (when - PG_EPOCH) // _US


def encode_records(records: Sequence[StagingRecord]) -> bytes:
    """Staging records as binary COPY tuples (the rows the vectorised reader leaves over)."""
    out = bytearray()
    for line, number, case_ref, effective_at, expires_at, given in records:
        case = case_ref.encode()
        out += struct.pack("!hiqiqi", 6, 8, line, 8, number, len(case))
        out += case
        if effective_at is None:
            out += struct.pack("!i", -1)
        else:
            out += struct.pack("!iq", 8, pg_micros(effective_at))
        out += struct.pack("!iqi?", 8, pg_micros(expires_at), 1, given)
    return bytes(out)


def check_header(names: list[str], line: int) -> dict[str, int]:
    """The column of each name in a header row, or ImportRejected."""
    for name in names:
        if name not in COLUMNS:
            raise ImportRejected(
                "invalid_header",
                f"unknown column {name!r}; the columns are {', '.join(COLUMNS)} "
                "(effective_at optional), with a header row",
                line,
                rule="unknown_column",
                column=name,
            )
    if len(set(names)) != len(names):
        raise ImportRejected(
            "invalid_header", "a column appears twice", line, rule="repeated_column"
        )
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise ImportRejected(
            "invalid_header",
            f"missing column(s) {', '.join(missing)}; the first row must be a header "
            f"naming {', '.join(COLUMNS)} (effective_at optional)",
            line,
            rule="missing_columns",
            columns=", ".join(missing),
        )
    return {name: i for i, name in enumerate(names)}


class RowRules:
    """The checks of one row, with the times they are made against (one `now` per import)."""

    def __init__(self, options: ImportOptions, now: datetime, columns: dict[str, int]) -> None:
        self.options = options
        self.now = now
        self.notice_end = now + timedelta(days=options.notice_period_days)
        self.max_expiry = now + timedelta(days=options.max_duration_days)
        self.earliest = now - PAST_TOLERANCE
        self.columns = columns
        self.width = len(columns)
        self.i_number, self.i_case = columns["number"], columns["case_ref"]
        self.i_exp, self.i_eff = columns["expires_at"], columns.get("effective_at")

    def row(self, row: list[str], line: int) -> StagingRecord | None:
        """The staging record of a row (None: a blank line), or ImportRejected."""
        width = self.width
        if len(row) != width:
            if not row or (len(row) == 1 and not row[0].strip()):
                return None  # blank line
            raise ImportRejected(
                "invalid_row",
                f"{len(row)} fields, the header has {width}",
                line,
                rule="field_count",
                fields=len(row),
                width=width,
            )
        options = self.options
        raw_number = row[self.i_number]
        try:
            number = normalize(raw_number, options.plan)
        except NumberError as exc:
            raise ImportRejected(
                "invalid_row",
                f"number {raw_number!r}: {exc}",
                line,
                rule="bad_number",
                text=raw_number,
            ) from None
        case_ref = row[self.i_case].strip()
        if not 1 <= len(case_ref) <= 200:
            raise ImportRejected(
                "invalid_row", "case_ref must be 1-200 characters", line, rule="bad_case_ref"
            )
        expires_text = row[self.i_exp]
        expires_at = _row_time("expires_at", expires_text.strip(), line)
        effective_at: datetime | None = None
        notice_end = self.notice_end
        if self.i_eff is not None and row[self.i_eff].strip():
            text = row[self.i_eff].strip()
            effective_at = _row_time("effective_at", text, line)
            if effective_at < self.earliest:
                raise ImportRejected(
                    "invalid_row",
                    f"effective_at {text} is in the past",
                    line,
                    rule="effective_in_past",
                    text=text,
                )
            if effective_at < notice_end and options.effective_reason is None:
                raise ImportRejected(
                    "invalid_row",
                    f"effective_at {text} is before the end of the "
                    f"{options.notice_period_days:g}-day notice period "
                    f"({notice_end.isoformat()}); an earlier start needs effective_reason",
                    line,
                    rule="effective_reason_required",
                    text=text,
                    days=options.notice_period_days,
                )
        if expires_at <= self.now:
            raise ImportRejected(
                "invalid_row",
                f"expires_at {expires_text} is in the past",
                line,
                rule="expires_in_past",
                text=expires_text,
            )
        if expires_at > self.max_expiry:
            raise ImportRejected(
                "invalid_row",
                f"expires_at {expires_text} is more than {options.max_duration_days:g} "
                f"days from now (latest {self.max_expiry.isoformat()})",
                line,
                rule="expiry_too_late",
                text=expires_text,
                days=options.max_duration_days,
            )
        if expires_at <= (effective_at or notice_end):
            raise ImportRejected(
                "invalid_row",
                f"expires_at {expires_text} must be after effective_at "
                f"({(effective_at or notice_end).isoformat()})",
                line,
                rule="expires_before_start",
                text=expires_text,
            )
        return (line, number, case_ref, effective_at, expires_at, effective_at is not None)
