"""Privacy levels: how much of the banned images a bundle gives away, chosen knowingly at publishing.

A bundle is signed, not encrypted: whoever holds it can invert its hashes. The signals leak very differently
(docs/threat-model.md, measured by benchmarks/attacks.py on the example images):

- the DCT hash is a fixed public transform, so a plain inverse DCT of its signs sketches each banned image's
  light and dark layout, and that sketch picks the image out of hundreds (every one of the examples);
- the crop hashes give an inversion up to 21 more constraints on each image (its coarse layout, not the image);
- the network hash alone, inverted by gradient descent, was never the top candidate among the examples.

Each level is a set of signals; fewer signals cost recall, which `authority evaluate` measures per level on
the authority's own images, beside how well DCT sketches identify them.

The levels are read when the CLI starts (its --privacy choices), so numpy and Pillow are imported only by the
functions that measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

THUMB = 32  # sketches and images are compared as THUMB x THUMB grey levels


@dataclass(frozen=True)
class Level:
    """A privacy level: whether the bundle carries the DCT hashes and the crop hashes (the network's
    whole-image hash it always carries)."""

    name: str
    dct: bool
    crops: bool
    summary: str


LEVELS = {level.name: level for level in (
    Level("max-recall", dct=True, crops=True,
          summary="network, crop and DCT hashes: the most recall; the DCT hashes identify the banned images"),
    Level("balanced", dct=False, crops=True,
          summary="network and crop hashes: no DCT sketches; crop hashes constrain an inversion more"),
    Level("strict", dct=False, crops=False,
          summary="the network's whole-image hash only: inversions identify no image better than chance"),
)}
DEFAULT = "max-recall"


def thumbnail(image: Image.Image) -> np.ndarray:
    """An image as THUMB x THUMB grey levels (ITU-R 601-2 luma, area averaging), float64."""
    import numpy as np
    from PIL import Image

    return np.asarray(image.convert("L").resize((THUMB, THUMB), Image.Resampling.BOX), dtype=np.float64)


def dct_sketches(packed: np.ndarray) -> np.ndarray:
    """What anyone can draw from DCT hashes (N, 32 bytes): the inverse DCT of +1 or -1 at each kept
    low frequency, zero elsewhere, as (N, THUMB, THUMB) grey levels up to scale."""
    import numpy as np

    from vetohash import dcthash

    c = dcthash.cosine_matrix()
    signs = np.unpackbits(packed, axis=1).astype(np.float64).reshape(len(packed), dcthash.BLOCK, dcthash.BLOCK)
    sketches = np.einsum("ui,nuv,vj->nij", c, 2 * signs - 1, c)
    step = dcthash.SIDE // THUMB
    return sketches.reshape(len(packed), THUMB, step, THUMB, step).mean(axis=(2, 4))


def identification_ranks(sketches: np.ndarray, gallery: np.ndarray, truth: Sequence[int]) -> np.ndarray:
    """For each sketch, the rank (1 = best) of its true image `truth[i]` among the `gallery` thumbnails by
    Pearson correlation of grey levels; ties count against it."""
    import numpy as np

    def standard(a: np.ndarray) -> np.ndarray:
        flat = a.reshape(len(a), -1)
        flat = flat - flat.mean(axis=1, keepdims=True)
        return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)

    scores = standard(sketches) @ standard(gallery).T
    own = scores[np.arange(len(truth)), np.asarray(truth)]
    return np.sum(scores >= own[:, None], axis=1)
