"""The quality benchmark's harder innocents and edits: sibling crops share no pixel with a banned crop of their
photo, the sigma reading of the paper's blur is three bands of the registry's kind, and the benchmarks'
extra unrelated photos stay out of the committed example sets."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "examples"), str(ROOT / "benchmarks")]

from edits import EDITS, SIGMA_BLUR  # noqa: E402
from fit_selection import held_out, kept  # noqa: E402
from index_speed import chunks, with_planted  # noqa: E402
from make_example_images import MIN_SIBLING, SOURCES, Crop, sibling_specs  # noqa: E402
from vetohash.chunked import ImageChunk  # noqa: E402


def photo(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_siblings_share_no_pixel_with_a_banned_crop_of_their_photo():
    image = photo(400, 300)
    banned = [Crop("a", "", (0, 0, 150, 150), image), Crop("a", "", (200, 100, 300, 200), image),
              Crop("b", "", (0, 0, 300, 300), image)]  # another photo's box must not constrain photo "a"
    siblings = sibling_specs([("a", "", image)], banned, per_photo=6, size=32, seed=1)
    assert 0 < len(siblings) <= 6
    taken = np.zeros((300, 400), dtype=int)
    for left, top, right, bottom in (c.box for c in banned[:2]):
        taken[top:bottom, left:right] += 1
    for sibling in siblings:
        left, top, right, bottom = sibling.box
        assert right - left == bottom - top >= MIN_SIBLING
        assert 0 <= left and 0 <= top and right <= 400 and bottom <= 300
        assert taken[top:bottom, left:right].sum() == 0, sibling.box
        assert sibling.image.size == (32, 32)


def test_no_sibling_when_the_banned_crops_cover_the_photo():
    image = photo(200, 200)
    covered = [Crop("a", "", (0, 0, 120, 200), image), Crop("a", "", (100, 0, 200, 200), image)]
    assert sibling_specs([("a", "", image)], covered, per_photo=5, seed=1) == []


def test_the_sigma_reading_of_the_blur_comes_in_three_bands_of_the_registered_kind():
    strong = [edit for edit in EDITS if edit.kind == SIGMA_BLUR]
    assert [edit.severity for edit in strong] == ["low", "mid", "high"]
    assert [edit.choices[0].settings()["sigma"] for edit in strong] == [[1, 4], [4, 7], [7, 10]]


def test_the_extra_photos_are_new_groups_that_the_example_sets_do_not_use():
    groups = {f"{package}:{file}": group for package, file, _, group in SOURCES}
    extra = {name for name, group in groups.items() if group == "extra"}
    assert len(extra) >= 4 and len(groups) == len(SOURCES)  # each photo in exactly one group
    used = json.loads((ROOT / "examples" / "sources.json").read_text())
    assert {groups[f"{row['package']}:{row['source']}"] for row in used} == {"banned", "unrelated"}
    assert all(licence for _, _, licence, _ in SOURCES)


def test_small_crops_keep_a_quarter_to_a_half_of_the_image_apart_from_the_other_families():
    """The "small" family is the part of an image anyone can share: each draw keeps 25-50 % of the area, from
    the mildest severity (largest part) to the strongest."""
    small = [edit for edit in EDITS if edit.family == "small"]
    assert [edit.severity for edit in small] == ["low", "mid", "high"]
    assert all(edit.kind == "small-crop" for edit in small)
    image = photo(200, 200)
    means = []
    for edit in small:
        areas = [np.prod(edit.apply(image, random.Random(seed)).size) / 200 ** 2 for seed in range(30)]
        assert 0.24 <= min(areas) and max(areas) <= 0.51
        means.append(np.mean(areas))
    assert means[0] > means[1] > means[2]


def test_turned_crops_are_rotations_whose_corners_are_cut_away():
    """The "turned" family shows no fill colour at all (a white picture turned inside a black fill keeps no
    black pixel once cut), and the stronger the turn, the less of the picture it keeps."""
    turned = [edit for edit in EDITS if edit.family == "turned"]
    assert [edit.severity for edit in turned] == ["low", "mid", "high"]
    white = Image.new("RGB", (200, 200), (255, 255, 255))
    sides = []
    for edit in turned:
        outs = [edit.apply(white, random.Random(seed)) for seed in range(10)]
        assert all(np.asarray(out).min() > 127 for out in outs)
        sides.append(np.mean([out.size[0] for out in outs]))
    assert 200 > sides[0] > sides[1] > sides[2] >= 200 / 2 ** 0.5 - 1


def test_planted_images_take_the_first_rows_of_every_signal_and_leave_the_random_rest():
    """index_speed.py --real: the real images' hashes replace the first random images' network, DCT and crop
    hashes (crop hashes keep their owners), every later image and the ids stay as they were drawn."""
    drawn = next(chunks(40, 0, seed=7))
    rng = np.random.default_rng(0)
    planted = ImageChunk(("x", "y", "z"), rng.integers(0, 256, (3, 20), dtype=np.uint8),
                         rng.integers(0, 256, (3, 32), dtype=np.uint8), rng.integers(0, 256, (5, 20), dtype=np.uint8),
                         np.array([0, 0, 1, 2, 2]))
    out = next(chunks(40, 0, seed=7, planted=planted))
    assert out.ids == drawn.ids
    assert np.array_equal(out.neural, np.concatenate([planted.neural, drawn.neural[3:]]))
    assert np.array_equal(out.dct, np.concatenate([planted.dct, drawn.dct[3:]]))
    later = drawn.crop_owners >= 3
    assert np.array_equal(out.crops, np.concatenate([planted.crops, drawn.crops[later]]))
    assert np.array_equal(out.crop_owners, np.concatenate([planted.crop_owners, drawn.crop_owners[later]]))
    with pytest.raises(ValueError):
        with_planted(next(chunks(2, 0, seed=7)), planted)  # more planted images than the chunk holds


def _run(own: list[float], held: list[str]) -> dict:
    """A quality.py --json run reduced to what fit_selection reads: one held-out fold per own-copies share."""
    folds = [{"held_out": [name], "own_copies_caught": share, "held_out_fpr": 0.01 * (1 + i), "target": 0.01,
              "recall": share, "oracle": {"recall": 1.0}} for i, (share, name) in enumerate(zip(own, held))]
    return {"held_out": {"vetohash+crops+dct": {"half": folds}}}


def test_fit_selection_keeps_per_split_the_fit_that_catches_most_of_its_own_copies():
    runs = [_run([0.9, 0.5], ["a", "b"]), _run([0.8, 0.7], ["a", "b"])]
    own, ratio, recall, gap = held_out(runs, "half")
    assert kept(own).tolist() == [0, 1]  # split 0 keeps the first fit, split 1 the second
    assert kept(np.array([[0.5, 0.5]])).tolist() == [0]  # ties keep the first fit, as train --fits does
    assert ratio.shape == recall.shape == gap.shape == (2, 2)
    with pytest.raises(SystemExit, match="different photos"):
        held_out([runs[0], _run([0.8, 0.7], ["a", "c"])], "half")
