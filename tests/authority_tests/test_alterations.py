"""Alterations: drawn parameters stay in their ranges, pixel sizes scale with the image, seeds reproduce."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image, ImageFilter

from vetohash_authority.alterations import (KINDS, PAPER_KINDS, AlterationError, blur_sigma, black_square,
                                            border, make_kind, translate)

from .fixtures import picture

DRAWS = 300


def draws(name: str, seed: int = 1, **settings: object) -> list:
    kind = make_kind(name, settings)
    rng = random.Random(seed)
    return [kind.draw(rng) for _ in range(DRAWS)]


def values(name: str, key: str, **settings: object) -> np.ndarray:
    return np.array([edit.params[key] for edit in draws(name, **settings)], dtype=float)


def within(array: np.ndarray, low: float, high: float) -> bool:
    return bool(array.min() >= low and array.max() <= high)


def spread(array: np.ndarray, low: float, high: float) -> bool:
    """The draws cover the range, not one corner of it."""
    width = high - low
    return bool(array.min() < low + 0.1 * width and array.max() > high - 0.1 * width)


@pytest.mark.parametrize(("name", "key", "low", "high"), [
    ("rotation", "degrees", -90, 90),          # paper Table 1
    ("blur", "size", 1, 10),                   # paper Table 1
    ("blur-sigma", "sigma", 1, 10),            # paper Table 1, blur read as a sigma
    ("overlay", "side", 5, 15),                # paper Table 1
    ("jpeg", "quality", 10, 90),
    ("rescale", "factor", 0.3, 2.0),
    ("crop", "keep_x", 0.7, 0.95),
    ("crop", "keep_y", 0.7, 0.95),
    ("colour", "saturation", 0.0, 2.0),
    ("colour", "hue", -0.1, 0.1),
    ("brightness", "brightness", 0.6, 1.4),
    ("brightness", "contrast", 0.6, 1.4),
    ("text", "size", 4, 8),
    ("sticker", "side", 6, 14),
    ("border", "width", 1, 5),
    ("noise", "sigma", 2, 20),
])
def test_default_ranges_are_respected_and_covered(name: str, key: str, low: float, high: float) -> None:
    drawn = values(name, key)
    assert within(drawn, low, high)
    assert spread(drawn, low, high)


@pytest.mark.parametrize("name", ["overlay", "crop", "text", "sticker"])
def test_positions_are_fractions_of_the_free_room(name: str) -> None:
    for key in ("x", "y"):
        drawn = values(name, key)
        assert within(drawn, 0, 1) and spread(drawn, 0, 1)


def test_translation_shifts_along_x_y_or_both_within_range() -> None:
    edits = draws("translation")
    dx = np.array([e.params["dx"] for e in edits])
    dy = np.array([e.params["dy"] for e in edits])
    assert within(dx, -10, 10) and within(dy, -10, 10)
    only_x, only_y, both = (dy == 0) & (dx != 0), (dx == 0) & (dy != 0), (dx != 0) & (dy != 0)
    assert only_x.any() and only_y.any() and both.any()
    assert (only_x | only_y | both).all()


def test_settings_narrow_the_ranges() -> None:
    assert within(values("rotation", "degrees", degrees=[-5, 5]), -5, 5)
    assert set(e.params["axis"] for e in draws("mirror", axes=["vertical"])) == {"vertical"}
    assert {e.params["dx"] for e in draws("translation", axes=["y"])} == {0.0}


def test_pair_applies_two_different_kinds() -> None:
    for edit in draws("pair"):
        first, second = edit.params["first"], edit.params["second"]
        assert first.kind != second.kind
        assert {first.kind, second.kind} <= set(KINDS) - {"pair"}


def test_blur_sigma_follows_opencvs_rule_and_stays_positive() -> None:
    assert blur_sigma(3) == pytest.approx(0.8)
    assert blur_sigma(7) == pytest.approx(0.3 * 2 + 0.8)
    assert blur_sigma(1) == pytest.approx(0.5)
    assert blur_sigma(0.1) > 0


def test_blur_sigma_scales_its_sigma_not_a_kernel_with_the_image() -> None:
    drawn = make_kind("blur-sigma", {"sigma": [1, 4]}).draw(random.Random(3))
    sigma = drawn.params["sigma"]
    assert 1 <= sigma <= 4
    image = picture(5, side=64)
    # At 64 px one 32-px pixel is two: the sigma doubles.
    assert np.array_equal(np.asarray(drawn(image)), np.asarray(image.filter(ImageFilter.GaussianBlur(2 * sigma))))


@pytest.mark.parametrize("side", [32, 128])
def test_overlay_square_scales_with_the_image(side: int) -> None:
    white = Image.new("RGB", (side, side), (255, 255, 255))
    out = np.asarray(black_square(white, side=5, x=0.5, y=0.5))
    black = int((out.sum(axis=2) == 0).sum())
    assert black == (5 * side // 32) ** 2


def test_translation_scales_with_the_image_and_fills_black() -> None:
    image = Image.new("RGB", (128, 128), (255, 255, 255))
    out = np.asarray(translate(image, dx=10, dy=0))
    assert (out[:, :40] == 0).all()  # 10 reference px on a 128 px image = 40 px
    assert (out[:, 40:] == 255).all()


def test_border_scales_with_the_image() -> None:
    assert border(Image.new("RGB", (128, 96)), width=2, fill=(0, 0, 0)).size == (128 + 2 * 6, 96 + 2 * 6)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_same_seed_same_pixels_and_rgb_output(name: str) -> None:
    image = picture(3, side=96)
    kind = make_kind(name)
    first = [kind.draw(random.Random(42))(image) for _ in range(2)]
    assert first[0].mode == "RGB"
    assert np.array_equal(np.asarray(first[0]), np.asarray(first[1]))
    others = [np.asarray(kind.draw(random.Random(seed))(image)) for seed in range(5)]
    if name != "mirror":  # one axis by default: every mirror is the same edit
        assert any(o.shape != others[0].shape or not np.array_equal(o, others[0]) for o in others[1:])


@pytest.mark.parametrize("name", sorted(KINDS))
def test_alterations_never_modify_their_input(name: str) -> None:
    image = picture(4, side=64)
    before = np.asarray(image).copy()
    make_kind(name).draw(random.Random(0))(image)
    assert np.array_equal(np.asarray(image), before)


@pytest.mark.parametrize("name", ["rotation", "blur", "blur-sigma", "overlay", "translation", "jpeg", "mirror", "colour",
                                  "brightness", "text", "sticker", "noise"])
def test_size_keeping_kinds_keep_the_size(name: str) -> None:
    image = picture(5, side=80)
    assert make_kind(name).draw(random.Random(1))(image).size == (80, 80)


def test_grey_input_gives_rgb_output() -> None:
    grey = picture(6).convert("L")
    for name in PAPER_KINDS:
        assert make_kind(name).draw(random.Random(2))(grey).mode == "RGB"


@pytest.mark.parametrize(("name", "settings", "message"), [
    ("spin", {}, "unknown alteration kind"),
    ("rotation", {"angle": [0, 1]}, "no setting angle"),
    ("rotation", {"degrees": [10, -10]}, "above high"),
    ("rotation", {"degrees": 5}, "pair of numbers"),
    ("blur", {"size": [0, 500]}, "must lie within"),
    ("mirror", {"axes": ["diagonal"]}, "must be names from"),
    ("pair", {"kinds": ["blur"]}, "at least two"),
])
def test_bad_settings_are_refused_with_a_clear_message(name: str, settings: dict, message: str) -> None:
    with pytest.raises(AlterationError, match=message):
        make_kind(name, settings)
