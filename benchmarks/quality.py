"""Detection quality of vetohash beside PDQ, pHash and dHash, on real photographs, in one run.

Also vetohash's own DCT hash alone ("dct", vetohash.dcthash, beside PDQ), and each vetohash model fused with it
("vetohash+dct") and with crop hashes besides ("vetohash+crops+dct", what `authority publish` writes by
default: the network's hashes of 21 crop views of each banned image), by the default match rule (vetohash.signals:
any signal near), every threshold chosen together on the unrelated images as `authority publish` chooses them
(vetohash_authority.calibration: the most of the authority's own altered copies caught while a bound on the
share flagged in a new group of unrelated images stays within the rate); "vetohash+crops+dct guard" is the
same by the rule of `publish --forgery-guard` (one signal very near or two near, the thresholds within
FORGERY_LIMITS), which forged images pass far less easily: the difference in recall is what that defence
costs.

Then the check that matters for a bundle: its thresholds calibrated by that rule on the unrelated crops of some
source photos, the share they flag among the crops of the other source photos (which calibration never saw),
and what they catch of the benchmark's altered copies, beside the oracle: thresholds chosen together on the
benchmark's own copies and held-out crops at that same flagged share. In detail for the two halves the seed
deals, then summed up over every way to hold out half of the photos and every way to hold out two.

    python benchmarks/quality.py                          # 110 banned images, baselines only
    python benchmarks/quality.py --model model.vhm        # add a vetohash model file
    python benchmarks/quality.py --fit-copy               # vetohash's default recipe, fitted to this list
    python benchmarks/quality.py --fit-copy --banned 1000 --json out.json
    python benchmarks/quality.py --fit-copy --fit-base student.vhm  # beside a base of your own (authority distil)
    python benchmarks/quality.py --fit-copy --no-baselines --save-distances q.npz  # keep every distance
    python benchmarks/quality.py --from-distances q.npz   # redo the calibration analysis alone, in seconds

Banned and unrelated images are photo crops from disjoint source photographs shipped inside PyPI packages
(examples/make_example_images.py): the unrelated ones from the example sets' 8 unrelated photos and from the
benchmarks' own 4 more (`--extra-per-photo` crops of each), 12 groups to calibrate on and hold out. With
`--siblings N`, up to N more innocent crops of each banned image's own source photo join them
(make_example_images.sibling_specs: sharing no pixel with any banned crop of that photo, each photo one more
group), as a platform sees other shots of one scene. The banned crops leave little room
between them; `--reserve 0.3` cuts them from the left 70 % of each photo and leaves the rest to siblings. Every
threshold is then chosen on unrelated images and siblings together, the share flagged is printed for each, and
beside it what thresholds chosen on the unrelated images alone catch and flag.

Every banned image gets one altered copy per edit in the suite (the paper's four edits at full range, the
paper's blur read as a sigma too, and the edits people use to dodge filters, each at three severities).
For each method, thresholds are set on the unrelated images: the image-level false-positive rate is the
share of unrelated images whose nearest banned hash is closer than the threshold, for this list size.
"""

from __future__ import annotations

import argparse
import functools
import io
import itertools
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "examples"), str(ROOT / "benchmarks")]

from baselines import BASELINES  # noqa: E402
from make_example_images import (BANNED_SEED, EXTRA_SEED, SIBLING_SEED, UNRELATED_SEED,  # noqa: E402
                                 crop_specs, keep_left, sibling_specs, source_photos)
from metrics import recall, roc_auc, threshold_at_fpr  # noqa: E402

from edits import EDITS, PAPER_SIGMA_KINDS, SIGMA_BLUR, Edit  # noqa: E402
from vetohash.dcthash import dct_hashes  # noqa: E402
from vetohash.hasher import Hasher  # noqa: E402
from vetohash.matching import hamming_matrix, nearest_by_owner, nearest_own  # noqa: E402
from vetohash.modelfile import read_model  # noqa: E402
from vetohash.preprocess import query_arrays  # noqa: E402
from vetohash.signals import CROPS, DCT, NETWORK  # noqa: E402
from vetohash_authority import calibration  # noqa: E402
from vetohash_authority.cropviews import CROPS as CROP_BOXES  # noqa: E402
from vetohash_authority.cropviews import TURNS, Box, crop_hashes, grid_squares  # noqa: E402

HashFn = Callable[[Sequence[Image.Image]], np.ndarray]
IMAGE_FPRS = (0.01, 0.001)
HELD_OUT_TARGET = 0.01
PAIR_FPRS = (1e-4, 1e-3)
SIBLING = "sibling:"  # group name prefix of a banned photo's sibling crops


QueryFn = Callable[[Sequence[Image.Image]], tuple[np.ndarray, np.ndarray]]


@dataclass
class Method:
    """A named hash function; optionally how a query is hashed when it has several views (hashes of every
    view and the query each belongs to), and the crop hashes of the banned images (hashes and the image each
    belongs to) that bundles carry beside them."""

    name: str
    hash: HashFn
    bits: int
    queries: QueryFn | None = None
    crops: QueryFn | None = None
    hasher: Hasher | None = None
    crop_boxes: tuple[Box, ...] = CROP_BOXES
    crop_turns: tuple[int, ...] = TURNS

    def query_hashes(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        if self.queries is None:
            return self.hash(images), np.arange(len(images))
        return self.queries(images)


def hasher_queries(hasher: Hasher) -> QueryFn:
    """A vetohash model's queries as the platform hashes them: every view of preprocess.query_arrays."""
    def run(images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        return hasher.hash_queries([query_arrays(image, hasher.spec.preprocess) for image in images])
    return run


class Distances(NamedTuple):
    """Each unrelated image's and each altered copy's distance to its nearest banned hash."""

    innocent: np.ndarray
    altered: np.ndarray


def vetohash_method(path: Path) -> Method:
    hasher, _ = read_model(path)
    return Method(path.stem, hasher.hash_images, hasher.spec.bits, queries=hasher_queries(hasher),
                  crops=lambda images: crop_hashes(hasher, images), hasher=hasher)


def fitted_method(name: str, base: Path | None, banned: Sequence[Image.Image], seed: int) -> Method:
    """The copy recipe (`authority train`'s default) fitted to the banned images from the base model at `base`,
    else from the shipped one."""
    from vetohash_authority.listfit import ListFitConfig, base_model, fit_to_list

    t = time.time()
    fitted, _ = fit_to_list(base_model(base), banned, ListFitConfig(), seed=seed)
    print(f"fitted {base or 'the copy detector'} to {len(banned)} banned images in {time.time() - t:.0f} s",
          file=sys.stderr)
    return Method(name, fitted.hash_images, fitted.spec.bits, queries=hasher_queries(fitted),
                  crops=lambda images: crop_hashes(fitted, images), hasher=fitted)


def with_crop_views(method: Method, suffix: str, boxes: tuple[Box, ...], turns: tuple[int, ...]) -> Method:
    """The same network with other crop hashes of each banned image, named NAME-`suffix`."""
    if method.hasher is None:
        raise ValueError(f"{method.name} has no network to hash crops with")
    return replace(method, name=f"{method.name}-{suffix}", crop_boxes=boxes, crop_turns=turns,
                   crops=functools.partial(crop_hashes, method.hasher, boxes=boxes, turns=turns))


def with_extra_crops(method: Method, keep: float) -> Method:
    """9 more crop hashes of each banned image: squares keeping `keep` of each side on a 3 x 3 grid
    (`--extra-crops`)."""
    return with_crop_views(method, f"c{round(100 * keep)}", method.crop_boxes + grid_squares(keep), method.crop_turns)


def with_turned_crops(method: Method, degrees: Sequence[int]) -> Method:
    """More crop hashes of each banned image: the image turned by each of +-`degrees` and cut to the part the
    turn kept whole (alterations.turned_whole; `--crop-turns`)."""
    turns = tuple(sign * d for d in degrees for sign in (1, -1))
    return with_crop_views(method, f"t{'-'.join(str(d) for d in degrees)}", method.crop_boxes,
                           method.crop_turns + turns)


def altered_copies(banned: Sequence[Image.Image], suite: Sequence[Edit], seed: int) -> list[tuple[int, Edit, Image.Image]]:
    """One altered copy of every banned image per edit; each draw seeded by (seed, image, edit)."""
    out = []
    for i, image in enumerate(banned):
        for k, edit in enumerate(suite):
            out.append((i, edit, edit.apply(image, random.Random(f"{seed}/{i}/{k}"))))
    return out


def shares(flags: np.ndarray, sibling: np.ndarray) -> dict[str, float | None]:
    """The share of unrelated images flagged and of sibling crops flagged (None without siblings)."""
    return {"unrelated_fpr": float(flags[~sibling].mean()),
            "sibling_fpr": float(flags[sibling].mean()) if sibling.any() else None}


def evaluate(method: Method, banned, unrelated, altered,
             sibling: np.ndarray) -> tuple[dict, Distances, Distances | None]:
    """Every figure for one method, the distances they come from, and those to its crop hashes (if any).
    `unrelated` holds every innocent image; `sibling` marks the banned photos' sibling crops among them."""
    owners = np.arange(len(banned))
    banned_hashes = method.hash(list(banned))
    unrelated_hashes, unrelated_of = method.query_hashes(unrelated)
    altered_hashes, altered_of = method.query_hashes([image for _, _, image in altered])
    sources = np.array([i for i, _, _ in altered])
    labels = edit_labels(altered)

    innocent = nearest_by_owner(unrelated_hashes, unrelated_of, len(unrelated), banned_hashes).distance
    caught = nearest_by_owner(altered_hashes, altered_of, len(altered), banned_hashes)
    # Distance from each altered copy (any of its views) to its own source's hashes (any of its list entries).
    own = nearest_own(altered_hashes, altered_of, sources, banned_hashes, owners)
    firsts = np.searchsorted(unrelated_of, np.arange(len(unrelated)))  # each unrelated image as it is
    pair_negatives = hamming_matrix(unrelated_hashes[firsts], banned_hashes[: len(banned)]).ravel()

    report = {"method": method.name, "bits": method.bits, "list_size": len(banned_hashes),
              "auc": roc_auc(caught.distance, innocent), "image_level": {}, "pairwise": {}}
    for fpr in IMAGE_FPRS:
        t = threshold_at_fpr(innocent, fpr)
        hit = caught.distance < t
        right = hit & (owners[caught.index] == sources)
        report["image_level"][str(fpr)] = {
            "threshold": t, "measured_fpr": float(np.mean(innocent < t)), **shares(innocent < t, sibling),
            "recall": float(hit.mean()), "recall_right_source": float(right.mean()), **by_group(hit, labels)}
        if sibling.any():
            t = threshold_at_fpr(innocent[~sibling], fpr)
            hit = caught.distance < t
            report.setdefault("unrelated_only", {})[str(fpr)] = {
                "threshold": t, **shares(innocent < t, sibling), "recall": float(hit.mean()), **by_group(hit, labels)}
    for fpr in PAIR_FPRS:
        t = threshold_at_fpr(pair_negatives, fpr)
        report["pairwise"][str(fpr)] = {"threshold": t, "recall": recall(own, t)}
    to_crops = None
    if method.crops is not None:
        crop_list, _ = method.crops(banned)
        to_crops = Distances(nearest_by_owner(unrelated_hashes, unrelated_of, len(unrelated), crop_list).distance,
                          nearest_by_owner(altered_hashes, altered_of, len(altered), crop_list).distance)
        report["crop_hashes"] = len(crop_list)
    return report, Distances(innocent, caught.distance), to_crops


def own_copies(hasher: Hasher, banned: Sequence[Image.Image], per_kind: int, boxes: Sequence[Box],
               turns: Sequence[int]) -> dict[str, np.ndarray]:
    """The authority's own altered copies of the banned images (calibration.positives: every alteration kind,
    `per_kind` each, from the calibration's own seed stream, none of them a benchmark copy), as distances to
    each signal's nearest hash of a default bundle (crop hashes of `boxes` and `turns`)."""
    lists = calibration.Lists({NETWORK: hasher.hash_images(banned),
                               CROPS: crop_hashes(hasher, banned, boxes, turns)[0],
                               DCT: dct_hashes(banned)})
    digests = [f"benchmark-{i}" for i in range(len(banned))]
    return calibration.positives(hasher, lists, banned, digests, per_kind=per_kind)


def signal_distances(neural: Distances, dct: Distances, crops: Distances) -> tuple[dict, dict]:
    """(unrelated images', altered copies') distances by signal name."""
    return ({NETWORK: neural.innocent, DCT: dct.innocent, CROPS: crops.innocent},
            {NETWORK: neural.altered, DCT: dct.altered, CROPS: crops.altered})


def edit_labels(altered) -> dict[str, np.ndarray]:
    """Each altered copy's edit: its kind, kind/severity and family."""
    return {"kind": np.array([edit.kind for _, edit, _ in altered], dtype=str),
            "severity": np.array([f"{edit.kind}/{edit.severity}" for _, edit, _ in altered], dtype=str),
            "family": np.array([edit.family for _, edit, _ in altered], dtype=str)}


def by_group(hit: np.ndarray, labels: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Recall per kind, severity and family of edit (`edit_labels`), and of the paper's four edits with blur
    read as a sigma ("paper-sigma" among the families) where the suite has that reading."""
    found = {group: {str(k): float(hit[names == k].mean()) for k in dict.fromkeys(names.tolist())}
             for group, names in labels.items()}
    if SIGMA_BLUR in found["kind"]:
        found["family"]["paper-sigma"] = float(hit[np.isin(labels["kind"], PAPER_SIGMA_KINDS)].mean())
    return found


def joined(thresholds: dict[str, int]) -> str:
    """Thresholds as printed: network|DCT|crops, those present."""
    return "|".join(str(thresholds[k]) for k in (NETWORK, DCT, CROPS) if k in thresholds)


def evaluate_fused(name: str, innocent: dict, caught: dict, own: dict, sources: np.ndarray, bits: int,
                   list_size: int, labels: dict[str, np.ndarray], confidence: float, sibling: np.ndarray,
                   limits: calibration.Limits | None = None) -> dict:
    """The figures of the fused decision (vetohash.signals; with `limits` None, the default rule: any one
    signal; with FORGERY_LIMITS, publish --forgery-guard's), with every threshold chosen per false-positive rate
    as `authority publish` chooses them, on all innocent images (each source photo a group; `sibling` marks the
    sibling crops), and where there are siblings, on the unrelated images alone ("unrelated_only")."""
    report: dict = {"method": name, "bits": f"{bits}+256", "list_size": list_size, "auc": None, "image_level": {},
                    "pairwise": {}}
    bits_by = {NETWORK: bits, CROPS: bits, DCT: 256}
    everyone = np.ones(len(sources), dtype=bool)
    for key, chosen_on in (("image_level", everyone), ("unrelated_only", ~sibling))[:1 + bool(sibling.any())]:
        for fpr in IMAGE_FPRS:
            chosen = calibration.choose(calibration.Innocents({k: v[chosen_on] for k, v in innocent.items()},
                                                              sources[chosen_on]),
                                        {k: own[k] for k in innocent}, fpr, bits_by, confidence=confidence,
                                        limits=limits)
            hit = chosen.flags(caught)
            report.setdefault(key, {})[str(fpr)] = {
                "threshold": joined(chosen.thresholds) + ("" if chosen.agree is None else "/" + joined(chosen.agree)),
                "thresholds": chosen.thresholds, "agree": chosen.agree, "measured_fpr": chosen.share,
                "bound_fpr": chosen.bound, **shares(chosen.flags(innocent), sibling), "recall": float(hit.mean()),
                "own_copies_caught": chosen.recall, **by_group(hit, labels)}
    return report


def held_out_fold(innocent: dict, caught: dict, own: dict, sources: np.ndarray, names: Sequence[str], bits: int,
                  labels: dict[str, np.ndarray], held_groups: Sequence[int], target: float, confidence: float,
                  limits: calibration.Limits | None) -> dict:
    """The bundle's own thresholds, calibrated by `authority publish`'s rule (with `limits` None, by the rule
    before format version 6) on the unrelated crops of the source photos not in `held_groups`, measured on the
    crops of those, beside the oracle: thresholds chosen by the same rule on the held-out crops and the
    benchmark's own copies, flagging the same share of the held-out crops."""
    bits_by = {NETWORK: bits, CROPS: bits, DCT: 256}
    held = np.isin(sources, held_groups)
    fit = calibration.Innocents({k: v[~held] for k, v in innocent.items()}, sources[~held])
    test = calibration.Innocents({k: v[held] for k, v in innocent.items()}, sources[held])
    bundle = calibration.choose(fit, own, target, bits_by, confidence=confidence, limits=limits)
    share = float(np.mean(bundle.flags(test.distances)))
    hit = bundle.flags(caught)
    oracle = calibration.choose(test, caught, share, bits_by, bound=calibration.Bound(test.groups, 0.5, plain=True),
                                limits=limits)
    oracle_hit = oracle.flags(caught)
    return {
        "calibrated_on": sorted(names[g] for g in np.unique(fit.groups)), "calibration_images": fit.count,
        "held_out": sorted(names[g] for g in np.unique(test.groups)), "held_out_images": test.count,
        "target": target, "confidence": confidence, "thresholds": bundle.thresholds, "agree": bundle.agree,
        "calibration_fpr": bundle.share, "bound_fpr": bundle.bound, "held_out_fpr": share,
        "recall": float(hit.mean()), "own_copies_caught": bundle.recall, **by_group(hit, labels),
        "oracle": {"thresholds": oracle.thresholds, "agree": oracle.agree, "held_out_fpr": oracle.share,
                   "recall": float(oracle_hit.mean()), **by_group(oracle_hit, labels)}}


def held_out(innocent: dict, caught: dict, own: dict, sources: np.ndarray, names: Sequence[str], bits: int,
             labels: dict[str, np.ndarray], target: float, confidence: float, seed: int,
             limits: calibration.Limits | None = None) -> dict[str, list[dict]]:
    """`held_out_fold` for the two halves of the source photos dealt by `seed` ("halves": each half held out
    in turn), for every way to hold out half of them ("half"), and every way to hold out two ("two")."""
    groups = np.unique(sources)
    order = np.random.default_rng(seed).permutation(groups)
    def folds(splits) -> list[dict]:
        return [held_out_fold(innocent, caught, own, sources, names, bits, labels, list(split), target, confidence,
                              limits) for split in splits]
    return {"halves": folds(order[fold::2] for fold in range(2)),
            "half": folds(itertools.combinations(groups, len(groups) // 2)),
            "two": folds(itertools.combinations(groups, 2))}


def spread(folds: Sequence[dict]) -> dict[str, float]:
    """Over many splits: the held-out share flagged as a multiple of the target, and the gap to the oracle."""
    ratios = np.array([fold["held_out_fpr"] / fold["target"] for fold in folds])
    gaps = np.array([100 * (fold["oracle"]["recall"] - fold["recall"]) for fold in folds])
    return {"splits": len(folds), "ratio_mean": float(ratios.mean()), "ratio_median": float(np.median(ratios)),
            "ratio_p10": float(np.quantile(ratios, 0.1)), "ratio_p90": float(np.quantile(ratios, 0.9)),
            "within": float(np.mean((ratios >= 0.5) & (ratios <= 1.5))), "above": float(np.mean(ratios > 1.5)),
            "below": float(np.mean(ratios < 0.5)),
            "recall_mean": float(np.mean([fold["recall"] for fold in folds])), "gap_mean": float(gaps.mean()),
            "gap_max": float(gaps.max()), "gap_within_3": float(np.mean(gaps <= 3))}


def rule(chosen: dict) -> str:
    """Thresholds as printed: each signal's alone, and to agree when the rule has agreement thresholds."""
    agree = "" if chosen.get("agree") is None else f", to agree {chosen['agree']}"
    return f"{chosen['thresholds']}{agree}"


def print_held_out(found: dict[str, list[dict]]) -> None:
    folds = found["halves"]
    print()
    print(f"Bundle thresholds on held-out source photos (target {folds[0]['target']:.1%}, bound at "
          f"{folds[0]['confidence']:.0%} confidence; the oracle chooses on the held-out crops and the benchmark's "
          f"own copies at the same flagged share):")
    for fold in folds:
        oracle = fold["oracle"]
        print(f"  calibrated on {fold['calibration_images']} crops of {', '.join(fold['calibrated_on'])}")
        print(f"    bundle thresholds {rule(fold)}: {fold['calibration_fpr']:.2%} flagged there (bound "
              f"{fold['bound_fpr']:.2%}); held out ({fold['held_out_images']} crops of "
              f"{', '.join(fold['held_out'])}): {fold['held_out_fpr']:.2%} flagged = "
              f"{fold['held_out_fpr'] / fold['target']:.2f}x the target")
        print(f"    recall at the bundle's thresholds {fold['recall']:.1%} (paper edits "
              f"{fold['family'].get('paper', float('nan')):.1%}, common {fold['family'].get('common', float('nan')):.1%}); "
              f"oracle {rule(oracle)} at {oracle['held_out_fpr']:.2%}: {oracle['recall']:.1%} (paper "
              f"{oracle['family'].get('paper', float('nan')):.1%}, common "
              f"{oracle['family'].get('common', float('nan')):.1%}); gap {100 * (oracle['recall'] - fold['recall']):.1f} points")
    groups = len(folds[0]["calibrated_on"]) + len(folds[0]["held_out"])
    for key, held in (("half", groups // 2), ("two", 2)):
        s = spread(found[key])
        print(f"  every way to hold out {held} of the {groups} photos ({s['splits']} splits): held-out flagged / target "
              f"mean {s['ratio_mean']:.2f}x, median {s['ratio_median']:.2f}x (10-90 %: {s['ratio_p10']:.2f}-"
              f"{s['ratio_p90']:.2f}x), within 0.5-1.5x in {s['within']:.0%} of splits (above {s['above']:.0%}, "
              f"below {s['below']:.0%}); recall {s['recall_mean']:.1%} on average, gap to the oracle mean "
              f"{s['gap_mean']:.1f}, at most {s['gap_max']:.1f} points, within 3 points in {s['gap_within_3']:.0%}")


def speed(method: Method, files: Sequence[bytes]) -> float:
    """Images per second on one core, decoding included."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        for i in range(0, len(files), 64):
            method.hash([Image.open(io.BytesIO(data)).convert("RGB") for data in files[i:i + 64]])
        return len(files) / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


def print_table(reports: Sequence[dict]) -> None:
    names = [r["method"] for r in reports]
    width = max(12, *(len(n) for n in names),
                *(len(str(r["image_level"][str(fpr)]["threshold"])) + 9 for r in reports for fpr in IMAGE_FPRS)) + 2
    def row(label: str, values: Sequence[str]) -> None:
        print(f"{label:<34}" + "".join(f"{v:>{width}}" for v in values))
    def split(level: dict) -> str:
        return f"{level['unrelated_fpr']:.2%} / {level['sibling_fpr']:.1%}"
    def recalls(levels: Sequence[dict], by_kind: bool) -> None:
        row("  recall, all edits", [f"{l['recall']:.1%}" for l in levels])
        for family in sorted(levels[0]["family"]):
            row(f"  recall, {family} edits", [f"{l['family'][family]:.1%}" for l in levels])
        if by_kind:
            for kind in sorted(levels[0]["kind"]):
                row(f"    {kind}", [f"{l['kind'][kind]:.1%}" for l in levels])
    row("", names)
    row("bits / list size", [f"{r['bits']}/{r['list_size']}" for r in reports])
    row("ROC AUC (image level)", ["-" if r["auc"] is None else f"{r['auc']:.4f}" for r in reports])
    for fpr in IMAGE_FPRS:
        levels = [r["image_level"][str(fpr)] for r in reports]
        row(f"@{fpr:.1%} innocents flagged: thresh", [f"{l['threshold']} ({l['measured_fpr']:.2%})" for l in levels])
        if levels[0].get("sibling_fpr") is not None:
            row("  unrelated / siblings flagged", [split(l) for l in levels])
        recalls(levels, fpr == IMAGE_FPRS[0])
    for fpr in PAIR_FPRS:
        row(f"recall @ pairwise FPR {fpr:g}", [f"{r['pairwise'][str(fpr)]['recall']:.1%}" if r["pairwise"] else "-"
                                               for r in reports])
    if "speed" in reports[0]:
        row("images/s on one core (decode+hash)", [f"{r['speed']:.0f}" if "speed" in r else "-" for r in reports])
    if "unrelated_only" in reports[0]:
        print("\nThresholds chosen on the unrelated images alone (siblings left out of the choice):")
        for fpr in IMAGE_FPRS:
            levels = [r["unrelated_only"][str(fpr)] for r in reports]
            row(f"@{fpr:.1%} unrelated flagged: thresh", [str(l["threshold"]) for l in levels])
            row("  unrelated / siblings flagged", [split(l) for l in levels])
            recalls(levels, fpr == IMAGE_FPRS[0])


@dataclass
class Fused:
    """One vetohash method's distances by signal (network, DCT, crops): the unrelated images', the benchmark's
    altered copies' and the authority's own copies'; everything the fused analysis needs."""

    name: str
    bits: int
    innocent: dict[str, np.ndarray]
    caught: dict[str, np.ndarray]
    own: dict[str, np.ndarray]


@dataclass
class Measured:
    """Every distance the expensive part of a run computes for the fused analysis (`--save-distances`), so that
    the calibration and held-out analysis can be redone from it in seconds (`--from-distances`): the fused
    methods, each unrelated image's group (source photo) and each altered copy's edit (`edit_labels`)."""

    banned: int
    per_kind: int
    groups: np.ndarray
    group_names: list[str]
    labels: dict[str, np.ndarray]
    methods: list[Fused]

    @property
    def sibling(self) -> np.ndarray:
        """Which innocent images are sibling crops of a banned photo."""
        return np.array([self.group_names[g].startswith(SIBLING) for g in self.groups], dtype=bool)

    def save(self, path: Path) -> None:
        arrays = {"banned": np.array(self.banned), "per_kind": np.array(self.per_kind), "groups": self.groups,
                  "group_names": np.array(self.group_names, dtype=str),
                  "methods": np.array([m.name for m in self.methods], dtype=str),
                  **{f"label.{k}": v for k, v in self.labels.items()}}
        for m in self.methods:
            arrays[f"{m.name}.bits"] = np.array(m.bits)
            for part in ("innocent", "caught", "own"):
                arrays.update({f"{m.name}.{part}.{k}": v for k, v in getattr(m, part).items()})
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> Measured:
        with np.load(path, allow_pickle=False) as data:
            def part(prefix: str) -> dict[str, np.ndarray]:
                return {key[len(prefix):]: data[key] for key in data.files if key.startswith(prefix)}
            methods = [Fused(str(name), int(data[f"{name}.bits"]), part(f"{name}.innocent."), part(f"{name}.caught."),
                             part(f"{name}.own.")) for name in data["methods"]]
            return cls(int(data["banned"]), int(data["per_kind"]), data["groups"],
                       [str(n) for n in data["group_names"]], part("label."), methods)


def analyse(measured: Measured, args: argparse.Namespace) -> tuple[list[dict], dict[str, dict[str, list[dict]]]]:
    """The fused methods' figures (thresholds chosen together on every unrelated image) and the bundle's
    thresholds on held-out source photos, from distances alone."""
    reports, folds = [], {}
    sibling = measured.sibling
    for m in measured.methods:
        plain = {k: v for k, v in m.innocent.items() if k != CROPS}, {k: v for k, v in m.caught.items() if k != CROPS}
        reports.append(evaluate_fused(f"{m.name}+dct", *plain, m.own, measured.groups, m.bits, measured.banned,
                                      measured.labels, args.confidence, sibling))
        reports.append(evaluate_fused(f"{m.name}+crops+dct", m.innocent, m.caught, m.own, measured.groups, m.bits,
                                      measured.banned, measured.labels, args.confidence, sibling))
        reports.append(evaluate_fused(f"{m.name}+crops+dct guard", m.innocent, m.caught, m.own, measured.groups,
                                      m.bits, measured.banned, measured.labels, args.confidence, sibling,
                                      limits=calibration.FORGERY_LIMITS))
        # Held out: the unrelated photos only (with siblings, every way to hold out half of 12 + k groups is too many).
        unrelated = {k: v[~sibling] for k, v in m.innocent.items()}
        for name, limits in ((f"{m.name}+crops+dct", None), (f"{m.name}+crops+dct guard", calibration.FORGERY_LIMITS)):
            folds[name] = held_out(unrelated, m.caught, m.own, measured.groups[~sibling], measured.group_names, m.bits,
                                   measured.labels, args.target, args.confidence, args.seed, limits)
    return reports, folds


def measure(args: argparse.Namespace) -> tuple[list[dict], Measured]:
    """The expensive part: hash everything, each method's figures, and the distances the fused analysis needs."""
    started = time.time()
    banned_photos = source_photos("banned")
    banned_specs = crop_specs(keep_left(banned_photos, args.reserve), args.banned, 128, BANNED_SEED)
    banned = [spec.image for spec in banned_specs]
    extra_photos = source_photos("extra")
    specs = (crop_specs(source_photos("unrelated"), args.unrelated, 128, UNRELATED_SEED)
             + crop_specs(extra_photos, args.extra_per_photo * len(extra_photos), 128, EXTRA_SEED))
    siblings = sibling_specs(banned_photos, banned_specs, args.siblings, 128, SIBLING_SEED) if args.siblings else []
    unrelated = [spec.image for spec in specs + siblings]  # every innocent image, siblings last
    names = [spec.source for spec in specs] + [SIBLING + spec.source for spec in siblings]
    photo_names = sorted(set(names))
    photos = np.array([photo_names.index(name) for name in names])  # each source photo is a group
    sibling = np.arange(len(names)) >= len(specs)
    altered = altered_copies(banned[:args.altered_of], EDITS, args.seed)
    print(f"{len(banned)} banned, {len(specs)} unrelated, {len(siblings)} sibling, {len(altered)} altered copies "
          f"({len(EDITS)} edits); prepared in {time.time() - started:.0f} s", file=sys.stderr)
    if args.siblings:
        print("siblings per banned photo (at most " + str(args.siblings) + "): " + ", ".join(
            f"{name} {sum(s.source == name for s in siblings)}" for name, _, _ in banned_photos), file=sys.stderr)

    methods = [] if args.no_baselines else [Method(n, fn, bits) for n, (fn, bits) in BASELINES.items()]
    methods.append(Method("dct", dct_hashes, 256))
    for path in args.model:
        methods.append(vetohash_method(path))
    bases = ([("vetohash", None)] if args.fit_copy else []) + [(path.stem, path) for path in args.fit_base]
    for name, base in bases:
        fitted = fitted_method(name, base, banned, args.seed if args.fit_seed is None else args.fit_seed)
        methods += [fitted, *(with_extra_crops(fitted, keep) for keep in args.extra_crops)]
        if args.crop_turns:
            methods.append(with_turned_crops(fitted, args.crop_turns))
    reports = []
    distances: dict[str, Distances] = {}
    crop_distances: dict[str, Distances] = {}
    jpegs = []
    for image in unrelated[:200]:
        out = io.BytesIO()
        image.save(out, "JPEG", quality=90)
        jpegs.append(out.getvalue())
    for method in methods:
        t = time.time()
        report, distances[method.name], to_crops = evaluate(method, banned, unrelated, altered, sibling)
        if to_crops is not None:
            crop_distances[method.name] = to_crops
        if args.speed:
            report["speed"] = speed(method, jpegs)
        reports.append(report)
        print(f"{method.name}: {time.time() - t:.0f} s", file=sys.stderr)
    fused = []
    for method in methods:
        if method.hasher is None or method.name not in crop_distances:
            continue
        t = time.time()
        own = own_copies(method.hasher, banned, args.per_kind, method.crop_boxes, method.crop_turns)
        print(f"{method.name}: the authority's own {len(own[NETWORK])} altered copies in {time.time() - t:.0f} s",
              file=sys.stderr)
        fused.append(Fused(method.name, method.bits,
                           *signal_distances(distances[method.name], distances["dct"], crop_distances[method.name]),
                           own))
    return reports, Measured(len(banned), args.per_kind, photos, photo_names, edit_labels(altered), fused)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--banned", type=int, default=110, help="banned images (default 110, as in the paper)")
    parser.add_argument("--unrelated", type=int, default=1085, help="unrelated crops of the example sets' 8 unrelated photos "
                             "(default 1085)")
    parser.add_argument("--extra-per-photo", type=int, default=136, metavar="N",
                        help="add N unrelated crops of each photo of the benchmarks' own group (\"extra\" in "
                             "examples/make_example_images.py: more source photos than the example sets use, each "
                             "one more group; default 136, about what each of the 8 others gives; 0: none, the "
                             "unrelated images before these photos joined)")
    parser.add_argument("--model", type=Path, action="append", default=[], help="vetohash model file (repeatable)")
    parser.add_argument("--fit-copy", action="store_true",
                        help="fit the shipped copy detector to the benchmark's banned images (authority train's "
                             "default recipe) and measure it")
    parser.add_argument("--fit-base", type=Path, action="append", default=[], metavar="MODEL",
                        help="fit this base model (authority pretrain or distil) to the banned images as --fit-copy "
                             "fits the shipped one, and measure it under the file's name (repeatable)")
    parser.add_argument("--no-baselines", action="store_true", help="skip PDQ, pHash and dHash")
    parser.add_argument("--speed", action="store_true", help="measure images/s on one core")
    parser.add_argument("--seed", type=int, default=0, help="seed of the edit draws (and of the photo split)")
    parser.add_argument("--fit-seed", type=int, default=None,
                        help="seed of the list fit (its altered views, background images and rotation) if not --seed: "
                             "one list fit's draw moves the figures by a point or two, and the held-out check more")
    parser.add_argument("--per-kind", type=int, default=calibration.COPIES_PER_KIND,
                        help="the authority's own altered copies per banned image and alteration kind, to calibrate "
                             "on (default as publish)")
    parser.add_argument("--confidence", type=float, default=calibration.DEFAULT_CONFIDENCE,
                        help="confidence of the bound on unrelated images flagged (default as publish)")
    parser.add_argument("--altered-of", type=int,
                        help="make the benchmark's altered copies of only the first N banned images (the list "
                             "keeps all; default: every banned image), to size long runs")
    parser.add_argument("--siblings", type=int, default=0, metavar="N",
                        help="add up to N innocent crops of each banned image's own source photo, sharing no pixel "
                             "with any banned crop (each photo one more group), to the innocents every threshold "
                             "is chosen on; their flagged share is printed apart (default 0: none)")
    parser.add_argument("--reserve", type=float, default=0.0, metavar="SHARE",
                        help="cut the banned crops from the left 1 - SHARE of each banned photo's width, leaving "
                             "the rest to --siblings (default 0: the whole photo, as before; a different banned set)")
    parser.add_argument("--extra-crops", type=float, action="append", default=[], metavar="KEEP",
                        help="also measure each fitted network (--fit-copy, --fit-base) with 9 more crop hashes of "
                             "each banned image, squares keeping KEEP of each side on a 3 x 3 grid, as NAME-cKEEP "
                             "(repeatable; e.g. 0.5 gives vetohash-c50)")
    parser.add_argument("--crop-turns", type=int, action="append", default=[], metavar="DEGREES",
                        help="also measure each fitted network with 2 more crop hashes of each banned image per "
                             "DEGREES: the image turned by +-DEGREES and cut to what the turn kept whole, as "
                             "NAME-tDEGREES (repeatable, one variant with all of them; e.g. 10 and 45 give "
                             "vetohash-t10-45; the shipped set already turns by 15 and 30)")
    parser.add_argument("--target", type=float, default=HELD_OUT_TARGET,
                        help="target share of unrelated images flagged for the held-out check")
    parser.add_argument("--save-distances", type=Path, metavar="NPZ",
                        help="write every distance the fused analysis needs here (unrelated images', altered "
                             "copies' and the authority's own copies' by signal, groups, edits)")
    parser.add_argument("--from-distances", type=Path, metavar="NPZ",
                        help="redo only the fused analysis (calibration, held-out photos) from a --save-distances "
                             "file, in seconds; hashes nothing")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()

    if args.from_distances:
        reports, measured = [], Measured.load(args.from_distances)
    else:
        reports, measured = measure(args)
        if args.save_distances:
            measured.save(args.save_distances)
    fused, folds = analyse(measured, args)
    reports += fused
    print_table(reports)
    for name, found in folds.items():
        print(f"\n{name}", end="")
        print_held_out(found)
    if args.json:
        sibling = measured.sibling
        args.json.write_text(json.dumps({"banned": measured.banned, "unrelated": int((~sibling).sum()),
                                         "siblings": {name[len(SIBLING):]: int((measured.groups[sibling] == g).sum())
                                                      for g, name in enumerate(measured.group_names)
                                                      if name.startswith(SIBLING)},
                                         "altered": len(next(iter(measured.labels.values()))),
                                         "own_copies_per_kind": measured.per_kind,
                                         "reports": reports, "held_out": folds,
                                         "held_out_spread": {name: {key: spread(found[key]) for key in ("half", "two")}
                                                             for name, found in folds.items()}}, indent=1))


if __name__ == "__main__":
    main()
