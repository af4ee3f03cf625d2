"""Nearest banned hash for each query, by Hamming distance.

`hamming_matrix` XORs and popcounts 64-bit words. `nearest` instead takes the dot products of the hashes' bits
as +1/-1 (a matrix product, which BLAS runs many times faster than numpy's popcount over large lists, such as
a bundle's crop hashes): for b-bit hashes, distance = (b - dot) / 2. The products are sums of at most 1,024
terms of +1 or -1, exact in float32 whatever the summation order, so both give the same integers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# Bound the (queries x banned) float32 block of dot products to about 64 MiB whatever the list size, and the
# +1/-1 copy of the banned hashes to _BANNED_ROWS rows at a time.
_BLOCK_BYTES = 64 * 1024 * 1024
_BANNED_ROWS = 32768
# SignedHashes keeps the +1/-1 copy of lists up to this many hashes (4 bytes a bit: 1.3 GB at 160 bits); a
# longer list is unpacked block by block at each search, as a one-off search does.
SIGNED_MAX_HASHES = 2_000_000


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


class SignedHashes:
    """A banned list kept as the +1/-1 blocks `nearest` multiplies by, made once: a platform that searches
    one list batch after batch (`platform serve` answers a few images at a time) then never unpacks it again.
    For 170,000 crop hashes that unpacking cost several times the search of a small batch."""

    def __init__(self, hashes: np.ndarray, keep: bool = True) -> None:
        """`keep=False` (or a list over SIGNED_MAX_HASHES) unpacks each block when it is searched instead."""
        _check(hashes, hashes)
        self.hashes = hashes
        self.rows = max(1, min(len(hashes), _BANNED_ROWS))
        self._blocks = (None if not keep or len(hashes) > SIGNED_MAX_HASHES
                        else [_signs(hashes[first:first + self.rows]).T.copy()
                              for first in range(0, len(hashes), self.rows)])

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, its block of (bits, rows) +1/-1 float32), in row order."""
        for number, first in enumerate(range(0, len(self.hashes), self.rows)):
            yield first, (self._blocks[number] if self._blocks is not None
                          else _signs(self.hashes[first:first + self.rows]).T)


def nearest(queries: np.ndarray, banned: np.ndarray | SignedHashes) -> Nearest:
    """The nearest banned hash of each query (the first on ties); both sides are processed in blocks to bound
    memory. Give a SignedHashes to search one list many times."""
    signed = banned if isinstance(banned, SignedHashes) else SignedHashes(banned, keep=False)
    _check(queries, signed.hashes)
    if len(signed.hashes) == 0:
        raise ValueError("the banned list is empty")
    n, bits = len(queries), signed.hashes.shape[1] * 8
    index = np.zeros(n, dtype=np.int64)
    best = np.full(n, -np.inf, dtype=np.float32)  # the largest dot product so far
    signs = _signs(queries)
    step = max(1, _BLOCK_BYTES // (4 * signed.rows))
    for first, chunk in signed.blocks():
        for start in range(0, n, step):
            dots = signs[start:start + step] @ chunk
            top = dots.argmax(axis=1)
            value = dots[np.arange(len(dots)), top]
            better = value > best[start:start + step]  # strictly: an earlier chunk keeps its ties
            index[start:start + step][better] = first + top[better]
            best[start:start + step][better] = value[better]
    return Nearest(index, ((bits - best.astype(np.int64)) // 2).astype(np.int32))


def _signs(hashes: np.ndarray) -> np.ndarray:
    """Packed hashes -> (N, bits) float32, +1 where a bit is set and -1 where it is not."""
    return np.unpackbits(hashes, axis=1).astype(np.float32) * 2 - 1


def nearest_by_owner(queries: np.ndarray, owners: np.ndarray, count: int,
                     banned: np.ndarray | SignedHashes) -> Nearest:
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
