"""Signals, and the one rule that decides a match.

A **signal** is one list of banned hashes in a bundle, with its threshold and the hash function a query is
hashed with to be compared with it. A bundle always carries the `network` signal (the network's hash of each
banned image), and may carry `crops` (the network's hashes of crops of each banned image, each naming the
image it was cut from) and `dct` (a classical DCT hash of each banned image, vetohash.dcthash). The signals
fail on different edits, so a close one is evidence; but whoever holds a bundle holds the model too, and can
push an innocent-looking image close to a chosen banned image's hash on whichever signal is easiest
(docs/threat-model.md). So each signal has two thresholds, and

    an image matches a bundle when, for any of its signals, the distance from the image to the nearest hash
    of that signal is strictly below the signal's threshold (its "alone" threshold), or when, for at least
    two of its signals, that distance is strictly below the signal's agreement threshold.

A forgery then needs to fool two signals at once, or one of them by a margin a small perturbation cannot
reach. Bundles before format version 6 carry no agreement thresholds: theirs are their thresholds, and the
rule is "any one signal below its threshold" (two signals below their thresholds already include one).

`flagged` (arrays, the authority's calibration and evaluation) and `matched_by` (one image, the platform's
verdict) are that rule; both compare through `below`, so the two parties count the same images as matched.

Adding a signal is one class here (its name, its hash function, its checks) and its place in the bundle formats
(vetohash.bundle for single files, vetohash.chunked for version 4 folders; docs/bundle-format.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import ClassVar, Self

import numpy as np
from numpy.typing import ArrayLike

from . import dcthash
from .errors import BundleContentError, BundleFormatError
from .matching import ExactIndex, Nearest, nearest_by_owner

# Signal names, in the order they are shown.
NETWORK, CROPS, DCT = "network", "crops", "dct"
ORDER = (NETWORK, CROPS, DCT)
# Hash functions a query is hashed with: the bundle's network, or the DCT hash.
NEURAL_FUNCTION = "neural"
DCT_FUNCTION = dcthash.ALGORITHM


def below(distances: ArrayLike, threshold: int) -> np.ndarray:
    """The comparison every signal uses: a distance matches when strictly below the threshold."""
    return np.asarray(distances) < threshold


AGREEING = 2  # signals that must agree when none is below its threshold alone


def flagged(distances: Mapping[str, ArrayLike], thresholds: Mapping[str, int],
            agree: Mapping[str, int] | None = None) -> np.ndarray:
    """Elementwise: whether the images match by the rule above, for the signals in `thresholds` (their
    distances all of one shape); `agree` holds the agreement thresholds (a signal it leaves out, or None for
    all, agrees at its threshold). Every signal named in `thresholds` needs its distances."""
    missing = sorted(set(thresholds) - set(distances))
    if missing:
        raise ValueError(f"no distances for the signals {missing}")
    if not thresholds:
        raise ValueError("at least one signal is needed")
    alone = np.logical_or.reduce([below(distances[name], threshold) for name, threshold in thresholds.items()])
    agreeing = agreement(thresholds, agree)
    votes = np.sum([below(distances[name], agreeing[name]) for name in thresholds], axis=0)
    return alone | (votes >= AGREEING)


def matched_by(distances: Mapping[str, int | None], thresholds: Mapping[str, int],
               agree: Mapping[str, int] | None = None) -> tuple[str, ...]:
    """The signals that match one image, in ORDER: each below its threshold, and, when at least two are below
    their agreement thresholds, those too; a signal whose distance is None (an empty list) never matches."""
    agreeing = agreement(thresholds, agree)
    present = {name: d for name, d in distances.items() if d is not None}
    alone = {name for name, d in present.items() if bool(below(d, thresholds[name]))}
    votes = {name for name, d in present.items() if bool(below(d, agreeing[name]))}
    return tuple(sorted(alone | (votes if len(votes) >= AGREEING else set()), key=_rank))


def agreement(thresholds: Mapping[str, int], agree: Mapping[str, int] | None) -> dict[str, int]:
    """Each signal's agreement threshold: its own in `agree`, else its threshold (the rule before version 6)."""
    given = agree or {}
    return {name: given.get(name, threshold) for name, threshold in thresholds.items()}


def ordered(names: Mapping[str, object]) -> list[str]:
    """The keys of `names` in the order signals are shown."""
    return sorted(names, key=_rank)


def key(signal: str, field: str) -> str:
    """A flat field name for one signal (JSON keys, CLI columns): the network's unprefixed ("distance"), the
    others prefixed with their name ("dct_distance", "crops_threshold")."""
    return field if signal == NETWORK else f"{signal}_{field}"


def _rank(name: str) -> int:
    return ORDER.index(name) if name in ORDER else len(ORDER)


@dataclass(frozen=True)
class Queries:
    """Images to compare with signals: for each hash function, the hash of every view of every image and the
    image each view belongs to (increasing; an image's first view is the image itself)."""

    count: int
    views: Mapping[str, tuple[np.ndarray, np.ndarray]]


class Signal:
    """One list of banned hashes with its threshold; subclasses say which hash function and which checks."""

    name: ClassVar[str]
    function: ClassVar[str]
    hashes: np.ndarray
    threshold: int

    @property
    def bits(self) -> int:
        """Width of its hashes, the largest meaningful threshold."""
        raise NotImplementedError

    def id_index(self, rows: np.ndarray) -> np.ndarray:
        """For rows of `hashes`, the index in the bundle's ids of the banned image each belongs to."""
        return rows

    def nearest(self, queries: Queries) -> Nearest | None:
        """Each image's nearest hash over its views, as an index into the bundle's ids and a distance; None
        when the list or the batch is empty."""
        if len(self.hashes) == 0 or queries.count == 0:
            return None
        every, owners = queries.views[self.function]
        found = nearest_by_owner(every, owners, queries.count, self.index)
        return Nearest(self.id_index(found.index), found.distance)

    @cached_property
    def index(self) -> ExactIndex:
        """The list loaded into the exact index, on the first search, and kept with the signal."""
        return ExactIndex(self.hashes)

    def with_threshold(self, threshold: int) -> Self:
        """The same list with another threshold (checked like the first)."""
        return replace(self, threshold=threshold)  # type: ignore[type-var]

    def _check_threshold(self) -> None:
        check_threshold(f"{self.name} threshold", self.threshold, self.bits)


def check_threshold(what: str, value: object, bits: int) -> None:
    """An integer in [0, bits] (bool, an int subclass, is refused)."""
    if type(value) is not int or not 0 <= value <= bits:
        raise BundleFormatError(f"bundle {what} must be an integer in [0, {bits}], got {value!r}")


def _check_hashes(what: str, hashes: object, width: int) -> None:
    if not isinstance(hashes, np.ndarray) or hashes.dtype != np.uint8 or hashes.ndim != 2 \
            or hashes.shape[1] != width:
        raise BundleContentError(f"bundle {what} must be an (N, {width}) uint8 array")


@dataclass(frozen=True, eq=False)
class NetworkSignal(Signal):
    """The network's hash of every banned image, in the order of the bundle's ids."""

    name: ClassVar[str] = NETWORK
    function: ClassVar[str] = NEURAL_FUNCTION
    hashes: np.ndarray
    threshold: int
    width: int  # the model's hash bits

    def __post_init__(self) -> None:
        _check_hashes("hashes", self.hashes, (self.width + 7) // 8)
        self._check_threshold()

    @property
    def bits(self) -> int:
        return self.width


@dataclass(frozen=True, eq=False)
class CropSignal(Signal):
    """The network's hashes of crops of the banned images (a cropped or shifted upload lies nearer one of its
    source's crops than the source), each with the index in the bundle's ids of the image it was cut from.
    Crops look more alike across images than whole images do, so they have a threshold of their own."""

    name: ClassVar[str] = CROPS
    function: ClassVar[str] = NEURAL_FUNCTION
    hashes: np.ndarray  # (M, hash bytes) uint8: as wide as the model's hashes (the bundle checks)
    owners: np.ndarray  # (M,) int64, each in [0, number of ids)
    threshold: int

    def __post_init__(self) -> None:
        if not isinstance(self.hashes, np.ndarray) or self.hashes.dtype != np.uint8 or self.hashes.ndim != 2:
            raise BundleContentError("bundle crop hashes must be an (M, hash bytes) uint8 array")
        if (not isinstance(self.owners, np.ndarray) or self.owners.dtype != np.int64
                or self.owners.shape != (len(self.hashes),)):
            raise BundleContentError(f"bundle crop owners must be {len(self.hashes)} int64 id indices, one per "
                                     "crop hash")
        self._check_threshold()

    @property
    def bits(self) -> int:
        """The bits its bytes hold (the bundle holds the threshold to the model's own width)."""
        return 8 * self.hashes.shape[1]

    def id_index(self, rows: np.ndarray) -> np.ndarray:
        return self.owners[rows]


@dataclass(frozen=True, eq=False)
class DctSignal(Signal):
    """The DCT hash (vetohash.dcthash) of every banned image, in the order of the bundle's ids: it holds on
    geometric edits where the network's hash does not, and the reverse."""

    name: ClassVar[str] = DCT
    function: ClassVar[str] = DCT_FUNCTION
    hashes: np.ndarray
    threshold: int
    algorithm: str = dcthash.ALGORITHM

    def __post_init__(self) -> None:
        if self.algorithm != dcthash.ALGORITHM:
            raise BundleFormatError(f"unknown DCT hash algorithm {self.algorithm!r}; this vetohash computes "
                                    f"{dcthash.ALGORITHM!r}")
        _check_hashes("DCT hashes", self.hashes, dcthash.HASH_BYTES)
        self._check_threshold()

    @property
    def bits(self) -> int:
        return dcthash.BITS


CLASSES: dict[str, type[Signal]] = {cls.name: cls for cls in (NetworkSignal, CropSignal, DctSignal)}
