"""The fused decision of a bundle with a DCT signal ("neural-or-dct"): a query matches when its neural hash is
near a banned neural hash or its DCT hash is near a banned DCT hash.

The two hashes fail on different edits (the network on photometric ones, the DCT hash on geometric ones), so
either being close is evidence; each distance is to the nearest banned hash of its own kind, each compared
strictly with its own threshold. One definition, used by the platform to screen and by the authority to
calibrate, so both count the same images as flagged.
"""

from __future__ import annotations

import numpy as np

NEURAL, DCT, BOTH = "neural", "dct", "both"


def flagged(neural: np.ndarray, threshold: int, dct: np.ndarray, dct_threshold: int) -> np.ndarray:
    """Elementwise: neural distance < threshold, or DCT distance < dct_threshold."""
    return (np.asarray(neural) < threshold) | (np.asarray(dct) < dct_threshold)


def signal(neural_match: bool, dct_match: bool) -> str | None:
    """Which signal matched: NEURAL, DCT, BOTH, or None."""
    if neural_match and dct_match:
        return BOTH
    return NEURAL if neural_match else DCT if dct_match else None
