"""Golden images: committed photos with their expected model inputs and hashes under the shipped base model.

A failure here means the same bytes no longer give the same hash: a Pillow upgrade that changed decoding or
resampling (the input digests), or a torch change, a weight change or a bit-order change (the hashes). Hashes
may move by a bit or two between CPUs whose floating-point kernels differ, so they are compared within a small
tolerance; the inputs, computed by Pillow and numpy alone, must match exactly. Update the values only on
purpose, and say so in the commit: published bundles depend on them.
"""

import hashlib
from pathlib import Path

import pytest

from vetohash.hashes import Hash
from vetohash.modelfile import read_model
from vetohash.preprocess import open_image, to_array

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "authority" / "vetohash_authority" / "models" / "copy-base.vhm"
GOLDEN = {
    "examples/banned/banned-000.jpg": (
        "5132da3ce21ffcd4ad4d732951b14d581723957741faca5f8d574fe35332add2",
        "63e29762931ac1deb8c09556fb186ac719e74897e7b8b4ab4ee17817fd3e2949",
    ),
    "examples/banned/banned-057.jpg": (
        "90980a8b50f2c562b860194be20e315d90b07d6ea617cceaae615328d7094c29",
        "2cc216493119d49aadae0d7999a348609b83583823e02d5c036db8a4999f498c",
    ),
    "examples/unrelated/unrelated-123.jpg": (
        "b9ec618c727781f3a0a81c6e6ebd6bbb4b9f4a5e5bdd98178f93852112074ecd",
        "0c81c75b06319544ce73ef285eaf4e3db24279b823a66f320b1d786fb781db68",
    ),
}
FLOAT_TOLERANCE_BITS = 2


@pytest.fixture(scope="module")
def base():
    return read_model(BASE)[0]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_image_gives_the_pinned_input_and_hash(base, name):
    input_digest, expected = GOLDEN[name]
    image = open_image(ROOT / name)
    assert hashlib.sha256(to_array(image, base.spec.preprocess).tobytes()).hexdigest() == input_digest
    got = Hash(base.hash_images([image])[0].tobytes())
    assert got - Hash.from_hex(expected, base.spec.bits) <= FLOAT_TOLERANCE_BITS, got.hex
