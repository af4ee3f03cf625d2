"""Report arithmetic (quartiles, thresholds, ROC) and publishing helpers (durations, sequence numbers, ids)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vetohash_authority.evaluation import auc, flagged_share, roc_points, summary, threshold_for
from vetohash_authority.publishing import PublishError, next_sequence, opaque_ids, parse_duration, record_sequence


def test_summary_gives_quartiles_like_numpy() -> None:
    values = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 100])
    s = summary(values)
    assert (s["n"], s["min"], s["max"]) == (10, 0, 100)
    assert (s["q1"], s["median"], s["q3"]) == tuple(np.percentile(values, [25, 50, 75]))
    assert summary(np.array([], dtype=int))["median"] is None


def test_a_match_is_a_distance_below_the_threshold() -> None:
    assert flagged_share(np.array([0, 5, 10, 20]), 10) == 0.5
    assert flagged_share(np.array([0, 5, 10, 20]), 0) == 0.0


def test_suggested_threshold_is_the_largest_within_the_target() -> None:
    innocent = np.array([3, 5, 5, 8, 9, 12, 20, 30, 40, 50])
    assert threshold_for(innocent, 0.0, 128) == 3    # nothing below 3
    assert threshold_for(innocent, 0.1, 128) == 5    # one of ten below 5
    assert threshold_for(innocent, 0.3, 128) == 8    # three below 8
    assert threshold_for(innocent, 1.0, 128) == 128  # capped at the hash width
    # brute force: the largest t whose share is within the target
    rng = np.random.default_rng(0)
    for _ in range(20):
        sample = rng.integers(0, 64, 50)
        target = float(rng.random() / 4)
        best = max(t for t in range(0, 129) if np.mean(sample < t) <= target)
        assert threshold_for(sample, target, 128) == best


def test_roc_runs_from_nothing_flagged_to_everything() -> None:
    fpr, tpr = roc_points(np.array([0, 1, 2]), np.array([10, 20, 30]), 32)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert auc(fpr, tpr) == pytest.approx(1.0)
    fpr, tpr = roc_points(np.array([5, 5]), np.array([5, 5]), 32)
    assert auc(fpr, tpr) == pytest.approx(0.5)


@pytest.mark.parametrize(("text", "seconds"), [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400),
                                               ("2w", 14 * 86400), ("1d12h", 129600), ("3600s", 3600)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "30", "0d", "5y", "1d x"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(PublishError):
        parse_duration(text)


def test_sequence_increases_per_list_even_within_one_second(tmp_path: Path) -> None:
    state = tmp_path / "publish-state.json"
    first = next_sequence(state, "a", now=1000)
    assert first == 1000
    record_sequence(state, "a", first)
    assert next_sequence(state, "a", now=1000) == 1001   # same second: one more
    assert next_sequence(state, "a", now=5000) == 5000   # later: the clock
    assert next_sequence(state, "b", now=1000) == 1000   # lists are separate
    state.write_text("not json")
    with pytest.raises(PublishError, match="publishing state"):
        next_sequence(state, "a", now=1)


def test_ids_are_opaque_distinct_and_fresh() -> None:
    ids = opaque_ids(500)
    assert len(set(ids)) == 500
    assert all(i.startswith("h") and len(i) == 13 and int(i[1:], 16) >= 0 for i in ids)
    assert set(ids).isdisjoint(opaque_ids(500))
