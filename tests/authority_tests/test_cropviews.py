"""Crop views: which crops of a banned image are hashed into a bundle beside it."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vetohash.preprocess import to_array
from vetohash.specs import PRESETS
from vetohash_authority.alterations import turned_whole
from vetohash_authority.cropviews import CROPS, PER_IMAGE, TURNS, crop_arrays, crop_views


def textured(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_every_crop_keeps_its_share_of_the_image_at_its_place() -> None:
    """Each crop is the box CROPS describes: its kept share of each side, placed at its fractions of the
    room left over (so a 0 / 1 position touches the left or top / right or bottom edge); the turned views
    follow the crops."""
    image = textured(200, 100, 0)
    pixels = np.asarray(image)
    views = crop_views(image)
    assert len(views) == PER_IMAGE == 17 + 4
    for (keep_x, keep_y, x, y), view in zip(CROPS, views):
        width, height = round(200 * keep_x), round(100 * keep_y)
        left, top = round(x * (200 - width)), round(y * (100 - height))
        assert view.size == (width, height)
        np.testing.assert_array_equal(np.asarray(view), pixels[top:top + height, left:left + width])


def test_featureless_crops_are_left_out_and_owners_name_their_image() -> None:
    """A crop with too little detail (here, every crop of the flat half of a half-flat image that misses the
    textured half) is not hashed; the arrays are the spec's preprocessing of each kept crop, in order, each
    with the index of its image."""
    half = textured(100, 100, 1)
    half.paste((90, 90, 90), (0, 0, 100, 80))  # the top 80 % is flat grey
    kept = crop_views(half)
    assert 0 < len(kept) < PER_IMAGE
    pre = PRESETS["copy-cnn"].preprocess
    arrays, owners = crop_arrays([textured(64, 64, 2), half], pre)
    assert owners.tolist() == [0] * PER_IMAGE + [1] * len(kept)
    np.testing.assert_array_equal(arrays[PER_IMAGE], to_array(kept[0], pre))
    assert crop_arrays([], pre)[0].shape == (0, pre.channels, pre.size, pre.size)


def test_turned_views_are_the_image_turned_either_way_with_no_filled_corner() -> None:
    """After the crops come the image turned by each of TURNS and cut to what the turn kept whole: no pixel of
    the fill a turn brings in (here pure black, which the random image never is) is left in them."""
    image = Image.fromarray(np.random.default_rng(3).integers(1, 256, (120, 160, 3), dtype=np.uint8))
    views = crop_views(image)[len(CROPS):]
    assert sorted(TURNS) == [-30, -15, 15, 30] and len(views) == len(TURNS)
    for degrees, view in zip(TURNS, views):
        np.testing.assert_array_equal(np.asarray(view), np.asarray(turned_whole(image, degrees)))
        assert view.width < image.width and view.height < image.height
        assert not (np.asarray(view) == 0).all(axis=2).any(), degrees
