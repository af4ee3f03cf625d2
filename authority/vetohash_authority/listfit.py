"""Fitting a pretrained copy detector's hash to one banned list, in minutes on a CPU, without training.

The authority knows its banned images and can alter them at will. For each banned image we draw altered
views with the alteration registry and measure, in the network's output space, how much edits move an image
(within-image scatter S_w) against how much images differ from one another (total scatter S_t, over the
banned images, their views and generic background images). The directions that maximise S_t relative to S_w
(a generalised eigenproblem, as in linear discriminant analysis) keep the bits that edits rarely flip and
that unrelated images rarely share. We keep the best `bits` directions, standardise them, rotate them to
balance the quantisation error (ITQ), centre them on their medians, and fold everything into the last linear
layer, so the result is an ordinary model file whose hash is still "bit k = output k > 0".
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vetohash.errors import SpecError
from vetohash.hasher import Hasher
from vetohash.modelfile import read_model
from vetohash.preprocess import Preprocess
from vetohash.specs import ModelSpec

from .alterations import SINGLE_KINDS, make_kind
from .binarize import itq_rotation
from .pretraining import random_edits
from .synthetic import bank

BATCH = 128
# The shipped pretrained copy detector (`authority pretrain` on a GPU; docs/benchmarks.md, "How the shipped
# base model was made", gives the command).
BASE_MODEL = Path(__file__).resolve().parent / "models" / "copy-base.vhm"


@dataclasses.dataclass(frozen=True)
class ListFitConfig:
    """Settings of a list fit; the defaults are the best measured on benchmarks/quality.py."""

    views: int = 30  # altered views drawn per banned image
    background: int = 1500  # generated background images for the total scatter
    bits: int = 160
    regularisation: float = 0.3  # added to S_w, as a share of its mean eigenvalue
    max_edits: int = 2  # edits chained per view
    trim: bool = True  # cut flat margins before hashing (preprocess.trim_margins): borders and shifts
    upright: bool = True  # queries whose corners show a rotation are also hashed upright (vetohash.upright)
    # Images are decoded reduced, the shorter side kept at least this long (preprocess.Preprocess.draft): a photo of
    # several megapixels decodes several times faster, and every step after it works on a small image.
    draft: int = 128


def _outputs(network: torch.nn.Module, hasher: Hasher, images: Sequence[Image.Image],
             tick: Callable[[int], None]) -> np.ndarray:
    """The base head's outputs for `images`, computed in batches."""
    out = []
    with torch.no_grad():
        for start in range(0, len(images), BATCH):
            chunk = images[start:start + BATCH]
            out.append(network(torch.from_numpy(hasher.preprocess(chunk))).double().numpy())
            tick(len(chunk))
    return np.concatenate(out)


def discriminant_projection(total: np.ndarray, within: np.ndarray, bits: int, regularisation: float) -> np.ndarray:
    """The (bits, d) projection onto the directions of largest total-to-within scatter ratio."""
    s_t = np.cov(total, rowvar=False)
    s_w = np.cov(within, rowvar=False)
    s_w += regularisation * np.trace(s_w) / len(s_w) * np.eye(len(s_w))
    # Solve S_t v = l S_w v through the Cholesky factor of S_w (numpy has no generalised eigensolver).
    lower = np.linalg.cholesky(s_w)
    inverse = np.linalg.inv(lower)
    values, vectors = np.linalg.eigh(inverse @ s_t @ inverse.T)
    directions = inverse.T @ vectors[:, ::-1][:, :bits]
    return directions.T


def base_model(path: Path | None = None) -> Hasher:
    """The pretrained copy detector to fit: the model file at `path`, else the one shipped with vetohash."""
    return read_model(path or BASE_MODEL)[0]


def fitted_preprocess(base: Hasher, config: ListFitConfig) -> Preprocess:
    """The preprocessing of a model fitted from `base` with `config` (its trim, upright and draft steps)."""
    return dataclasses.replace(base.spec.preprocess, trim=config.trim, upright=config.upright, draft=config.draft)


def fit_to_list(base: Hasher, banned: Sequence[Image.Image], config: ListFitConfig, *, seed: int,
                progress: Callable[[int], None] | None = None) -> tuple[Hasher, dict[str, Any]]:
    """A copy of `base` whose head is refitted to `banned`; returns it with metadata for its model file."""
    network = copy.deepcopy(base.network).eval()
    head = getattr(network, "head", None)
    if not isinstance(head, torch.nn.Linear) or not hasattr(network, "pooled"):
        raise SpecError(f"list fitting needs a copy-cnn model, not {base.spec.arch.get('type')!r}")
    if config.bits > head.in_features:
        raise SpecError(f"cannot fit {config.bits} bits from {head.in_features} features")
    tick = progress or (lambda _n: None)
    preprocess = fitted_preprocess(base, config)
    source = Hasher(dataclasses.replace(base.spec, preprocess=preprocess), network)
    rng = random.Random(seed)
    augment = random_edits([make_kind(name) for name in SINGLE_KINDS], config.max_edits)
    views, owners = [], []
    for index, image in enumerate(banned):
        for _ in range(config.views):
            views.append(augment(image, rng))
            owners.append(index)
    background = bank(config.background, seed=seed)
    z_banned = _outputs(network, source, list(banned), tick)
    z_views = _outputs(network, source, views, tick)
    z_background = _outputs(network, source, background, tick)

    within = z_views - z_banned[np.array(owners)]
    total = np.concatenate([z_banned, z_views, z_background])
    projection = discriminant_projection(total, within, config.bits, config.regularisation)
    projected = total @ projection.T
    centre, scale = np.median(projected, axis=0), projected.std(axis=0)
    standard = (projected - centre) / scale
    rotation = itq_rotation(standard, seed=seed)
    final_centre = np.median(standard @ rotation, axis=0)
    # outputs' = R^T diag(1/scale) (P (W f + b) - centre) - final_centre, folded into one linear layer.
    mix = rotation.T @ (projection / scale[:, None])
    weight = mix @ head.weight.detach().double().numpy()
    bias = mix @ head.bias.detach().double().numpy() - rotation.T @ (centre / scale) - final_centre
    network.head = torch.nn.Linear(head.in_features, config.bits)
    with torch.no_grad():
        network.head.weight.copy_(torch.from_numpy(weight).float())
        network.head.bias.copy_(torch.from_numpy(bias).float())
    spec = ModelSpec(name=base.spec.name, arch=base.spec.arch, preprocess=preprocess, bits=config.bits)
    meta = {"kind": "list-fit", "seed": seed, "banned_images": len(banned), "config": dataclasses.asdict(config)}
    return Hasher(spec, network), meta
