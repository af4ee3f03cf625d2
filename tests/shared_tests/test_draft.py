"""Decoding reduced (Preprocess.draft): the factor rule, the same pixels every time, JPEG scaled by its
decoder and other formats reduced alike, small images untouched, and specs without the field unchanged."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vetohash.errors import SpecError
from vetohash.preprocess import Preprocess, draft_factor, open_image

COPY_PRE = dict(mode="RGB", size=64, resample="bilinear", mean=(0.5,) * 3, std=(0.25,) * 3)


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(height // 32 + 1, width // 32 + 1, 3))
    smooth = Image.fromarray(np.uint8(np.clip(base * 60 + 128, 0, 255))).resize((width, height), Image.BICUBIC)
    return smooth


def encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


@pytest.mark.parametrize("size,draft,factor", [
    ((4000, 3000), 256, 8),  # 3000 // 256 = 11: the largest factor, 8
    ((1200, 900), 256, 2),  # 900 // 256 = 3: 2, as libjpeg scales by 1/2, 1/4 or 1/8 only
    ((2048, 1024), 256, 4),
    ((511, 2000), 256, 1),  # the short side would fall below 256
    ((4000, 3000), 0, 1),  # no draft: full size
])
def test_the_factor_keeps_both_sides_at_least_the_draft_side(size, draft, factor):
    assert draft_factor(size, draft) == factor


def test_a_large_jpeg_decodes_reduced_by_its_decoder_and_identically_each_time():
    data = encode(photo(4100, 2100), "JPEG")
    image = open_image(data, draft=256)
    assert image.size == (513, 263) and image.mode == "RGB"  # 2100 // 256 = 8: 1/8, rounded up
    assert np.array_equal(np.asarray(image), np.asarray(open_image(data, draft=256)))
    # Close to the full decode box-reduced by 8: the decoder's scaling is a low-pass too.
    full = np.asarray(open_image(data).reduce(8), dtype=np.int16)
    assert np.abs(full - np.asarray(image, dtype=np.int16)).mean() < 3


def test_other_formats_are_decoded_then_box_reduced_by_the_same_factor():
    image = photo(1100, 600)
    reduced = open_image(encode(image, "PNG"), draft=256)
    assert reduced.size == (550, 300)
    assert np.array_equal(np.asarray(reduced), np.asarray(image.reduce(2)))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_an_image_under_twice_the_draft_side_decodes_as_without_it(fmt):
    data = encode(photo(500, 400), fmt)
    assert np.array_equal(np.asarray(open_image(data, draft=256)), np.asarray(open_image(data)))


def test_the_exif_orientation_is_applied_to_the_reduced_image():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees clockwise
    out = io.BytesIO()
    photo(1600, 1000).save(out, "JPEG", exif=exif)
    assert open_image(out.getvalue(), draft=256).size == (500, 800)  # 1/2, then turned


def test_a_spec_without_draft_keeps_its_bytes_and_one_with_it_round_trips():
    assert "draft" not in Preprocess(**COPY_PRE).to_dict()
    pre = Preprocess(**COPY_PRE, draft=256)
    assert pre.to_dict()["draft"] == 256 and Preprocess.from_dict(pre.to_dict()) == pre


@pytest.mark.parametrize("value", [True, -1, 3, 5000, 256.0, "256"])
def test_a_bad_draft_side_is_refused(value):
    with pytest.raises(SpecError, match="draft"):
        Preprocess(**COPY_PRE, draft=value)
