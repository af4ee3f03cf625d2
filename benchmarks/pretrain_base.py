"""Pretrain vetohash's shipped base copy detector on procedurally generated images only.

    python benchmarks/pretrain_base.py --out copy-base.vhm --device cuda --workers 15 --steps 6000

The shipped `authority/vetohash_authority/models/copy-base.vhm` was made by this script (see
docs/benchmarks.md for the exact command, device and time). No photograph is used: the network learns copy
detection from dead-leaves images, so the photographs the benchmark uses stay unseen.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vetohash.modelfile import write_model
from vetohash.specs import preset
from vetohash_authority.pretraining import PretrainConfig, pretrain_model
from vetohash_authority.synthetic import bank


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--spec", default="copy-cnn")
    parser.add_argument("--synthetic", type=int, default=20000, help="dead-leaves images in the bank")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--koleo", type=float, default=0.1)
    parser.add_argument("--minutes", type=float, help="wall-clock budget for the training steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()

    start = time.time()
    sources = bank(args.synthetic, seed=args.seed, workers=max(1, args.workers))
    print(f"bank of {len(sources)} images in {time.time() - start:.0f} s", flush=True)
    config = PretrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, temperature=args.temperature,
                            koleo_weight=args.koleo)

    def progress(step: int, loss: float) -> None:
        if step % 100 == 0:
            print(f"step {step} loss {loss:.4f} at {time.time() - start:.0f} s", flush=True)

    hasher, meta = pretrain_model(preset(args.spec), sources, config, seed=args.seed, device=args.device,
                                  workers=args.workers, minutes=args.minutes, progress=progress)
    meta["seconds"] = round(time.time() - start)
    meta["device"] = args.device
    write_model(args.out, hasher, meta)
    print(f"wrote {args.out} after {meta['seconds']} s; final loss {meta['final_loss']:.4f}", file=sys.stderr)


if __name__ == "__main__":
    main()
