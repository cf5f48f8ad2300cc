"""Decoding the index's full load: PostgreSQL binary COPY of the index entries, streamed
straight into the numpy columns `ringback.registry.listing_index.build_base` takes."""

from __future__ import annotations

import struct
from typing import Final

import numpy as np
from numpy.typing import NDArray

from ringback.registry.listing_index import MAX_U32, Columns

__all__ = ["CopyDecoder"]

_SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00"
_NFIELDS: Final = 5
_TUPLE_DTYPE: Final = np.dtype(
    [("nf", ">i2")]
    + [item for i in range(_NFIELDS) for item in ((f"l{i}", ">i4"), (f"v{i}", ">i8"))]
)
_TUPLE_SIZE: Final = _TUPLE_DTYPE.itemsize  # 62
_FIELD_NAMES: Final = ("number", "listing_id", "recording_id", "effective_at", "expires_at")
_PG_EPOCH_S: Final = 946_684_800  # 2000-01-01T00:00:00Z, where PostgreSQL's times count from
_US: Final = 1_000_000
_HEAD: Final = struct.Struct(">ii")


class CopyDecoder:
    """Streaming decoder for ``COPY (SELECT number::int8, listing_id::int8,
    recording_id::int8, effective_at, expires_at ...) TO STDOUT (FORMAT binary)``, the
    two times ``timestamptz``.

    Every tuple is a fixed 62 bytes (int16 field count 5, then 5 x (int32 length 8 +
    8-byte big-endian value)), so whole runs of tuples are decoded with one structured
    numpy view. Ids must fit uint32. The times arrive as PostgreSQL sends them (µs since
    2000-01-01 UTC, ±infinity as the int64 extremes) and become whole epoch seconds here,
    the effective time rounded down and the expiry up, clamped to [0, 2**32-1]: the
    same seconds as the view's ``effective_epoch``/``expires_epoch``, without PostgreSQL
    computing two epochs per row (a fifth of a full load's time there). Add
    ``ORDER BY number`` to the query so :func:`build_base` can skip its sort.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._header_done = False
        self._trailer_seen = False
        self._offset = 0  # stream offset of _buf[0], for error messages
        self._rows = 0
        self._parts: list[Columns] = []
        self._pending = 0

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        if self._trailer_seen:
            if len(chunk):
                raise ValueError(f"data after COPY trailer at byte {self._offset}")
            return
        self._buf += chunk
        if not self._header_done and not self._parse_header():
            return
        self._parse_tuples()

    def finish(self) -> Columns:
        """Return the decoded columns; ValueError if the stream is incomplete."""
        if not self._header_done:
            raise ValueError(f"truncated COPY stream: incomplete header ({len(self._buf)} bytes)")
        if not self._trailer_seen:
            raise ValueError(
                f"truncated COPY stream: no trailer after {self._rows} tuples "
                f"({len(self._buf)} trailing bytes at byte {self._offset})"
            )
        parts = self._parts
        if not parts:
            return (
                np.empty(0, np.int64),
                np.empty(0, np.uint32),
                np.empty(0, np.uint32),
                np.empty(0, np.uint32),
                np.empty(0, np.uint32),
            )
        if len(parts) == 1:
            return parts[0]
        return (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
            np.concatenate([p[3] for p in parts]),
            np.concatenate([p[4] for p in parts]),
        )

    def take(self) -> list[Columns]:
        """The columns decoded so far, in pieces, handed over (streaming use): the decoder
        then keeps only what follows, so a full load need not be held twice."""
        parts, self._parts = self._parts, []
        self._pending = 0
        return parts

    @property
    def pending(self) -> int:
        """Rows decoded and not yet taken."""
        return self._pending

    @property
    def rows(self) -> int:
        return self._rows

    def _consume(self, k: int) -> None:
        del self._buf[:k]
        self._offset += k

    def _parse_header(self) -> bool:
        buf = self._buf
        sig = bytes(buf[: len(_SIGNATURE)])
        if sig != _SIGNATURE[: len(sig)]:
            raise ValueError(f"not a PostgreSQL binary COPY stream: bad signature {sig!r}")
        if len(buf) < len(_SIGNATURE) + 8:
            return False
        flags, ext_len = _HEAD.unpack_from(buf, len(_SIGNATURE))
        if flags & (1 << 16):
            raise ValueError("COPY stream includes OIDs (flags bit 16); not supported")
        if flags & ~0xFFFF & ~(1 << 16):
            raise ValueError(f"COPY header has unknown critical flags {flags:#010x}")
        if ext_len < 0:
            raise ValueError(f"negative COPY header extension length {ext_len}")
        total = len(_SIGNATURE) + 8 + ext_len
        if len(buf) < total:
            return False
        self._consume(total)
        self._header_done = True
        return True

    def _parse_tuples(self) -> None:
        buf = self._buf
        m = len(buf) // _TUPLE_SIZE
        if m:
            good = self._decode_block(m)
            self._consume(good * _TUPLE_SIZE)
            if good < m:  # _decode_block found the trailer inside the block
                self._take_trailer()
                return
        if len(self._buf) >= 2 and self._buf[:2] == b"\xff\xff":
            self._take_trailer()
        elif len(self._buf) >= 2:
            (nf,) = struct.unpack_from(">h", self._buf)
            if nf != _NFIELDS:
                raise ValueError(
                    f"tuple {self._rows} at byte {self._offset}: "
                    f"expected {_NFIELDS} fields, got {nf}"
                )

    def _take_trailer(self) -> None:
        if len(self._buf) > 2:
            raise ValueError(f"data after COPY trailer at byte {self._offset + 2}")
        if len(self._buf) < 2:  # pragma: no cover - caller checks
            return
        self._consume(2)
        self._trailer_seen = True

    def _decode_block(self, m: int) -> int:
        """Decode up to m whole tuples from the buffer; return how many were tuples.

        All views of the buffer are locals, released on return, before the caller
        resizes the bytearray (which would otherwise raise BufferError).
        """
        rec = np.frombuffer(self._buf, dtype=_TUPLE_DTYPE, count=m)
        nf = rec["nf"]
        bad = np.flatnonzero(nf != _NFIELDS)
        good = m
        if bad.size:
            good = int(bad[0])
            got = int(nf[good])
            if got != -1:
                raise ValueError(
                    f"tuple {self._rows + good} at byte {self._offset + good * 62}: "
                    f"expected {_NFIELDS} fields, got {got}"
                )
            rec = rec[:good]
        for i, name in enumerate(_FIELD_NAMES):
            ln = rec[f"l{i}"]
            badl = np.flatnonzero(ln != 8)
            if badl.size:
                r = int(badl[0])
                got = int(ln[r])
                what = "NULL" if got == -1 else f"length {got}"
                raise ValueError(
                    f"tuple {self._rows + r} field {i} ({name}): {what}, "
                    f"expected non-null int8 (length 8)"
                )
        if good:
            cols = self._columns(rec)
            self._parts.append(cols)
            self._rows += good
            self._pending += good
        return good

    def _columns(self, rec: NDArray[np.void]) -> Columns:
        numbers = rec["v0"].astype(np.int64)
        ids: list[NDArray[np.uint32]] = []
        for i in (1, 2):
            v = rec[f"v{i}"]
            bad = np.flatnonzero((v < 0) | (v > MAX_U32))
            if bad.size:
                r = int(bad[0])
                raise ValueError(
                    f"tuple {self._rows + r} field {i} ({_FIELD_NAMES[i]}): "
                    f"{int(v[r])} does not fit in uint32"
                )
            ids.append(v.astype(np.uint32))
        eff = np.floor_divide(rec["v3"].astype(np.int64), _US)
        exp, part = np.divmod(rec["v4"].astype(np.int64), _US)
        exp += part > 0  # up to the whole second (no overflow at +infinity, unlike + 999999)
        return numbers, ids[0], ids[1], _epoch_u32(eff), _epoch_u32(exp)


def _epoch_u32(seconds_since_2000: NDArray[np.int64]) -> NDArray[np.uint32]:
    seconds = seconds_since_2000 + _PG_EPOCH_S  # |s| <= 2**63 / 10**6: no overflow
    np.maximum(seconds, 0, out=seconds)
    np.minimum(seconds, MAX_U32, out=seconds)
    return seconds.astype(np.uint32)
