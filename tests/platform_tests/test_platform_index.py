"""The per-signal index against brute force: exact below EXACT_MAX, and the inverted-file index above it finds
the planted near copies that brute force finds; removed rows are never returned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vetohash.matching import nearest
from vetohash_platform import index
from vetohash_platform.index import SignalIndex, build_shard


def random_hashes(count: int, width: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, width), dtype=np.uint8)


def flipped(hashes: np.ndarray, bits: int, seed: int = 1) -> np.ndarray:
    """Copies of `hashes` with `bits` random bits flipped in each."""
    rng = np.random.default_rng(seed)
    out = hashes.copy()
    for row in out:
        for bit in rng.choice(hashes.shape[1] * 8, bits, replace=False):
            row[bit // 8] ^= 1 << (7 - bit % 8)
    return out


def test_exact_index_equals_brute_force(tmp_path: Path) -> None:
    """Below EXACT_MAX the index is exact: the same distances as vetohash.matching.nearest for every query,
    with rows offset as given."""
    banned = random_hashes(3000)
    queries = np.concatenate([flipped(banned[:50], 20), random_hashes(50, seed=9)])
    build_shard(banned, np.arange(3000, dtype=np.int64) + 100, tmp_path / "s.faiss")
    found = SignalIndex.load([tmp_path / "s.faiss"], 160).nearest(queries)
    brute = nearest(queries, banned)
    np.testing.assert_array_equal(found.distance, brute.distance)
    at_found = np.bitwise_count(queries ^ banned[found.index - 100]).sum(axis=1)
    np.testing.assert_array_equal(at_found, found.distance)  # the row returned is one at that distance
    np.testing.assert_array_equal(found.index[:50], np.arange(50) + 100)


def test_removed_rows_are_never_returned(tmp_path: Path) -> None:
    """A removed row's hash is skipped, however many of the nearest are removed: the next live one is found,
    and with every row removed there is none (row -1, distance bits + 1)."""
    banned = np.repeat(random_hashes(1), 30, axis=0)  # 30 copies of one hash: more than one search fetches
    banned = np.concatenate([banned, random_hashes(5, seed=3)])
    build_shard(banned, np.arange(len(banned), dtype=np.int64), tmp_path / "s.faiss")
    shard = SignalIndex.load([tmp_path / "s.faiss"], 160)
    removed = np.arange(29)
    found = shard.nearest(banned[:1], removed)
    assert found.index[0] == 29 and found.distance[0] == 0
    everything = shard.nearest(banned[:1], np.arange(len(banned)))
    assert everything.index[0] == -1 and everything.distance[0] == 161


def test_shards_are_searched_together(tmp_path: Path) -> None:
    """The nearest over several shards is the nearest of all their hashes."""
    banned = random_hashes(2000)
    build_shard(banned[:1000], np.arange(1000, dtype=np.int64), tmp_path / "a.faiss")
    build_shard(banned[1000:], np.arange(1000, 2000, dtype=np.int64), tmp_path / "b.faiss")
    queries = flipped(banned[::97], 25)
    found = SignalIndex.load([tmp_path / "a.faiss", tmp_path / "b.faiss"], 160).nearest(queries)
    np.testing.assert_array_equal(found.distance, nearest(queries, banned).distance)
    np.testing.assert_array_equal(found.index, np.arange(0, 2000, 97))


def test_inverted_index_finds_near_copies_as_brute_force_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    """Above EXACT_MAX the index is approximate; near copies (12 of 160 bits changed) of indexed hashes are
    still all found at their brute-force distance, and the file is an inverted-file index."""
    monkeypatch.setattr(index, "EXACT_MAX", 1000)
    banned = random_hashes(20_000)
    queries = flipped(banned[::200], 12)
    build_shard(banned, np.arange(len(banned), dtype=np.int64), tmp_path / "ivf.faiss")
    loaded = SignalIndex.load([tmp_path / "ivf.faiss"], 160)
    assert isinstance(loaded.shards[0], index.faiss.IndexBinaryIVF)
    found = loaded.nearest(queries)
    np.testing.assert_array_equal(found.distance, nearest(queries, banned).distance)
    np.testing.assert_array_equal(found.index, np.arange(0, 20_000, 200))


def test_shards_built_from_one_trained_index_leave_it_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each shard fills its own copy of a trained index (biglist trains once per signal for every shard): the
    template stays empty, each shard holds only its rows, and near copies are found in both."""
    monkeypatch.setattr(index, "EXACT_MAX", 1000)
    banned = random_hashes(8000)
    trained = index.train(banned[index.training_rows(8000)], 8000)
    build_shard(banned[:4000], np.arange(4000, dtype=np.int64), tmp_path / "a.faiss", trained=trained)
    build_shard(banned[4000:], np.arange(4000, 8000, dtype=np.int64), tmp_path / "b.faiss", trained=trained)
    assert trained.ntotal == 0
    loaded = SignalIndex.load([tmp_path / "a.faiss", tmp_path / "b.faiss"], 160)
    assert [shard.ntotal for shard in loaded.shards] == [4000, 4000]
    queries = flipped(banned[::100], 12)
    np.testing.assert_array_equal(loaded.nearest(queries).index, np.arange(0, 8000, 100))


def test_a_list_s_training_sample_is_read_from_its_flat_file_row_by_row(tmp_path: Path) -> None:
    """Ingest learns a signal's centroids from the hashes at index.training_rows of its flat file, read without
    mapping the file: the same sample, so the same centroids, as from the hashes in memory."""
    from vetohash_platform.biglist import _read_rows

    hashes = random_hashes(5000)
    raw = tmp_path / "crops.raw"
    raw.write_bytes(hashes.tobytes())
    rows = index.training_rows(len(hashes))
    assert len(rows) == index.lists_for(5000) * index.TRAIN_PER_LIST and rows[0] == 0 and rows[-1] == 4999
    np.testing.assert_array_equal(_read_rows(raw, rows, 20), hashes[rows])
