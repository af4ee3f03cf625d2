"""`platform batch` on Ray with 1 and 2 workers, beside the local `platform screen` on the same files.

Run from the repository root::

    .venv/bin/python benchmarks/batch_speed.py                 # 1,000 generated 128x128 JPEG crops
    .venv/bin/python benchmarks/batch_speed.py --count 2000

It builds the same default-shaped bundle as screen_speed.py (10,000 banned hashes with their DCT hashes and 21
crop hashes each, as many as authority publish writes) into a throw-away database and times, one after another
on the same page-cached files, each command end to end as a user runs it: `platform screen --json` (start-up
included), then `platform batch` on a local Ray instance it starts itself, with --workers 1 and 2 (Ray's start
included), each into fresh results. It also checks that every run gives the same verdicts."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screen_speed import CROPS_PER_IMAGE, make_store, small_images  # noqa: E402  (the same images and bundle)


def timed(command: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, check=False)
    return time.perf_counter() - start, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="images (default 1000)")
    parser.add_argument("--banned", type=int, default=10_000, help="hashes in the bundle (default 10000)")
    args = parser.parse_args()

    paths = small_images(args.count)
    for path in paths:
        path.read_bytes()
    script = str(Path(sys.executable).parent / "platform")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_store(folder, paths, args.banned, plain=False, crops=CROPS_PER_IMAGE)
        env = dict(os.environ, VETOHASH_DB=str(folder / "platform.db"))
        listing = folder / "paths.txt"
        listing.write_text("".join(f"{p}\n" for p in paths))
        seconds, done = timed([script, "screen", "--json", "--no-progress", *map(str, paths)], env)
        if done.returncode not in (0, 1):
            raise SystemExit(f"platform screen failed: {done.stderr.decode()[-500:]}")
        local = {r["path"]: r["verdict"] for r in map(json.loads, done.stdout.splitlines())}
        rows.append(("`platform screen` (local, default decode threads)", seconds))
        for workers in (1, 2):
            out = folder / f"results-{workers}.jsonl"
            seconds, done = timed([script, "batch", str(listing), "--out", str(out), "--workers", str(workers),
                                   "--no-progress"], env)
            if done.returncode != 0:
                raise SystemExit(f"platform batch failed: {done.stderr.decode()[-800:]}")
            found = {r["path"]: r["verdict"] for r in map(json.loads, out.read_text().splitlines())}
            if found != local:
                raise SystemExit(f"platform batch --workers {workers} gave other verdicts than platform screen")
            rows.append((f"`platform batch --workers {workers}` (local Ray, 1 CPU per worker)", seconds))

    matched = sum(v == "match" for v in local.values())
    print(f"{len(paths)} images (generated 128x128 JPEG crops), bundle of {args.banned} hashes with DCT hashes and "
          f"{CROPS_PER_IMAGE} crop hashes each, {os.cpu_count()} CPUs; {matched} matched, the same verdicts in every run")
    print()
    print("| command (start-up included) | seconds | images/s |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:,.1f} | {len(paths) / seconds:,.1f} |")


if __name__ == "__main__":
    main()
