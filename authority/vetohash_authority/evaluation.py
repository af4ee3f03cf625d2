"""The evaluation report: what the paper measured (Figs. 10-11), and the false positives it never did.

- between sources: Hamming distance of every banned image to every other one (pairs i < j);
- to held-out copies: each banned image to its own altered copies that training never saw, rebuilt from the
  model file's seed and alteration settings (so no copy has to be stored);
- innocent: with images outside the banned set, each one's distance to its nearest banned hash, which is what
  decides a false positive on a platform.

A hash matches when its distance is below the threshold (distance < threshold), as in the paper and bundles.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vetohash import dcthash
from vetohash.errors import VetohashError
from vetohash.files import make_folder, write_atomic
from vetohash.signals import CROPS, DCT, NETWORK
from vetohash.hasher import Hasher
from vetohash.matching import hamming_matrix, nearest, nearest_by_owner, nearest_own

from . import plots
from .calibration import DEFAULT_CONFIDENCE, Innocents, Lists, choose, cross_check, positives
from .config import ConfigError, TrainingConfig, from_dict
from .cropviews import crop_hashes
from .pairs import plan_copies
from .privacy import LEVELS, dct_sketches, identification_ranks, thumbnail
from .sources import Source
from .training import altered_queries

PAPER_THRESHOLD = 20
PAPER_FIGURES = {"between_sources_mean": 40, "to_altered_copies_mean": 5, "threshold": PAPER_THRESHOLD}


class EvaluationError(VetohashError):
    """The model file lacks what evaluation needs (it was not made by `authority train`)."""


def training_settings(meta: Mapping[str, Any]) -> tuple[TrainingConfig, int]:
    """The config and seed a model was trained with, from its metadata.

    A list-fitted copy model (`train --recipe copy`) never saw the paper's alteration plan: it is measured on
    the paper's default plan, whose copies its fit did not draw (the fit uses its own random stream).
    """
    if meta.get("kind") == "list-fit" and type(meta.get("seed")) is int:
        return TrainingConfig(), meta["seed"]
    if meta.get("trainer") != "vetohash-authority" or "config" not in meta or type(meta.get("seed")) is not int:
        raise EvaluationError("the model file has no training settings (it was not made by `authority train`), "
                              "so its held-out alterations cannot be rebuilt")
    try:
        return from_dict(meta["config"], "the model's training settings"), meta["seed"]
    except ConfigError as error:
        raise EvaluationError(str(error)) from None


def summary(values: np.ndarray) -> dict[str, Any]:
    """n, min, quartiles, max and mean of a set of distances (None for an empty set)."""
    if len(values) == 0:
        return {"n": 0, "min": None, "q1": None, "median": None, "q3": None, "max": None, "mean": None}
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"n": int(len(values)), "min": int(values.min()), "q1": float(q1), "median": float(median),
            "q3": float(q3), "max": int(values.max()), "mean": round(float(values.mean()), 3)}


def flagged_share(distances: np.ndarray, threshold: int) -> float:
    """Share of distances below the threshold (a match is distance < threshold)."""
    return float(np.mean(distances < threshold)) if len(distances) else 0.0


def threshold_for(negatives: np.ndarray, target_fpr: float, bits: int) -> int:
    """The largest threshold whose false-positive share on `negatives` is at most `target_fpr`."""
    best = 0
    for threshold in range(bits + 2):
        if flagged_share(negatives, threshold) <= target_fpr:
            best = threshold
        else:
            break
    return min(best, bits)


def roc_points(positives: np.ndarray, negatives: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, recall) at every threshold 0..bits+1."""
    fpr = np.array([flagged_share(negatives, t) for t in range(bits + 2)])
    tpr = np.array([flagged_share(positives, t) for t in range(bits + 2)])
    return fpr, tpr


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under a ROC curve given at increasing thresholds (trapezoids)."""
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


@dataclass
class Report:
    """The measured figures (`data`, also written as report.json) and where the plots went."""

    data: dict[str, Any]
    files: dict[str, Path]

    def text(self) -> str:
        """The readable table printed for people."""
        return render(self.data)


def evaluate(hasher: Hasher, meta: Mapping[str, Any], sources: Sequence[Source],
             innocent: Sequence[Source] = (), threshold: int = PAPER_THRESHOLD, target_fpr: float = 0.01,
             report_dir: Path | None = None, progress: bool = False, workers: int = 2,
             innocent_groups: np.ndarray | None = None, confidence: float = DEFAULT_CONFIDENCE) -> Report:
    """Measure the model on the banned images (and innocent ones, each in its group: calibration.groups_of;
    each its own group when None) and write report.json and the plots."""
    config, seed = training_settings(meta)
    bits = hasher.spec.bits
    pre = hasher.spec.preprocess
    if not 0 <= threshold <= bits:
        raise EvaluationError(f"threshold must be in [0, {bits}], got {threshold}")
    if not 0.0 <= target_fpr <= 1.0:
        raise EvaluationError(f"target false-positive rate must be in [0, 1], got {target_fpr}")
    if len(sources) < 2:
        raise EvaluationError("evaluation needs at least 2 banned images (distances between them)")

    trained_on = set(meta.get("sources", []))
    digests = [source.digest for source in sources]
    banned = hasher.hash_arrays(np.stack([source.array for source in sources]))
    matrix = hamming_matrix(banned, banned)
    between = matrix[np.triu_indices(len(sources), 1)]

    copies = plan_copies(digests, config.alterations, seed, config.validation_share)
    rows = np.flatnonzero(copies.validation)
    held_out = len(rows) > 0
    if not held_out:  # nothing was held out: measure every copy, and say so
        rows = np.arange(len(copies))
    # Each copy as platforms screen it: its nearest banned hash over its views (preprocess.query_arrays).
    views, altered_dct = altered_queries(sources, config.alterations, copies, seed, pre, rows, workers=workers,
                                         progress=progress)
    altered, view_of = hasher.hash_queries(views)
    owner = copies.source[rows]
    to_own = np.full(len(views), bits + 1, dtype=np.int32)
    np.minimum.at(to_own, view_of, np.bitwise_count(np.bitwise_xor(altered, banned[owner[view_of]])).sum(axis=1))
    copy_nearest = nearest_by_owner(altered, view_of, len(views), banned)
    kinds = [plan.name for plan in config.alterations]
    kind_of = np.asarray(kinds)[copies.plan[rows]]

    data: dict[str, Any] = {
        "model": {"spec": hasher.spec.name, "bits": bits, "seed": seed, "epochs": len(meta.get("history", [])),
                  "recipe": "copy" if meta.get("kind") == "list-fit" else "paper",
                  "final": meta.get("final")},
        "images": {"banned": len(sources), "in_training": sum(d in trained_on for d in digests),
                   "altered_copies": int(len(rows)), "copies_held_out": held_out, "innocent": len(innocent)},
        "paper": PAPER_FIGURES,
        "threshold": threshold,
        "distances": {"between_sources": summary(between), "to_altered_copies": summary(to_own),
                      "per_kind": {kind: summary(to_own[kind_of == kind]) for kind in kinds}},
        "recall": _recall(to_own, kind_of, kinds, threshold),
        "nearest_is_own_source": float(np.mean(copy_nearest.index == owner)) if len(rows) else None,
    }
    curves = {"pairs: copies vs other banned images": roc_points(to_own, between, bits)}
    data["roc_auc_pairwise"] = round(auc(*curves["pairs: copies vs other banned images"]), 4)
    groups = {"between sources": between, "to held-out altered copies": to_own}

    if innocent:
        to_nearest = hasher.nearest_queries([image.views for image in innocent], banned).distance
        groups["innocent to nearest banned"] = to_nearest
        curves["images: copies vs innocent images"] = roc_points(to_own, to_nearest, bits)
        data["roc_auc_innocent"] = round(auc(*curves["images: copies vs innocent images"]), 4)
        data["distances"]["innocent_to_nearest"] = summary(to_nearest)
        data["innocent_flagged"] = {"threshold": threshold, "share": flagged_share(to_nearest, threshold),
                                    "count": int(np.sum(to_nearest < threshold))}
        negatives, basis = to_nearest, "image-level, innocent images against the whole banned list"
    else:
        negatives, basis = between, "pairwise, banned images against each other (no innocent images given)"
    suggested = threshold_for(negatives, target_fpr, bits)
    data["suggested"] = {"target_fpr": target_fpr, "threshold": suggested, "basis": basis,
                         "measured_fpr": flagged_share(negatives, suggested),
                         "recall": _recall(to_own, kind_of, kinds, suggested)}
    if innocent:
        # What `publish` would choose with the crop hashes and the DCT signal (its default), and what that catches.
        banned_dct = np.stack([source.dct for source in sources])
        innocent_dct = nearest(np.stack([image.dct for image in innocent]), banned_dct).distance
        dct_to_own = np.bitwise_count(np.bitwise_xor(altered_dct, banned_dct[owner])).sum(axis=1)
        crops, crop_owner = crop_hashes(hasher, [source.image for source in sources])
        innocent_crops = hasher.nearest_queries([image.views for image in innocent], crops).distance
        crops_to_own = nearest_own(altered, view_of, owner, crops, crop_owner)
        innocent_by = Innocents({NETWORK: to_nearest, CROPS: innocent_crops, DCT: innocent_dct},
                                np.arange(len(innocent)) if innocent_groups is None else innocent_groups)
        lists = Lists({NETWORK: banned, CROPS: crops, DCT: banned_dct})
        bits_by = {NETWORK: bits, CROPS: bits, DCT: dcthash.BITS}
        own_copies = positives(hasher, lists, [s.image for s in sources], digests)
        chosen = choose(innocent_by, own_copies, target_fpr, bits_by, confidence=confidence)
        caught = chosen.flags({NETWORK: to_own, CROPS: crops_to_own, DCT: dct_to_own})
        data["suggested_fused"] = {
            "target_fpr": target_fpr, "confidence": confidence, "thresholds": chosen.thresholds,
            "agree": chosen.agree,
            "crops_hashes": int(len(crops)), "measured_fpr": chosen.share, "bound_fpr": chosen.bound,
            "innocent_groups": int(len(np.unique(innocent_by.groups))), "own_copies_caught": chosen.recall,
            "recall": {"all": _share(caught), "per_kind": {kind: _share(caught[kind_of == kind]) for kind in kinds}}}
        if len(np.unique(innocent_by.groups)) >= 2:
            data["held_out"] = [
                {"calibration": [fold.calibration_images, fold.calibration_groups],
                 "held_out": [fold.held_out_images, fold.held_out_groups], "thresholds": fold.choice.thresholds,
                 "agree": fold.choice.agree,
                 "measured_fpr": fold.choice.share, "bound_fpr": fold.choice.bound,
                 "held_out_fpr": fold.held_out_share}
                for fold in cross_check(innocent_by, own_copies, target_fpr, bits_by, confidence=confidence)]
        levels = {}
        to_copies = {NETWORK: to_own, CROPS: crops_to_own, DCT: dct_to_own}
        for level in LEVELS.values():  # each `publish --privacy` level: its signals chosen together
            names = [NETWORK, *([CROPS] if level.crops else []), *([DCT] if level.dct else [])]
            at = choose(Innocents({name: innocent_by.distances[name] for name in names}, innocent_by.groups),
                        {name: own_copies[name] for name in names}, target_fpr, bits_by, confidence=confidence)
            levels[level.name] = {"thresholds": at.thresholds, "agree": at.agree, "measured_fpr": at.share,
                                  "bound_fpr": at.bound, "recall": _share(at.flags(to_copies))}
        gallery = np.stack([thumbnail(s.image) for s in [*sources, *innocent]])
        ranks = identification_ranks(dct_sketches(banned_dct), gallery, range(len(sources)))
        data["privacy"] = {"levels": levels, "dct_identified_top1": _share(ranks == 1),
                           "dct_gallery": int(len(gallery))}

    files: dict[str, Path] = {}
    if report_dir is not None:
        files = {"json": report_dir / "report.json", "histograms": report_dir / "histograms.png",
                 "roc": report_dir / "roc.png", "table": report_dir / "report.txt"}
        make_folder(report_dir, EvaluationError)
        write_atomic(files["histograms"], plots.histograms(groups, bits, threshold), EvaluationError)
        write_atomic(files["roc"], plots.roc(curves), EvaluationError)
        write_atomic(files["json"], (json.dumps(data, indent=2) + "\n").encode(), EvaluationError)
        write_atomic(files["table"], (render(data) + "\n").encode(), EvaluationError)
    return Report(data, files)


def _share(hits: np.ndarray) -> float:
    """Share of True in `hits` (0 when empty)."""
    return float(np.mean(hits)) if len(hits) else 0.0


def _recall(to_own: np.ndarray, kind_of: np.ndarray, kinds: Sequence[str], threshold: int) -> dict[str, Any]:
    return {"threshold": threshold, "all": flagged_share(to_own, threshold),
            "per_kind": {kind: flagged_share(to_own[kind_of == kind], threshold) for kind in kinds}}


def _row(name: str, s: Mapping[str, Any]) -> str:
    if not s["n"]:
        return f"  {name:<28}{0:>7}"
    return (f"  {name:<28}{s['n']:>7}{s['min']:>6}{s['q1']:>7.1f}{s['median']:>8.1f}{s['q3']:>7.1f}"
            f"{s['max']:>6}{s['mean']:>8.2f}")


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def render(data: Mapping[str, Any]) -> str:
    """The report as a table for a terminal."""
    images, distances = data["images"], data["distances"]
    lines = [
        f"model: {data['model']['spec']}, {data['model']['bits']} bits, "
        + ("fitted to the list" if data["model"].get("recipe") == "copy" else f"{data['model']['epochs']} epochs")
        + f", seed {data['model']['seed']}",
        f"images: {images['banned']} banned ({images['in_training']} used in training), "
        f"{images['altered_copies']} {'held-out' if images['copies_held_out'] else 'TRAINING (none held out)'} "
        f"altered copies" + (f", {images['innocent']} innocent" if images["innocent"] else ""),
        "",
        "Hamming distances (paper Fig. 10: mean ~40 between sources, ~5 to altered copies)",
        f"  {'':<28}{'n':>7}{'min':>6}{'q1':>7}{'median':>8}{'q3':>7}{'max':>6}{'mean':>8}",
        _row("between sources", distances["between_sources"]),
        _row("to held-out altered copies", distances["to_altered_copies"]),
    ]
    lines += [_row(f"  {kind}", s) for kind, s in distances["per_kind"].items()]
    if "innocent_to_nearest" in distances:
        lines.append(_row("innocent to nearest banned", distances["innocent_to_nearest"]))
    recall = data["recall"]
    lines += ["", f"at threshold {data['threshold']} (match if distance < {data['threshold']}):",
              f"  recall of altered copies: {_pct(recall['all'])} ("
              + ", ".join(f"{k} {_pct(v)}" for k, v in recall["per_kind"].items()) + ")"]
    if "innocent_flagged" in data:
        flagged = data["innocent_flagged"]
        lines.append(f"  innocent images flagged: {_pct(flagged['share'])} ({flagged['count']} of "
                     f"{images['innocent']})")
    lines.append(f"  ROC AUC, copies vs other banned images: {data['roc_auc_pairwise']:.3f}"
                 + (f"; copies vs innocent images: {data['roc_auc_innocent']:.3f}"
                    if "roc_auc_innocent" in data else ""))
    suggested = data["suggested"]
    lines += ["", f"suggested threshold for a false-positive rate <= {_pct(suggested['target_fpr'])} "
                  f"({suggested['basis']}): {suggested['threshold']}",
              f"  measured false-positive rate {_pct(suggested['measured_fpr'])}, recall of altered copies "
              f"{_pct(suggested['recall']['all'])} ("
              + ", ".join(f"{k} {_pct(v)}" for k, v in suggested["recall"]["per_kind"].items()) + ")"]
    if "suggested_fused" in data:
        fused = data["suggested_fused"]
        rule = _rule(fused)
        lines += [f"chosen together, as publish calibrates by default ({fused['crops_hashes']} crop hashes): {rule}",
                  f"  innocent images flagged {_pct(fused['measured_fpr'])}, at most {_pct(fused['bound_fpr'])} in a "
                  f"new group at {fused['confidence']:.0%} confidence ({fused['innocent_groups']} groups); own "
                  f"altered copies caught {_pct(fused['own_copies_caught'])}",
                  f"  recall of held-out altered copies {_pct(fused['recall']['all'])} ("
                  + ", ".join(f"{k} {_pct(v)}" for k, v in fused["recall"]["per_kind"].items()) + ")"]
    for fold in data.get("held_out", []):
        rule = _rule(fold)
        lines.append(f"calibrated on {fold['calibration'][0]} innocent images ({fold['calibration'][1]} groups): "
                     f"{rule}, flagged {_pct(fold['measured_fpr'])} (bound {_pct(fold['bound_fpr'])}); on the "
                     f"other {fold['held_out'][0]} ({fold['held_out'][1]} groups): {_pct(fold['held_out_fpr'])}")
        target, count = data["suggested_fused"]["target_fpr"], fold["calibration"][0]
        if fold["bound_fpr"] > target:
            lines.append(f"  no thresholds keep the bound within the {_pct(target)} target on {count} images: it is "
                         f"never below 1/(N+1) = {_pct(1 / (count + 1))} and grows with the spread between groups; "
                         "calibrate on more innocent images, in more groups")
    if "privacy" in data:
        privacy = data["privacy"]
        lines += ["", "privacy levels (publish --privacy), each calibrated alike (docs/threat-model.md says what each "
                      "gives away):"]
        for name, level in privacy["levels"].items():
            rule = _rule(level)
            lines.append(f"  {name:<11} {rule}: recall of altered copies {_pct(level['recall'])}, innocent images "
                         f"flagged {_pct(level['measured_fpr'])} (at most {_pct(level['bound_fpr'])})")
        lines.append(f"  the DCT hashes alone (max-recall) identify {_pct(privacy['dct_identified_top1'])} of the "
                     f"banned images among these {privacy['dct_gallery']} images, by an inverse DCT of their signs")
    return "\n".join(lines)


def _rule(chosen: dict[str, Any]) -> str:
    """Thresholds as the report shows them: each alone, then, when signals must agree, their agreement ones."""
    alone = ", ".join(f"{name} < {t}" for name, t in chosen["thresholds"].items())
    if not chosen.get("agree"):
        return alone
    return f"{alone}, or two of " + ", ".join(f"{name} < {t}" for name, t in chosen["agree"].items())
