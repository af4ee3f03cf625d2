"""PNG plots for people: the loss curve, overlaid distance histograms (paper Fig. 11) and ROC curves.

matplotlib's object API with the Agg canvas: no pyplot state, no display needed. Each function returns the
PNG's bytes; the caller writes them (vetohash.files.write_atomic).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=110)
    return png.getvalue()


def loss_curve(train: Sequence[float], validation: Sequence[float | None]) -> bytes:
    """Training and validation loss per epoch (paper Fig. 8)."""
    figure = Figure(figsize=(6.4, 4.0))
    axes = figure.add_subplot()
    epochs = np.arange(1, len(train) + 1)
    axes.plot(epochs, train, label="training")
    if any(v is not None for v in validation):
        axes.plot(epochs, [np.nan if v is None else v for v in validation], label="validation")
    axes.set_xlabel("epoch")
    axes.set_ylabel("contrastive loss")
    axes.set_title("Loss during training")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right")
    return _png(figure)


def histograms(groups: Mapping[str, np.ndarray], bits: int, threshold: int | None) -> bytes:
    """Overlaid Hamming-distance histograms, one per group, as shares of each group (paper Fig. 11)."""
    figure = Figure(figsize=(7.0, 4.2))
    axes = figure.add_subplot()
    bins = (np.arange(0, bits + 2) - 0.5).tolist()
    for name, values in groups.items():
        if len(values):
            axes.hist(values, bins=bins, alpha=0.5, label=f"{name} (n={len(values)})",
                      weights=np.full(len(values), 1 / len(values)))
    if threshold is not None:
        axes.axvline(threshold - 0.5, color="black", linestyle="--", linewidth=1,
                     label=f"threshold {threshold} (match if < {threshold})")
    axes.set_xlabel(f"Hamming distance (of {bits} bits)")
    axes.set_ylabel("share of pairs")
    axes.set_title("Distance distributions")
    axes.legend(fontsize=8, loc="upper right")
    return _png(figure)


def roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    """ROC curves: each is (false-positive rates, true-positive rates), one point per threshold."""
    figure = Figure(figsize=(5.2, 5.0))
    axes = figure.add_subplot()
    for name, (fpr, tpr) in curves.items():
        axes.plot(fpr, tpr, marker=".", markersize=3, label=name)
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel("false-positive rate")
    axes.set_ylabel("recall of altered copies")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_title("ROC (one point per threshold)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    return _png(figure)
