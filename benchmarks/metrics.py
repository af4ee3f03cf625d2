"""Detection metrics shared by the benchmarks: thresholds at a false-positive rate, recall, ROC AUC."""

from __future__ import annotations

import numpy as np


def threshold_at_fpr(negative_distances: np.ndarray, target: float) -> int:
    """The largest integer threshold t (match when distance < t) that flags at most `target` of negatives."""
    d = np.sort(negative_distances)
    allowed = int(np.floor(target * len(d)))  # how many negatives may fall below t
    # With t = d[allowed], exactly the negatives strictly below d[allowed] are flagged (at most `allowed`).
    return int(d[allowed]) if allowed < len(d) else int(d[-1]) + 1


def recall(positive_distances: np.ndarray, threshold: int) -> float:
    """Share of positives caught (distance < threshold)."""
    return float(np.mean(positive_distances < threshold)) if len(positive_distances) else float("nan")


def roc_auc(positive_distances: np.ndarray, negative_distances: np.ndarray) -> float:
    """Probability that a positive lies closer than a negative (ties count half): the Mann-Whitney AUC."""
    pos = np.asarray(positive_distances, np.float64)
    neg = np.sort(np.asarray(negative_distances, np.float64))
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float(np.mean((len(neg) - below - ties + 0.5 * ties) / len(neg)))
