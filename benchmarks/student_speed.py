"""What a one-pass student (`authority distil`) saves and what it gives up, beside the shipped copy detector,
in one run.

Both base models are fitted to the example banned images as `authority train` fits them; then, on one thread:
the network alone on 256 preprocessed inputs, by ONNX Runtime and by torch (best of --repeats, the models taking
turns, as benchmarks/screen_speed.py times it); and for every example image, how many bits its hash and its
left-right mirror's differ (0 for the shipped model, by construction), beside how far the unrelated examples
lie from the nearest banned one. Recall is benchmarks/quality.py's: `--fit-copy --fit-base STUDENT`.

    python benchmarks/student_speed.py student.vhm
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from screen_speed import best_rates  # noqa: E402

from vetohash.engines import onnx_engine, torch_engine  # noqa: E402
from vetohash.hasher import Hasher  # noqa: E402
from vetohash.matching import hamming_matrix  # noqa: E402
from vetohash.preprocess import open_image  # noqa: E402
from vetohash_authority.listfit import ListFitConfig, base_model, fit_to_list  # noqa: E402

INPUTS = 256


def network_rates(fitted: dict[str, Hasher], repeats: int) -> dict[str, float]:
    """Images/s of each model's network alone, one thread, by each engine."""
    pre = next(iter(fitted.values())).spec.preprocess
    batch = np.random.default_rng(0).normal(size=(INPUTS, pre.channels, pre.size, pre.size)).astype(np.float32)
    runs = {}
    for name, hasher in fitted.items():
        for engine, make in (("onnxruntime", onnx_engine), ("torch", torch_engine)):
            run = make(hasher.spec, hasher.arrays(), 1)
            runs[f"{name} {engine}"] = lambda run=run: run(batch)
    return best_rates(runs, INPUTS, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("student", type=Path, help="the student's model file (authority distil --out)")
    parser.add_argument("--repeats", type=int, default=25, help="timings per model and engine; the best counts")
    args = parser.parse_args()
    torch.set_num_threads(1)
    banned = [open_image(path) for path in sorted((ROOT / "examples" / "banned").glob("*.jpg"))]
    unrelated = [open_image(path) for path in sorted((ROOT / "examples" / "unrelated").glob("*.jpg"))]
    fitted = {name: fit_to_list(base_model(path), banned, ListFitConfig(), seed=0)[0]
              for name, path in (("shipped", None), ("student", args.student))}
    rates = network_rates(fitted, args.repeats)
    for engine in ("onnxruntime", "torch"):
        shipped, student = rates[f"shipped {engine}"], rates[f"student {engine}"]
        print(f"network alone, one thread, {engine}: shipped {shipped:.0f} images/s, student {student:.0f} "
              f"({student / shipped:.2f}x)")
    images = banned + unrelated
    for name, hasher in fitted.items():
        hashes = hasher.hash_images(images)
        mirrored = np.diagonal(hamming_matrix(hashes, hasher.hash_images([ImageOps.mirror(i) for i in images])))
        nearest = hamming_matrix(hashes[len(banned):], hashes[:len(banned)]).min(axis=1)
        print(f"{name} ({hasher.spec.bits} bits): an image and its mirror {mirrored.mean():.1f} bits apart on "
              f"average (median {np.median(mirrored):.0f}, at most {mirrored.max()}, the same hash for "
              f"{np.mean(mirrored == 0):.0%} of {len(images)} examples); an unrelated example and the nearest "
              f"banned one {nearest.mean():.1f} bits apart on average, at least {nearest.min()}")


if __name__ == "__main__":
    main()
