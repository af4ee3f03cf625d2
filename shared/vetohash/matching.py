"""Nearest banned hash for each query, by Hamming distance.

`nearest` searches with faiss's exact binary index (IndexBinaryFlat: XOR and popcount over the packed bytes,
the first hash on ties). It replaced a matrix product of the hashes' bits as +1/-1 floats, which kept 32 times
the bytes of the list and was 4 to 8 times slower per query against 10,000 to 170,000 hashes (a batch of 12
queries against 170,000 crop hashes: 0.37 ms a query against 3.0, one thread). `hamming_matrix` gives every
pairwise distance, for measuring small sets.

faiss's OpenMP threads otherwise spin while they wait for work: on a machine whose cores are busy with other
processes (or with our own decoding threads) two spinning threads made assigning hashes to inverted lists 17
times slower than one thread (measured: 13.6 s against 0.8 s for 200,000 hashes). OpenMP reads the policy once,
when faiss loads, so this module, the first to load it, sets it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import faiss  # noqa: E402
import numpy as np  # noqa: E402


@dataclass(frozen=True)
class Nearest:
    """For each query: row index of the nearest banned hash (first on ties) and its distance."""

    index: np.ndarray
    distance: np.ndarray


def hamming_matrix(queries: np.ndarray, banned: np.ndarray) -> np.ndarray:
    """All pairwise Hamming distances, (N, M) int32, between packed uint8 hashes (N, B) and (M, B)."""
    _check(queries, banned)
    q, b = _words(queries), _words(banned)
    xor = np.bitwise_xor(q[:, None, :], b[None, :, :])
    return np.bitwise_count(xor).sum(axis=2, dtype=np.int32)


def _words(hashes: np.ndarray) -> np.ndarray:
    """The same bits as 64-bit words, zero bytes appended to a width that is not a multiple of 8 (zeros on
    both sides add nothing to a distance): several times fewer XORs and popcounts than bytes."""
    pad = -hashes.shape[1] % 8
    if pad:
        hashes = np.pad(hashes, ((0, 0), (0, pad)))
    return np.ascontiguousarray(hashes).view(np.uint64)


class ExactIndex:
    """A banned list loaded once into faiss's exact binary index, for a platform that searches one list batch
    after batch (`platform serve` answers a few images at a time): it holds the packed bytes, one copy."""

    def __init__(self, hashes: np.ndarray) -> None:
        _check(hashes, hashes)
        self.hashes = hashes
        self.index = faiss.IndexBinaryFlat(8 * hashes.shape[1])
        self.index.add(np.ascontiguousarray(hashes))


def nearest(queries: np.ndarray, banned: np.ndarray | ExactIndex) -> Nearest:
    """The nearest banned hash of each query (the first on ties). Give an ExactIndex to search one list many
    times."""
    index = banned if isinstance(banned, ExactIndex) else ExactIndex(banned)
    _check(queries, index.hashes)
    if len(index.hashes) == 0:
        raise ValueError("the banned list is empty")
    distance, row = index.index.search(np.ascontiguousarray(queries), 1)
    return Nearest(row[:, 0].astype(np.int64), distance[:, 0].astype(np.int32))


def nearest_by_owner(queries: np.ndarray, owners: np.ndarray, count: int,
                     banned: np.ndarray | ExactIndex) -> Nearest:
    """For `count` images hashed as several views each (`owners[i]` is the image of view `i`, every image
    has at least one, in increasing order): each image's nearest banned hash over all its views."""
    return best_by_owner(nearest(queries, banned), owners, count)


def best_by_owner(found: Nearest, owners: np.ndarray, count: int) -> Nearest:
    """Reduce per-view results (`owners` as in nearest_by_owner) to each image's best view: the least
    distance, the first view on ties."""
    if count == 0:
        return found
    index = np.empty(count, dtype=np.int64)
    distance = np.empty(count, dtype=np.int32)
    # Sorting by (owner, distance) puts each image's best view first within its run; ties keep view order.
    order = np.lexsort((found.distance, owners))
    first = order[np.flatnonzero(np.r_[True, np.diff(owners[order]) != 0])]
    if len(first) != count:
        raise ValueError("every image needs at least one view")
    index[:] = found.index[first]
    distance[:] = found.distance[first]
    return Nearest(index, distance)


def nearest_own(queries: np.ndarray, query_of: np.ndarray, own: np.ndarray, banned: np.ndarray,
                banned_owner: np.ndarray) -> np.ndarray:
    """Each query's least distance, over its views (`query_of` as in nearest_by_owner), to the banned hashes
    whose owner (`banned_owner`) is the query's own (`own[query]`); bits + 1 where it has none. For measuring
    altered copies against the image they were made from."""
    _check(queries, banned)
    distance = np.full(len(own), queries.shape[1] * 8 + 1, dtype=np.int32)
    view_own = own[query_of]
    for owner in np.unique(view_own):
        rows, targets = np.flatnonzero(view_own == owner), np.flatnonzero(banned_owner == owner)
        if len(targets):
            np.minimum.at(distance, query_of[rows], hamming_matrix(queries[rows], banned[targets]).min(axis=1))
    return distance


def _check(queries: np.ndarray, banned: np.ndarray) -> None:
    if queries.dtype != np.uint8 or banned.dtype != np.uint8 or queries.ndim != 2 or banned.ndim != 2:
        raise ValueError("hashes must be 2-D uint8 arrays of packed bits")
    if queries.shape[1] != banned.shape[1]:
        raise ValueError(f"hash widths differ: {queries.shape[1]} vs {banned.shape[1]} bytes")
