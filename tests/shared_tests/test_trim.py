"""Flat-margin trimming (preprocess.trim_margins and the spec's `trim` field)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from vetohash.errors import SpecError
from vetohash.preprocess import TRIM_MAX_SHARE, Preprocess, to_array, trim_margins


def textured(width: int = 96, height: int = 80, seed: int = 0) -> Image.Image:
    """Random pixels: no row or column of it is flat."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("fill", [(0, 0, 0), (255, 255, 255), (37, 140, 201)])
def test_an_added_border_is_cut_back_to_the_original(fill: tuple[int, int, int]) -> None:
    original = textured()
    bordered = ImageOps.expand(original, border=(7, 3, 11, 5), fill=fill)
    assert np.array_equal(np.asarray(trim_margins(bordered)), np.asarray(original))


def test_the_band_a_shift_leaves_is_cut_on_its_side_only() -> None:
    original = textured()
    shifted = Image.new("RGB", original.size)
    shifted.paste(original, (20, 0))
    assert trim_margins(shifted).size == (original.width - 20, original.height)


def test_an_image_without_flat_margins_is_returned_unchanged() -> None:
    original = textured()
    assert trim_margins(original) is original


def test_a_flat_image_loses_at_most_the_capped_share_of_each_side() -> None:
    flat = Image.new("RGB", (100, 50), (90, 90, 90))
    width, height = trim_margins(flat).size
    assert width == 100 - 2 * int(100 * TRIM_MAX_SHARE)
    assert height == 50 - 2 * int(50 * TRIM_MAX_SHARE)


def test_gentle_noise_is_flat_but_detail_is_not() -> None:
    """Rows with a standard deviation of about 3 (a recompressed border) go; a row of real detail stops."""
    rng = np.random.default_rng(1)
    pixels = np.asarray(textured(), dtype=np.int64).copy()
    pixels[:10] = 128 + rng.integers(-5, 6, pixels[:10].shape)
    trimmed = trim_margins(Image.fromarray(pixels.astype(np.uint8)))
    assert trimmed.size == (96, 70)


def test_large_images_are_measured_on_a_reduced_copy_and_cut_in_proportion() -> None:
    original = textured(900, 600)
    bordered = ImageOps.expand(original, border=60, fill=(255, 255, 255))
    width, height = trim_margins(bordered).size
    assert abs(width - 900) <= 8 and abs(height - 600) <= 8


def test_trim_is_part_of_the_spec_and_changes_the_tensor() -> None:
    plain = Preprocess(mode="RGB", size=32, resample="bilinear", mean=(0.5,) * 3, std=(0.25,) * 3)
    trimming = Preprocess(mode="RGB", size=32, resample="bilinear", mean=(0.5,) * 3, std=(0.25,) * 3, trim=True)
    original = textured()
    bordered = ImageOps.expand(original, border=12, fill=(0, 0, 0))
    assert np.array_equal(to_array(bordered, trimming), to_array(original, plain))
    assert not np.array_equal(to_array(bordered, plain), to_array(original, plain))


def test_spec_field_is_optional_strict_and_written_only_when_on() -> None:
    base = {"mode": "L", "size": 32, "resample": "bilinear", "mean": [0.5], "std": [0.5]}
    assert Preprocess.from_dict(base).trim is False
    assert "trim" not in Preprocess.from_dict(base).to_dict()  # older bundles keep their exact bytes
    on = Preprocess.from_dict({**base, "trim": True})
    assert on.to_dict()["trim"] is True and Preprocess.from_dict(on.to_dict()) == on
    with pytest.raises(SpecError, match="trim must be true or false"):
        Preprocess.from_dict({**base, "trim": 1})
