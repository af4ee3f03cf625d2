"""The vectorised matcher agrees exactly with a naive Hamming loop."""

import numpy as np
import pytest

from vetohash import matching


def naive_nearest(queries, banned):
    index, distance = [], []
    for q in queries:
        dists = [sum(bin(x ^ y).count("1") for x, y in zip(q.tolist(), b.tolist())) for b in banned]
        best = int(np.argmin(dists))  # first minimum on ties, like the matcher
        index.append(best)
        distance.append(dists[best])
    return index, distance


@pytest.mark.parametrize("seed,n,m,width", [(0, 50, 37, 16), (1, 7, 1, 32), (2, 64, 200, 8), (4, 10, 9, 12)])
def test_nearest_agrees_with_naive_reference(seed, n, m, width):
    rng = np.random.default_rng(seed)
    queries = rng.integers(0, 256, (n, width), dtype=np.uint8)
    banned = rng.integers(0, 256, (m, width), dtype=np.uint8)
    banned[0] = queries[0]  # an exact hit must come back at distance 0
    got = matching.nearest(queries, banned)
    index, distance = naive_nearest(queries, banned)
    assert got.distance.tolist() == distance
    assert got.index.tolist() == index
    assert got.distance[0] == 0


def test_blocking_does_not_change_results(monkeypatch):
    """Blocks of queries and blocks of banned hashes give the same answer as one block, ties included: the
    first of two equally near banned hashes wins even when they fall in different blocks."""
    rng = np.random.default_rng(3)
    queries = rng.integers(0, 256, (33, 20), dtype=np.uint8)
    banned = rng.integers(0, 256, (20, 20), dtype=np.uint8)
    banned[4] = banned[13] = queries[5]  # a tie at distance 0, in different banned blocks below
    whole = matching.nearest(queries, banned)
    monkeypatch.setattr(matching, "_BANNED_ROWS", 3)
    monkeypatch.setattr(matching, "_BLOCK_BYTES", 4 * 3 * 2)  # two queries per block
    blocked = matching.nearest(queries, banned)
    assert np.array_equal(whole.index, blocked.index) and np.array_equal(whole.distance, blocked.distance)
    assert (whole.index[5], whole.distance[5]) == (4, 0)
    reference = naive_nearest(queries, banned)
    assert blocked.index.tolist() == reference[0] and blocked.distance.tolist() == reference[1]


@pytest.mark.parametrize("kept", [True, False])
def test_a_list_kept_signed_gives_the_same_answers_batch_after_batch(monkeypatch, kept):
    """SignedHashes, made once and searched many times, answers exactly as a one-off search, ties across
    blocks included; above SIGNED_MAX_HASHES it keeps nothing and still answers the same."""
    monkeypatch.setattr(matching, "_BANNED_ROWS", 3)
    if not kept:
        monkeypatch.setattr(matching, "SIGNED_MAX_HASHES", 19)
    rng = np.random.default_rng(5)
    banned = rng.integers(0, 256, (20, 20), dtype=np.uint8)
    banned[13] = banned[4]  # a tie at distance 0, in different blocks of 3 rows
    signed = matching.SignedHashes(banned)
    assert (signed._blocks is not None) is kept
    for _ in range(3):  # batch after batch against the one list
        queries = rng.integers(0, 256, (7, 20), dtype=np.uint8)
        queries[0] = banned[4]
        got = matching.nearest(queries, signed)
        reference = naive_nearest(queries, banned)
        assert got.index.tolist() == reference[0] and got.distance.tolist() == reference[1]
        assert (got.index[0], got.distance[0]) == (4, 0)


def test_mismatched_widths_and_empty_lists_are_refused():
    with pytest.raises(ValueError):
        matching.nearest(np.zeros((1, 16), np.uint8), np.zeros((1, 32), np.uint8))
    with pytest.raises(ValueError):
        matching.nearest(np.zeros((1, 16), np.uint8), np.zeros((0, 16), np.uint8))


def test_nearest_own_is_the_least_distance_over_views_to_the_querys_own_entries_only() -> None:
    """Each query's distance counts only the banned entries of its own owner, over all its views; a query whose
    owner has no entry gets bits + 1, never a distance to someone else's entry."""
    rng = np.random.default_rng(3)
    banned = rng.integers(0, 256, (9, 4), dtype=np.uint8)
    banned_owner = np.array([0, 0, 1, 1, 1, 2, 2, 0, 1])  # owner 3 has no entry
    counts = [2, 1, 3, 2]
    views = rng.integers(0, 256, (sum(counts), 4), dtype=np.uint8)
    query_of = np.repeat(np.arange(len(counts)), counts)
    own = np.array([1, 0, 2, 3])
    views[4] = banned[5]  # query 2's second view is its own owner's entry
    views[0] = banned[0]  # query 0's first view is an entry of owner 0, not its own owner 1
    got = matching.nearest_own(views, query_of, own, banned, banned_owner)
    distances = matching.hamming_matrix(views, banned)
    for q in range(3):
        assert got[q] == distances[query_of == q][:, banned_owner == own[q]].min()
    assert got[2] == 0 and got[0] > 0 and got[3] == 33
