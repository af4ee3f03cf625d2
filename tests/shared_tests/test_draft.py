"""Decoding reduced (Preprocess.draft): the shorter side ends from draft to 2 * draft - 1, the same pixels every
time, JPEG scaled by its decoder first, other formats box-reduced, small images untouched, and specs without
the field unchanged."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vetohash.errors import SpecError
from vetohash.preprocess import Preprocess, open_image

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


@pytest.mark.parametrize("size,expected", [
    ((4100, 2100), (257, 132)),  # 1/8 by libjpeg (513 x 263), then box-averaged by 263 // 128 = 2, rounding up
    ((1200, 900), (300, 225)),  # 1/4 by libjpeg (900 // 128 = 7: 4 is the largest scale it has), then nothing
    ((700, 300), (350, 150)),  # 1/2 by libjpeg
    ((255, 2000), (255, 2000)),  # the shorter side is under 2 * 128: as without draft
])
def test_a_jpeg_is_scaled_by_its_decoder_then_box_averaged(size, expected):
    data = encode(photo(*size), "JPEG")
    image = open_image(data, draft=128)
    assert image.size == expected and image.mode == "RGB"
    assert np.array_equal(np.asarray(image), np.asarray(open_image(data, draft=128)))  # the same pixels again


def test_the_reduced_decode_is_close_to_the_full_decode_box_averaged():
    data = encode(photo(4100, 2100), "JPEG")
    full = np.asarray(open_image(data).reduce(16), dtype=np.int16)
    assert np.abs(full - np.asarray(open_image(data, draft=128), dtype=np.int16)).mean() < 3


def test_other_formats_are_decoded_then_box_averaged_by_the_whole_factor():
    image = photo(1100, 600)
    reduced = open_image(encode(image, "PNG"), draft=128)
    assert reduced.size == (275, 150)  # by 600 // 128 = 4
    assert np.array_equal(np.asarray(reduced), np.asarray(image.reduce(4)))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_an_image_under_twice_the_draft_side_decodes_as_without_it(fmt):
    data = encode(photo(500, 255), fmt)
    assert np.array_equal(np.asarray(open_image(data, draft=128)), np.asarray(open_image(data)))


def test_the_exif_orientation_is_applied_to_the_reduced_image():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees clockwise
    out = io.BytesIO()
    photo(1600, 1000).save(out, "JPEG", exif=exif)
    assert open_image(out.getvalue(), draft=128).size == (250, 400)  # 1/4 by libjpeg, turned, then halved


def test_a_spec_without_draft_keeps_its_bytes_and_one_with_it_round_trips():
    assert "draft" not in Preprocess(**COPY_PRE).to_dict()
    pre = Preprocess(**COPY_PRE, draft=256)
    assert pre.to_dict()["draft"] == 256 and Preprocess.from_dict(pre.to_dict()) == pre


@pytest.mark.parametrize("value", [True, -1, 3, 5000, 256.0, "256"])
def test_a_bad_draft_side_is_refused(value):
    with pytest.raises(SpecError, match="draft"):
        Preprocess(**COPY_PRE, draft=value)
