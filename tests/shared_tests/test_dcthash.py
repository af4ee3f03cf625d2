"""vetohash.dcthash ("dct256-v1"): the DCT against the textbook sum, bit order, determinism, a pinned hash, and
near/far on the example photos."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from vetohash import dcthash
from vetohash.hashes import Hash
from vetohash.preprocess import open_image

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def pattern(width: int = 96, height: int = 80) -> Image.Image:
    """A fixed RGB image from a formula (no RNG), with structure at several scales."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 128 + 100 * np.sin(x / 7.0) * np.cos(y / 11.0)
    g = (x * 3 + y * 2) % 256
    b = 255 * ((x // 16 + y // 16) % 2)
    return Image.fromarray(np.stack([r, g, b], axis=2).clip(0, 255).astype(np.uint8), "RGB")


def test_coefficients_equal_the_textbook_dct_sum() -> None:
    """C @ X @ C.T equals the orthonormal 2-D DCT-II written as a loop over every pixel, for frequencies
    1..16 in each direction (DC left out)."""
    n = dcthash.SIDE
    pixels = np.asarray(pattern().convert("L").resize((n, n)), dtype=np.float64)
    frequencies = range(1, dcthash.BLOCK + 1)
    cos = {u: [math.cos(math.pi * (2 * x + 1) * u / (2 * n)) for x in range(n)] for u in frequencies}
    expected = np.empty((dcthash.BLOCK, dcthash.BLOCK))
    rows = pixels.tolist()
    for i, u in enumerate(frequencies):
        for j, v in enumerate(frequencies):
            total = 0.0
            for x in range(n):
                row, cu = rows[x], cos[u][x]
                for y in range(n):
                    total += row[y] * cu * cos[v][y]
            expected[i, j] = (2 / n) * total
    np.testing.assert_allclose(dcthash.coefficients(pixels), expected, rtol=0, atol=1e-9)


def test_bits_are_coefficients_above_the_median_most_significant_first() -> None:
    """Bit k is coefficient k (row-major) > median, packed MSB first as the neural hash."""
    ascending = np.arange(dcthash.BITS, dtype=np.float64).reshape(dcthash.BLOCK, dcthash.BLOCK)
    assert dcthash.bits_of(ascending).tobytes() == b"\x00" * 16 + b"\xff" * 16
    every_eighth = np.where(np.arange(dcthash.BITS) % 8 == 0, 5.0, -1.0).reshape(dcthash.BLOCK, dcthash.BLOCK)
    assert dcthash.bits_of(every_eighth).tobytes() == b"\x80" * 32
    row_zero = np.full((dcthash.BLOCK, dcthash.BLOCK), -1.0)
    row_zero[0, 1] = 3.0  # bit 1: byte 0, second most significant bit
    assert dcthash.bits_of(row_zero).tobytes()[:2] == b"\x40\x00"


def test_hash_is_deterministic_and_pinned() -> None:
    """The same pixels always give the same hash; this one is pinned, so a Pillow or numpy change that moves
    a bit of "dct256-v1" is caught (such a change needs a new algorithm name)."""
    first = dcthash.dct_hashes([pattern()])
    again = dcthash.dct_hashes([pattern(), pattern()])
    assert first.shape == (1, 32) and first.dtype == np.uint8
    np.testing.assert_array_equal(again, np.concatenate([first, first]))
    assert Hash(first[0].tobytes()).hex == "29c66650d946537456c6f8985e3678a456b95aa756b942adde3952a546b9ec0b"


def test_any_size_and_mode_hashes() -> None:
    """Images smaller than 64 px, non-square, grey or with alpha all give 256-bit hashes."""
    images = [pattern(10, 7), pattern(300, 40), pattern().convert("L"), pattern().convert("RGBA")]
    assert dcthash.dct_hashes(images).shape == (4, dcthash.HASH_BYTES)
    assert len(dcthash.dct_hashes([])) == 0


def test_near_for_photometric_edits_far_for_other_photos() -> None:
    """A JPEG re-encode and a brightness change stay a few bits from the original; other photos are far."""
    photos = [open_image(EXAMPLES / "banned" / f"banned-{i:03d}.jpg") for i in (0, 40, 80)]
    out = io.BytesIO()
    photos[0].save(out, "JPEG", quality=30)
    brighter = Image.eval(photos[0], lambda v: min(255, v + 25))
    hashes = [Hash(h.tobytes()) for h in dcthash.dct_hashes([*photos, open_image(out.getvalue()), brighter])]
    assert hashes[0] - hashes[3] <= 16 and hashes[0] - hashes[4] <= 16
    assert hashes[0] - hashes[1] >= 64 and hashes[0] - hashes[2] >= 64
