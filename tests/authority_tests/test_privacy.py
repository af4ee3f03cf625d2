"""Privacy levels and the DCT-sketch measurement that `authority evaluate` reports."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vetohash.dcthash import dct_hashes
from vetohash_authority.privacy import DEFAULT, LEVELS, THUMB, dct_sketches, identification_ranks, thumbnail


def _photo(seed: int) -> Image.Image:
    """Smooth random colour structure, as photos have at the DCT hash's low frequencies."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(12, 12, 3))
    return Image.fromarray(np.uint8(np.clip(base * 60 + 128, 0, 255))).resize((96, 96), Image.Resampling.BICUBIC)


def test_levels_drop_the_dct_hashes_first_then_the_crop_hashes() -> None:
    assert DEFAULT == "max-recall"
    assert [(level.dct, level.crops) for level in LEVELS.values()] == [(True, True), (False, True), (False, False)]


def test_a_dct_hash_alone_sketches_its_image_well_enough_to_pick_it_out() -> None:
    """The leak the strict and balanced levels avoid: with no model, each image's sketch correlates best with
    that image among all twelve."""
    images = [_photo(seed) for seed in range(12)]
    sketches = dct_sketches(dct_hashes(images))
    assert sketches.shape == (12, THUMB, THUMB)
    ranks = identification_ranks(sketches, np.stack([thumbnail(image) for image in images]), range(12))
    assert ranks.tolist() == [1] * 12


def test_identification_ranks_count_the_candidates_that_correlate_better() -> None:
    ramp = np.outer(np.arange(THUMB, dtype=np.float64), np.ones(THUMB))
    noisy = ramp + np.random.default_rng(0).normal(scale=3.0, size=ramp.shape)
    gallery = np.stack([ramp, ramp.T, noisy])  # a vertical ramp, a horizontal one, a noisy vertical one
    sketch = ramp[None] * 2.0 + 5.0  # correlation 1 with item 0, about 0.99 with item 2, 0 with item 1
    assert identification_ranks(sketch, gallery, [0]).tolist() == [1]
    assert identification_ranks(sketch, gallery, [2]).tolist() == [2]
    assert identification_ranks(sketch, gallery, [1]).tolist() == [3]
