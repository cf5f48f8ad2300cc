"""Vectorised reading of a block of plain CSV lines for a bulk import (numpy, no database).

A national list is 15 M rows; Python's csv module and a per-row normalisation take about
5 µs a row, more than a minute of the import's one core. Here a block of whole lines
(no quotes: what exports write) is split into fields with numpy, and the common field
shapes are validated and converted at once: a number of ASCII digits (``+8613800138000``,
``13800138000``, ``8613800138000``), a case reference with no surrounding whitespace,
times parsed once per distinct text (a file usually has a handful). Every row whose
fields are anything else, and every row that breaks a rule, goes through `RowRules`
itself, in line order: the rules and the error messages are the same as the general
reader's by construction, only the common case is faster.

The valid rows come out as binary COPY tuples for ``import_staging``, built with numpy
too (about 60 bytes a row).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from ringback.registry.import_rows import (
    ImportRejected,
    RowRules,
    StagingBatch,
    StagingRecord,
    encode_records,
    parse_time,
    pg_micros,
)

__all__ = ["ParsedBlock", "copy_spans", "parse_block"]

I64 = NDArray[np.int64]
Bools = NDArray[np.bool_]

_MAX_DIGITS = 15  # E.164
_MAX_TIME = 40  # longer time texts go the slow way
_ASCII_SPACE = np.zeros(256, np.bool_)
_ASCII_SPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True  # what str.strip() strips
# First bytes of the multi-byte characters str.strip() strips (U+0085, U+00A0, U+1680,
# U+2000-U+205F, U+3000); such a case reference is checked the slow way.
_LEAD_SPACE = _ASCII_SPACE.copy()
_LEAD_SPACE[[0xC2, 0xE1, 0xE2, 0xE3]] = True
_PRINTABLE = np.zeros(256, np.bool_)
_PRINTABLE[0x21:0x7F] = True

# Binary COPY tuple: 6 fields; line, number (int8), case_ref (text), effective_at
# (timestamptz or NULL), expires_at (timestamptz), effective_given (bool).
_HEAD = np.dtype(
    [("n", ">i2"), ("l1", ">i4"), ("line", ">i8"), ("l2", ">i4"), ("num", ">i8"), ("l3", ">i4")]
)
_TAIL = np.dtype(
    [("l4", ">i4"), ("eff", ">i8"), ("l5", ">i4"), ("exp", ">i8"), ("l6", ">i4"), ("g", "u1")]
)
_TAIL_NULL = np.dtype([("l4", ">i4"), ("l5", ">i4"), ("exp", ">i8"), ("l6", ">i4"), ("g", "u1")])


@dataclass(frozen=True)
class ParsedBlock:
    batch: StagingBatch
    lines: int  # lines the block held (blank ones included)


def parse_block(block: bytes, first_line: int, rules: RowRules) -> ParsedBlock | None:
    """The rows of `block` (whole lines; its first is file line `first_line`), validated.

    None: the block is not plain CSV (a quote, a stray CR, a NUL); the caller reads it
    with the csv module. Raises ImportRejected for the first bad row (or invalid UTF-8).
    """
    if not block:
        return ParsedBlock(StagingBatch(b"", 0, np.empty(0, np.int64)), 0)
    if b'"' in block or b"\x00" in block:
        return None
    try:
        block.decode("utf-8")
    except UnicodeDecodeError as exc:  # named at its line (the csv module reads ahead)
        line = first_line + block.count(b"\n", 0, exc.start)
        raise ImportRejected("invalid_encoding", "not UTF-8 text", line) from None
    if not block.endswith(b"\n"):
        block += b"\n"  # the file's last line
    arr = np.frombuffer(block, np.uint8)
    newlines = np.flatnonzero(arr == 10)
    n = len(newlines)
    starts = np.empty(n, np.int64)
    starts[0] = 0
    starts[1:] = newlines[:-1] + 1
    ends = newlines.astype(np.int64)
    returns = np.flatnonzero(arr == 13)
    if len(returns):
        if not (arr[returns + 1] == 10).all():
            return None  # a CR that does not end a line: the csv module's business
        ends -= (ends > starts) & (arr[np.maximum(ends - 1, 0)] == 13)
    commas = np.flatnonzero(arr == 44)
    width = rules.width
    per_line = np.diff(np.searchsorted(commas, newlines), prepend=0)
    regular = np.flatnonzero(per_line == width - 1)
    first_comma = np.searchsorted(commas, starts[regular])
    bounds = [starts[regular]]
    for k in range(width - 1):
        at = commas[first_comma + k]
        bounds += [at, at + 1]
    bounds.append(ends[regular])

    def field(column: int) -> tuple[I64, I64]:
        return bounds[2 * column], bounds[2 * column + 1]

    digits = np.zeros(len(arr) + 1, np.int64)
    np.cumsum((arr >= 48) & (arr <= 57), out=digits[1:])
    number, ok = _numbers(arr, digits, *field(rules.i_number), rules)
    case_a, case_b = field(rules.i_case)
    ok &= _plain_case(arr, case_a, case_b)
    expires, ok_exp = _times(arr, *field(rules.i_exp))
    ok &= ok_exp
    effective = np.zeros(len(regular), np.int64)
    given = np.zeros(len(regular), np.bool_)
    if rules.i_eff is not None:
        eff_a, eff_b = field(rules.i_eff)
        given = eff_b > eff_a
        effective, ok_eff = _times(arr, eff_a, eff_b)
        ok &= ok_eff | ~given
    ok &= _rules_hold(rules, effective, given, expires)

    clean = np.zeros(n, np.bool_)
    clean[regular[ok]] = True
    # Every other line, in order, the slow way (exact rules, exact messages).
    slow: list[StagingRecord] = []
    for i in np.flatnonzero(~clean).tolist():
        text = block[starts[i] : ends[i]].decode("utf-8")
        record = rules.row(text.split(","), first_line + i)
        if record is not None:
            slow.append(record)
    keep = np.flatnonzero(ok)
    data = _encode(
        arr,
        first_line + regular[keep],
        number[keep],
        case_a[keep],
        case_b[keep],
        effective[keep],
        given[keep],
        expires[keep],
    )
    numbers = number[keep]
    if slow:
        data += encode_records(slow)
        numbers = np.concatenate([numbers, np.array([r[1] for r in slow], np.int64)])
    return ParsedBlock(StagingBatch(data, len(keep) + len(slow), numbers), n)


def _starts_with(arr: NDArray[np.uint8], at: I64, length: I64, prefix: str) -> Bools:
    found = length >= len(prefix)
    last = len(arr) - 1
    for j, ch in enumerate(prefix.encode()):
        found &= arr[np.minimum(at + j, last)] == ch
    return found


def _numbers(
    arr: NDArray[np.uint8], digits: I64, a: I64, b: I64, rules: RowRules
) -> tuple[I64, Bools]:
    """The E.164 number of each field, and whether this fast reading vouches for it
    (`normalize` gives the same number and raises nothing): ``+`` and digits, or bare
    digits with no prefix, within E.164's lengths."""
    plan = rules.options.plan
    cc = plan.country_code
    plus = (b > a) & (arr[np.minimum(a, len(arr) - 1)] == ord("+"))
    d0 = a + plus
    nd = b - d0
    ok = (nd >= 1) & (nd <= _MAX_DIGITS) & (digits[b] - digits[d0] == nd)
    ok &= arr[np.minimum(d0, len(arr) - 1)] != ord("0")
    k = np.arange(_MAX_DIGITS)
    places = nd[:, None] - 1 - k
    values = arr[np.minimum(d0[:, None] + k, len(arr) - 1)].astype(np.int64) - 48
    value = np.where(places >= 0, values * 10 ** np.clip(places, 0, 18), 0).sum(axis=1)

    starts_cc = _starts_with(arr, d0, nd, cc)
    bare = ~plus
    if plan.international_prefix:
        ok &= ~(bare & _starts_with(arr, d0, nd, plan.international_prefix))
    if plan.trunk_prefix:
        ok &= ~(bare & _starts_with(arr, d0, nd, plan.trunk_prefix))
    # Bare digits are national unless they start with the country code and are longer
    # than any national number (international without "+").
    international = plus.copy()
    if plan.national_max_digits:
        international |= starts_cc & (nd > plan.national_max_digits)
    national = ~international
    total = np.where(national, len(cc) + nd, nd)
    ok &= total <= _MAX_DIGITS
    value = np.where(national & ok, int(cc) * 10 ** np.clip(nd, 0, _MAX_DIGITS) + value, value)
    home = national | starts_cc
    if plan.trunk_prefix:  # "+86 0 10 ..." drops the trunk prefix: the slow way
        after = d0 + len(cc)
        ok &= ~(
            international & starts_cc & _starts_with(arr, after, nd - len(cc), plan.trunk_prefix)
        )
    ok &= (total >= 8) & (~home | (total - len(cc) >= 7))
    return value, ok


def _plain_case(arr: NDArray[np.uint8], a: I64, b: I64) -> Bools:
    """1-200 bytes with nothing `str.strip()` could remove (then 1-200 characters)."""
    length = b - a
    last = len(arr) - 1
    ok = (length >= 1) & (length <= 200)
    ok &= ~_LEAD_SPACE[arr[np.minimum(a, last)]]
    ok &= ~_ASCII_SPACE[arr[np.maximum(b - 1, 0)]]
    ok &= ~((length >= 2) & (arr[np.maximum(b - 2, 0)] == 0xC2))
    third = arr[np.maximum(b - 3, 0)]
    ok &= ~((length >= 3) & ((third == 0xE1) | (third == 0xE2) | (third == 0xE3)))
    return ok


def _times(arr: NDArray[np.uint8], a: I64, b: I64) -> tuple[I64, Bools]:
    """Each field as binary COPY microseconds, parsed once per distinct text; and whether
    it parsed (printable ASCII ends, at most 40 bytes, `parse_time` accepts it)."""
    n = len(a)
    micros = np.zeros(n, np.int64)
    length = b - a
    last = len(arr) - 1
    ok = (length >= 1) & (length <= _MAX_TIME)
    ok &= _PRINTABLE[arr[np.minimum(a, last)]] & _PRINTABLE[arr[np.maximum(b - 1, 0)]]
    rows = np.flatnonzero(ok)
    if not len(rows):
        return micros, ok
    width = int(length[rows].max())
    k = np.arange(width)
    raw = arr[np.minimum(a[rows, None] + k, last)]
    texts = np.where(k < length[rows, None], raw, 0).astype(np.uint8)
    keys = np.ascontiguousarray(texts).view(f"V{width}").ravel()
    if (keys == keys[0]).all():
        distinct, which = keys[:1], np.zeros(len(rows), np.intp)
    else:
        distinct, which = np.unique(keys, return_inverse=True)
    values = np.zeros(len(distinct), np.int64)
    parsed = np.ones(len(distinct), np.bool_)
    for j, key in enumerate(distinct):
        text = bytes(key).rstrip(b"\x00").decode("utf-8")
        try:
            values[j] = pg_micros(parse_time(text))
        except Exception:  # the slow way raises the exact error
            parsed[j] = False
    micros[rows] = values[which]
    ok[rows] = parsed[which]
    return micros, ok


def _rules_hold(rules: RowRules, effective: I64, given: Bools, expires: I64) -> Bools:
    """`RowRules.row`'s time rules, on microseconds (a row failing one goes the slow way,
    which raises the message)."""

    def us(when: datetime) -> int:
        return pg_micros(when)

    notice_end = us(rules.notice_end)
    ok = ~(given & (effective < us(rules.earliest)))
    if rules.options.effective_reason is None:
        ok &= ~(given & (effective < notice_end))
    ok &= expires > us(rules.now)
    ok &= expires <= us(rules.max_expiry)
    ok &= expires > np.where(given, effective, notice_end)
    return ok


def copy_spans(out: NDArray[np.uint8], to: I64, src: NDArray[np.uint8], a: I64, b: I64) -> None:
    """Copy the spans ``src[a:b]`` to ``out[to:]``, row by row, at once."""
    length = b - a
    total = int(length.sum())
    if not total:
        return
    before = np.cumsum(length) - length
    ramp = np.arange(total)
    out[np.repeat(to - before, length) + ramp] = src[np.repeat(a - before, length) + ramp]


def _encode(
    arr: NDArray[np.uint8],
    line: I64,
    number: I64,
    case_a: I64,
    case_b: I64,
    effective: I64,
    given: Bools,
    expires: I64,
) -> bytes:
    """Binary COPY tuples of the rows, the case references copied from `arr`."""
    n = len(line)
    if n == 0:
        return b""
    length = case_b - case_a
    tail = np.where(given, _TAIL.itemsize, _TAIL_NULL.itemsize)
    size = _HEAD.itemsize + length + tail
    end = np.cumsum(size)
    start = end - size
    out = np.empty(int(end[-1]), np.uint8)
    head = np.empty(n, _HEAD)
    head["n"], head["l1"], head["line"], head["l2"], head["num"], head["l3"] = (
        6, 8, line, 8, number, length,
    )  # fmt: skip
    out[start[:, None] + np.arange(_HEAD.itemsize)] = head.view(np.uint8).reshape(n, -1)
    copy_spans(out, start + _HEAD.itemsize, arr, case_a, case_b)
    tail_at = start + _HEAD.itemsize + length
    for rows, dtype in ((given, _TAIL), (~given, _TAIL_NULL)):
        m = int(rows.sum())
        if not m:
            continue
        t = np.empty(m, dtype)
        t["l4"] = 8 if dtype is _TAIL else -1
        if dtype is _TAIL:
            t["eff"] = effective[rows]
        t["l5"], t["exp"], t["l6"], t["g"] = 8, expires[rows], 1, given[rows]
        out[tail_at[rows][:, None] + np.arange(dtype.itemsize)] = t.view(np.uint8).reshape(m, -1)
    return out.tobytes()
