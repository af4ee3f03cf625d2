"""A nearest-hash index per signal, with faiss: exact while a list is small, inverted lists above.

Brute force compares each query with every banned hash: about 1,000 queries/s on two cores at 200,000
hashes, and proportionally slower above (benchmarks/index_speed.py). Above EXACT_MAX hashes a signal gets an
inverted-file index (faiss IndexBinaryIVF): the hashes are grouped around learned centroids and a query
compares itself only with the groups of its `nprobe` nearest centroids. That can miss a true match that sits
in another group; docs/benchmarks.md measures how often, against brute force.

An index is stored as shards of at most SHARD_ROWS hashes (each one faiss file, read memory-mapped), so
building one holds a shard at a time, and a delta adds a shard instead of rewriting the list. A faiss id is
the row of the image the hash belongs to (for crop hashes, the image it was cut from).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from vetohash.matching import Nearest

import faiss  # after vetohash.matching, which loads it with its OpenMP threads set not to spin

EXACT_MAX = 200_000  # hashes per shard up to which search is exact (measured: benchmarks/index_speed.py)
SHARD_ROWS = 16 * 1024 * 1024  # about 0.8 GB while a shard of 160-bit hashes is built
MAX_LISTS = 1024  # inverted lists of the largest shard (training time grows with their square)
NPROBE = 64  # groups searched per query (measured: benchmarks/index_speed.py)
TRAIN_PER_LIST = 40
_NEIGHBOURS = 8  # nearest hashes fetched per shard, so that a removed image's hash need not hide another


def build_shard(hashes: np.ndarray, rows: np.ndarray, path: Path, *, trained: faiss.IndexBinary | None = None,
                batch: int = 1 << 20) -> None:
    """Write the index of (N, bytes) packed `hashes` whose faiss ids are `rows`; `hashes` may be a memmap (it is
    read `batch` rows at a time). An inverted index is trained on a sample unless `trained`, a trained empty
    inverted index, is given (it is copied, never filled, so that it serves every shard)."""
    bits = hashes.shape[1] * 8
    if len(hashes) <= EXACT_MAX:
        index: faiss.IndexBinary = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(bits))
    elif trained is None:
        index = train(np.ascontiguousarray(hashes[training_rows(len(hashes))]), len(hashes))
    else:
        index = faiss.deserialize_index_binary(faiss.serialize_index_binary(trained))  # a copy: the stubs lack clone
    for start in range(0, len(hashes), batch):
        index.add_with_ids(np.ascontiguousarray(hashes[start:start + batch]),
                           np.ascontiguousarray(rows[start:start + batch], dtype=np.int64))
    faiss.write_index_binary(index, str(path))


def lists_for(count: int) -> int:
    """Inverted lists for `count` hashes: the power of two nearest their square root, at most MAX_LISTS."""
    return int(min(MAX_LISTS, 2 ** round(np.log2(max(count, 1) ** 0.5))))


def training_rows(count: int) -> np.ndarray:
    """The evenly spaced rows of `count` hashes whose hashes `train` learns the centroids from."""
    return np.linspace(0, count - 1, min(count, lists_for(count) * TRAIN_PER_LIST), dtype=np.int64)


def train(sample: np.ndarray, count: int, seed: int = 0) -> faiss.IndexBinaryIVF:
    """An empty inverted-file index for `count` hashes, its centroids learned from `sample`, the hashes at their
    `training_rows` (the caller reads them: a list's hashes need not be in memory, nor memory-mapped)."""
    bits = sample.shape[1] * 8
    lists = lists_for(count)
    index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, lists)
    index.cp.seed = seed  # deterministic centroids
    index.train(sample)
    return index


def _one_thread() -> None:
    faiss.omp_set_num_threads(1)


class SignalIndex:
    """The shards of one signal's hashes, searched together; rows listed in `removed` are never returned.

    Queries are split across `workers` threads, each running faiss on one thread (faiss releases the GIL):
    faiss's own OpenMP threads meet at a barrier after every block of queries, which on a busy machine made
    two threads slower than one (benchmarks/index_speed.py).
    """

    def __init__(self, shards: Sequence[faiss.IndexBinary], bits: int, nprobe: int = NPROBE,
                 workers: int | None = None) -> None:
        self.shards = list(shards)
        self.bits = bits
        self.workers = workers or os.cpu_count() or 1
        for shard in self.shards:
            if isinstance(shard, faiss.IndexBinaryIVF):
                shard.nprobe = nprobe

    @classmethod
    def load(cls, paths: Sequence[Path], bits: int, nprobe: int = NPROBE, workers: int | None = None
             ) -> SignalIndex:
        """Shards read memory-mapped: loading costs no copy of the hashes, and pages come in as they are used."""
        return cls([faiss.read_index_binary(str(path), faiss.IO_FLAG_MMAP) for path in paths], bits, nprobe,
                   workers)

    def __len__(self) -> int:
        return sum(shard.ntotal for shard in self.shards)

    def nearest(self, queries: np.ndarray, removed: np.ndarray | None = None) -> Nearest:
        """For each query, the row of its nearest indexed hash that is not in `removed` (sorted) and the
        distance; row -1 and distance bits + 1 when there is none (an empty index)."""
        parts = np.array_split(np.arange(len(queries)), min(self.workers, max(1, len(queries) // 16)))
        if len(parts) == 1:
            _one_thread()
            return self._nearest(queries, removed)
        with ThreadPoolExecutor(len(parts), initializer=_one_thread) as pool:
            found = list(pool.map(lambda part: self._nearest(queries[part], removed), parts))
        return Nearest(np.concatenate([f.index for f in found]), np.concatenate([f.distance for f in found]))

    def _nearest(self, queries: np.ndarray, removed: np.ndarray | None) -> Nearest:
        queries = np.ascontiguousarray(queries)
        best_row = np.full(len(queries), -1, dtype=np.int64)
        best = np.full(len(queries), self.bits + 1, dtype=np.int32)
        for shard in self.shards:
            if shard.ntotal == 0 or len(queries) == 0:
                continue
            todo = np.arange(len(queries))
            k = min(_NEIGHBOURS, shard.ntotal)
            while len(todo):
                distances, rows = shard.search(queries[todo], k)
                live = rows >= 0
                if removed is not None and len(removed):
                    live &= ~np.isin(rows, removed)
                first = np.argmax(live, axis=1)  # results come nearest first
                found = live[np.arange(len(todo)), first]
                row, distance = rows[np.arange(len(todo)), first], distances[np.arange(len(todo)), first]
                better = found & (distance < best[todo])
                best[todo[better]] = distance[better]
                best_row[todo[better]] = row[better]
                # Every fetched hash removed: look further, unless the shard had no more to give.
                exhausted = ~found & (rows[:, -1] >= 0) & (k < shard.ntotal)
                todo, k = todo[exhausted], min(k * 4, shard.ntotal)
        return Nearest(best_row, best)
