"""Joint calibration: the chosen thresholds against a brute-force search, the prediction bound over groups and
its t quantiles, innocent groups from sub-folders, the authority's own altered copies, and the held-out check."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vetohash.signals import CROPS, DCT, NETWORK, flagged
from vetohash_authority.alterations import KINDS, make_kind
from vetohash_authority.calibration import (FORGERY_LIMITS, Bound, CalibrationError, Innocents, Limits,
                                            altered_copies, choose, cross_check, groups_of, t_quantile)
from vetohash_authority.config import AlterationPlan
from vetohash_authority.pairs import draw_edit

BITS = {NETWORK: 12, CROPS: 12, DCT: 16}


def sample(rng: np.random.Generator, innocents: int = 60, copies: int = 80, groups: int = 12
           ) -> tuple[Innocents, dict[str, np.ndarray]]:
    """Innocent distances spread high, copies' low, both overlapping, in `groups` groups of innocents."""
    innocent = Innocents({name: rng.integers(bits // 3, bits + 1, innocents) for name, bits in BITS.items()},
                         rng.integers(0, groups, innocents))
    caught = {name: rng.integers(0, bits // 2 + 3, copies) for name, bits in BITS.items()}
    return innocent, caught


def test_choose_finds_the_best_feasible_thresholds_by_brute_force() -> None:
    """Without agreement (the rule before format version 6), no combination of thresholds whose bound is within
    the target catches more copies, nor as many with a lower bound; the chosen one is within the target."""
    rng = np.random.default_rng(3)
    for _ in range(6):
        innocent, caught = sample(rng)
        target = float(rng.choice([0.05, 0.1, 0.2]))
        bound = Bound(innocent.groups, 0.8)
        chosen = choose(innocent, caught, target, BITS, bound=bound, limits=None)
        best = (-1.0, 0.0)
        for combo in itertools.product(*(range(bits + 1) for bits in BITS.values())):
            thresholds = dict(zip(BITS, combo, strict=True))
            _, upper = bound.measure(innocent.distances, thresholds)
            if upper <= target:
                best = max(best, (float(np.mean(flagged(caught, thresholds))), -upper))
        assert chosen.bound <= target
        assert (chosen.recall, -chosen.bound) == pytest.approx(best)
        assert chosen.share == pytest.approx(np.mean(flagged(innocent.distances, chosen.thresholds)))


def test_choose_gives_the_same_thresholds_whatever_the_distances_integer_type() -> None:
    """Distances may come as the smallest unsigned type that holds them (benchmarks keep (queries, banned)
    matrices as uint8): a distance of 0 has no candidate below it, whatever the type, so the choice is the
    same as with int64 distances."""
    innocent, caught = sample(np.random.default_rng(11))
    innocent = Innocents({name: np.r_[values, 0] for name, values in innocent.distances.items()},
                         np.r_[innocent.groups, 0])
    wide = choose(innocent, caught, 0.2, BITS, limits=None)
    narrow = choose(Innocents({k: v.astype(np.uint8) for k, v in innocent.distances.items()}, innocent.groups),
                    {k: v.astype(np.uint8) for k, v in caught.items()}, 0.2, BITS, limits=None)
    assert narrow.thresholds == wide.thresholds and narrow.recall == wide.recall


def test_choose_finds_the_best_agreement_thresholds_within_their_limits_by_brute_force() -> None:
    """With limits, no agreement thresholds within them (each signal's threshold alone the smaller of its
    agreement threshold and its limit alone) catch more copies within the target, nor as many with a lower
    bound; the chosen ones keep within the limits."""
    limits = Limits(alone={NETWORK: 0.25, CROPS: 0.2, DCT: 0.0}, agree={NETWORK: 0.75, CROPS: 0.6, DCT: 0.8})
    caps = {name: limits.cap(name, bits, agreeing=True) for name, bits in BITS.items()}
    alone_caps = {name: limits.cap(name, bits, agreeing=False) for name, bits in BITS.items()}
    rng = np.random.default_rng(7)
    for _ in range(4):
        innocent, caught = sample(rng)
        target = float(rng.choice([0.05, 0.1, 0.2]))
        bound = Bound(innocent.groups, 0.8)
        chosen = choose(innocent, caught, target, BITS, bound=bound, limits=limits)
        best = (-1.0, 0.0)
        for combo in itertools.product(*(range(caps[name] + 1) for name in BITS)):
            agree = dict(zip(BITS, combo, strict=True))
            alone = {name: min(t, alone_caps[name]) for name, t in agree.items()}
            _, upper = bound.measure(innocent.distances, alone, agree)
            if upper <= target:
                best = max(best, (float(np.mean(flagged(caught, alone, agree))), -upper))
        assert chosen.bound <= target and chosen.agree is not None
        assert all(chosen.agree[name] <= caps[name] and chosen.thresholds[name] <= alone_caps[name] for name in BITS)
        assert (chosen.recall, -chosen.bound) == pytest.approx(best)
        assert chosen.share == pytest.approx(np.mean(chosen.flags(innocent.distances)))


def test_agreement_catches_more_than_the_same_limits_alone_would() -> None:
    """Copies near on two signals but on neither very near are what agreement thresholds catch: with the
    thresholds alone held to their limits and no agreement, they would be missed."""
    innocent, caught = sample(np.random.default_rng(8))
    limits = Limits(alone={NETWORK: 0.25, CROPS: 0.25, DCT: 0.25}, agree={NETWORK: 0.75, CROPS: 0.75, DCT: 0.75})
    chosen = choose(innocent, caught, 0.1, BITS, confidence=0.8, limits=limits)
    capped = {name: limits.cap(name, bits, agreeing=False) for name, bits in BITS.items()}
    assert chosen.recall > float(np.mean(flagged(caught, capped)))
    # One signal has nothing to agree with: its one threshold is calibrated as before, with no limit.
    single = choose(Innocents({NETWORK: innocent.distances[NETWORK]}, innocent.groups), {NETWORK: caught[NETWORK]},
                    0.1, BITS, confidence=0.8, limits=limits)
    assert single.agree is None and single == choose(Innocents({NETWORK: innocent.distances[NETWORK]},
                                                               innocent.groups), {NETWORK: caught[NETWORK]}, 0.1,
                                                     BITS, confidence=0.8, limits=None)
    assert FORGERY_LIMITS.alone.keys() == FORGERY_LIMITS.agree.keys() == {NETWORK, CROPS, DCT}


def test_given_thresholds_are_kept_and_the_others_chosen_around_them() -> None:
    innocent, caught = sample(np.random.default_rng(4))
    chosen = choose(innocent, caught, 0.1, BITS, confidence=0.8, given={DCT: 3, NETWORK: 3}, limits=None)
    assert (chosen.thresholds[DCT], chosen.thresholds[NETWORK]) == (3, 3) and chosen.bound <= 0.1
    free = choose(innocent, caught, 0.1, BITS, confidence=0.8, limits=None)
    assert free.recall >= chosen.recall
    # Given thresholds that break the target on their own are still kept, and the bound says so.
    over = choose(innocent, caught, 0.1, BITS, confidence=0.8, given={NETWORK: 12}, limits=None)
    assert over.thresholds[NETWORK] == 12 and over.bound > 0.1
    # With agreement, a given threshold is the signal's threshold alone and its agreement threshold, unlimited.
    agreeing = choose(innocent, caught, 0.1, BITS, confidence=0.8, given={DCT: 3, NETWORK: 3},
                      limits=FORGERY_LIMITS)
    assert agreeing.agree is not None and (agreeing.agree[DCT], agreeing.agree[NETWORK]) == (3, 3)
    assert (agreeing.thresholds[DCT], agreeing.thresholds[NETWORK]) == (3, 3)


def test_the_bound_grows_when_the_flagged_images_share_a_group() -> None:
    """Ten flagged images of 200 in one group of ten are weaker evidence of a low rate than ten flagged images
    spread over ten groups: the bound is higher; it is never below the share, and the same every time."""
    distances = {NETWORK: np.full(200, 50)}
    distances[NETWORK][:10] = 1  # flagged below a threshold of 5, and no image sits at 5
    clustered = np.repeat(np.arange(20), 10)  # images 0..9 are group 0
    spread = np.arange(200) % 20  # images 0..9 are in ten different groups
    high = Bound(clustered, 0.9).measure(distances, {NETWORK: 5})
    low = Bound(spread, 0.9).measure(distances, {NETWORK: 5})
    assert high[0] == low[0] == 0.05
    assert high[1] > low[1] >= 0.05
    assert Bound(clustered, 0.9).measure(distances, {NETWORK: 5}) == high
    with pytest.raises(CalibrationError, match="confidence"):
        Bound(clustered, 1.0)


def test_an_image_at_the_threshold_counts_toward_the_bound() -> None:
    """An image at a distance equal to the threshold is not flagged, but the bound counts it, so the lower of
    two thresholds flagging the same images has the lower bound; one bit lower, nothing is counted but the one
    more image every bound assumes. With `plain` the bound is the share itself."""
    distances = {NETWORK: np.arange(100, dtype=np.int32) + 10}
    groups = np.arange(100)
    share, upper = Bound(groups, 0.9).measure(distances, {NETWORK: 10})
    assert share == 0.0 and upper > 2 / 101
    assert Bound(groups, 0.9).measure(distances, {NETWORK: 9}) == (0.0, 1 / 101)  # no image at 9
    assert Bound(groups, 0.5, plain=True).measure(distances, {NETWORK: 10}) == (0.0, 0.0)


def test_the_bound_is_a_t_prediction_bound_for_a_new_group() -> None:
    """Worked by hand: 4 groups of 10 images, 2 flagged in the first: pooled share (2+1)/(40+1), spread of the
    groups' shares 0.1 (shares 0.2, 0, 0, 0 about 0.05, weighted by size), t(0.9, 3) = 1.6377; nothing flagged
    gives 1/(N+1); one group gives no bound (1)."""
    groups = np.repeat(np.arange(4), 10)
    distances = {NETWORK: np.full(40, 50)}
    distances[NETWORK][:2] = 1
    share, upper = Bound(groups, 0.9).measure(distances, {NETWORK: 5})
    assert share == 0.05
    assert upper == pytest.approx(3 / 41 + 1.637744 * 0.1 * np.sqrt(1 + 1 / 4), abs=1e-6)
    far = {NETWORK: np.full(40, 50)}
    assert Bound(groups, 0.9).measure(far, {NETWORK: 5}) == (0.0, 1 / 41)
    assert Bound(np.zeros(40), 0.9).measure(far, {NETWORK: 5}) == (0.0, 1.0)


def test_t_quantiles_match_the_tables() -> None:
    """Student's t quantiles from the finite sums, against published table values (odd and even degrees of
    freedom, the tails either side); the quantile falls toward the normal's as groups grow."""
    table = {(0.9, 1): 3.077684, (0.9, 3): 1.637744, (0.95, 2): 2.919986, (0.99, 7): 2.997952,
             (0.975, 10): 2.228139, (0.9, 120): 1.288646, (0.1, 5): -1.475884, (0.5, 4): 0.0}
    for (probability, freedom), value in table.items():
        assert t_quantile(probability, freedom) == pytest.approx(value, abs=1e-5)
    assert 1.2815 < t_quantile(0.9, 20000) < t_quantile(0.9, 100) < t_quantile(0.9, 10) < t_quantile(0.9, 3)
    with pytest.raises(CalibrationError):
        t_quantile(0.9, 0)


def test_a_signal_turned_off_counts_no_edge_and_the_others_are_still_calibrated() -> None:
    """A threshold of 0 flags nothing and has nothing lower to prefer, so innocent images at distance 0 under
    it do not count toward the bound: a network under which innocents lie as near as the banned images is left
    at 0 while the DCT threshold is still chosen (was: every choice infeasible, every threshold 0)."""
    innocent = Innocents({NETWORK: np.zeros(10, np.int32), DCT: np.full(10, 110)}, np.arange(10))
    assert Bound(innocent.groups, 0.9).measure(innocent.distances, {NETWORK: 0, DCT: 100}) == (0.0, 1 / 11)
    caught = {NETWORK: np.zeros(20, np.int32), DCT: np.arange(20)}
    choice = choose(innocent, caught, 0.2, {NETWORK: 16, DCT: 256}, limits=None)
    assert choice.thresholds[NETWORK] == 0 and choice.thresholds[DCT] == 109 and choice.recall == 1.0


def test_groups_are_the_first_sub_folder_with_a_fallback_of_one_image_each(tmp_path: Path) -> None:
    root = tmp_path / "innocent"
    paths = [root / "a" / "1.jpg", root / "a" / "deep" / "2.jpg", root / "b" / "3.jpg", root / "4.jpg"]
    groups, grouped = groups_of(paths, root)
    assert grouped and groups.tolist() == [0, 0, 1, 2]
    flat, grouped = groups_of([root / "1.jpg", root / "2.jpg"], root)
    assert not grouped and flat.tolist() == [0, 1]


def test_the_authority_s_copies_cover_every_kind_apart_from_training_s_stream() -> None:
    """Every registered kind, `per_kind` copies each, the same pixels every time, and not the copies that
    training's stream draws with the same seed."""
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    copies = altered_copies([image], ["d1"], seed=0, per_kind=2)
    assert len(copies) == 2 * len(KINDS)
    again = altered_copies([image], ["d1"], seed=0, per_kind=2)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(copies, again))
    rotation = sorted(KINDS).index("rotation")
    trained = draw_edit(AlterationPlan(make_kind("rotation"), 1), 0, "d1", 0)(image)
    assert not np.array_equal(np.asarray(copies[2 * rotation]), np.asarray(trained))


def test_cross_check_holds_out_whole_groups() -> None:
    innocent, caught = sample(np.random.default_rng(5), groups=6)
    folds = cross_check(innocent, caught, 0.1, BITS, confidence=0.8)
    assert len(folds) == 2
    assert sum(fold.held_out_images for fold in folds) == innocent.count
    assert all(fold.calibration_images + fold.held_out_images == innocent.count for fold in folds)
    assert sum(fold.held_out_groups for fold in folds) == len(np.unique(innocent.groups))
    with pytest.raises(CalibrationError, match="at least 2 innocent groups"):
        cross_check(innocent.subset(np.flatnonzero(innocent.groups == innocent.groups[0])), caught, 0.1, BITS)
