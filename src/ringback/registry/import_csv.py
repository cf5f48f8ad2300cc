"""Reading a CSV file of listings for a bulk import: every row validated, no database.

The file has columns ``number,case_ref,expires_at[,effective_at]`` with a header row and
is UTF-8. It is read in batches in a worker thread; every row is validated (number
normalised to E.164, ISO 8601 times with an offset, the expiry cap and notice period of the
config) and becomes a staging record for `ringback.registry.imports` to load. A bad row
stops the import with `ImportRejected`, which names its line.
"""

from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

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
def _parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("needs a UTC offset, e.g. 2027-01-31T00:00:00+08:00 or ...Z")
    if not 2000 <= parsed.astimezone(UTC).year <= 2100:
        raise ValueError("year out of range 2000-2100")
    return parsed.astimezone(UTC)


def _row_time(column: str, text: str, line: int) -> datetime:
    try:
        return _parse_time(text)
    except ValueError as exc:
        raise ImportRejected(
            "invalid_row",
            f"{column} {text!r}: not an ISO 8601 time ({exc})",
            line,
            rule="bad_time",
            column=column,
            text=text,
        ) from None


class ListingCsv:
    """Rows of the CSV file as validated staging records, batch by batch (runs in a thread)."""

    def __init__(self, path: Path, options: ImportOptions, now: datetime) -> None:
        self._raw: IO[bytes] = path.open("rb")
        self.size = path.stat().st_size
        self._text = io.TextIOWrapper(self._raw, encoding="utf-8-sig", newline="", errors="strict")
        self._csv = csv.reader(self._text, strict=True)
        self.options = options
        self.now = now
        self.notice_end = now + timedelta(days=options.notice_period_days)
        self.max_expiry = now + timedelta(days=options.max_duration_days)
        self.columns: dict[str, int] = {}
        self.rows = 0
        self._rows: Iterator[list[str]] = self._safe_rows()

    @property
    def bytes_done(self) -> int:
        try:
            return min(self._raw.tell(), self.size)
        except (OSError, ValueError):
            return self.size

    def close(self) -> None:
        self._text.close()

    def _safe_rows(self) -> Iterator[list[str]]:
        while True:
            try:
                row = next(self._csv)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise ImportRejected(
                    "invalid_encoding", "not UTF-8 text", self._csv.line_num + 1
                ) from None
            except csv.Error as exc:
                raise ImportRejected(
                    "invalid_csv", f"not valid CSV ({exc})", self._csv.line_num
                ) from None
            yield row

    def header(self) -> None:
        for row in self._rows:
            if not row or all(not cell.strip() for cell in row):
                continue
            names = [cell.strip().lower() for cell in row]
            line = self._csv.line_num
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
            self.columns = {name: i for i, name in enumerate(names)}
            return
        raise ImportRejected("empty_file", "the file is empty: no header row and no rows")

    def batch(self) -> list[StagingRecord]:
        out: list[StagingRecord] = []
        cols = self.columns
        i_number, i_case, i_exp = cols["number"], cols["case_ref"], cols["expires_at"]
        i_eff = cols.get("effective_at")
        width = len(cols)
        plan = self.options.plan
        reason = self.options.effective_reason
        now, notice_end, max_expiry = self.now, self.notice_end, self.max_expiry
        earliest = now - PAST_TOLERANCE
        for row in self._rows:
            line = self._csv.line_num
            if len(row) != width:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                raise ImportRejected(
                    "invalid_row",
                    f"{len(row)} fields, the header has {width}",
                    line,
                    rule="field_count",
                    fields=len(row),
                    width=width,
                )
            raw_number = row[i_number]
            try:
                number = normalize(raw_number, plan)
            except NumberError as exc:
                raise ImportRejected(
                    "invalid_row",
                    f"number {raw_number!r}: {exc}",
                    line,
                    rule="bad_number",
                    text=raw_number,
                ) from None
            case_ref = row[i_case].strip()
            if not 1 <= len(case_ref) <= 200:
                raise ImportRejected(
                    "invalid_row", "case_ref must be 1-200 characters", line, rule="bad_case_ref"
                )
            expires_at = _row_time("expires_at", row[i_exp].strip(), line)
            effective_at: datetime | None = None
            if i_eff is not None and row[i_eff].strip():
                text = row[i_eff].strip()
                effective_at = _row_time("effective_at", text, line)
                if effective_at < earliest:
                    raise ImportRejected(
                        "invalid_row",
                        f"effective_at {text} is in the past",
                        line,
                        rule="effective_in_past",
                        text=text,
                    )
                if effective_at < notice_end and reason is None:
                    raise ImportRejected(
                        "invalid_row",
                        f"effective_at {text} is before the end of the "
                        f"{self.options.notice_period_days:g}-day notice period "
                        f"({notice_end.isoformat()}); an earlier start needs effective_reason",
                        line,
                        rule="effective_reason_required",
                        text=text,
                        days=self.options.notice_period_days,
                    )
            if expires_at <= now:
                raise ImportRejected(
                    "invalid_row",
                    f"expires_at {row[i_exp]} is in the past",
                    line,
                    rule="expires_in_past",
                    text=row[i_exp],
                )
            if expires_at > max_expiry:
                raise ImportRejected(
                    "invalid_row",
                    f"expires_at {row[i_exp]} is more than {self.options.max_duration_days:g} "
                    f"days from now (latest {max_expiry.isoformat()})",
                    line,
                    rule="expiry_too_late",
                    text=row[i_exp],
                    days=self.options.max_duration_days,
                )
            if expires_at <= (effective_at or notice_end):
                raise ImportRejected(
                    "invalid_row",
                    f"expires_at {row[i_exp]} must be after effective_at "
                    f"({(effective_at or notice_end).isoformat()})",
                    line,
                    rule="expires_before_start",
                    text=row[i_exp],
                )
            out.append((line, number, case_ref, effective_at, expires_at, effective_at is not None))
            if len(out) >= self.options.batch_rows:
                break
        self.rows += len(out)
        return out


def file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.digest()


def check_utf8_sample(path: Path) -> None:
    """Refuse a binary file early: the first KiB must decode as UTF-8 with no NUL."""
    with path.open("rb") as f:
        head = f.read(1024)
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(head, final=False)
    except UnicodeDecodeError:
        raise ImportRejected("invalid_encoding", "not a UTF-8 CSV text file", 1) from None
    if b"\x00" in head:
        raise ImportRejected("invalid_encoding", "not a CSV text file (binary data)", 1)
