"""Crop hashes: the list side of crop and shift robustness.

A whole-image hash moves far when an upload keeps only 70-80 % of each side of a banned image, or when a
large shift pushes part of it out of the frame (a shift's black margins are trimmed away, leaving a crop).
Hashing fixed crops of every banned image into the bundle puts one of them near such an upload: squares
keeping 75 % of each side on a 3 x 3 grid of positions, strips keeping 75 % of one side at each end, and
squares keeping 85 % in the corners (17 crops). An upload turned by a few tens of degrees and then cropped so
that no filled corner shows (which the platform's upright views cannot undo) is near none of those, so the
image turned by 15 and 30 degrees either way and cut to what the turn kept whole is hashed too (4 turned
views, 21 crop hashes in all). They get their own threshold, calibrated on innocent images like the others
(docs/benchmarks.md measures the gain and the cost).

Featureless crops (a patch of sky, a flat wall) are left out: their hashes would sit near every plain upload.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from vetohash.detail import MIN_DETAIL, detail
from vetohash.hasher import Hasher
from vetohash.preprocess import Preprocess, to_array

from .alterations import crop, turned_whole

# (kept share of the width, of the height, position in the free room across, down)
Box = tuple[float, float, float, float]


def grid_squares(keep: float) -> tuple[Box, ...]:
    """Squares keeping `keep` of each side at the 3 x 3 grid of positions (corners, edge middles, centre)."""
    return tuple((keep, keep, x, y) for y in (0.0, 0.5, 1.0) for x in (0.0, 0.5, 1.0))


CROPS: tuple[Box, ...] = (
    *grid_squares(0.75),
    (0.75, 1.0, 0.0, 0.0), (0.75, 1.0, 1.0, 0.0), (1.0, 0.75, 0.0, 0.0), (1.0, 0.75, 0.0, 1.0),
    *((0.85, 0.85, x, y) for y in (0.0, 1.0) for x in (0.0, 1.0)),
)


TURNS: tuple[int, ...] = (-30, -15, 15, 30)  # degrees counter-clockwise of the turned views
PER_IMAGE = len(CROPS) + len(TURNS)  # crop hashes of one banned image, featureless views left out


def crop_views(image: Image.Image, boxes: Sequence[Box] = CROPS, turns: Sequence[int] = TURNS) -> list[Image.Image]:
    """The crops of one image (`boxes`, default CROPS) and its turned views (`turns`, default TURNS, in degrees:
    alterations.turned_whole) that have detail (vetohash.detail), in that order."""
    views = [crop(image, *box) for box in boxes] + [turned_whole(image, degrees) for degrees in turns]
    return [view for view in views if detail(view) >= MIN_DETAIL]


def crop_arrays(images: Sequence[Image.Image], pre: Preprocess, boxes: Sequence[Box] = CROPS,
                turns: Sequence[int] = TURNS) -> tuple[np.ndarray, np.ndarray]:
    """The model inputs of every image's crop views, (M, C, S, S), and the index of each one's image."""
    arrays: list[np.ndarray] = []
    owners: list[int] = []
    for index, image in enumerate(images):
        views = crop_views(image, boxes, turns)
        arrays += [to_array(view, pre) for view in views]
        owners += [index] * len(views)
    if not arrays:
        size = (0, pre.channels, pre.size, pre.size)
        return np.zeros(size, np.float32), np.zeros(0, np.int64)
    return np.stack(arrays), np.asarray(owners, dtype=np.int64)


def crop_hashes(hasher: Hasher, images: Sequence[Image.Image], boxes: Sequence[Box] = CROPS,
                turns: Sequence[int] = TURNS) -> tuple[np.ndarray, np.ndarray]:
    """The network's hash of every image's crop views, and the index of each one's image (for sources, hash
    their working copies: Source.image)."""
    arrays, owners = crop_arrays(images, hasher.spec.preprocess, boxes, turns)
    return hasher.hash_arrays(arrays), owners
