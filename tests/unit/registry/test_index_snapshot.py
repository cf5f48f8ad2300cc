"""The index snapshot file: round trip, damaged files refused, atomic replacement."""

from __future__ import annotations

import errno
import itertools
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringback.registry import index_snapshot
from ringback.registry.index_snapshot import (
    FILE_NAME,
    FORMAT_VERSION,
    SnapshotError,
    SnapshotLock,
    SnapshotWriter,
    SortedRows,
    read_header,
    read_snapshot,
    write_merged,
    write_snapshot,
)
from ringback.registry.listing_index import MAX_U32, Entry, ListingIndex, build_base

BASE = 8613800000000
NOW = 1_750_000_000


def _index(n: int = 1000, seed: int = 7) -> ListingIndex:
    """n numbers, every 10th with two listings (side table), some not yet effective."""
    rng = np.random.default_rng(seed)
    numbers = np.sort(rng.choice(10**8, size=n, replace=False).astype(np.int64) + BASE)
    several = numbers[::10]
    nums = np.concatenate([numbers, several])
    m = nums.size
    order = np.argsort(nums, kind="stable")
    eff = np.where(np.arange(m) % 7 == 0, NOW + 3600, NOW - 3600)
    index = ListingIndex()
    index.replace_all(
        nums[order],
        (np.arange(m) + 1)[order],
        (np.arange(m) % 3)[order],
        eff[order],
        np.full(m, MAX_U32)[order],
        several_per_number=True,
    )
    return index


def _write(directory: Path, index: ListingIndex, seq: int = 41) -> Path:
    return write_snapshot(
        directory,
        index.base,
        index.side_table(),
        seq=seq,
        seq_at=1_700_000_000_123_456,
        synced_at=1_700_000_001.5,
    )


def _answers(index: ListingIndex, numbers: list[int]) -> list[object]:
    return [(index.lookup(x, NOW), index.entries(x)) for x in numbers]


def test_round_trip_gives_the_same_answers(tmp_path: Path) -> None:
    original = _index()
    path = _write(tmp_path, original)
    assert path == tmp_path / FILE_NAME
    snap = read_snapshot(tmp_path)
    assert snap.seq == 41
    assert snap.header.seq_at == 1_700_000_000_123_456
    assert snap.header.synced_at == 1_700_000_001.5
    assert snap.header.n == original.base_size
    assert snap.base.side == original.side_table() and len(snap.base.side) == 100

    copy = ListingIndex()
    copy.install_base(snap.base)
    keys = original.base_columns()[0].tolist()
    probes = keys + [k + 1 for k in keys[:200]] + [BASE - 1, 0]
    assert _answers(copy, probes) == _answers(original, probes)
    assert len(copy) == len(original)
    several = next(iter(original.side_table()))
    assert len(copy.entries(several)) == 2
    # The arrays are the file's pages, read-only.
    assert not snap.base.keys.flags.writeable and not snap.base.fields.flags.writeable
    with pytest.raises(ValueError):
        snap.base.keys[0] = 1


def test_an_empty_index_round_trips(tmp_path: Path) -> None:
    empty = ListingIndex()
    _write(tmp_path, empty, seq=0)
    snap = read_snapshot(tmp_path)
    assert snap.seq == 0 and snap.base.n == 0 and snap.base.side == {}
    copy = ListingIndex()
    copy.install_base(snap.base)
    assert copy.lookup(BASE, NOW) is None and len(copy) == 0


def test_changes_on_top_of_a_mapped_snapshot_stay_in_the_overlay(tmp_path: Path) -> None:
    original = _index()
    _write(tmp_path, original)
    node = ListingIndex()
    node.install_base(read_snapshot(tmp_path).base)
    first = int(original.base_columns()[0][1])
    node.upsert(first, None)
    node.upsert(BASE - 5, Entry(9, 0, 0, MAX_U32))
    assert node.lookup(first, NOW) is None
    assert node.lookup(BASE - 5, NOW) == Entry(9, 0, 0, MAX_U32)
    node.compact()  # merging reads the mapped arrays and builds private ones
    assert node.lookup(BASE - 5, NOW) == Entry(9, 0, 0, MAX_U32) and node.overlay_size == 0


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))


def test_a_corrupt_payload_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _index())
    _flip(path, os.path.getsize(path) - 100)  # inside the side table's entries
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        read_snapshot(path)
    path = _write(tmp_path, _index())
    _flip(path, 4096 + 8 * 17 + 3)  # one of the numbers
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        read_snapshot(path)


def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _index())
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 16)
    with pytest.raises(SnapshotError, match=rf"{size - 16} bytes, the header says {size}"):
        read_snapshot(path)
    with open(path, "r+b") as f:
        f.truncate(10)
    with pytest.raises(SnapshotError, match="truncated"):
        read_snapshot(path)
    path.write_bytes(b"")
    with pytest.raises(SnapshotError, match="truncated"):
        read_snapshot(path)


def test_another_format_version_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _index())
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(struct.pack("<I", FORMAT_VERSION + 1))
    with pytest.raises(SnapshotError, match=f"format version {FORMAT_VERSION + 1}"):
        read_snapshot(path)
    with pytest.raises(SnapshotError, match="format version"):
        read_header(path)


def test_other_files_and_bad_headers_are_refused(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    path.write_bytes(b"PGCOPY\n\xff\r\n\x00" + bytes(5000))
    with pytest.raises(SnapshotError, match="not an index snapshot"):
        read_snapshot(path)
    with pytest.raises(SnapshotError, match="No such file"):
        read_snapshot(tmp_path / "missing.snapshot")

    good = _write(tmp_path, _index())
    raw = bytearray(good.read_bytes())
    (length,) = struct.unpack_from("<I", raw, 12)
    header = json.loads(raw[16 : 16 + length])
    header["n"] += 1  # sizes no longer add up
    text = json.dumps(header).encode()
    raw[12:16] = struct.pack("<I", len(text))
    raw[16 : 16 + len(text)] = text
    path.write_bytes(bytes(raw))
    with pytest.raises(SnapshotError, match="do not add up"):
        read_snapshot(path)
    raw[16:20] = b"\xff\xfe{{"
    path.write_bytes(bytes(raw))
    with pytest.raises(SnapshotError, match="unreadable header"):
        read_snapshot(path)


def test_replacing_the_file_leaves_a_reader_with_its_mapping(tmp_path: Path) -> None:
    old_index, new_index = _index(seed=1), _index(seed=2)
    _write(tmp_path, old_index, seq=10)
    reader = ListingIndex()
    reader.install_base(read_snapshot(tmp_path).base)
    old_keys = old_index.base_columns()[0].tolist()
    before = _answers(reader, old_keys)

    _write(tmp_path, new_index, seq=20)  # rename over the file the reader has mapped

    assert _answers(reader, old_keys) == before == _answers(old_index, old_keys)
    assert read_header(tmp_path / FILE_NAME).seq == 20
    fresh = ListingIndex()
    fresh.install_base(read_snapshot(tmp_path).base)
    new_keys = new_index.base_columns()[0].tolist()
    assert _answers(fresh, new_keys) == _answers(new_index, new_keys)
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE_NAME]  # no temporary left


def test_a_failed_write_leaves_the_old_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, _index(), seq=10)

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        _write(tmp_path, _index(seed=3), seq=11)
    monkeypatch.undo()
    assert read_snapshot(tmp_path).seq == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE_NAME]


def test_one_holder_of_the_lock_at_a_time(tmp_path: Path) -> None:
    first, second = SnapshotLock(tmp_path), SnapshotLock(tmp_path)
    leftover = tmp_path / f"{FILE_NAME}.tmp-123-abcd"
    leftover.write_bytes(b"half a snapshot of a writer that died")
    assert first.try_acquire()
    assert not leftover.exists()  # the holder clears dead writers' temporary files
    assert not second.try_acquire()
    with second.held_now() as got:
        assert not got
    first.release()
    with second.held_now() as got:
        assert got and second.held
        assert not first.try_acquire()
    assert not second.held
    assert first.try_acquire()
    first.release()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    base_keys=st.lists(st.integers(0, 400), unique=True, max_size=120),
    changes=st.lists(st.tuples(st.integers(-5, 410), st.none() | st.integers(1, 9)), max_size=60),
    chunk=st.integers(1, 50),
)
def test_a_merge_written_in_pieces_equals_the_index_merge(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    base_keys: list[int],
    changes: list[tuple[int, int | None]],
    chunk: int,
) -> None:
    monkeypatch.setattr(index_snapshot, "MERGE_CHUNK", chunk)
    keys = np.array(sorted(base_keys), dtype=np.int64) + BASE
    index = ListingIndex(compact_threshold=10**9)
    index.replace_all(keys, keys - BASE + 1, keys % 3, keys % 5, np.full(keys.size, MAX_U32))
    for number, lid in changes:
        index.upsert(BASE + number, None if lid is None else Entry(lid, 0, 0, MAX_U32))
    ticket = index.begin_compaction()
    expected = index.merged_arrays(ticket).prepared
    write_merged(tmp_path, ticket.base, ticket.overlay, {}, seq=3, seq_at=None, synced_at=0.0)
    got = read_snapshot(tmp_path).base
    assert got.keys.tolist() == expected.keys.tolist()
    assert got.fields.tolist() == expected.fields.tolist()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    numbers=st.lists(st.integers(0, 60), max_size=150),
    cuts=st.lists(st.integers(0, 150), max_size=6),
)
def test_a_load_streamed_in_pieces_equals_one_built_at_once(
    tmp_path: Path, numbers: list[int], cuts: list[int]
) -> None:
    """Rows sorted by number, a number's listings adjacent (several: the side table),
    cut anywhere, even inside one number's rows."""
    keys = np.array(sorted(numbers), dtype=np.int64) + BASE
    n = keys.size
    cols = (np.arange(n) + 1, np.arange(n) % 4, np.arange(n) % 7, np.full(n, MAX_U32))
    expected = build_base(keys, *cols, several_per_number=True)
    fields = np.stack(cols, axis=1).astype(np.uint32)
    rows = SortedRows(SnapshotWriter(tmp_path, seq=9, seq_at=None, synced_at=0.0))
    bounds = [0, *sorted(min(c, n) for c in cuts), n]
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        rows.push(keys[a:b], fields[a:b], last=i == len(bounds) - 2)
    rows.commit()
    got = read_snapshot(tmp_path)
    assert got.base.keys.tolist() == expected.keys.tolist()
    assert got.base.fields.tolist() == expected.fields.tolist()
    assert got.base.side == expected.side
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE_NAME]


def test_rows_out_of_order_are_refused(tmp_path: Path) -> None:
    rows = SortedRows(SnapshotWriter(tmp_path, seq=1, seq_at=None, synced_at=0.0))
    f = np.zeros((2, 4), np.uint32)
    rows.push(np.array([BASE + 5, BASE + 6], np.int64), f, last=False)
    with pytest.raises(ValueError, match="not sorted"):
        rows.push(np.array([BASE + 1, BASE + 2], np.int64), f, last=True)
    rows.writer.abort()
    assert list(tmp_path.iterdir()) == []
