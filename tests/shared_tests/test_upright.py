"""Rotated copies turned back upright (vetohash.upright), query views (preprocess.query_arrays) and the
nearest banned hash over an image's views (matching.nearest_by_owner)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vetohash.errors import SpecError
from vetohash.matching import hamming_matrix, nearest_by_owner
from vetohash.preprocess import Preprocess, query_arrays
from vetohash.upright import find_frame, kept_whole, upright_views


def picture(seed: int = 0, side: int = 128) -> Image.Image:
    """A smooth, colourful picture with no flat corners."""
    rng = np.random.default_rng(seed)
    small = np.uint8(np.clip(rng.normal(128, 50, (6, 6, 3)), 40, 230))
    return Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC)


def turned(image: Image.Image, degrees: float, fill=(0, 0, 0)) -> Image.Image:
    """What the rotation edit does: same frame, corners filled."""
    return image.rotate(degrees, resample=Image.Resampling.BILINEAR, fillcolor=fill)


def quarter_distance(a: int, b: int) -> int:
    """Distance between two angles up to quarter turns."""
    d = (a - b) % 90
    return min(d, 90 - d)


@pytest.mark.parametrize("degrees", [8, 20, 33, 45, -12, -40, 60, 77, -70])
def test_the_angle_of_a_rotation_is_found_up_to_quarter_turns(degrees: int) -> None:
    for seed in range(3):
        frame = find_frame(turned(picture(seed), degrees))
        assert frame is not None and quarter_distance(frame.angle, degrees) <= 1
        assert frame.fill == (0, 0, 0)


def test_the_corner_colour_is_whatever_the_rotation_filled_with() -> None:
    frame = find_frame(turned(picture(), 25, fill=(250, 250, 250)))
    assert frame is not None and frame.fill == (250, 250, 250)


def test_pictures_without_rotated_corners_have_no_frame() -> None:
    assert find_frame(picture()) is None
    assert find_frame(turned(picture(), 1)) is None  # too small a turn to need help
    dark = Image.new("RGB", (128, 128), (0, 0, 0))
    dark.paste(picture().resize((64, 64)), (32, 32))  # flat corners, but not a rotation's
    assert find_frame(dark) is None


def test_one_of_the_upright_views_is_the_original_but_for_its_lost_corners() -> None:
    original = picture(4)
    views = upright_views(turned(original, 70))
    assert len(views) == 8
    centre = (40, 40, 88, 88)
    errors = [np.abs(np.asarray(v.crop(centre), float) - np.asarray(original.crop(centre), float)).mean()
              for v in views[:4]]
    assert min(errors) < 6 < sorted(errors)[1]


@pytest.mark.parametrize("degrees,size", [(20, (128, 128)), (-45, (128, 128)), (33, (160, 96)), (-10, (90, 150))])
def test_the_part_kept_whole_has_no_filled_corner_and_is_the_largest_such_box(degrees: int, size: tuple) -> None:
    """Turned back upright, a rotated copy's centred box of kept_whole's size holds only picture (no pixel of
    the white fill), while a box two pixels larger each way reaches the fill."""
    original = Image.new("RGB", size, (0, 0, 0))
    back = turned(turned(original, degrees, fill=(255, 255, 255)), -degrees, fill=(255, 255, 255))
    kept = kept_whole(back, degrees)
    assert np.asarray(kept).max() < 128
    w, h = kept.size
    assert 0 < w <= size[0] and 0 < h <= size[1] and abs(w / h - size[0] / size[1]) < 0.05
    left, top = (size[0] - w - 4) // 2, (size[1] - h - 4) // 2
    assert np.asarray(back.crop((left, top, left + w + 4, top + h + 4))).max() >= 128


def test_query_arrays_add_upright_views_only_when_the_spec_asks_and_corners_show_a_rotation() -> None:
    plain = Preprocess(mode="RGB", size=32, resample="bilinear", mean=(0.5,) * 3, std=(0.25,) * 3)
    upright = Preprocess(mode="RGB", size=32, resample="bilinear", mean=(0.5,) * 3, std=(0.25,) * 3, upright=True)
    rotated = turned(picture(), 30)
    assert query_arrays(rotated, plain).shape == (1, 3, 32, 32)
    assert query_arrays(picture(), upright).shape == (1, 3, 32, 32)
    views = query_arrays(rotated, upright)
    assert views.shape == (9, 3, 32, 32) and np.array_equal(views[0], query_arrays(rotated, plain)[0])


def test_upright_is_an_optional_strict_spec_field_written_only_when_on() -> None:
    base = {"mode": "L", "size": 32, "resample": "bilinear", "mean": [0.5], "std": [0.5]}
    assert Preprocess.from_dict(base).upright is False and "upright" not in Preprocess.from_dict(base).to_dict()
    on = Preprocess.from_dict({**base, "upright": True})
    assert on.to_dict()["upright"] is True and Preprocess.from_dict(on.to_dict()) == on
    with pytest.raises(SpecError, match="upright must be true or false"):
        Preprocess.from_dict({**base, "upright": "yes"})


def test_nearest_by_owner_is_the_least_distance_over_each_images_views() -> None:
    rng = np.random.default_rng(0)
    banned = rng.integers(0, 256, (7, 8), dtype=np.uint8)
    counts = [1, 5, 1, 3, 2]
    views = rng.integers(0, 256, (sum(counts), 8), dtype=np.uint8)
    views[2] = banned[4]  # image 1's second view is an exact match
    owners = np.repeat(np.arange(len(counts)), counts)
    found = nearest_by_owner(views, owners, len(counts), banned)
    distances = hamming_matrix(views, banned)
    for image in range(len(counts)):
        mine = distances[owners == image]
        assert found.distance[image] == mine.min()
        assert mine.min(axis=0)[found.index[image]] == mine.min()
    assert found.distance[1] == 0 and found.index[1] == 4
