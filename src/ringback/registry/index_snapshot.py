"""The index's compact arrays in one file, memory-mapped by every process of a host.

The process that loads the index from PostgreSQL (or merges its overlay) writes the base
arrays, the side table, the change-feed sequence they reflect and when they were known
current to ``<cache.dir>/index.snapshot`` (temporary file, fsync, rename: a reader sees
the old file or the new one, never half of one; a reader that has the old one mapped
keeps it until it lets go). The other workers of ``ringback serve --workers N`` and a
restarted node map it read-only (``mmap``), so the kernel keeps one copy of its pages for
all of them, and apply the change feed from its sequence into their own small overlay.

Layout (little-endian), version :data:`FORMAT_VERSION`::

    0     magic b"RBKIDXv\\0", uint32 format version, uint32 header length
    16    header: UTF-8 JSON (seq, seq_at, synced_at, counts, payload length, the
          CRC-32 of each section)
    4096  keys int64[n] | fields uint32[n, 4] | side keys int64[m] | side counts
          uint32[m] | side entries uint32[k, 4]   (each section starts on 64 bytes)

Anything unexpected (short file, other magic or version, sizes that do not add up, a
CRC-32 that does not match) raises :class:`SnapshotError`; the caller then loads from
PostgreSQL instead (fail open).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import mmap
import os
import secrets
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from ringback.registry.listing_index import Entry, PreparedBase, collapse_sorted

__all__ = [
    "FILE_NAME",
    "FORMAT_VERSION",
    "Snapshot",
    "SnapshotError",
    "SnapshotHeader",
    "SnapshotLock",
    "SnapshotWriter",
    "SortedRows",
    "populate",
    "read_header",
    "read_snapshot",
    "write_merged",
    "write_snapshot",
]

FILE_NAME: Final = "index.snapshot"
FORMAT_VERSION: Final = 1
_MAGIC: Final = b"RBKIDXv\0"
_PREFIX: Final = struct.Struct("<8sII")
_PAYLOAD_AT: Final = 4096  # page-aligned arrays
_ALIGN: Final = 64
_CRC_CHUNK: Final = 1 << 24


class SnapshotError(Exception):
    """The snapshot file cannot be used (missing, truncated, corrupt, other version)."""


@dataclass(frozen=True)
class SnapshotHeader:
    seq: int  # the change-feed sequence the arrays reflect
    seq_at: int | None  # change_feed.at of that sequence (µs since epoch): which database
    synced_at: float  # wall-clock time the arrays were known to match the database
    n: int
    side_numbers: int
    side_entries: int
    payload_bytes: int
    crc32: tuple[int, ...]  # one per section


@dataclass(frozen=True)
class Snapshot:
    header: SnapshotHeader
    base: PreparedBase  # arrays are read-only views of the shared mapping
    path: Path

    @property
    def seq(self) -> int:
        return self.header.seq


def _aligned(x: int) -> int:
    return (x + _ALIGN - 1) // _ALIGN * _ALIGN


def _sections(n: int, m: int, k: int) -> list[tuple[int, int]]:
    """(offset from the payload start, bytes) of each of the five arrays."""
    sizes = [8 * n, 16 * n, 8 * m, 4 * m, 16 * k]
    out = []
    at = 0
    for size in sizes:
        out.append((at, size))
        at = _aligned(at + size)
    return out


def _side_arrays(
    side: dict[int, tuple[Entry, ...]],
) -> tuple[NDArray[np.int64], NDArray[np.uint32], NDArray[np.uint32]]:
    numbers = sorted(side)
    keys = np.array(numbers, dtype=np.int64)
    counts = np.array([len(side[x]) for x in numbers], dtype=np.uint32)
    flat = [tuple(e) for x in numbers for e in side[x]]
    entries = np.array(flat, dtype=np.uint32).reshape(-1, 4)
    return keys, counts, entries


def _crc(buf: memoryview, crc: int = 0) -> int:
    for start in range(0, len(buf), _CRC_CHUNK):
        crc = zlib.crc32(buf[start : start + _CRC_CHUNK], crc)
    return crc


def _bytes(a: NDArray[Any]) -> memoryview:
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8).data


class SnapshotWriter:
    """Writes a snapshot piece by piece (a merge or a load never needs a second whole copy
    of the arrays in memory), then renames it into place.

    ``append(keys, fields)`` in key order, then ``commit(side)`` (or ``abort()``). With
    ``n`` unknown (a load streamed from PostgreSQL) the fields go to a second temporary
    file first and are copied into place, in the kernel, at commit. Blocking I/O: use it
    in a worker thread."""

    def __init__(
        self,
        directory: str | Path,
        *,
        seq: int,
        seq_at: int | None,
        synced_at: float,
        n: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.n = n
        self._meta = {"seq": int(seq), "seq_at": seq_at, "synced_at": float(synced_at)}
        self._crcs = [0] * 5
        self.rows = 0
        name = f"{FILE_NAME}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        self.tmp = self.directory / name
        self._fds: list[int] = []
        self._fd = self._open(self.tmp)
        # Fields at their final offset when n is known, else in a file of their own.
        self._fields_tmp = None if n is not None else self.directory / (name + ".fields")
        self._fields_fd = self._fd if n is not None else self._open(self._fields_tmp)
        self._fields_at = _PAYLOAD_AT + _sections(n, 0, 0)[1][0] if n is not None else 0

    def _open(self, path: Path | None) -> int:
        assert path is not None
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        self._fds.append(fd)
        return fd

    @staticmethod
    def _pwrite(fd: int, data: memoryview, offset: int) -> None:
        while len(data):
            written = os.pwrite(fd, data, offset)
            data, offset = data[written:], offset + written

    def append(self, keys: NDArray[np.int64], fields: NDArray[np.uint32]) -> None:
        count = int(keys.shape[0])
        if fields.shape != (count, 4) or (self.n is not None and self.rows + count > self.n):
            raise ValueError("snapshot rows do not match the announced size")
        kb = _bytes(keys.astype(np.int64, copy=False))
        fb = _bytes(fields.astype(np.uint32, copy=False))
        self._pwrite(self._fd, kb, _PAYLOAD_AT + 8 * self.rows)
        self._pwrite(self._fields_fd, fb, self._fields_at + 16 * self.rows)
        self._crcs[0] = _crc(kb, self._crcs[0])
        self._crcs[1] = _crc(fb, self._crcs[1])
        self.rows += count

    def commit(self, side: dict[int, tuple[Entry, ...]]) -> Path:
        n = self.rows
        if self.n is not None and n != self.n:
            raise ValueError(f"{n} rows written, {self.n} announced")
        side_keys, side_counts, side_entries = _side_arrays(side)
        m, k = int(side_keys.shape[0]), int(side_entries.shape[0])
        sections = _sections(n, m, k)
        fd = self._fd
        if self._fields_fd != fd:  # move the fields into place
            src, dst, left = 0, _PAYLOAD_AT + sections[1][0], 16 * n
            while left:
                done = os.copy_file_range(self._fields_fd, fd, left, src, dst)
                if done == 0:
                    raise OSError("short copy of the snapshot's fields")
                src, dst, left = src + done, dst + done, left - done
        for i, array in ((2, side_keys), (3, side_counts), (4, side_entries)):
            data = _bytes(array)
            self._pwrite(fd, data, _PAYLOAD_AT + sections[i][0])
            self._crcs[i] = _crc(data)
        payload = sections[-1][0] + sections[-1][1]
        header = dict(
            self._meta,
            n=n,
            side_numbers=m,
            side_entries=k,
            payload_bytes=payload,
            crc32=self._crcs,
        )
        text = json.dumps(header, separators=(",", ":")).encode()
        if _PREFIX.size + len(text) > _PAYLOAD_AT:
            raise ValueError("snapshot header too long")
        os.pwrite(fd, _PREFIX.pack(_MAGIC, FORMAT_VERSION, len(text)) + text, 0)
        os.ftruncate(fd, _PAYLOAD_AT + payload)
        os.fsync(fd)
        self._close()
        final = self.directory / FILE_NAME
        os.replace(self.tmp, final)
        with contextlib.suppress(OSError):  # the rename itself, durable
            dfd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        return final

    def _close(self) -> None:
        fds, self._fds = self._fds, []
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._fields_tmp is not None:
            self._fields_tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        self._close()
        self.tmp.unlink(missing_ok=True)


class SortedRows:
    """Rows sorted by number, in pieces (a full load streamed from PostgreSQL), written
    as a snapshot: a number's rows may straddle two pieces, so the last number of each
    piece waits for the next; numbers with several rows go to the side table."""

    def __init__(self, writer: SnapshotWriter) -> None:
        self.writer = writer
        self.side: dict[int, tuple[Entry, ...]] = {}
        self._carry: tuple[NDArray[np.int64], NDArray[np.uint32]] | None = None
        self._last: int | None = None

    def push(self, keys: NDArray[np.int64], fields: NDArray[np.uint32], *, last: bool) -> None:
        if self._carry is not None:
            keys = np.concatenate([self._carry[0], keys])
            fields = np.concatenate([self._carry[1], fields])
            self._carry = None
        if keys.size:
            if self._last is not None and int(keys[0]) < self._last:
                raise ValueError("rows are not sorted by number")
            if keys.size > 1 and not bool(np.all(keys[1:] >= keys[:-1])):
                raise ValueError("rows are not sorted by number")
            if not last:
                cut = int(np.searchsorted(keys, keys[-1]))  # the last number's first row
                self._carry = (keys[cut:], fields[cut:])
                keys, fields = keys[:cut], fields[:cut]
        if keys.size:
            self._last = int(keys[-1]) + 1
            out_keys, out_fields, side = collapse_sorted(keys, fields)
            self.side.update(side)
            self.writer.append(out_keys, out_fields)

    def commit(self) -> Path:
        return self.writer.commit(self.side)


def write_snapshot(
    directory: str | Path,
    base: PreparedBase,
    side: dict[int, tuple[Entry, ...]],
    *,
    seq: int,
    seq_at: int | None,
    synced_at: float,
) -> Path:
    """Write ``base`` + ``side`` as the directory's snapshot, atomically. Blocking I/O:
    call it in a worker thread. Returns the snapshot's path."""
    writer = SnapshotWriter(directory, n=base.n, seq=seq, seq_at=seq_at, synced_at=synced_at)
    try:
        writer.append(base.keys, base.fields)
        return writer.commit(side)
    except BaseException:
        writer.abort()
        raise


_ROW: Final = np.dtype("V16")
MERGE_CHUNK: Final = 1 << 18  # base rows merged and written at a time (6 MB)


def write_merged(
    directory: str | Path,
    base: PreparedBase,
    overlay: dict[int, Entry | None],
    side: dict[int, tuple[Entry, ...]],
    *,
    seq: int,
    seq_at: int | None,
    synced_at: float,
) -> Path:
    """Write ``base`` with ``overlay`` applied (None removes a number) as the snapshot,
    piece by piece: the merge holds a few MB besides the overlay, never a second copy
    of the arrays (which would double the host's index memory at every merge)."""
    m = len(overlay)
    ok = np.fromiter(overlay.keys(), dtype=np.int64, count=m)
    present = np.fromiter((e is not None for e in overlay.values()), dtype=bool, count=m)
    vals = np.array(
        [e if e is not None else (0, 0, 0, 0) for e in overlay.values()], dtype=np.uint32
    ).reshape(m, 4)
    order = np.argsort(ok)
    ok, present, vals = ok[order], present[order], vals[order]
    keys, n = base.keys, base.n
    pos = np.searchsorted(keys, ok)
    hit = pos < n
    hit[hit] = keys[pos[hit]] == ok[hit]
    drop = pos[hit]  # rows replaced or removed (sorted, as ok is)
    ins_k = ok[present]
    ins_v = np.ascontiguousarray(vals[present]).view(_ROW).reshape(-1)
    ins_at = np.searchsorted(keys, ins_k)  # where each goes among the base rows
    writer = SnapshotWriter(
        directory, n=n - drop.size + ins_k.size, seq=seq, seq_at=seq_at, synced_at=synced_at
    )
    try:
        rows = base.fields.view(_ROW).reshape(-1)
        for a in range(0, max(n, 1), MERGE_CHUNK):
            b = min(a + MERGE_CHUNK, n)
            ck, cr = keys[a:b], rows[a:b]
            d0, d1 = np.searchsorted(drop, [a, b])
            if d1 > d0:
                keep = np.ones(b - a, dtype=bool)
                keep[drop[d0:d1] - a] = False
                ck, cr = ck[keep], cr[keep]
            i0 = int(np.searchsorted(ins_at, a))
            i1 = int(np.searchsorted(ins_at, b)) if b < n else ins_k.size
            if i1 > i0:
                where = np.searchsorted(ck, ins_k[i0:i1])
                ck = np.insert(ck, where, ins_k[i0:i1])
                cr = np.insert(cr, where, ins_v[i0:i1])
            writer.append(ck, np.ascontiguousarray(cr).view(np.uint32).reshape(-1, 4))
        return writer.commit(side)
    except BaseException:
        writer.abort()
        raise


def _parse_header(raw: bytes, path: Path) -> SnapshotHeader:
    if len(raw) < _PREFIX.size:
        raise SnapshotError(f"{path}: truncated ({len(raw)} bytes)")
    magic, version, length = _PREFIX.unpack_from(raw)
    if magic != _MAGIC:
        raise SnapshotError(f"{path}: not an index snapshot (magic {magic!r})")
    if version != FORMAT_VERSION:
        raise SnapshotError(
            f"{path}: format version {version}, this ringback reads {FORMAT_VERSION}"
        )
    if _PREFIX.size + length > min(len(raw), _PAYLOAD_AT):
        raise SnapshotError(f"{path}: truncated header")
    try:
        h: dict[str, Any] = json.loads(raw[_PREFIX.size : _PREFIX.size + length])
        seq_at = h["seq_at"]
        header = SnapshotHeader(
            seq=int(h["seq"]),
            seq_at=None if seq_at is None else int(seq_at),
            synced_at=float(h["synced_at"]),
            n=int(h["n"]),
            side_numbers=int(h["side_numbers"]),
            side_entries=int(h["side_entries"]),
            payload_bytes=int(h["payload_bytes"]),
            crc32=tuple(int(x) for x in h["crc32"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"{path}: unreadable header ({exc})") from None
    sections = _sections(header.n, header.side_numbers, header.side_entries)
    if (
        min(header.n, header.side_numbers, header.side_entries, header.seq) < 0
        or sections[-1][0] + sections[-1][1] != header.payload_bytes
        or len(header.crc32) != len(sections)
    ):
        raise SnapshotError(f"{path}: header sizes do not add up")
    return header


def read_header(path: str | Path) -> SnapshotHeader:
    """The header alone (cheap): which sequence a snapshot holds. Not checksummed."""
    path = _file(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(_PAYLOAD_AT)
    except OSError as exc:
        raise SnapshotError(f"{path}: {exc.strerror or exc}") from None
    return _parse_header(raw, path)


def read_snapshot(path: str | Path, *, verify: bool = True) -> Snapshot:
    """Map a snapshot read-only and check it (size, and the CRC-32 with ``verify``).
    Blocking (the CRC reads every page once): call it in a worker thread."""
    path = _file(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(_PAYLOAD_AT)
            header = _parse_header(raw, path)
            size = os.fstat(f.fileno()).st_size
            expected = _PAYLOAD_AT + header.payload_bytes
            if size != expected:
                raise SnapshotError(f"{path}: {size} bytes, the header says {expected}")
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise SnapshotError(f"{path}: {exc.strerror or exc}") from None
    h = header
    sections = _sections(h.n, h.side_numbers, h.side_entries)
    if verify and _file_crcs(path, sections) != h.crc32:
        raise SnapshotError(f"{path}: checksum mismatch (corrupt)")

    def array(i: int, dtype: type[np.generic], count: int) -> NDArray[Any]:
        return np.frombuffer(mm, dtype=dtype, count=count, offset=_PAYLOAD_AT + sections[i][0])

    keys = array(0, np.int64, h.n)
    fields = array(1, np.uint32, 4 * h.n).reshape(h.n, 4)
    skeys = array(2, np.int64, h.side_numbers).tolist()
    scounts = array(3, np.uint32, h.side_numbers).tolist()
    sentries = array(4, np.uint32, 4 * h.side_entries).reshape(-1, 4).tolist()
    if sum(scounts) != h.side_entries:
        raise SnapshotError(f"{path}: side table counts do not add up")
    side: dict[int, tuple[Entry, ...]] = {}
    at = 0
    for number, count in zip(skeys, scounts, strict=True):
        side[number] = tuple(Entry(*row) for row in sentries[at : at + count])
        at += count
    try:
        base = PreparedBase(keys, fields, side)
    except ValueError as exc:
        raise SnapshotError(f"{path}: {exc}") from None
    return Snapshot(header, base, path)


def _file_crcs(path: Path, sections: list[tuple[int, int]]) -> tuple[int, ...]:
    """The sections' CRC-32s, read with read(2) rather than through the mapping: checking
    a new snapshot must not fault its pages into this process while it still holds the
    old one (that would be two copies of the index per process for a moment)."""
    buf = bytearray(_CRC_CHUNK)
    crcs = []
    try:
        with open(path, "rb", buffering=0) as f:
            for offset, size in sections:
                crc, done = 0, 0
                f.seek(_PAYLOAD_AT + offset)
                while done < size:
                    got = f.readinto(memoryview(buf)[: min(_CRC_CHUNK, size - done)])
                    if not got:
                        raise SnapshotError(f"{path}: truncated while reading")
                    crc = zlib.crc32(memoryview(buf)[:got], crc)
                    done += got
                crcs.append(crc)
    except OSError as exc:
        raise SnapshotError(f"{path}: {exc.strerror or exc}") from None
    return tuple(crcs)


def populate(base: PreparedBase) -> None:
    """Fault every page of a mapped base into this process (one read per page), so no
    call pays a page fault later. A process switching to a file another one wrote does
    it after letting its previous base go (never two files' pages at once). Thread."""
    int(base.keys[::512].sum())
    int(base.fields.reshape(-1)[::1024].sum())


def _file(path: str | Path) -> Path:
    path = Path(path)
    return path / FILE_NAME if path.is_dir() else path


class SnapshotLock:
    """An exclusive ``flock`` on ``<dir>/index.snapshot.lock``: one process of the host
    loads from PostgreSQL or merges at a time, the others wait and map its result.
    The kernel releases it when the holder exits, however it exits."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / f"{FILE_NAME}.lock"
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            raise RuntimeError("already held")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._remove_leftovers()
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _remove_leftovers(self) -> None:
        """Temporary files of a writer that died (only the lock holder writes)."""
        for tmp in self.path.parent.glob(f"{FILE_NAME}.tmp-*"):
            with contextlib.suppress(OSError):
                tmp.unlink()

    @contextlib.contextmanager
    def held_now(self) -> Iterator[bool]:
        """``with lock.held_now() as got:`` — try once; released on exit if taken."""
        got = self.try_acquire()
        try:
            yield got
        finally:
            if got:
                self.release()
