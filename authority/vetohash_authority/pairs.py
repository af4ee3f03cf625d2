"""Which altered copies exist, which are held out, and the positive and negative pairs built from them.

Paper, section 2.1: a positive pair is (source image, one of its own altered copies), a negative pair is
(source i, source j) with i != j, as many negatives as positives (they repeat: 110 images give only 5,995
distinct ones). 75 % of the pairs train and 25 % validate, and the altered copies used to validate are never
seen in training. Here the split is made per source image and per kind (25 of each image's 100 rotations are
held out, and so on), and the distinct negative pairs are split the same way, so validation measures images
and pairings the network never trained on.

Every choice is a pure function of the seed and the images' content digests, so `evaluate` can rebuild the
held-out copies without storing them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vetohash.errors import VetohashError

from .alterations import Edit
from .config import AlterationPlan

ENUMERATE_LIMIT = 1_000_000  # distinct source pairs listed outright; above it they are sampled


def copy_rng(seed: int, digest: str, kind: str, number: int) -> random.Random:
    """The generator that draws copy `number` of `kind` for the image with content `digest`."""
    return random.Random(f"vetohash-copy:{seed}:{digest}:{kind}:{number}")


def draw_edit(plan: AlterationPlan, seed: int, digest: str, number: int) -> Edit:
    """Copy `number` of the plan's kind for one image: the same edit whenever asked."""
    return plan.kind.draw(copy_rng(seed, digest, plan.name, number))


def validation_numbers(seed: int, digest: str, kind: str, count: int, share: float) -> frozenset[int]:
    """Which of an image's `count` copies of `kind` are held out: round(count * share) of them."""
    held = min(count, round(count * share))
    return frozenset(random.Random(f"vetohash-split:{seed}:{digest}:{kind}").sample(range(count), held))


@dataclass(frozen=True)
class Copies:
    """The altered copies, in generation order: for each source, for each plan, numbers 0..count-1."""

    source: np.ndarray  # (M,) int64 index of the source image
    plan: np.ndarray  # (M,) int64 index into the plans
    number: np.ndarray  # (M,) int64 copy number within (source, plan)
    validation: np.ndarray  # (M,) bool: held out from training

    def __len__(self) -> int:
        return len(self.source)


def plan_copies(digests: Sequence[str], plans: Sequence[AlterationPlan], seed: int, share: float) -> Copies:
    """Lay out every altered copy and mark the held-out ones (per image, per kind)."""
    source, plan, number, validation = [], [], [], []
    for s, digest in enumerate(digests):
        for p, alteration in enumerate(plans):
            held = validation_numbers(seed, digest, alteration.name, alteration.count, share)
            for n in range(alteration.count):
                source.append(s)
                plan.append(p)
                number.append(n)
                validation.append(n in held)
    return Copies(np.asarray(source, np.int64), np.asarray(plan, np.int64), np.asarray(number, np.int64),
                  np.asarray(validation, bool))


@dataclass(frozen=True)
class Pairs:
    """Pairs as row indices into the pool [sources..., copies...] and labels (1 = must be close)."""

    left: np.ndarray
    right: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.label)


@dataclass(frozen=True)
class PairSets:
    """Training and validation pairs; `shared_negatives` when too few images to keep negatives apart."""

    train: Pairs
    validation: Pairs
    shared_negatives: bool


def pair_is_validation(i: np.ndarray, j: np.ndarray, seed: int, share: float) -> np.ndarray:
    """Whether the unordered source pair {i, j} validates: a seeded hash (splitmix64) of the pair < share."""
    low, high = np.minimum(i, j).astype(np.uint64), np.maximum(i, j).astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (low << np.uint64(32)) ^ high ^ np.uint64(seed & 0xFFFFFFFFFFFFFFFF)
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53) < share


def make_pairs(copies: Copies, n_sources: int, seed: int, negatives_per_positive: float = 1.0) -> PairSets:
    """Positive pairs from the copies of each part, and as many (times the ratio) negative source pairs."""
    if n_sources < 2:
        raise VetohashError("training needs at least 2 distinct images (negative pairs pair two of them)")
    rng = np.random.default_rng([seed, 0x5EED])
    share = float(copies.validation.mean()) if len(copies) else 0.0
    parts = {}
    shared = False
    for name, mask in (("train", ~copies.validation), ("validation", copies.validation)):
        rows = np.flatnonzero(mask)
        pos_left, pos_right = copies.source[rows], n_sources + rows
        wanted = round(len(rows) * negatives_per_positive)
        neg_left, neg_right, overlap = _negatives(n_sources, wanted, name == "validation", share, seed, rng)
        shared |= overlap
        left = np.concatenate([pos_left, neg_left])
        right = np.concatenate([pos_right, neg_right])
        label = np.concatenate([np.ones(len(rows), np.float32), np.zeros(len(neg_left), np.float32)])
        parts[name] = Pairs(left.astype(np.int64), right.astype(np.int64), label)
    return PairSets(parts["train"], parts["validation"], shared)


def _negatives(n: int, wanted: int, validation: bool, share: float, seed: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, bool]:
    """`wanted` (i, j) pairs, i != j, from this part's distinct pairs, each repeated as evenly as possible."""
    empty = np.zeros(0, np.int64)
    if wanted == 0:
        return empty, empty, False
    total = n * (n - 1) // 2
    if total <= ENUMERATE_LIMIT:
        i, j = np.triu_indices(n, 1)
        mine = pair_is_validation(i, j, seed, share) == validation
        overlap = not mine.any()
        if overlap:  # too few images for this part to have pairs of its own: use them all
            mine[:] = True
        i, j = i[mine], j[mine]
        reps = -(-wanted // len(i))
        order = np.concatenate([rng.permutation(len(i)) for _ in range(reps)])[:wanted]
        i, j = i[order], j[order]
    else:
        i_parts, j_parts, have = [], [], 0
        while have < wanted:
            a = rng.integers(0, n, 2 * wanted)
            b = rng.integers(0, n, 2 * wanted)
            keep = (a != b) & (pair_is_validation(a, b, seed, share) == validation)
            i_parts.append(a[keep])
            j_parts.append(b[keep])
            have += int(keep.sum())
        i, j = np.concatenate(i_parts)[:wanted], np.concatenate(j_parts)[:wanted]
        overlap = False
    flip = rng.random(len(i)) < 0.5  # which image sits left does not matter to the loss; mix it anyway
    return np.where(flip, j, i).astype(np.int64), np.where(flip, i, j).astype(np.int64), overlap
