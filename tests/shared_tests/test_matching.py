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


def test_ties_go_to_the_first_banned_hash_however_long_the_list():
    """Equally near banned hashes resolve to the first, at lengths where faiss splits the list into blocks and
    the queries across threads: the authority's calibration and the platform's verdicts name the same image."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (300, 20), dtype=np.uint8)
    banned = base[rng.integers(0, len(base), 60_000)]  # each hash about 200 times over
    queries = base[rng.integers(0, len(base), 2_000)] ^ (rng.random((2_000, 20)) < 0.05).astype(np.uint8)
    got = matching.nearest(queries, banned)
    for start in range(0, len(queries), 100):  # the reference a block of queries at a time, to bound memory
        distances = matching.hamming_matrix(queries[start:start + 100], banned)
        assert got.distance[start:start + 100].tolist() == distances.min(axis=1).tolist()
        assert got.index[start:start + 100].tolist() == distances.argmin(axis=1).tolist()


def test_an_index_made_once_gives_the_same_answers_batch_after_batch():
    """ExactIndex, made once and searched many times, answers exactly as a one-off search, ties included."""
    rng = np.random.default_rng(5)
    banned = rng.integers(0, 256, (20, 20), dtype=np.uint8)
    banned[13] = banned[4]  # a tie at distance 0
    index = matching.ExactIndex(banned)
    for _ in range(3):  # batch after batch against the one list
        queries = rng.integers(0, 256, (7, 20), dtype=np.uint8)
        queries[0] = banned[4]
        got = matching.nearest(queries, index)
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
