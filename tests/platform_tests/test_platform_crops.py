"""Bundles with crop hashes (format v3) on the platform: a match by the crops signal names the banned image the
crop was cut from, with its own threshold and override; ingest, `bundles`, the log; an empty crop
list; v2 bundles beside them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image

from vetohash.keys import public_key_of
from vetohash.bundle import CropSignal, DctSignal
from vetohash.hasher import Hasher
from vetohash.preprocess import open_image

from .helpers import THRESHOLD, dct_of, distance, encode, hash_files, records

CROPS_THRESHOLD = 8
DCT_THRESHOLD = 24
# Each banned image's four corner crops keeping 75 % of each side: (left, top, right, bottom) shares.
BOXES = ((0.0, 0.0, 0.75, 0.75), (0.25, 0.0, 1.0, 0.75), (0.0, 0.25, 0.75, 1.0), (0.25, 0.25, 1.0, 1.0))


class Crops(NamedTuple):
    hashes: np.ndarray  # (16, hash bytes): BOXES of banned-0, then of banned-1, ...
    owners: np.ndarray  # (16,) int64: the banned image (bundle row) of each
    upload: Path  # crop 1 (of banned-0) as a PNG file: a cropped copy a user might upload


def corner(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    width, height = image.size
    return image.crop((int(box[0] * width), int(box[1] * height), int(box[2] * width), int(box[3] * height)))


@pytest.fixture(scope="session")
def crops(hasher: Hasher, images: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Crops:
    banned = [open_image(images[f"banned-{i}"]) for i in range(4)]
    hashes = hasher.hash_images([corner(image, box) for image in banned for box in BOXES])
    upload = tmp_path_factory.mktemp("crops") / "cropped-0.png"
    upload.write_bytes(encode(corner(banned[0], BOXES[1]), "PNG"))
    return Crops(hashes, np.repeat(np.arange(4, dtype=np.int64), len(BOXES)), upload)


@pytest.fixture
def trusted(platform, pubkey_file: Path) -> None:
    assert platform("trust", "add", pubkey_file, "--name", "acme").code == 0


@pytest.fixture
def with_crops(platform, trusted, make_bundle, crops: Crops, tmp_path: Path) -> Path:
    """One ingested v3 bundle: the network hashes of banned-0..3 and the 16 crop hashes of `crops`."""
    bundle = tmp_path / "crops.vhb"
    bundle.write_bytes(make_bundle(sequence=5, crops=CropSignal(crops.hashes, crops.owners, CROPS_THRESHOLD)))
    assert platform("ingest", bundle).code == 0
    return bundle


def test_premise_the_cropped_copy_is_far_from_every_whole_image_and_unrelated_ones_from_every_crop(
        hasher, images, banned_hashes, crops: Crops):
    """What the tests below rely on, checked rather than assumed: the cropped copy of banned-0 is at least
    THRESHOLD from every whole banned image, and nearest to another one than banned-0 (so an id b-000 can
    only come from its crop); it is crop hash 1, so that id is the crop's owner, not its row (b-001);
    unrelated images are at least CROPS_THRESHOLD from every crop hash."""
    [upload] = hash_files(hasher, [crops.upload])
    to_whole = [distance(upload, banned) for banned in banned_hashes]
    assert min(to_whole) >= THRESHOLD and int(np.argmin(to_whole)) != 0, to_whole
    assert [distance(upload, c) for c in crops.hashes].index(0) == 1
    unrelated = hash_files(hasher, [images[f"unrelated-{i}"] for i in range(4)])
    assert min(distance(u, c) for u in unrelated for c in crops.hashes) >= CROPS_THRESHOLD


def test_a_cropped_copy_matches_by_its_crop_hash_as_a_neural_match_naming_the_crop_s_owner(
        platform, with_crops, crops: Crops, images):
    """Whole-image distance at or above the threshold, crops distance below the crops threshold: a match,
    by the crops signal, and crops_nearest_id is the id of the banned image the crop was cut from."""
    result = platform("screen", "--json", crops.upload, images["banned-1"], images["unrelated-0"])
    assert result.code == 1
    cropped, banned, unrelated = (r["results"][0] for r in records(result.stdout))
    assert cropped["match"] is True and cropped["by"] == ["crops"]
    assert cropped["distance"] >= THRESHOLD and cropped["nearest_id"] != "b-000"
    assert (cropped["crops_nearest_id"], cropped["crops_distance"], cropped["crops_threshold"]) == \
           ("b-000", 0, CROPS_THRESHOLD)
    assert cropped["dct_distance"] is None and cropped["dct_threshold"] is None  # no DCT signal in this bundle
    assert banned["by"] == ["network"] and banned["distance"] == 0  # the whole image still matches
    assert unrelated["match"] is False and unrelated["crops_distance"] >= CROPS_THRESHOLD


def test_the_text_line_shows_the_crop_side_and_the_signal(platform, with_crops, crops: Crops, images, key):
    """`screen` shows the nearest crop's owner, its distance against the crops threshold, and `by crops`."""
    cropped, clean = platform("screen", crops.upload, images["unrelated-0"]).stdout.splitlines()
    label = f"Test Authority/test-list#5 (key {public_key_of(key).key_id})"
    assert cropped.startswith(f"MATCH  {crops.upload}  {label}  nearest b-")
    assert f" >= {THRESHOLD}  crops nearest b-000  distance 0 < {CROPS_THRESHOLD}  by crops  hash " in cropped
    assert clean.startswith("clean  ") and f" >= {CROPS_THRESHOLD}  hash " in clean and " by " not in clean


def test_crops_threshold_0_turns_crop_matching_off_and_out_of_range_is_refused(platform, with_crops, crops: Crops):
    """`--crops-threshold 0` replaces the bundle's own: the cropped copy is then clean. A value above the
    hash width is an error (exit 2), as for `--threshold`."""
    result = platform("screen", "--json", "--crops-threshold", "0", crops.upload)
    [record] = records(result.stdout)
    assert result.code == 0 and record["verdict"] == "clean"
    assert record["results"][0]["crops_threshold"] == 0 and record["results"][0]["by"] == []
    refused = platform("screen", "--crops-threshold", "9999", crops.upload)
    assert refused.code == 2 and "crops threshold 9999 is outside 0.." in refused.stderr


def test_a_crop_match_is_logged_with_its_crop_side(platform, with_crops, crops: Crops):
    """The match log row of a crop match carries the crop's owner id, its distance and the crops threshold."""
    platform("screen", crops.upload)
    [row] = records(platform("log", "--json").stdout)
    assert row["by"] == ["crops"] and row["distance"] >= THRESHOLD
    assert (row["crops_hash_id"], row["crops_distance"], row["crops_threshold"]) == ("b-000", 0, CROPS_THRESHOLD)
    assert row["dct_hash_id"] is None
    header, line = platform("log").stdout.splitlines()
    assert "  BY  " in header and "NEAREST ID DISTANCE/THRESHOLD, PER SIGNAL" in header
    assert re.search(r"  crops +network b-", line) and f"  crops b-000 0/{CROPS_THRESHOLD}  " in line


def test_ingest_and_bundles_show_the_crop_hashes_and_their_threshold(platform, trusted, make_bundle,
                                                                      crops: Crops, tmp_path: Path):
    """`ingest` and `bundles` (text and JSON) report how many crop hashes a bundle holds and their threshold;
    a bundle without them 0 and null (JSON keys by vetohash.signals.key: crops_hashes, crops_threshold)."""
    bundle = tmp_path / "crops.vhb"
    bundle.write_bytes(make_bundle(crops=CropSignal(crops.hashes, crops.owners, CROPS_THRESHOLD)))
    ingested = platform("ingest", bundle)
    assert f"threshold {THRESHOLD}, 16 crop hashes, crops threshold {CROPS_THRESHOLD} (either matches)" in \
           ingested.stdout
    old = tmp_path / "old.vhb"
    old.write_bytes(make_bundle(list_name="old-list"))
    [record] = records(platform("ingest", "--json", old).stdout)
    assert (record["crops_hashes"], record["crops_threshold"]) == (0, None)
    rows = {r["list"]: r for r in records(platform("bundles", "--json").stdout)}
    assert (rows["test-list"]["crops_hashes"], rows["test-list"]["crops_threshold"]) == (16, CROPS_THRESHOLD)
    assert rows["test-list"]["decision"] == "neural-or-crops"
    assert (rows["old-list"]["crops_hashes"], rows["old-list"]["crops_threshold"]) == (0, None)
    header, *lines = platform("bundles").stdout.splitlines()
    assert "  HASHES  SIGNALS  " in header
    new_line = next(line for line in lines if "test-list" in line)
    assert f"  network<{THRESHOLD} crops<{CROPS_THRESHOLD}(16)  " in new_line


def test_a_v2_bundle_beside_a_v3_one_screens_as_before_without_crop_fields(platform, with_crops, make_bundle,
                                                                           crops: Crops, images, tmp_path: Path):
    """A v2 bundle (DCT, no crop hashes) decides by its network and DCT distances alone, its crops_ fields
    null even under --crops-threshold, while the v3 bundle beside it matches the cropped copy by its crop."""
    dct = dct_of(*(images[f"unrelated-{i}"] for i in range(4)))
    assert min(distance(dct_of(crops.upload)[0], d) for d in dct) >= DCT_THRESHOLD  # premise: far by DCT
    v2 = tmp_path / "v2.vhb"
    v2.write_bytes(make_bundle(list_name="v2-list", dct=DctSignal(hashes=dct, threshold=DCT_THRESHOLD)))
    assert platform("ingest", v2).code == 0
    for extra in ((), ("--crops-threshold", "20")):
        [record] = records(platform("screen", "--json", *extra, crops.upload).stdout)
        verdicts = {r["list"]: r for r in record["results"]}
        old = verdicts["v2-list"]
        assert old["by"] == [] and old["distance"] >= THRESHOLD and old["dct_distance"] >= DCT_THRESHOLD
        assert (old["crops_nearest_id"], old["crops_distance"], old["crops_threshold"]) == (None, None, None)
        assert verdicts["test-list"]["by"] == ["crops"] and verdicts["test-list"]["crops_nearest_id"] == "b-000"


def test_a_bundle_with_an_empty_crop_list_screens_by_its_other_signals(platform, trusted, make_bundle, crops,
                                                                        images, hasher, tmp_path: Path):
    """Zero crop hashes (every crop featureless) is a valid v3 bundle: no error, no crop distance, the
    crops threshold still reported, and the whole-image and DCT hashes decide."""
    empty = CropSignal(np.zeros((0, hasher.spec.hash_bytes), np.uint8), np.zeros(0, np.int64), CROPS_THRESHOLD)
    dct = dct_of(*(images[f"banned-{i}"] for i in range(4)))
    bundle = tmp_path / "empty.vhb"
    bundle.write_bytes(make_bundle(crops=empty, dct=DctSignal(hashes=dct, threshold=DCT_THRESHOLD)))
    assert f", 0 crop hashes, crops threshold {CROPS_THRESHOLD}, DCT threshold" in platform("ingest", bundle).stdout
    result = platform("screen", "--json", images["banned-2"], crops.upload)
    banned, cropped = (r["results"][0] for r in records(result.stdout))
    assert result.code == 1 and banned["by"] == ["network", "dct"] and cropped["match"] is False
    assert (cropped["crops_nearest_id"], cropped["crops_distance"], cropped["crops_threshold"]) == \
           (None, None, CROPS_THRESHOLD)


def test_a_featureless_image_never_matches_by_a_crop_hash_either(platform, trusted, make_bundle, crops: Crops,
                                                                  hasher, tmp_path: Path):
    """A flat image's network hash is arbitrary, near or not to a crop: the detail guard covers crop matches."""
    flat = tmp_path / "flat.png"
    flat.write_bytes(encode(Image.new("RGB", (200, 200), (90, 90, 90)), "PNG"))
    hashes = np.concatenate([crops.hashes, hash_files(hasher, [flat])])
    owners = np.append(crops.owners, 3)
    bundle = tmp_path / "flat.vhb"
    bundle.write_bytes(make_bundle(crops=CropSignal(hashes, owners, CROPS_THRESHOLD)))
    assert platform("ingest", bundle).code == 0
    result = platform("screen", "--json", flat)
    [record] = records(result.stdout)
    assert result.code == 0 and record["verdict"] == "featureless"
    assert record["results"][0]["crops_distance"] == 0 and record["results"][0]["by"] == []
    assert records(platform("log", "--json").stdout) == []
