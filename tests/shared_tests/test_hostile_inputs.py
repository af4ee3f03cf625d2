"""Hostile input keeps getting the project's own errors: the seeded corpus (tests/hostile/) and property tests.

Whatever the bytes, the bundle reader raises only BundleError subclasses and the image reader only
ImageError (or decodes): never RecursionError, MemoryError, struct.error, a hang, or a stray exception.
Example counts and deadlines keep the whole file to seconds in CI; benchmarks/fuzz.py runs ten thousand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile_corpus import BUNDLES, CORPUS, IMAGES, NOW, TRUSTED, seal, seed_bundle, seed_images
from vetohash import codec
from vetohash.bundle import read_bundle
from vetohash.errors import BundleError, ImageError
from vetohash.preprocess import Preprocess, open_image, to_array

PRE = Preprocess(mode="RGB", size=16, resample="bilinear", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
FUZZ = settings(max_examples=150, deadline=2000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SEEDS = {version: seed_bundle(version) for version in (1, 2, 3, 6)}
IMAGE_SEEDS = seed_images()


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_every_corpus_bundle_is_refused_with_a_bundle_error(name: str) -> None:
    data = (CORPUS / "bundles" / name).read_bytes()
    assert data == BUNDLES[name](), "the corpus drifted from tests/hostile_corpus.py: rerun it"
    with pytest.raises(BundleError):
        read_bundle(data, TRUSTED, now=NOW)


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_every_corpus_image_is_refused_or_decoded_never_anything_else(name: str) -> None:
    data = (CORPUS / "images" / name).read_bytes()
    assert data == IMAGES[name](), "the corpus drifted from tests/hostile_corpus.py: rerun it"
    try:
        image = open_image(data, name=name)
    except ImageError as error:
        assert str(error).startswith(f"{name}: ") and "\n" not in str(error)
    else:
        assert to_array(image, PRE).shape == (3, 16, 16)


def test_the_corpus_holds_every_case_and_nothing_else() -> None:
    assert sorted(p.name for p in (CORPUS / "bundles").iterdir()) == sorted(BUNDLES)
    assert sorted(p.name for p in (CORPUS / "images").iterdir()) == sorted(IMAGES)


def _mutated(seed: bytes, draw: st.DrawFn) -> bytes:
    """`seed` with a few random edits: overwritten, inserted or deleted bytes, or a cut."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        edit = draw(st.sampled_from(["set", "insert", "delete", "cut"]))
        if edit == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif edit == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


@st.composite
def mutated_bundles(draw: st.DrawFn) -> bytes:
    return _mutated(SEEDS[draw(st.sampled_from(sorted(SEEDS)))], draw)


@st.composite
def resigned_payloads(draw: st.DrawFn) -> bytes:
    """A mutated payload inside a valid signature: what a hostile holder of a trusted key can send."""
    import msgpack

    version = draw(st.sampled_from(sorted(SEEDS)))
    payload = msgpack.unpackb(SEEDS[version])["payload"]
    return seal(_mutated(payload, draw), version)


@FUZZ
@given(st.one_of(mutated_bundles(), resigned_payloads(), st.binary(max_size=256)))
def test_the_bundle_reader_raises_only_bundle_errors(data: bytes) -> None:
    try:
        read_bundle(data, TRUSTED, now=NOW)
    except BundleError:
        pass


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30)


@FUZZ
@given(st.dictionaries(st.sampled_from(["version", "spec", "weights", "hashes", "ids", "threshold", "authority",
                                        "key_id", "list_name", "sequence", "created", "expires", "calibration",
                                        "dct", "decision", "crops", "agree"]), msgpack_values),
       st.sampled_from(sorted(SEEDS)))
def test_signed_payloads_of_any_shape_raise_only_bundle_errors(fields: dict[str, object], version: int) -> None:
    import msgpack

    base = msgpack.unpackb(msgpack.unpackb(SEEDS[version])["payload"])
    try:
        read_bundle(seal(codec.pack(base | fields), version), TRUSTED, now=NOW)
    except BundleError:
        pass


@st.composite
def mutated_images(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(IMAGE_SEEDS)))
    return name, _mutated(IMAGE_SEEDS[name], draw)


@FUZZ
@given(mutated_images())
def test_the_image_reader_raises_only_image_errors(case: tuple[str, bytes]) -> None:
    name, data = case
    try:
        image = open_image(data, name=name)
    except ImageError as error:
        assert str(error).startswith(f"{name}: ") and "\n" not in str(error)
    else:
        array = to_array(image, PRE)
        assert array.shape == (3, 16, 16) and np.isfinite(array).all()


def test_corpus_files_are_small() -> None:
    sizes = {path.name: path.stat().st_size for path in Path(CORPUS).rglob("*") if path.is_file()}
    assert max(sizes.values()) < 64 * 1024, sizes
