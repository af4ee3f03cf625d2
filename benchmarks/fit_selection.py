"""What keeping the best of several list fits buys (`authority train --fits K --innocent DIR`).

A list fit draws its altered views, background images and rotation at random, and one draw catches a point or two
more than another. `train --fits K` fits K times and keeps the fit whose thresholds, calibrated as `publish`
calibrates them, catch the most of the authority's own altered copies. This script measures that choice from
K runs of `benchmarks/quality.py --json` that differ only in `--fit-seed`: in-sample (every fit calibrated on all
the unrelated crops, the kept one measured on the benchmark's copies) and on held-out photos, where the choice is
made again in every split from the calibration half alone, as an authority holding only those photos would make
it, and the kept fit's thresholds are measured on the other half.

    python benchmarks/quality.py --fit-copy --no-baselines --fit-seed 0 --json f0.json   # ... and 1, 2, 3
    python benchmarks/fit_selection.py f0.json f1.json f2.json f3.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

RULE = "vetohash+crops+dct"  # the default bundle's rule


def held_out(runs: list[dict], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per split and fit: own copies caught where calibrated, held-out share / target, recall, gap to the oracle."""
    folds = [run["held_out"][RULE][key] for run in runs]
    if len({len(f) for f in folds}) != 1 or any(
            [f["held_out"] for f in fold] != [f["held_out"] for f in folds[0]] for fold in folds):
        raise SystemExit("the runs hold out different photos: run quality.py with the same options but --fit-seed")
    own = np.array([[f["own_copies_caught"] for f in fold] for fold in folds]).T
    ratio = np.array([[f["held_out_fpr"] / f["target"] for f in fold] for fold in folds]).T
    recall = np.array([[f["recall"] for f in fold] for fold in folds]).T
    gap = np.array([[100 * (f["oracle"]["recall"] - f["recall"]) for f in fold] for fold in folds]).T
    return own, ratio, recall, gap


def kept(own: np.ndarray) -> np.ndarray:
    """Per split, the fit train --fits keeps: the most own copies caught, the first among equals."""
    return own.argmax(axis=1)


def summary(ratio: np.ndarray, recall: np.ndarray, gap: np.ndarray) -> str:
    """One line over splits, in the terms of quality.py's held-out summary."""
    return (f"held-out share / target mean {ratio.mean():.2f}x, within 0.5-1.5x in "
            f"{100 * np.mean((ratio >= 0.5) & (ratio <= 1.5)):.0f}% (above {100 * np.mean(ratio > 1.5):.0f}%); "
            f"recall {100 * recall.mean():.1f}%, gap to the oracle mean {gap.mean():.1f}, within 3 points in "
            f"{100 * np.mean(gap <= 3):.0f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="quality.py --json outputs, one per --fit-seed")
    args = parser.parse_args()
    runs = [json.loads(path.read_text()) for path in args.runs]
    print(f"{len(runs)} list fits of {runs[0]['banned']} banned images, rule {RULE}, target 1%")
    rows = [[r for r in run["reports"] if r["method"] == RULE][0]["image_level"]["0.01"] for run in runs]
    for path, row in zip(args.runs, rows):
        print(f"  {path.name}: thresholds {row['threshold']}, own copies caught {100 * row['own_copies_caught']:.1f}%, "
              f"benchmark copies {100 * row['recall']:.1f}%")
    best = int(kept(np.array([[row["own_copies_caught"] for row in rows]]))[0])
    recalls = [row["recall"] for row in rows]
    print(f"in-sample: keeps {args.runs[best].name}, {100 * recalls[best]:.1f}% of the benchmark's copies "
          f"(a single fit: mean {100 * np.mean(recalls):.1f}%, {100 * min(recalls):.1f}-{100 * max(recalls):.1f}%)")
    for key, what in (("halves", "the seed's two halves"), ("half", "every way to hold out half the photos"),
                      ("two", "every way to hold out two")):
        own, ratio, recall, gap = held_out(runs, key)
        pick = kept(own)
        rows_ = np.arange(len(pick))
        print(f"{what} ({len(pick)} splits), the fit chosen on each split's calibration half:")
        print(f"  kept:         {summary(ratio[rows_, pick], recall[rows_, pick], gap[rows_, pick])}")
        print(f"  a single fit: {summary(ratio, recall, gap)}")
        if key == "halves":
            print("  halves kept: " + ", ".join(f"{ratio[i, p]:.2f}x (gap {gap[i, p]:.1f})" for i, p in enumerate(pick)))


if __name__ == "__main__":
    main()
