"""The import digest's lines written with numpy are the definition's lines: json.dumps of
[id, "+number", case_ref, effective_at, expires_at] (docs/operations.md), byte for byte,
whatever the case reference holds and wherever the times fall."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from ringback.registry.import_digest import InsertedRows, RowsDigest, format_lines

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Row = tuple[int, int, str, int, int]  # id, number, case_ref, effective µs, expires µs

# What COPY TO writes for a text value: backslash doubled, six control characters escaped
# (the others stay raw), the tab delimiter escaped.
_COPY = {"\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def copy_text(rows: list[Row]) -> bytes:
    """The rows as PostgreSQL's COPY … TO STDOUT writes RAW_COLUMNS."""
    lines = []
    for id_, number, case, eff, exp in rows:
        escaped = "".join(_COPY.get(ch, ch) for ch in case)
        lines.append(f"{id_}\t{number}\t{eff}\t{exp}\t{escaped}\n")
    return "".join(lines).encode()


def when(micros: int) -> str:
    t = EPOCH + timedelta(microseconds=micros)
    return f"{t.year:04d}" + t.strftime("-%m-%dT%H:%M:%S.%fZ")  # RFC 3339: 4-digit years


def expected(rows: list[Row]) -> bytes:
    return b"".join(
        json.dumps([id_, f"+{number}", case, when(eff), when(exp)], ensure_ascii=False).encode()
        + b"\n"
        for id_, number, case, eff, exp in rows
    )


def micros(t: datetime) -> int:
    return (t - EPOCH) // timedelta(microseconds=1)


YEAR_1000 = micros(datetime(1000, 1, 1, tzinfo=UTC))
YEAR_9999_END = micros(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
times = st.one_of(
    st.integers(0, micros(datetime(2100, 1, 1, tzinfo=UTC))),  # the usual
    st.integers(micros(datetime(1900, 1, 1, tzinfo=UTC)), YEAR_9999_END),
    st.sampled_from(
        [
            0,
            YEAR_1000,
            YEAR_9999_END,
            micros(datetime(2028, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)),
            micros(datetime(2100, 3, 1, tzinfo=UTC)),
            micros(datetime(2000, 2, 29, tzinfo=UTC)),
        ]
    ),
)
cases = st.one_of(
    st.from_regex(r"\(20[0-9]{2}\) Jing 0105 Zhi [0-9]{1,8}", fullmatch=True),
    # what a UTF-8 text column can hold: no NUL, no lone surrogate
    st.text(
        st.characters(codec="utf-8", blacklist_characters="\x00"),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(['say "no"', "a\\b", "tab\there", "line\nbreak", "\x01\x1f\x7f", "（2026）京"]),
)
rows_strategy = st.lists(
    st.tuples(
        st.integers(1, 2**62), st.integers(1_000_000, 999_999_999_999_999), cases, times, times
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=400, deadline=None)
@given(rows_strategy)
def test_lines_are_json_dumps_of_the_row(rows: list[Row]) -> None:
    assert format_lines(copy_text(rows)) == expected(rows)


def test_times_before_1970_and_a_plain_block() -> None:
    old = micros(datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC))  # negative: slow path
    rows: list[Row] = [
        (1, 8613800138000, "(2026) Jing 0105 Zhi 1", 0, 1),
        (2, 8613800138001, "(2026) Jing 0105 Zhi 2", old, YEAR_1000),
        (3, 8613800138002, "plain", YEAR_1000 - 1, YEAR_9999_END),  # year 999: slow path
    ]
    assert format_lines(copy_text(rows)) == expected(rows)
    assert format_lines(b"") == b""


def test_streamed_in_odd_chunks_the_digest_is_the_joined_lines() -> None:
    rows: list[Row] = [
        (i, 8613800000000 + i, f'case "{i}"' if i % 7 == 0 else f"case {i}", i * 10**9, 2**50)
        for i in range(1, 3000)
    ]
    data = copy_text(rows)

    async def stream() -> RowsDigest:
        digest = RowsDigest()
        inserted = InsertedRows(digest, block_bytes=1000)
        for at in range(0, len(data), 777):  # chunks cut mid-line
            await inserted.feed(data[at : at + 777])
        await inserted.finish()
        return digest

    digest = asyncio.run(stream())
    assert digest.rows == len(rows)
    assert digest.hexdigest() == hashlib.sha256(expected(rows)[:-1]).hexdigest()


def test_copy_text_lines_of_the_sql_path_are_unescaped() -> None:
    digest = RowsDigest()
    for chunk in (b'[1, "a\\\\\\', b'\\b"]\n[2, "c"]\n'):  # a doubled backslash cut in two
        asyncio.run(digest.feed_copy_text(chunk))
    assert digest.rows == 2
    assert digest.hexdigest() == hashlib.sha256(b'[1, "a\\\\b"]\n[2, "c"]').hexdigest()
