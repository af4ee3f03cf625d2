"""A classical 256-bit DCT hash, carried beside the learned hash as a second signal.

The learned hash is strong on geometry (mirrors, crops, rotations, borders); a DCT hash in the style of PDQ is
near-perfect on photometric edits (blur, JPEG, noise, colour, brightness) and small occlusions. Flagging an
image when either is close catches more at the same false-positive rate (docs/benchmarks.md).

Algorithm "dct256-v1", our own implementation (numpy and Pillow only), deterministic for given pixels:

1. luma: Pillow's ITU-R 601-2 conversion of the decoded RGB image (vetohash.preprocess.open_image);
2. the luma squashed to 64x64 with Pillow's BOX filter (area averaging, no aspect keeping), as float64;
3. the 2-D DCT-II of that 64x64 block, of which the 16x16 lowest frequencies after DC (1..16 in each
   direction) are kept: C @ X @ C.T with the fixed orthonormal cosine matrix C (16, 64), in float64. The DC
   row and column hold only brightness and one-dimensional layout; leaving them out measured better beside
   the network, above all on occlusions (docs/benchmarks.md);
4. bit k = coefficient k (row-major) > the median of the 256, packed with vetohash.hashes.pack_signs
   (most-significant bit first, as the learned hash).

A featureless image (vetohash.detail below MIN_DETAIL) has coefficients that are all about zero, so its bits
are arbitrary: callers apply the same detail guard to this hash as to the learned one. Any change to these
steps that can move a bit is a new algorithm name, never a silent change of "dct256-v1".
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from PIL import Image

from .hashes import pack_signs

ALGORITHM = "dct256-v1"
BITS = 256
HASH_BYTES = BITS // 8
SIDE = 64  # the luma is downsampled to SIDE x SIDE
BLOCK = 16  # BLOCK x BLOCK coefficients are kept, frequencies 1..BLOCK in each direction


@functools.cache
def cosine_matrix() -> np.ndarray:
    """(BLOCK, SIDE) rows of the orthonormal DCT-II of length SIDE, for frequencies 1..BLOCK."""
    u = np.arange(1, BLOCK + 1, dtype=np.float64)[:, None]
    x = np.arange(SIDE, dtype=np.float64)[None, :]
    return np.sqrt(2.0 / SIDE) * np.cos(np.pi * (2.0 * x + 1.0) * u / (2.0 * SIDE))


def luma(image: Image.Image) -> np.ndarray:
    """The image as SIDE x SIDE float64 grey levels (0..255): ITU-R 601-2 luma, BOX-filtered."""
    grey = image.convert("L").resize((SIDE, SIDE), Image.Resampling.BOX)
    return np.asarray(grey, dtype=np.float64)


def coefficients(pixels: np.ndarray) -> np.ndarray:
    """The (BLOCK, BLOCK) low-frequency DCT-II coefficients (DC left out) of a (SIDE, SIDE) block."""
    if pixels.shape != (SIDE, SIDE):
        raise ValueError(f"pixels must be ({SIDE}, {SIDE}), got {pixels.shape}")
    c = cosine_matrix()
    return c @ pixels @ c.T


def bits_of(coeffs: np.ndarray) -> np.ndarray:
    """(BLOCK, BLOCK) coefficients -> (HASH_BYTES,) uint8: bit k is coefficient k (row-major) > their median."""
    flat = coeffs.reshape(1, BITS)
    return pack_signs(flat - np.median(flat))[0]


def dct_hashes(images: Sequence[Image.Image]) -> np.ndarray:
    """(N, HASH_BYTES) uint8 packed "dct256-v1" hashes of decoded images, in order."""
    out = np.empty((len(images), HASH_BYTES), dtype=np.uint8)
    for row, image in enumerate(images):
        out[row] = bits_of(coefficients(luma(image)))
    return out
