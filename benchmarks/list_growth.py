"""How the share of innocent images flagged grows with the list, at fixed and at recalibrated thresholds, and an
extrapolation to 10 million banned images from the measured distance distributions.

    nice -n 5 .venv/bin/python benchmarks/list_growth.py --banned 2000 --sizes 110 1000 2000

One model (the shipped copy detector fitted to the first --fit banned images, as `authority train` does) hashes
every banned image (network hash, DCT hash, crop hashes) and the unrelated images, so a longer list is the
same list with more images, as when deltas add to it without a new model. For each list size N (the first N
banned images): the share of unrelated images flagged by the any-signal rule (bundle formats before 6, and
version 4 lists) at the thresholds calibrated for 1 % at the smallest size, and the recall of altered copies
of the first --altered banned images at those thresholds; then the same with thresholds recalibrated for 1 % at N (what
`authority publish --innocent` does, seeing the whole list: vetohash_authority.calibration.choose, every
threshold chosen together to catch the most altered copies while the prediction bound on the share flagged
(calibration.Bound), each unrelated image its own group, stays within the target).

Extrapolation: for an unrelated image and one banned image, q(T) is the share of such pairs flagged by any
signal at thresholds T (network and DCT distance to the image's hash, network distance to its nearest crop
hash). If each banned image flags an innocent image independently with probability q, a list of N flags
1 - (1 - q)^N of innocent images; the printout compares that with the measured shares. At 10 million, q must
be about 1e-9 for 1 %: far below what a few million measured pairs resolve, so each signal's pair distances
are modelled as a normal distribution with their measured mean and standard deviation, and each threshold is
the largest whose modelled tail keeps that signal's share of q (a fixed split: the DCT hash a half, crop hashes
a quarter, the network the rest, as publishing split the budget before the joint calibration).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "examples"), str(ROOT / "benchmarks")]

from make_example_images import BANNED_SEED, UNRELATED_SEED, crops, source_photos  # noqa: E402
from quality import altered_copies, hasher_queries  # noqa: E402

from edits import EDITS  # noqa: E402
from vetohash.dcthash import dct_hashes  # noqa: E402
from vetohash.signals import CROPS, DCT, NETWORK, flagged  # noqa: E402
from vetohash.modelfile import read_model  # noqa: E402
from vetohash_authority.cropviews import crop_hashes  # noqa: E402
from vetohash_authority.calibration import Innocents, choose  # noqa: E402
from vetohash_authority.listfit import BASE_MODEL, ListFitConfig, fit_to_list  # noqa: E402

TARGET = 0.01
FAR = 10_000_000
ROWS = 256


def distances(queries: np.ndarray, query_of: np.ndarray, banned: np.ndarray, banned_of: np.ndarray,
              count: int) -> np.ndarray:
    """(queries, `count` banned images) uint8: each query's least distance over its views to each banned
    image's hashes (banned_of: the image of each hash, increasing; 255 for an image without any), by +1/-1
    matrix products in blocks of rows."""
    bits = banned.shape[1] * 8
    signs = np.unpackbits(banned, axis=1).astype(np.float32) * 2 - 1
    image_starts = np.flatnonzero(np.r_[True, np.diff(banned_of) != 0])
    view_starts = np.flatnonzero(np.r_[True, np.diff(query_of) != 0])
    out = np.full((len(view_starts), count), 255, np.uint8)
    columns = banned_of[image_starts]
    for first in range(0, len(view_starts), ROWS):
        rows = slice(view_starts[first], view_starts[first + ROWS] if first + ROWS < len(view_starts) else None)
        q = np.unpackbits(queries[rows], axis=1).astype(np.float32) * 2 - 1
        d = ((bits - q @ signs.T) / 2).astype(np.int16)
        d = np.minimum.reduceat(d, image_starts, axis=1)
        out[first:first + ROWS, columns] = np.minimum.reduceat(d, view_starts[first:first + ROWS] - view_starts[first],
                                                               axis=0)
    return out


def nearest(d: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Per query and signal: the distance to the nearest of the first n banned images."""
    return {name: values[:, :n].min(axis=1) for name, values in d.items()}


def flagged_at(d: dict[str, np.ndarray], t: dict[str, int], n: int) -> np.ndarray:
    """Per query: flagged by any signal (vetohash.signals.flagged) against the first n banned images."""
    return flagged(nearest(d, n), t)


def calibrated(innocent: dict[str, np.ndarray], altered: dict[str, np.ndarray], n: int, bits: int) -> dict[str, int]:
    """The thresholds `authority publish --innocent` would choose for a list of the first n banned images."""
    found = nearest(innocent, n)
    choice = choose(Innocents(found, np.arange(len(found[NETWORK]))), nearest(altered, n), TARGET,
                    {NETWORK: bits, CROPS: bits, DCT: 256}, limits=None)  # the any-signal rule, as measured
    return choice.thresholds


def pair_rate(d: dict[str, np.ndarray], t: dict[str, int], n: int) -> float:
    return float(flagged({name: values[:, :n] for name, values in d.items()}, t).mean())


def text(t: dict[str, int]) -> str:
    return f"{t[NETWORK]}|{t[DCT]}|{t[CROPS]}"


def normal_threshold(pairs: np.ndarray, rate: float) -> tuple[int, float]:
    """The largest t whose modelled share of pair distances below t is at most `rate`, and that share."""
    mean, sd = float(pairs.mean()), float(pairs.std())
    share = [0.5 * math.erfc(-((t - 0.5 - mean) / sd) / math.sqrt(2)) for t in range(0, 257)]
    t = max(t for t in range(257) if share[t] <= rate)
    return t, share[t]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--banned", type=int, default=2000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[110, 1000, 2000])
    parser.add_argument("--fit", type=int, default=110, help="banned images the model is fitted to")
    parser.add_argument("--altered", type=int, default=110, help="banned images whose altered copies are queried")
    parser.add_argument("--unrelated", type=int, default=1085)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path,
                        help="a model file fitted to the first --fit banned images (`authority train examples/banned`), "
                             "instead of fitting one here")
    args = parser.parse_args()
    start = time.time()
    banned = crops(source_photos("banned"), args.banned, 128, BANNED_SEED)
    unrelated = crops(source_photos("unrelated"), args.unrelated, 128, UNRELATED_SEED)
    altered = altered_copies(banned[:args.altered], EDITS, args.seed)
    if args.model is not None:
        hasher, _ = read_model(args.model)
    else:
        hasher, _ = fit_to_list(read_model(BASE_MODEL)[0], banned[:args.fit], ListFitConfig(), seed=args.seed)
    print(f"{len(banned)} banned, {len(unrelated)} unrelated, {len(altered)} altered copies; model "
          f"{args.model or f'fitted to the first {args.fit}'} ready in {time.time() - start:.0f} s", flush=True)
    queries = hasher_queries(hasher)
    own = np.arange(len(banned))
    list_neural = hasher.hash_images(banned)
    list_crops, crop_of = crop_hashes(hasher, banned)
    list_dct = dct_hashes(banned)
    d: dict[str, dict[str, np.ndarray]] = {}
    for name, images in (("innocent", unrelated), ("altered", [image for _, _, image in altered])):
        views, view_of = queries(images)
        dct = dct_hashes(images)
        d[name] = {NETWORK: distances(views, view_of, list_neural, own, len(banned)),
                   CROPS: distances(views, view_of, list_crops, crop_of, len(banned)),
                   DCT: distances(dct, np.arange(len(images)), list_dct, own, len(banned))}
    print(f"hashed and compared in {time.time() - start:.0f} s; {len(list_crops)} crop hashes", flush=True)
    bits = hasher.spec.bits
    fixed = calibrated(d["innocent"], d["altered"], args.sizes[0], bits)
    q_fixed = pair_rate(d["innocent"], fixed, args.banned)
    print(f"\nthresholds calibrated for {TARGET:.0%} at {args.sizes[0]} banned images, then held: network "
          f"{fixed[NETWORK]}, DCT {fixed[DCT]}, crops {fixed[CROPS]}; pair flag rate q = {q_fixed:.2e}")
    print(f"{'banned':>8} {'flagged (fixed)':>16} {'1-(1-q)^N':>10} {'recall (fixed)':>15} "
          f"{'thresholds at N':>16} {'flagged':>8} {'recall':>7}")
    for n in args.sizes:
        t = calibrated(d["innocent"], d["altered"], n, bits)
        print(f"{n:>8,} {flagged_at(d['innocent'], fixed, n).mean():>16.2%} {1 - (1 - q_fixed) ** n:>10.2%} "
              f"{flagged_at(d['altered'], fixed, n).mean():>15.2%} {text(t):>16} "
              f"{flagged_at(d['innocent'], t, n).mean():>8.2%} {flagged_at(d['altered'], t, n).mean():>7.2%}")
    print(f"{FAR:>8,} {1 - (1 - q_fixed) ** FAR:>16.2%} (extrapolated at the fixed thresholds)")
    rate = 1 - (1 - TARGET) ** (1 / FAR)
    shares = {DCT: rate / 2, CROPS: rate / 4, NETWORK: rate / 4}
    chosen = {}
    for signal, share in shares.items():
        pairs = d["innocent"][signal].ravel()
        chosen[signal], modelled = normal_threshold(pairs, share)
        measured = {t: float((pairs < t).mean()) for t in (chosen[signal], fixed[signal])}
        print(f"{signal}: pair distances mean {pairs.mean():.1f}, sd {pairs.std():.1f}; at 10 million a share of "
              f"{share:.1e} needs threshold {chosen[signal]} (modelled share {modelled:.1e}; measured share below "
              f"it {measured[chosen[signal]]:.1e} of {pairs.size:,} pairs; at the fixed {fixed[signal]}: "
              f"measured {measured[fixed[signal]]:.1e})")
    own_recall = flagged_at({k: v[np.arange(len(altered)), [i for i, _, _ in altered]][:, None]
                             for k, v in d["altered"].items()}, chosen, 1).mean()
    last = args.sizes[-1]
    recall_last = flagged_at(d["altered"], calibrated(d["innocent"], d["altered"], last, bits), last).mean()
    print(f"at those thresholds ({text(chosen)}) the altered copies are caught (by their own source) in "
          f"{own_recall:.1%} of cases, against {recall_last:.1%} at {last:,} banned images")


if __name__ == "__main__":
    main()
