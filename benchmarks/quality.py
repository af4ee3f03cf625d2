"""Detection quality of vetohash beside PDQ, pHash and dHash, on real photographs, in one run.

Also vetohash's own DCT hash alone ("dct", vetohash.dcthash, beside PDQ), and each vetohash model fused with it
("vetohash+dct": flagged when either hash is near) and with crop hashes besides ("vetohash+crops+dct", what
`authority publish` writes by default: the network's hashes of 17 crops of each banned image,
vetohash_authority.cropviews), every threshold set on the unrelated images by exactly the rule `authority
publish` uses (vetohash_authority.evaluation.fused_thresholds).

    python benchmarks/quality.py                          # 110 banned images, baselines only
    python benchmarks/quality.py --model model.vhm        # add a vetohash model file
    python benchmarks/quality.py --fit-copy               # vetohash's default recipe, fitted to this list
    python benchmarks/quality.py --fit-copy --banned 1000 --json out.json

Banned and unrelated images are photo crops from disjoint source photographs shipped inside PyPI packages
(examples/make_example_images.py). Every banned image gets one altered copy per edit in the suite (the
paper's four edits at full range, and the edits people use to dodge filters, each at three severities).
For each method, thresholds are set on the unrelated images: the image-level false-positive rate is the
share of unrelated images whose nearest banned hash is closer than the threshold, for this list size.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "examples"), str(ROOT / "benchmarks")]

from baselines import BASELINES  # noqa: E402
from make_example_images import BANNED_SEED, UNRELATED_SEED, crops, source_photos  # noqa: E402
from metrics import recall, roc_auc, threshold_at_fpr  # noqa: E402

from edits import EDITS, Edit  # noqa: E402
from vetohash.dcthash import dct_hashes  # noqa: E402
from vetohash.hasher import Hasher  # noqa: E402
from vetohash.matching import hamming_matrix, nearest_by_owner, nearest_own  # noqa: E402
from vetohash.modelfile import read_model  # noqa: E402
from vetohash.preprocess import query_arrays  # noqa: E402
from vetohash_authority.cropviews import crop_hashes  # noqa: E402
from vetohash_authority.evaluation import fused_thresholds  # noqa: E402

HashFn = Callable[[Sequence[Image.Image]], np.ndarray]
IMAGE_FPRS = (0.01, 0.001)
PAIR_FPRS = (1e-4, 1e-3)


QueryFn = Callable[[Sequence[Image.Image]], tuple[np.ndarray, np.ndarray]]


@dataclass
class Method:
    """A named hash function; optionally the list-side variants hashed for each banned image, how a query
    is hashed when it has several views (hashes of every view and the query each belongs to), and the crop
    hashes of the banned images (hashes and the image each belongs to) that bundles carry beside them."""

    name: str
    hash: HashFn
    bits: int
    list_variants: Callable[[Image.Image], list[Image.Image]] | None = None
    queries: QueryFn | None = None
    crops: QueryFn | None = None

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


def vetohash_method(path: Path, variants: Callable[[Image.Image], list[Image.Image]] | None) -> Method:
    hasher, meta = read_model(path)
    name = path.stem + ("+variants" if variants else "")
    return Method(name, hasher.hash_images, hasher.spec.bits, variants, hasher_queries(hasher),
                  None if variants else (lambda images: crop_hashes(hasher, images)))


def altered_copies(banned: Sequence[Image.Image], suite: Sequence[Edit], seed: int) -> list[tuple[int, Edit, Image.Image]]:
    """One altered copy of every banned image per edit; each draw seeded by (seed, image, edit)."""
    out = []
    for i, image in enumerate(banned):
        for k, edit in enumerate(suite):
            out.append((i, edit, edit.apply(image, random.Random(f"{seed}/{i}/{k}"))))
    return out


def evaluate(method: Method, banned, unrelated, altered) -> tuple[dict, Distances, Distances | None]:
    """Every figure for one method, the distances they come from, and those to its crop hashes (if any)."""
    owners = np.arange(len(banned))
    list_images = list(banned)
    if method.list_variants:
        extra = [(i, v) for i, image in enumerate(banned) for v in method.list_variants(image)]
        list_images += [v for _, v in extra]
        owners = np.concatenate([owners, np.array([i for i, _ in extra], dtype=np.int64)])
    banned_hashes = method.hash(list_images)
    unrelated_hashes, unrelated_of = method.query_hashes(unrelated)
    altered_hashes, altered_of = method.query_hashes([image for _, _, image in altered])
    sources = np.array([i for i, _, _ in altered])

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
        per_kind: dict[str, list[bool]] = {}
        per_severity: dict[str, list[bool]] = {}
        per_family: dict[str, list[bool]] = {}
        for (_, edit, _), h in zip(altered, hit):
            per_kind.setdefault(edit.kind, []).append(bool(h))
            per_severity.setdefault(f"{edit.kind}/{edit.severity}", []).append(bool(h))
            per_family.setdefault(edit.family, []).append(bool(h))
        report["image_level"][str(fpr)] = {
            "threshold": t, "measured_fpr": float(np.mean(innocent < t)), "recall": float(hit.mean()),
            "recall_right_source": float(right.mean()),
            "family": {k: float(np.mean(v)) for k, v in per_family.items()},
            "kind": {k: float(np.mean(v)) for k, v in per_kind.items()},
            "severity": {k: float(np.mean(v)) for k, v in per_severity.items()},
        }
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


def evaluate_fused(name: str, neural: Distances, dct: Distances, crops: Distances | None, bits: int,
                   list_size: int, altered) -> dict:
    """The figures of the fused decision (flagged when any distance is below its threshold), with every
    threshold chosen per false-positive rate as `authority publish` chooses them."""
    report = {"method": name, "bits": f"{bits}+256", "list_size": list_size, "auc": None, "image_level": {},
              "pairwise": {}}
    crops_innocent, crops_altered = (None, None) if crops is None else crops
    for fpr in IMAGE_FPRS:
        chosen = fused_thresholds(neural.innocent, fpr, bits, dct=dct.innocent, crops=crops_innocent)
        hit = chosen.flags(neural.altered, dct.altered, crops_altered)
        groups: dict[str, dict[str, list[bool]]] = {"kind": {}, "severity": {}, "family": {}}
        for (_, edit, _), h in zip(altered, hit):
            groups["kind"].setdefault(edit.kind, []).append(bool(h))
            groups["severity"].setdefault(f"{edit.kind}/{edit.severity}", []).append(bool(h))
            groups["family"].setdefault(edit.family, []).append(bool(h))
        report["image_level"][str(fpr)] = {
            "threshold": "|".join(str(t) for t in chosen if t is not None), "dct_threshold": chosen.dct,
            "crops_threshold": chosen.crops,
            "measured_fpr": float(np.mean(chosen.flags(neural.innocent, dct.innocent, crops_innocent))),
            "recall": float(hit.mean()),
            **{group: {k: float(np.mean(v)) for k, v in values.items()} for group, values in groups.items()},
        }
    return report


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
    width = max(12, *(len(n) for n in names)) + 2
    def row(label: str, values: Sequence[str]) -> None:
        print(f"{label:<34}" + "".join(f"{v:>{width}}" for v in values))
    row("", names)
    row("bits / list size", [f"{r['bits']}/{r['list_size']}" for r in reports])
    row("ROC AUC (image level)", ["-" if r["auc"] is None else f"{r['auc']:.4f}" for r in reports])
    for fpr in IMAGE_FPRS:
        levels = [r["image_level"][str(fpr)] for r in reports]
        row(f"@{fpr:.1%} unrelated flagged: thresh", [f"{l['threshold']} ({l['measured_fpr']:.2%})" for l in levels])
        row("  recall, all edits", [f"{l['recall']:.1%}" for l in levels])
        for family in sorted(levels[0]["family"]):
            row(f"  recall, {family} edits", [f"{l['family'][family]:.1%}" for l in levels])
        if fpr == IMAGE_FPRS[0]:
            for kind in sorted(levels[0]["kind"]):
                row(f"    {kind}", [f"{l['kind'][kind]:.1%}" for l in levels])
    for fpr in PAIR_FPRS:
        row(f"recall @ pairwise FPR {fpr:g}", [f"{r['pairwise'][str(fpr)]['recall']:.1%}" if r["pairwise"] else "-"
                                               for r in reports])
    if "speed" in reports[0]:
        row("images/s on one core (decode+hash)", [f"{r['speed']:.0f}" if "speed" in r else "-" for r in reports])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--banned", type=int, default=110, help="banned images (default 110, as in the paper)")
    parser.add_argument("--unrelated", type=int, default=1085, help="unrelated images (default 1085)")
    parser.add_argument("--model", type=Path, action="append", default=[], help="vetohash model file (repeatable)")
    parser.add_argument("--fit-copy", action="store_true",
                        help="fit the shipped copy detector to the benchmark's banned images (authority train's "
                             "default recipe) and measure it")
    parser.add_argument("--list-variants", action="store_true",
                        help="also hash each banned image's list-side variants for the vetohash models")
    parser.add_argument("--no-baselines", action="store_true", help="skip PDQ, pHash and dHash")
    parser.add_argument("--speed", action="store_true", help="measure images/s on one core")
    parser.add_argument("--seed", type=int, default=0, help="seed of the edit draws")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()

    started = time.time()
    banned = crops(source_photos("banned"), args.banned, 128, BANNED_SEED)
    unrelated = crops(source_photos("unrelated"), args.unrelated, 128, UNRELATED_SEED)
    altered = altered_copies(banned, EDITS, args.seed)
    print(f"{len(banned)} banned, {len(unrelated)} unrelated, {len(altered)} altered copies "
          f"({len(EDITS)} edits); prepared in {time.time() - started:.0f} s", file=sys.stderr)

    methods = [] if args.no_baselines else [Method(n, fn, bits) for n, (fn, bits) in BASELINES.items()]
    methods.append(Method("dct", dct_hashes, 256))
    from edits import list_variants
    for path in args.model:
        methods.append(vetohash_method(path, None))
        if args.list_variants:
            methods.append(vetohash_method(path, list_variants))
    if args.fit_copy:
        from vetohash_authority.listfit import BASE_MODEL, ListFitConfig, fit_to_list

        t = time.time()
        base, _ = read_model(BASE_MODEL)
        fitted, _ = fit_to_list(base, banned, ListFitConfig(), seed=args.seed)
        print(f"fitted the copy detector to {len(banned)} banned images in {time.time() - t:.0f} s", file=sys.stderr)
        methods.append(Method("vetohash", fitted.hash_images, fitted.spec.bits, queries=hasher_queries(fitted),
                              crops=lambda images: crop_hashes(fitted, images)))
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
        report, distances[method.name], to_crops = evaluate(method, banned, unrelated, altered)
        if to_crops is not None:
            crop_distances[method.name] = to_crops
        if args.speed:
            report["speed"] = speed(method, jpegs)
        reports.append(report)
        print(f"{method.name}: {time.time() - t:.0f} s", file=sys.stderr)
    for method in methods:
        if method.name not in BASELINES and method.name != "dct" and method.list_variants is None:
            reports.append(evaluate_fused(f"{method.name}+dct", distances[method.name], distances["dct"], None,
                                          method.bits, len(banned), altered))
        if method.name in crop_distances:
            reports.append(evaluate_fused(f"{method.name}+crops+dct", distances[method.name], distances["dct"],
                                          crop_distances[method.name], method.bits, len(banned), altered))
    print_table(reports)
    if args.json:
        args.json.write_text(json.dumps({"banned": len(banned), "unrelated": len(unrelated),
                                         "altered": len(altered), "reports": reports}, indent=1))


if __name__ == "__main__":
    main()
