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
import hashlib
import io
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO

import numpy as np

from ringback.registry.import_fast import parse_block
from ringback.registry.import_rows import (
    COLUMNS,
    REQUIRED,
    ImportOptions,
    ImportRejected,
    RowRules,
    StagingBatch,
    StagingRecord,
    check_header,
    encode_records,
)

__all__ = [
    "COLUMNS",
    "REQUIRED",
    "ImportOptions",
    "ImportRejected",
    "ListingCsv",
    "StagingBatch",
    "check_utf8_sample",
    "file_sha256",
]


class _CsvRows:
    """The general reader: Python's csv module from a byte offset of the file (quoted
    fields, odd line ends, bad encodings: whatever the vectorised reader does not take)."""

    def __init__(self, raw: IO[bytes], offset: int, lines_before: int) -> None:
        raw.seek(offset)
        self._raw = raw
        encoding = "utf-8-sig" if offset == 0 else "utf-8"
        self._text = io.TextIOWrapper(raw, encoding=encoding, newline="", errors="strict")
        self._csv = csv.reader(self._text, strict=True)
        self._before = lines_before
        self.rows: Iterator[tuple[list[str], int]] = self._safe_rows()

    @property
    def line(self) -> int:
        return self._before + self._csv.line_num

    def close(self) -> None:
        self._text.close()

    def _safe_rows(self) -> Iterator[tuple[list[str], int]]:
        while True:
            try:
                row = next(self._csv)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise ImportRejected("invalid_encoding", "not UTF-8 text", self.line + 1) from None
            except csv.Error as exc:
                raise ImportRejected("invalid_csv", f"not valid CSV ({exc})", self.line) from None
            yield row, self.line


class ListingCsv:
    """Rows of the CSV file as validated staging rows, batch by batch (runs in a thread).

    Plain files (no quotes, ``\\n`` or ``\\r\\n`` line ends: what exports write) are read
    in blocks of whole lines by `ringback.registry.import_fast` with numpy; the rows it
    cannot vouch for go through `RowRules` one by one, so every row meets the same rules
    and a bad one gets the same message and line either way. A block it cannot read at
    all (a quote, a stray CR, invalid UTF-8) hands the rest of the file to Python's csv.
    """

    def __init__(
        self, path: Path, options: ImportOptions, now: datetime, *, vectorised: bool = True
    ) -> None:
        self._raw: IO[bytes] = path.open("rb")
        self.vectorised = vectorised
        self.size = path.stat().st_size
        self.options = options
        self.now = now
        self.columns: dict[str, int] = {}
        self.rules: RowRules | None = None
        self.rows = 0
        self._offset = 0  # bytes read by the vectorised reader
        self._line = 0  # lines read by it
        self._pending = b""
        self._eof = False
        self._general: _CsvRows | None = None
        self.block_bytes = max(1 << 16, options.batch_rows * 64)

    @property
    def general_reader_used(self) -> bool:
        return self._general is not None

    @property
    def bytes_done(self) -> int:
        if self._general is None:
            return min(self._offset, self.size)
        try:
            return min(self._raw.tell(), self.size)
        except (OSError, ValueError):
            return self.size

    def close(self) -> None:
        if self._general is not None:
            self._general.close()
        self._raw.close()

    def header(self) -> None:
        head = self._raw.read(1 << 16)
        bom = 3 if head.startswith(codecs.BOM_UTF8) else 0
        end = head.find(b"\n", bom)
        first = head[bom:end].removesuffix(b"\r") if end >= 0 else b""
        try:
            text = first.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        blank = not any(cell.strip() for cell in text.split(","))
        if not self.vectorised or end < 0 or b'"' in first or b"\r" in first or blank:
            self._general = _CsvRows(self._raw, 0, 0)  # the general reader finds the header
            self._general_header()
        else:
            self._set_columns(check_header([c.strip().lower() for c in text.split(",")], 1))
            self._offset, self._line = end + 1, 1
            self._raw.seek(self._offset)

    def _general_header(self) -> None:
        assert self._general is not None
        for row, line in self._general.rows:
            if not row or all(not cell.strip() for cell in row):
                continue
            self._set_columns(check_header([cell.strip().lower() for cell in row], line))
            return
        raise ImportRejected("empty_file", "the file is empty: no header row and no rows")

    def _set_columns(self, columns: dict[str, int]) -> None:
        self.columns = columns
        self.rules = RowRules(self.options, self.now, columns)

    def batch(self) -> StagingBatch:
        """The next batch of validated rows (none: the file is done)."""
        assert self.rules is not None, "header() first"
        while self._general is None:
            block = self._block()
            parsed = None if block is None else parse_block(block, self._line + 1, self.rules)
            if parsed is None:
                # Not for the vectorised reader: the csv module takes over where it stopped.
                self._general = _CsvRows(self._raw, self._offset, self._line)
                break
            assert block is not None
            self._offset += len(block)
            self._line += parsed.lines
            if parsed.batch.rows or not block:  # a block of blank lines: read on
                self.rows += parsed.batch.rows
                return parsed.batch
        records: list[StagingRecord] = []
        row_rules = self.rules.row
        for row, line in self._general.rows:
            record = row_rules(row, line)
            if record is not None:
                records.append(record)
                if len(records) >= self.options.batch_rows:
                    break
        self.rows += len(records)
        return StagingBatch(
            encode_records(records), len(records), np.array([r[1] for r in records], np.int64)
        )

    def _block(self) -> bytes | None:
        """The next whole lines of the file (b"": none left; None: a line longer than a
        block, left to the general reader)."""
        data = self._pending
        while not self._eof:
            chunk = self._raw.read(self.block_bytes)
            if not chunk:
                self._eof = True
                break
            data += chunk
            cut = data.rfind(b"\n")
            if cut >= 0:
                self._pending = data[cut + 1 :]
                return data[: cut + 1]
            if len(data) > 4 * self.block_bytes:
                return None
        self._pending = b""
        return data  # the last line may have no line end


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
