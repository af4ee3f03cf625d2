"""The benchmark's edit suite: the paper's four edits over their full ranges and the edits people use to dodge
filters, each split into three severities. Built from the authority's alteration kinds, so the benchmark and
training share one implementation of every edit.

The paper's "blur of 1-10 px" is read two ways: as a kernel size (the registry's `blur`, family "paper") and
as a Gaussian sigma at 32 px scale (the registry's `blur-sigma`, family "sigma", up to six times stronger).
The paper's four edits with the sigma reading in place of the kernel one are reported as "paper-sigma"
(quality.by_group)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from PIL import Image

from vetohash_authority.alterations import Kind, make_kind

SIGMA_BLUR = "blur-sigma"
PAPER_SIGMA_KINDS = ("rotation", SIGMA_BLUR, "overlay", "translation")  # the paper's four, blur read as sigma


@dataclass(frozen=True)
class Edit:
    """One benchmark edit: family (paper, sigma, common, turned or small), kind, severity, and the kinds it
    draws from."""

    family: str
    kind: str
    severity: str
    choices: tuple[Kind, ...]  # one is picked at random (e.g. a negative or a positive angle)

    def apply(self, image: Image.Image, rng: random.Random) -> Image.Image:
        return rng.choice(self.choices).draw(rng)(image)


def _signed(family: str, kind: str, key: str, bands: list[tuple[float, float]]) -> list[Edit]:
    """Severities by magnitude; each draw takes a random sign."""
    return [Edit(family, kind, level, (make_kind(kind, {key: [low, high]}), make_kind(kind, {key: [-high, -low]})))
            for level, (low, high) in zip(("low", "mid", "high"), bands)]


def _bands(family: str, kind: str, bands: list[dict[str, Any]]) -> list[Edit]:
    return [Edit(family, kind, level, (make_kind(kind, settings),))
            for level, settings in zip(("low", "mid", "high"), bands)]


EDITS: list[Edit] = [
    # The paper's Table 1, full ranges (pixel sizes in units of a 32 px image), split in thirds.
    *_signed("paper", "rotation", "degrees", [(0, 30), (30, 60), (60, 90)]),
    *_bands("paper", "blur", [{"size": [1, 4]}, {"size": [4, 7]}, {"size": [7, 10]}]),
    *_bands("paper", "overlay", [{"side": [5, 8]}, {"side": [8, 12]}, {"side": [12, 15]}]),
    *_signed("paper", "translation", "shift", [(0, 3), (3, 7), (7, 10)]),
    # The paper's blur read as a sigma of 1-10 px at 32 px scale.
    *_bands("sigma", SIGMA_BLUR, [{"sigma": [1, 4]}, {"sigma": [4, 7]}, {"sigma": [7, 10]}]),
    # Common dodges.
    *_bands("common", "jpeg", [{"quality": [50, 90]}, {"quality": [25, 50]}, {"quality": [10, 25]}]),
    *_bands("common", "rescale", [{"factor": [0.7, 1.5]}, {"factor": [0.5, 2.0]}, {"factor": [0.3, 0.5]}]),
    *_bands("common", "crop", [{"keep": [0.9, 0.95]}, {"keep": [0.8, 0.9]}, {"keep": [0.7, 0.8]}]),
    Edit("common", "mirror", "-", (make_kind("mirror"),)),
    *_bands("common", "colour", [{"saturation": [0.7, 1.3], "hue": [-0.02, 0.02]},
                                 {"saturation": [0.3, 1.7], "hue": [-0.05, 0.05]},
                                 {"saturation": [0.0, 2.0], "hue": [-0.1, 0.1]}]),
    *_bands("common", "brightness", [{"brightness": [0.9, 1.1], "contrast": [0.9, 1.1]},
                                     {"brightness": [0.75, 1.25], "contrast": [0.75, 1.25]},
                                     {"brightness": [0.6, 1.4], "contrast": [0.6, 1.4]}]),
    *_bands("common", "text", [{"size": [4, 5]}, {"size": [5, 6.5]}, {"size": [6.5, 8]}]),
    *_bands("common", "sticker", [{"side": [6, 8]}, {"side": [8, 11]}, {"side": [11, 14]}]),
    *_bands("common", "border", [{"width": [1, 2]}, {"width": [2, 3.5]}, {"width": [3.5, 5]}]),
    *_bands("common", "noise", [{"sigma": [2, 6]}, {"sigma": [6, 12]}, {"sigma": [12, 20]}]),
    Edit("common", "pair", "-", (make_kind("pair"),)),
    # A rotation with its corners cropped off, so that no flat corner gives it away: family "turned".
    *_bands("turned", "turned-crop", [{"degrees": [5, 15]}, {"degrees": [15, 30]}, {"degrees": [30, 45]}]),
    # A part of the image anyone can share (a quarter to a half of it): family "small", apart from the others.
    *_bands("small", "small-crop", [{"keep": [0.65, 0.71]}, {"keep": [0.58, 0.65]}, {"keep": [0.5, 0.58]}]),
]

