"""Nearest banned hash for each query, by Hamming distance, vectorised with numpy popcount."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Bound the (queries x banned x bytes) XOR block to about 64 MiB whatever the list size.
_BLOCK_BYTES = 64 * 1024 * 1024


class Nearest(NamedTuple):
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
    """The same bits viewed as 64-bit words when the width allows: eight times fewer XORs and popcounts."""
    if hashes.shape[1] % 8 == 0:
        return np.ascontiguousarray(hashes).view(np.uint64)
    return hashes


def nearest(queries: np.ndarray, banned: np.ndarray) -> Nearest:
    """The nearest banned hash of each query; queries are processed in blocks to bound memory."""
    _check(queries, banned)
    if len(banned) == 0:
        raise ValueError("the banned list is empty")
    n = len(queries)
    index = np.empty(n, dtype=np.int64)
    distance = np.empty(n, dtype=np.int32)
    step = max(1, _BLOCK_BYTES // max(1, banned.size))
    for start in range(0, n, step):
        block = hamming_matrix(queries[start:start + step], banned)
        best = block.argmin(axis=1)
        index[start:start + step] = best
        distance[start:start + step] = block[np.arange(len(block)), best]
    return Nearest(index, distance)


def nearest_by_owner(queries: np.ndarray, owners: np.ndarray, count: int, banned: np.ndarray) -> Nearest:
    """For `count` images hashed as several views each (`owners[i]` is the image of view `i`, every image
    has at least one, in increasing order): each image's nearest banned hash over all its views."""
    found = nearest(queries, banned)
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
