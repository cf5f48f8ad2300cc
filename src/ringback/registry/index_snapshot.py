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
    16    header: UTF-8 JSON (seq, seq_at, synced_at, counts, payload length, CRC-32)
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

from ringback.registry.listing_index import Entry, PreparedBase

__all__ = [
    "FILE_NAME",
    "FORMAT_VERSION",
    "Snapshot",
    "SnapshotError",
    "SnapshotHeader",
    "SnapshotLock",
    "read_header",
    "read_snapshot",
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
    crc32: int


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


def _crc(buffers: list[memoryview]) -> int:
    crc = 0
    for buf in buffers:
        for start in range(0, len(buf), _CRC_CHUNK):
            crc = zlib.crc32(buf[start : start + _CRC_CHUNK], crc)
    return crc


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
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    skeys, scounts, sentries = _side_arrays(side)
    arrays = [base.keys, base.fields, skeys, scounts, sentries]
    views = [np.ascontiguousarray(a).reshape(-1).view(np.uint8).data for a in arrays]
    n, m, k = base.n, int(skeys.shape[0]), int(sentries.shape[0])
    sections = _sections(n, m, k)
    payload_bytes = sections[-1][0] + sections[-1][1]
    header = {
        "seq": int(seq),
        "seq_at": seq_at,
        "synced_at": float(synced_at),
        "n": n,
        "side_numbers": m,
        "side_entries": k,
        "payload_bytes": payload_bytes,
        "crc32": _crc(views),
    }
    text = json.dumps(header, separators=(",", ":")).encode()
    if _PREFIX.size + len(text) > _PAYLOAD_AT:
        raise ValueError("snapshot header too long")
    final = directory / FILE_NAME
    tmp = directory / f"{FILE_NAME}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        with open(tmp, "wb") as f:
            f.write(_PREFIX.pack(_MAGIC, FORMAT_VERSION, len(text)) + text)
            for (offset, _size), view in zip(sections, views, strict=True):
                f.seek(_PAYLOAD_AT + offset)
                f.write(view)
            f.truncate(_PAYLOAD_AT + payload_bytes)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # the rename itself, durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return final


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
            crc32=int(h["crc32"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"{path}: unreadable header ({exc})") from None
    sections = _sections(header.n, header.side_numbers, header.side_entries)
    if min(header.n, header.side_numbers, header.side_entries, header.seq) < 0 or (
        sections[-1][0] + sections[-1][1] != header.payload_bytes
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
    if verify:
        with memoryview(mm) as view:
            parts = [view[_PAYLOAD_AT + o : _PAYLOAD_AT + o + s] for o, s in sections]
            crc = _crc(parts)
            for part in parts:
                part.release()
        if crc != h.crc32:
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
