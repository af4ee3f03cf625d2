"""The classical hashes vetohash is measured against: PDQ (Meta's ThreatExchange) and pHash/dHash (imagehash)."""

from __future__ import annotations

from collections.abc import Sequence

import imagehash
import numpy as np
import pdqhash
from PIL import Image


def pdq(images: Sequence[Image.Image]) -> np.ndarray:
    """256-bit PDQ hashes, packed (N, 32) uint8."""
    bits = [pdqhash.compute(np.asarray(image.convert("RGB")))[0] for image in images]
    return np.packbits(np.asarray(bits, dtype=np.uint8).reshape(len(images), 256), axis=1)


def phash(images: Sequence[Image.Image]) -> np.ndarray:
    """64-bit DCT pHash, packed (N, 8) uint8."""
    return np.packbits(np.asarray([imagehash.phash(image).hash.ravel() for image in images], np.uint8), axis=1)


def dhash(images: Sequence[Image.Image]) -> np.ndarray:
    """64-bit difference hash, packed (N, 8) uint8."""
    return np.packbits(np.asarray([imagehash.dhash(image).hash.ravel() for image in images], np.uint8), axis=1)


BASELINES = {"pdq": (pdq, 256), "phash": (phash, 64), "dhash": (dhash, 64)}
