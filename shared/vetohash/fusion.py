"""The fused decision of a bundle with more than the network's hash of each banned image.

A version 2 bundle adds a DCT hash ("neural-or-dct"), a version 3 bundle crop hashes (the network's hashes of
crops of each banned image) with or without the DCT hash ("neural-or-crops", "neural-or-crops-or-dct"). A
query matches when any distance is strictly below its own threshold, each distance taken to the nearest
banned hash of its own kind. The signals fail on different edits (the network on photometric ones, the DCT
hash on geometric ones, whole-image hashes on large crops and shifts), so any one being close is evidence.
One definition, used by the platform to screen and by the authority to calibrate, so both count the same
images as flagged.

Crop hashes come from the same network as the whole-image ones, so a match through them is a "neural" match:
the signal names say which hash function matched, not which list entry.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

NEURAL, DCT, BOTH = "neural", "dct", "both"


def flagged(*signals: tuple[ArrayLike, int]) -> np.ndarray:
    """Elementwise over (distances, threshold) pairs: any distance < its threshold."""
    hits = [np.asarray(distances) < threshold for distances, threshold in signals]
    return np.logical_or.reduce(hits)


def signal(neural_match: bool, dct_match: bool) -> str | None:
    """Which hash function matched: NEURAL (whole image or crop hashes), DCT, BOTH, or None."""
    if neural_match and dct_match:
        return BOTH
    return NEURAL if neural_match else DCT if dct_match else None
