"""The digest of the rows a bulk import applied (``rows_sha256`` in its audit row).

The definition (docs/operations.md): one JSON array per listing, ``[id, "+number",
case_ref, effective_at, expires_at]`` with the times in RFC 3339 UTC with microseconds,
as ``json.dumps(..., ensure_ascii=False)`` writes it, in id order, joined by newlines.

PostgreSQL can write those lines itself (`APPLIED_LINE`; `applied_digest` reads an
import's rows back that way), but for the 15 M new rows of a national import that was
about a sixth of the insert, on the import backend's one busy core. So the insert returns
its raw columns instead (COPY text: id, number, the two times as microseconds since the
epoch, case_ref last), and `format_lines` writes the lines with numpy, in a thread, on the
other core. A line numpy cannot vouch for (a case reference holding a quote, a backslash
or a control character; a year outside 1000-9999) is written by ``json.dumps`` itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from ringback.registry.import_fast import copy_spans

__all__ = ["APPLIED_LINE", "RAW_COLUMNS", "InsertedRows", "RowsDigest", "format_lines"]

I64 = NDArray[np.int64]

# One listing's line, written by PostgreSQL (for rows read back; `l` is the listing).
APPLIED_LINE = """jsonb_build_array(
    l.id, '+' || l.number, l.case_ref,
    to_char(l.effective_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    to_char(l.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text"""

# What `format_lines` reads, one row per line of COPY text (`l` is the listing).
RAW_COLUMNS = """l.id, l.number,
    (extract(epoch FROM l.effective_at) * 1000000)::int8,
    (extract(epoch FROM l.expires_at) * 1000000)::int8,
    l.case_ref"""

_TIME_WIDTH = 27  # 2026-05-29T11:54:24.123456Z
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COPY_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)
_COPY_UNESCAPED = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}


class RowsDigest:
    """SHA-256 of lines joined by newlines, fed whole lines (each ending in a newline)."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.rows = 0
        self._last = b""  # the newline after the last line is not hashed
        self._carry = b""  # `feed_copy_text`: an unfinished backslash pair

    def add_lines(self, text: bytes) -> None:
        if not text:
            return
        self.rows += text.count(b"\n")
        self.sha.update(self._last)
        self.sha.update(text[:-1])
        self._last = text[-1:]

    async def feed_copy_text(self, chunk: bytes) -> None:
        """COPY's output callback for one column of lines (`APPLIED_LINE`): COPY's text
        format doubles every backslash (JSON text has no raw control characters, so nothing
        else is escaped); a pair split between two chunks is carried over."""
        data = self._carry + bytes(chunk)
        trailing = len(data) - len(data.rstrip(b"\\"))
        cut = len(data) - (trailing % 2)
        data, self._carry = data[:cut], data[cut:]
        self.add_lines(data.replace(b"\\\\", b"\\"))

    def hexdigest(self) -> str:
        assert not self._carry and self._last in (b"", b"\n")
        return self.sha.hexdigest()


def _line_by_json(raw: bytes) -> bytes:
    """One row of `RAW_COLUMNS` (COPY text, no newline) as its line: the definition."""
    id_, number, effective, expires, case = raw.split(b"\t", 4)
    case_ref = _COPY_ESCAPE.sub(lambda m: _COPY_UNESCAPED.get(m[1], m[1]), case).decode()
    fields = [int(id_), f"+{int(number)}", case_ref, _when(effective), _when(expires)]
    return json.dumps(fields, ensure_ascii=False).encode() + b"\n"


def _when(micros: bytes) -> str:
    t = _EPOCH + timedelta(microseconds=int(micros))
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}."
        f"{t.microsecond:06d}Z"
    )


def _integers(arr: NDArray[np.uint8], a: I64, b: I64) -> tuple[I64, NDArray[np.bool_]]:
    """The non-negative decimal integer in each span, and whether it is one (1-18 digits)."""
    length = b - a
    ok = (length >= 1) & (length <= 18)
    width = int(length[ok].max()) if ok.any() else 1
    k = np.arange(width)
    places = length[:, None] - 1 - k
    digits = arr[np.minimum(a[:, None] + k, len(arr) - 1)].astype(np.int64) - 48
    inside = places >= 0
    ok &= ((digits >= 0) & (digits <= 9) | ~inside).all(axis=1)
    value = np.where(inside, digits * 10 ** np.clip(places, 0, 17), 0).sum(axis=1)
    return value, ok


def _times(micros: I64) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:
    """Each time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (n × 27 bytes), and whether its year
    is in 1000-9999 (days to a civil date: H. Hinnant's algorithm)."""
    secs, frac = np.divmod(micros, 1_000_000)
    days, of_day = np.divmod(secs, 86_400)
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    out = np.empty((len(micros), _TIME_WIDTH), np.uint8)
    out[:] = np.frombuffer(b"0000-00-00T00:00:00.000000Z", np.uint8)
    for value, at, width in (
        (year, 0, 4),
        (month, 5, 2),
        (day, 8, 2),
        (of_day // 3600, 11, 2),
        (of_day // 60 % 60, 14, 2),
        (of_day % 60, 17, 2),
        (frac, 20, 6),
    ):
        for k in range(width):
            out[:, at + width - 1 - k] = 48 + (value // 10**k) % 10
    return out, (year >= 1000) & (year <= 9999)


def format_lines(block: bytes) -> bytes:
    """The lines of the rows in `block` (whole lines of `RAW_COLUMNS` in COPY text)."""
    if not block:
        return b""
    arr = np.frombuffer(block, np.uint8)
    ends = np.flatnonzero(arr == 10)
    tabs = np.flatnonzero(arr == 9)
    n = len(ends)
    if len(tabs) != 4 * n:  # not one row per line: each line the slow way
        return b"".join(_line_by_json(line) for line in block.split(b"\n")[:-1])
    starts = np.empty(n, np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    tab = tabs.reshape(n, 4).astype(np.int64)
    _, ok_id = _integers(arr, starts, tab[:, 0])
    _, ok_number = _integers(arr, tab[:, 0] + 1, tab[:, 1])
    effective, ok_eff = _integers(arr, tab[:, 1] + 1, tab[:, 2])
    expires, ok_exp = _integers(arr, tab[:, 2] + 1, tab[:, 3])
    eff_text, ok_eff_year = _times(effective)
    exp_text, ok_exp_year = _times(expires)
    case_a, case_b = tab[:, 3] + 1, ends.astype(np.int64)
    special = np.zeros(len(arr) + 1, np.int64)  # quotes, backslashes, control bytes so far
    np.cumsum((arr < 0x20) | (arr == 0x22) | (arr == 0x5C), out=special[1:])
    plain_case = special[case_b] == special[case_a]
    fast = ok_id & ok_number & ok_eff & ok_exp & ok_eff_year & ok_exp_year & plain_case

    # [id, "+number", "case", "effective", "expires"]
    id_len = tab[:, 0] - starts
    number_len = tab[:, 1] - tab[:, 0] - 1
    case_len = case_b - case_a
    length = 1 + id_len + 4 + number_len + 4 + case_len + 4 + _TIME_WIDTH + 4 + _TIME_WIDTH + 3
    slow = {int(i): _line_by_json(block[starts[i] : ends[i]]) for i in np.flatnonzero(~fast)}
    for i, line in slow.items():
        length[i] = len(line)
    end = np.cumsum(length)
    at = end - length
    out = np.empty(int(end[-1]), np.uint8)
    f = np.flatnonzero(fast)
    at_f = at[f]
    out[at_f] = ord("[")
    copy_spans(out, at_f + 1, arr, starts[f], tab[f, 0])
    at_f = at_f + 1 + id_len[f]
    out[at_f[:, None] + np.arange(4)] = np.frombuffer(b', "+', np.uint8)
    copy_spans(out, at_f + 4, arr, tab[f, 0] + 1, tab[f, 1])
    at_f = at_f + 4 + number_len[f]
    out[at_f[:, None] + np.arange(4)] = np.frombuffer(b'", "', np.uint8)
    copy_spans(out, at_f + 4, arr, case_a[f], case_b[f])
    at_f = at_f + 4 + case_len[f]
    for text in (eff_text, exp_text):
        out[at_f[:, None] + np.arange(4)] = np.frombuffer(b'", "', np.uint8)
        out[at_f[:, None] + 4 + np.arange(_TIME_WIDTH)] = text[f]
        at_f = at_f + 4 + _TIME_WIDTH
    out[at_f[:, None] + np.arange(3)] = np.frombuffer(b'"]\n', np.uint8)
    for i, line in slow.items():
        out[at[i] : at[i] + len(line)] = np.frombuffer(line, np.uint8)
    return out.tobytes()


class InsertedRows:
    """The output of ``COPY (INSERT … RETURNING RAW_COLUMNS) TO STDOUT``, added to a
    `RowsDigest` in order: blocks of about `block_bytes` of whole lines are formatted in a
    thread while the next block streams in (one block in flight)."""

    def __init__(self, digest: RowsDigest, block_bytes: int = 1 << 20) -> None:
        self.digest = digest
        self.block_bytes = block_bytes
        self._pending: list[bytes] = []
        self._size = 0
        self._in_flight: asyncio.Future[bytes] | None = None

    async def feed(self, chunk: bytes) -> None:
        self._pending.append(bytes(chunk))
        self._size += len(chunk)
        if self._size >= self.block_bytes:
            await self._dispatch(final=False)

    async def finish(self) -> None:
        await self._dispatch(final=True)
        await self._settle()

    async def _dispatch(self, *, final: bool) -> None:
        data = b"".join(self._pending)
        cut = data.rfind(b"\n") + 1
        block, rest = data[:cut], data[cut:]
        if final and rest:
            raise ValueError("COPY output ended inside a row")
        self._pending, self._size = ([rest], len(rest)) if rest else ([], 0)
        await self._settle()
        if block:
            self._in_flight = asyncio.ensure_future(asyncio.to_thread(format_lines, block))

    async def _settle(self) -> None:
        if self._in_flight is not None:
            lines = await self._in_flight
            self._in_flight = None
            self.digest.add_lines(lines)
