"""How much visual detail an image has: a guard against featureless images (flat colour, faint gradients,
near-blank pages), whose hashes carry no information and collide with each other.

A learned hash maps an image with nothing in it to near-arbitrary bits, and every such image to about the same
bits, so a blank page would match a banned blank page, or a banned image that is nearly blank would match
every blank upload. The authority refuses to publish such hashes and the platform reports such queries as
featureless instead of matching them.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

SIDE = 64  # the image is judged at 64x64 grey levels, about what the models see
SHARE = 0.01  # the score is the contrast reached by the most contrasted 1% of those pixels

# Images scoring below this are featureless. Calibrated on examples/ (310 photo crops, 128 px): the lowest
# scores 24.6 (night sky with thin masts), 1% score below 28.4, the median 91. Flat colours score 0; linear
# gradients, vignettes and near-white pages with marks up to 12 grey levels faint score at most 12.2, also
# re-encoded as JPEG at quality 10 to 30 and from 64 to 1200 px (tests/shared_tests/test_detail.py). Below
# quality 10, JPEG turns a smooth gradient into 8x8 blocks some 20 grey levels apart, which scores as detail.
MIN_DETAIL = 14.0


def detail(image: Image.Image) -> float:
    """The image's detail score, in grey levels (0..255): how far its most contrasted 1% departs from a smooth
    background. Below MIN_DETAIL the image is featureless.

    The image becomes 64x64 luma (ITU-R 601-2) by area averaging, which also averages away JPEG and sensor
    noise; the best quadratic surface (brightness slopes, vignetting, a lit wall) is subtracted; the score is
    the 99th percentile of the absolute remainder. Thin, high-contrast structure (text, masts) scores high
    although it covers little, and a uniform texture scores its contrast. The image is squashed to a square
    as the models' input is. Deterministic for given pixels, Pillow and numpy.
    """
    grey = image.convert("L").resize((SIDE, SIDE), Image.Resampling.BOX)
    pixels = np.asarray(grey, dtype=np.float64).reshape(-1)
    basis = _surfaces()
    remainder = pixels - basis @ (basis.T @ pixels)
    return float(np.percentile(np.abs(remainder), 100.0 * (1.0 - SHARE)))


@functools.cache
def _surfaces() -> np.ndarray:
    """An orthonormal basis (SIDE*SIDE, 6) of the quadratic surfaces 1, x, y, x², xy, y² on the pixel grid."""
    y, x = (np.mgrid[0:SIDE, 0:SIDE].reshape(2, -1) + 0.5) / SIDE - 0.5
    quadratic = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    basis, _ = np.linalg.qr(quadratic)
    return basis
