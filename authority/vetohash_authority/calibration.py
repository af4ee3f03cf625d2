"""Joint calibration: every threshold of a bundle chosen together, against a bound on innocents flagged.

The thresholds that catch the most of the authority's own altered copies of its banned images (every kind in
`alterations.KINDS`, each drawn across its whole range, from a seed stream no list fit or training uses) are
chosen, subject to the share of innocent images flagged by any signal (vetohash.signals, the rule platforms
apply) staying at most the target. That share is not taken at face value: innocent images come in clusters
(crops of one photo, shots of one scene), images of a cluster are flagged together, and what a platform
screens are clusters the authority never saw. The constraint is therefore on an upper prediction bound for
the share flagged in a new group (`Bound`: the groups' spread, Student's t with one degree of freedom fewer than
there are groups, one more flagged image than seen). Innocent groups are sub-folders of the innocent folder
(`groups_of`).

By default any one signal below its threshold is a match. With limits (FORGERY_LIMITS, `authority publish
--forgery-guard`) and two or more signals, the rule asks two signals to agree, or one to be very close
(vetohash.signals): the thresholds searched are the agreement thresholds, and each signal's threshold alone is
the smaller of its agreement threshold and its limit alone. Both are bounded by FORGERY_LIMITS, distances that
images forged by small perturbations mostly did not reach (benchmarks/attacks.py, docs/threat-model.md); the
limits, not the innocent images, then set the thresholds, at a measured cost in recall. A bundle with one
signal keeps one threshold, with no limit.

What the innocent images say about a threshold changes only at their distances, so each signal's candidates
are those distances and the ones just below them; the network's threshold is found by bisection for each
combination of the others', since a larger threshold never flags fewer images.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vetohash import dcthash
from vetohash.bundle import Calibration
from vetohash.errors import VetohashError
from vetohash.hasher import Hasher
from vetohash.matching import nearest, nearest_by_owner
from vetohash.preprocess import query_arrays
from vetohash.signals import CROPS, DCT, NETWORK, flagged

from .alterations import KINDS, make_kind

DEFAULT_CONFIDENCE = 0.9
COPIES_PER_KIND = 2  # altered copies of each banned image per alteration kind
_SEED_TAG = "vetohash-calibration"  # the copies' own random stream, apart from list fits' and training's



class CalibrationError(VetohashError):
    """Calibration cannot run on what it was given (no innocent images, a target out of range, ...)."""


@dataclass(frozen=True)
class Lists:
    """What a bundle will carry, by signal name: the hashes of each signal (the crop hashes' owners are not
    needed: a match is a match whichever banned image it names)."""

    hashes: Mapping[str, np.ndarray]




def distances(hasher: Hasher, lists: Lists, views: Sequence[np.ndarray], dct: np.ndarray) -> dict[str, np.ndarray]:
    """Each query's distance to the nearest hash of each signal, as a platform screens it: the network's hash
    over the query's views (preprocess.query_arrays), its DCT hash (`dct`, one row per query). A signal with
    an empty list is beyond every threshold (its bits + 1)."""
    every, owners = hasher.hash_queries(views)
    out = {}
    for name, hashes in lists.hashes.items():
        if len(hashes) == 0 or len(views) == 0:
            out[name] = np.full(len(views), 8 * hashes.shape[1] + 1, dtype=np.int32)
        elif name == DCT:
            out[name] = nearest(dct, hashes).distance
        else:
            out[name] = nearest_by_owner(every, owners, len(views), hashes).distance
    return out


def altered_copies(images: Sequence[Image.Image], digests: Sequence[str], seed: int,
                   per_kind: int = COPIES_PER_KIND) -> list[Image.Image]:
    """`per_kind` copies of every image under every registered alteration kind (default ranges), each drawn
    from its own random stream keyed by the seed, the image's digest, the kind and the copy's number."""
    kinds = [make_kind(name) for name in sorted(KINDS)]
    out = []
    for image, digest in zip(images, digests, strict=True):
        for kind in kinds:
            for number in range(per_kind):
                rng = random.Random(f"{_SEED_TAG}:{seed}:{digest}:{kind.name}:{number}")
                out.append(kind.draw(rng)(image))
    return out


def positives(hasher: Hasher, lists: Lists, images: Sequence[Image.Image], digests: Sequence[str], seed: int = 0,
              per_kind: int = COPIES_PER_KIND, progress: Callable[[int], None] | None = None
              ) -> dict[str, np.ndarray]:
    """The distances of the authority's altered copies (`altered_copies`) of its banned images to each
    signal's nearest hash: what the thresholds should catch."""
    pre = hasher.spec.preprocess
    out: dict[str, list[np.ndarray]] = {name: [] for name in lists.hashes}
    for image, digest in zip(images, digests, strict=True):  # one image at a time keeps memory flat
        copies = altered_copies([image], [digest], seed, per_kind)
        dct = dcthash.dct_hashes(copies) if DCT in lists.hashes else np.zeros((len(copies), 0), np.uint8)
        for name, values in distances(hasher, lists, [query_arrays(c, pre) for c in copies], dct).items():
            out[name].append(values)
        if progress is not None:
            progress(1)
    return {name: np.concatenate(values) if values else np.zeros(0, np.int32) for name, values in out.items()}


def groups_of(paths: Sequence[Path], root: Path) -> tuple[np.ndarray, bool]:
    """Each innocent image's group (an index) and whether the folder had groups: images in one sub-folder of
    `root` (the first level below it) form a group. Images directly in `root` are a group each; when no image
    is in a sub-folder, every image is its own group (the documented fallback: the bound then assumes the
    images are unrelated, which is optimistic for crops of one photo or shots of one scene)."""
    keys = []
    for path in paths:
        parts = path.relative_to(root).parts
        keys.append(parts[0] if len(parts) > 1 else f"\0{path}")
    names = {key: index for index, key in enumerate(dict.fromkeys(keys))}
    grouped = any(len(path.relative_to(root).parts) > 1 for path in paths)
    return np.array([names[key] for key in keys], dtype=np.int64), grouped


@dataclass(frozen=True)
class Innocents:
    """The innocent images as calibration sees them: each one's distance to each signal's nearest hash, and
    its group."""

    distances: Mapping[str, np.ndarray]
    groups: np.ndarray

    def __post_init__(self) -> None:
        if len(self.groups) == 0:
            raise CalibrationError("calibration needs at least one innocent image")

    @property
    def count(self) -> int:
        return len(self.groups)

    def subset(self, rows: np.ndarray) -> Innocents:
        """The innocent images at `rows`."""
        return Innocents({name: values[rows] for name, values in self.distances.items()}, self.groups[rows])


def t_quantile(probability: float, freedom: int) -> float:
    """Student's t distribution's `probability` quantile with `freedom` >= 1 degrees of freedom: bisection on its
    distribution function, which for whole degrees of freedom is a finite sum (Abramowitz and Stegun 26.7.3 and
    26.7.4) and so needs no special functions."""
    if not 0.0 < probability < 1.0 or freedom < 1:
        raise CalibrationError(f"no t quantile for probability {probability} with {freedom} degrees of freedom")
    if probability < 0.5:
        return -t_quantile(1 - probability, freedom)

    def below(t: float) -> float:  # P(T <= t) for t >= 0
        theta = math.atan(t / math.sqrt(freedom))
        c2, total, term = math.cos(theta) ** 2, 0.0, 1.0
        if freedom % 2:  # odd: (2/pi) (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...))
            for j in range(1, (freedom - 1) // 2 + 1):
                total += term
                term *= c2 * (2 * j) / (2 * j + 1)
            within = 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
        else:  # even: sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
            for j in range(1, freedom // 2 + 1):
                total += term
                term *= c2 * (2 * j - 1) / (2 * j)
            within = math.sin(theta) * total
        return (1 + within) / 2

    high = 1.0
    while below(high) < probability:
        high *= 2
    low = 0.0
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if below(middle) < probability else (low, middle)
    return high


class Bound:
    """The flagged share of an innocent set and an upper prediction bound for the share flagged in a group it
    does not hold (a new sub-folder, a new source of images): with k groups, H of N images flagged and s the
    spread of the groups' shares (their standard deviation, each group weighted by its size),

        bound = (H + 1) / (N + 1) + t(confidence, k - 1) * s * sqrt(1 + 1/k)

    never below the share. The t quantile widens as groups get few (1.64 for 4 groups at 90 %, 1.38 for 10,
    1.29 for 100), which resampling the groups cannot do: it sees no variation between groups beyond that among
    the ones it has. The one more flagged image keeps the bound above zero when none is flagged: with N images,
    nothing below 1/(N+1) can be promised. One group shows no spread at all, so its bound is 1. Without
    sub-folders every image is its own group, and the spread is that of single images.

    The counts also include the images at a distance equal to a threshold (those a threshold one higher would
    flag), so that of two thresholds flagging the same images the lower is preferred; not at a threshold of 0,
    which turns a signal off (a signal under which innocent images lie at distance 0 can still be left out
    while the others are calibrated). With `plain`, the bound is the share itself and nothing else is counted:
    what an oracle that knows the images it is measured on would hold to the target.

    Measured on the unrelated crops of 8 source photos, calibrating on some and holding out the others in every
    way (benchmarks/quality.py, docs/benchmarks.md), it held the share flagged on the held-out photos above 1.5x
    the target in fewer splits than a group bootstrap, a t bound on the mean share or a design-effect
    Clopper-Pearson bound, at a cost of 1-2 points of recall; no bound foresaw a photo unlike all those it was
    calibrated on.
    """

    def __init__(self, groups: np.ndarray, confidence: float, plain: bool = False):
        if not 0.0 < confidence < 1.0:
            raise CalibrationError(f"the confidence must be between 0 and 1 (exclusive), got {confidence}")
        self.confidence = confidence
        self.plain = plain
        self.groups = np.unique(groups, return_inverse=True)[1]
        self.count = int(self.groups.max()) + 1
        self.sizes = np.bincount(self.groups, minlength=self.count).astype(np.float64)
        self.quantile = t_quantile(confidence, self.count - 1) if self.count > 1 else math.inf

    def measure(self, distances: Mapping[str, np.ndarray], thresholds: Mapping[str, int],
                agree: Mapping[str, int] | None = None) -> tuple[float, float]:
        """The share of images flagged by `thresholds` and `agree` (vetohash.signals.flagged), and its upper
        bound."""
        flags = flagged(distances, thresholds, agree)
        point = float(flags.mean())
        if self.plain:
            return point, point
        # The images every threshold one higher would flag; a threshold of 0 turns its signal off (nothing is
        # lower), so its images at distance 0 are no edge.
        def higher(values: Mapping[str, int]) -> dict[str, int]:
            return {name: value + 1 if value > 0 else 0 for name, value in values.items()}

        edges = flagged(distances, higher(thresholds), None if agree is None else higher(agree))
        hits = np.bincount(self.groups, weights=(flags | edges).astype(np.float64), minlength=self.count)
        if self.count == 1:
            return point, 1.0
        images = self.sizes.sum()
        pooled = hits.sum() / images
        spread = math.sqrt(float(np.sum(self.sizes * (hits / self.sizes - pooled) ** 2))
                           / (images / self.count * (self.count - 1)))
        upper = float((hits.sum() + 1) / (images + 1)) + self.quantile * spread * math.sqrt(1 + 1 / self.count)
        return point, min(1.0, max(point, upper))


@dataclass(frozen=True)
class Limits:
    """The largest thresholds of a bundle with two or more signals, as shares of each signal's bits: `alone`,
    below which one signal matches by itself, and `agree`, below which two signals must both be."""

    alone: Mapping[str, float]
    agree: Mapping[str, float]

    def cap(self, name: str, bits: int, agreeing: bool) -> int:
        """The largest threshold, in bits, of signal `name`: its agreement threshold or its threshold alone."""
        return int((self.agree if agreeing else self.alone)[name] * bits)


# Chosen on forgeries against the demo's bundle (docs/threat-model.md, "Forced collisions"): at most 1 in 10
# unrelated images pushed within 4/255 of their pixels, and 3 in 10 within 8/255, reached a threshold alone or
# two agreement thresholds together. In bits: network and crops (160-bit hashes) 20 and 16 alone, 40 and 28 to
# agree; the DCT hash (256 bits), which such perturbations move furthest (to 12 bits of a chosen image at
# 8/255), 8 alone and 76 to agree.
FORGERY_LIMITS = Limits(alone={NETWORK: 0.125, CROPS: 0.1, DCT: 0.03125},
                        agree={NETWORK: 0.25, CROPS: 0.175, DCT: 0.296875})


@dataclass(frozen=True)
class Choice:
    """Thresholds chosen jointly (each signal's alone and, when signals must agree, its agreement threshold),
    what they flag among the innocents (share and bound) and catch among the altered copies."""

    thresholds: dict[str, int]
    share: float
    bound: float
    recall: float
    agree: dict[str, int] | None = None

    def flags(self, distances: Mapping[str, np.ndarray]) -> np.ndarray:
        """Which of the images at `distances` these thresholds flag (vetohash.signals.flagged)."""
        return flagged(distances, self.thresholds, self.agree)


def limited(agree: Mapping[str, int], limits: Limits | None, bits: Mapping[str, int],
            given: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int] | None]:
    """The thresholds alone and the agreement thresholds for agreement thresholds `agree`: with `limits`, each
    signal's alone the smaller of its agreement threshold and its limit alone, except a given threshold,
    which is both; without, the thresholds are `agree` and there is no agreement."""
    if limits is None or len(agree) < 2:
        return dict(agree), None
    alone = {name: given[name] if name in given else min(t, limits.cap(name, bits[name], agreeing=False))
             for name, t in agree.items()}
    return alone, dict(agree)


def choose(innocent: Innocents, caught: Mapping[str, np.ndarray], target: float, bits: Mapping[str, int], *,
           confidence: float = DEFAULT_CONFIDENCE, given: Mapping[str, int] | None = None,
           bound: Bound | None = None, limits: Limits | None = None) -> Choice:
    """The thresholds (one per signal in `innocent.distances`) catching most of `caught` (distances of altered
    copies) while the bound on innocents flagged stays at most `target`; thresholds in `given` are kept as
    they are. With `limits` (FORGERY_LIMITS for the forgery guard) and two or more signals, the thresholds
    searched are the agreement thresholds, up to their limits, and each alone is capped by its limit
    (`limited`); with None (the default), there is no agreement: any signal alone. Ties go to the lower bound. If
    even the given thresholds with the network's at 0 break the target, that choice is returned (its bound
    says so)."""
    if not 0.0 <= target <= 1.0:
        raise CalibrationError(f"the target false-positive rate must be in [0, 1], got {target}")
    given = dict(given or {})
    bound = bound or Bound(innocent.groups, confidence)
    names = list(innocent.distances)
    if NETWORK not in names:
        raise CalibrationError("calibration needs the network's distances")

    def rule(agree: dict[str, int]) -> tuple[dict[str, int], dict[str, int] | None]:
        return limited(agree, limits, bits, given)

    def measure(agree: dict[str, int]) -> tuple[float, float]:
        return bound.measure(innocent.distances, *rule(agree))

    def choice(agree: dict[str, int]) -> Choice:
        share, upper = measure(agree)
        alone, agreeing = rule(agree)
        recall = float(np.mean(flagged(caught, alone, agreeing))) if len(caught[NETWORK]) else 0.0
        return Choice(alone, share, upper, recall, agreeing)

    def candidates(name: str) -> list[int]:
        if name in given:
            return [given[name]]
        # What the innocent images say changes only at their distances v (an image reaches the edge) and just
        # below them; recall only grows with a threshold, so the largest of each stretch is enough.
        values = np.unique(innocent.distances[name]).tolist()  # Python ints: v - 1 of a uint8 0 is -1, not 255
        options = sorted({0, bits[name], *(min(v + step, bits[name]) for v in values for step in (-1, 0)
                                          if v + step >= 0)})
        if limits is not None and len(names) > 1:  # an agreement threshold flags nothing by itself
            cap = limits.cap(name, bits[name], agreeing=True)
            return sorted({cap, *(t for t in options if t < cap)})
        # A threshold that alone flags more than the target is never feasible: stop at the first one.
        alone = [t for t in options if measure({name: t})[1] <= target]
        return alone or [0]

    others = [name for name in names if name != NETWORK]
    network = candidates(NETWORK)
    best: Choice | None = None
    for combo in itertools.product(*(candidates(name) for name in others)):
        fixed = dict(zip(others, combo, strict=True))
        low, high = 0, len(network) - 1  # the largest feasible network candidate, by bisection
        if measure({NETWORK: network[0], **fixed})[1] > target:
            high = -1
        while low < high:
            middle = (low + high + 1) // 2
            if measure({NETWORK: network[middle], **fixed})[1] <= target:
                low = middle
            else:
                high = middle - 1
        if high < 0:
            continue
        found = choice({NETWORK: network[low], **fixed})
        if best is None or (found.recall, -found.bound) > (best.recall, -best.bound):
            best = found
    if best is None:  # nothing keeps within the target: the least that can be done
        best = choice({NETWORK: given.get(NETWORK, 0), **{name: given.get(name, 0) for name in others}})
    return best


def record(choice: Choice, target: float, innocent: Innocents, bound: Bound) -> Calibration:
    """What the bundle records about a calibration."""
    return Calibration(target_fpr=float(target), measured_fpr=choice.share, innocent_images=innocent.count,
                       bound_fpr=choice.bound, confidence=float(bound.confidence),
                       innocent_groups=bound.count)


@dataclass(frozen=True)
class HeldOut:
    """One fold of `cross_check`: thresholds chosen on some groups, and the share they flag on the others."""

    choice: Choice
    calibration_images: int
    calibration_groups: int
    held_out_images: int
    held_out_groups: int
    held_out_share: float


def cross_check(innocent: Innocents, caught: Mapping[str, np.ndarray], target: float, bits: Mapping[str, int], *,
                confidence: float = DEFAULT_CONFIDENCE, folds: int = 2, seed: int = 0,
                limits: Limits | None = None) -> list[HeldOut]:
    """Calibrate on some groups, measure on the others: the groups are dealt into `folds` parts (shuffled by
    `seed`), and each part in turn is held out while the rest calibrate. What a platform will see is the
    held-out share, not the share on the images the thresholds were chosen on."""
    labels = np.unique(innocent.groups)
    if len(labels) < folds:
        raise CalibrationError(f"checking on held-out groups needs at least {folds} innocent groups, got "
                               f"{len(labels)} (put each cluster of innocent images in a sub-folder)")
    order = np.random.default_rng(seed).permutation(labels)
    out = []
    for fold in range(folds):
        held = np.isin(innocent.groups, order[fold::folds])
        fit, test = innocent.subset(np.flatnonzero(~held)), innocent.subset(np.flatnonzero(held))
        choice = choose(fit, caught, target, bits, confidence=confidence, limits=limits)
        share = float(np.mean(choice.flags(test.distances)))
        out.append(HeldOut(choice, fit.count, len(np.unique(fit.groups)), test.count, len(np.unique(test.groups)),
                           share))
    return out


@dataclass(frozen=True)
class Calibrated:
    """A bundle's calibration: the thresholds, the record the bundle carries, and the innocent images'
    distances and the altered copies' they were chosen from."""

    choice: Choice
    calibration: Calibration
    innocent: Innocents
    caught: Mapping[str, np.ndarray]


def calibrate(hasher: Hasher, lists: Lists, banned: Sequence[Image.Image], digests: Sequence[str],
              innocent_views: Sequence[np.ndarray], innocent_dct: np.ndarray, groups: np.ndarray, target: float, *,
              confidence: float = DEFAULT_CONFIDENCE, given: Mapping[str, int] | None = None,
              per_kind: int = COPIES_PER_KIND, progress: Callable[[int], None] | None = None,
              limits: Limits | None = None) -> Calibrated:
    """Hash the innocent images once (their views and DCT hashes, each in its group), alter the banned images,
    and choose every threshold of `lists` together (`choose`)."""
    if len(innocent_views) == 0:
        raise CalibrationError("calibration needs at least one readable innocent image")
    innocent = Innocents(distances(hasher, lists, innocent_views, innocent_dct), groups)
    caught = positives(hasher, lists, banned, digests, per_kind=per_kind, progress=progress)
    bound = Bound(groups, confidence)
    bits = {name: hasher.spec.bits if name != DCT else dcthash.BITS for name in lists.hashes}
    choice = choose(innocent, caught, target, bits, confidence=confidence, given=given, bound=bound, limits=limits)
    return Calibrated(choice, record(choice, target, innocent, bound), innocent, caught)
