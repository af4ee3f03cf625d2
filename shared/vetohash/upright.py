"""Turning a rotated copy back upright before it is hashed.

Rotating a picture inside its own frame (the usual way to dodge a filter, and the paper's first alteration)
leaves one flat colour in all four corners: triangles whose shape gives the angle away, up to quarter turns.
A query whose corners look like that is also hashed turned back by that angle and by it plus 90, 180 and
270 degrees, and each of those cut to the part the rotation kept whole; its distance to the list is the least
of them (`preprocess.query_arrays`). Turned back, a copy still lacks the original's corners, which the turn
pushed out of the frame and which come back as filled triangles: past 20 degrees or so the network's hash of
that view is far from the original's. The largest centred part without any filled corner (71 % of each side
at 45 degrees) is close to the central crop hash the bundle carries (vetohash_authority.cropviews): on the
examples, with the base model at 0.5 % of unrelated images flagged, rotated copies caught went from 54.5 to
88.5 % (30-60 degrees: from 30.0 to 93.6 %). An image without such corners, which is nearly every innocent
one, is hashed once, as before, so the false-positive rate hardly moves (docs/benchmarks.md).

Detection works on a copy at most WORK_SIDE pixels on a side (Pillow's box filter). Pixels within
FILL_TOLERANCE of the corners' median colour are "fill"; for every whole angle in (-45, 45] the corners a
rotation by that angle leaves uncovered are drawn with Pillow, and the angle whose corners overlap the fill
best (intersection over union, inside the area any angle could uncover) wins when that overlap is at least
MIN_OVERLAP and the corners cover at least MIN_CORNERS of the image; a picture in a flat border (an edge of
the frame left untouched) is not a rotation. Overlaps are compared as integer fractions, so every machine
picks the same angle.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

WORK_SIDE = 64
FILL_TOLERANCE = 24  # per channel, 0..255
MIN_OVERLAP = (4, 5)  # intersection over union of at least 4/5
MIN_CORNERS = (1, 100)  # uncovered corners of at least 1/100 of the image: smaller turns need no help
ANGLES = tuple(range(-44, 46))
QUARTER_TURNS = (0, 90, 180, 270)


@dataclass(frozen=True)
class Frame:
    """A rotation found in an image: the angle (degrees, counter-clockwise, in (-45, 45]) up to quarter
    turns, and the colour of its uncovered corners."""

    angle: int
    fill: tuple[int, int, int]


@functools.lru_cache(maxsize=64)
def _corners(width: int, height: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """For a frame of this size: the area any angle can uncover, and each angle's uncovered corners."""
    blank = Image.new("L", (width, height), 255)
    masks = {angle: np.asarray(blank.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=0)) < 128
             for angle in ANGLES}
    return np.logical_or.reduce(list(masks.values())), masks


def find_frame(image: Image.Image) -> Frame | None:
    """The rotation `image` shows in its corners, or None."""
    width, height = image.size
    scale = WORK_SIDE / max(width, height)
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    rgb = image if image.mode == "RGB" else image.convert("RGB")  # convert would copy an RGB image
    pixels = np.asarray(rgb.resize(size, Image.Resampling.BOX), dtype=np.int64)
    corners = np.stack([pixels[0, 0], pixels[0, -1], pixels[-1, 0], pixels[-1, -1]])
    fill = np.median(corners, axis=0).astype(np.int64)
    if np.abs(corners - fill).max() > FILL_TOLERANCE:
        return None
    flat = np.abs(pixels - fill).max(axis=2) <= FILL_TOLERANCE
    # A turned picture still touches every edge of its frame; a picture inside a flat border does not.
    if flat[0].all() or flat[-1].all() or flat[:, 0].all() or flat[:, -1].all():
        return None
    window, masks = _corners(*size)
    observed = flat & window
    best: tuple[int, int, int] | None = None  # (angle, intersection, union)
    for angle, mask in masks.items():
        area = int(mask.sum())
        if area * MIN_CORNERS[1] < MIN_CORNERS[0] * size[0] * size[1]:
            continue
        inter, union = int((mask & observed).sum()), int((mask | observed).sum())
        if best is None or inter * best[2] > best[1] * union:
            best = (angle, inter, union)
    if best is None or best[1] * MIN_OVERLAP[1] < MIN_OVERLAP[0] * best[2]:
        return None
    return Frame(best[0], (int(fill[0]), int(fill[1]), int(fill[2])))


def upright_views(image: Image.Image) -> list[Image.Image]:
    """`image` turned back by its frame's angle plus each quarter turn, then the part of each that the rotation
    kept whole (eight views), or [] without a frame."""
    frame = find_frame(image)
    if frame is None:
        return []
    turned = [image.rotate(-(frame.angle + turn), resample=Image.Resampling.BILINEAR, fillcolor=frame.fill)
              for turn in QUARTER_TURNS]
    return turned + [kept_whole(view, frame.angle) for view in turned]


def kept_box(width: int, height: int, degrees: float) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the largest centred box of a `width` x `height` frame, of its proportions,
    that a turn by `degrees` about the centre inside the same frame leaves free of filled corners: a w x h box
    fits inside the turned W x H frame when w cos + h sin <= W and w sin + h cos <= H."""
    cos, sin = abs(math.cos(math.radians(degrees))), abs(math.sin(math.radians(degrees)))
    scale = min(width / (width * cos + height * sin), height / (width * sin + height * cos))
    w, h = max(1, int(width * scale)), max(1, int(height * scale))
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def kept_whole(image: Image.Image, degrees: float) -> Image.Image:
    """The part of `image` that a turn by `degrees` about the centre leaves free of filled corners (kept_box)."""
    return image.crop(kept_box(image.width, image.height, degrees))
