"""How a platform copes with lists of 100,000 to 10 million banned images: version 4 ingest, deltas, and the
per-signal index (vetohash_platform.index), on this machine.

Run from the repository root (each size is written once under --work and reused)::

    nice -n 5 .venv/bin/python benchmarks/index_speed.py --sizes 100000 1000000 10000000

For each size N it writes a version 4 bundle shaped as a default one (a 160-bit network hash, a 256-bit DCT
hash and 21 crop hashes per banned image, as many as authority publish writes; random hashes, random copy-cnn
weights) and a delta of 10,000 images (10,000 added, 10,000 removed); ingests both into a throw-away database
in a child process (wall time and peak resident memory of that process); then times each signal's index
search, on one core and on all, for queries that are planted near copies: banned hashes with d bits flipped, d
uniform in [0, threshold), so the brute-force nearest of every query is under the threshold. Recall is the
share of those queries the index finds under the threshold (for each signal, and for the default bundle's
rule: any signal).

Random hashes are the hard case for an inverted-file index (no cluster structure to exploit) and the
flips are uniform up to the threshold (real altered copies sit mostly far below it), so these recalls are
lower bounds for real lists; the speeds do not depend on the hashes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np

from vetohash.chunked import CHUNK_IMAGES, CROPS, DCT, NEURAL, ImageChunk, ListHeader, Signals, write_chunked
from vetohash.errors import VetohashError
from vetohash.keys import generate_private_key, public_key_of
from vetohash.specs import PRESETS, ModelSpec
from vetohash.weights import encode_arrays, module_arrays
from vetohash_authority.cropviews import PER_IMAGE as CROPS_PER_IMAGE

ROOT = Path(__file__).resolve().parents[1]
BITS = 160
THRESHOLDS = {NEURAL: 50, DCT: 96, CROPS: 39}  # the default bundle's (docs/authority.md)
WIDTH = {NEURAL: BITS // 8, DCT: 32, CROPS: BITS // 8}
DELTA = 10_000
PLANTED = 2_000  # banned images whose hashes the queries are near copies of
SEED = 20261201


def spec() -> ModelSpec:
    base = PRESETS["copy-cnn"]
    return ModelSpec(name=base.name, arch=base.arch, preprocess=base.preprocess, bits=BITS)


def chunks(count: int, first: int, seed: int) -> Iterator[ImageChunk]:
    """Random images `first`..`first + count` with every signal, a chunk at a time (bounded memory)."""
    rng = np.random.default_rng(seed)
    for start in range(first, first + count, CHUNK_IMAGES):
        n = min(CHUNK_IMAGES, first + count - start)
        yield ImageChunk(tuple(f"h{i:011x}" for i in range(start, start + n)),
                         rng.integers(0, 256, (n, WIDTH[NEURAL]), dtype=np.uint8),
                         rng.integers(0, 256, (n, WIDTH[DCT]), dtype=np.uint8),
                         rng.integers(0, 256, (n * CROPS_PER_IMAGE, WIDTH[CROPS]), dtype=np.uint8),
                         np.repeat(np.arange(n, dtype=np.int64), CROPS_PER_IMAGE))


def write_lists(work: Path, size: int, key_bytes: bytes) -> tuple[Path, Path]:
    """The whole list of `size` images (sequence 1) and a delta on it (sequence 2), written once."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(key_bytes)
    whole, delta = work / f"list-{size}.vhb4", work / f"list-{size}-delta.vhb4"
    now = int(time.time())
    weights = encode_arrays(module_arrays(spec().build()))
    signals = Signals(THRESHOLDS[NEURAL], THRESHOLDS[DCT], THRESHOLDS[CROPS])
    header = ListHeader(spec=spec(), authority="Benchmark", list_name=f"bench-{size}", sequence=1, created=now,
                        expires=now + 30 * 86400, signals=signals)
    if not whole.exists():
        write_chunked(whole, header, weights, chunks(size, 0, SEED + size), key, VetohashError)
    if not delta.exists():
        removed = [f"h{i:011x}" for i in range(size - DELTA, size)]  # the last ones: never planted
        write_chunked(delta, ListHeader(**{**header.__dict__, "sequence": 2, "base": 1}), weights,
                      chunks(DELTA, size, SEED + size + 1), key, VetohashError, removed=[removed[i:i + CHUNK_IMAGES]
                                                                         for i in range(0, DELTA, CHUNK_IMAGES)],
                      total_images=size)
    return whole, delta


def planted_queries(size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each signal, near copies of the first PLANTED images' hashes (crops: one crop of each), and how
    many bits each has flipped."""
    first = next(chunks(min(size, CHUNK_IMAGES), 0, SEED + size))
    rng = np.random.default_rng(SEED)
    out = {}
    for signal, hashes in ((NEURAL, first.neural), (DCT, first.dct), (CROPS, first.crops[::CROPS_PER_IMAGE])):
        queries = hashes[:PLANTED].copy()
        flipped = rng.integers(0, THRESHOLDS[signal], len(queries))
        for row, count in zip(queries, flipped, strict=True):
            flips = rng.choice(WIDTH[signal] * 8, count, replace=False)
            np.bitwise_xor.at(row, flips // 8, (1 << (7 - flips % 8)).astype(np.uint8))
        out[signal] = (queries, flipped)
    return out


def ingest_child(db: Path, folder: Path) -> None:
    """In a child process: ingest one bundle, print its wall time and this process's peak memory."""
    from vetohash_platform.ingest import ingest_chunked
    from vetohash_platform.store import Store

    with Store.open(db) as store:
        start = time.perf_counter()
        ingest_chunked(store, folder)
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def ingest(db: Path, folder: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--ingest-child", str(db), str(folder)], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def measure(size: int, work: Path, nprobes: list[int]) -> None:
    from vetohash_platform.active import Status, stored_bundles
    from vetohash_platform.biglist import BigList
    from vetohash_platform.store import Store
    from vetohash_platform.trust import add_key

    key_bytes = bytes(range(32))
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    public = public_key_of(Ed25519PrivateKey.from_private_bytes(key_bytes))
    start = time.perf_counter()
    whole, delta = write_lists(work, size, key_bytes)
    print(f"\n== {size:,} banned images ({size * CROPS_PER_IMAGE:,} crop hashes); bundles written in "
          f"{time.perf_counter() - start:.0f} s (reused if present): "
          f"{sum(p.stat().st_size for p in whole.iterdir()) / 1e6:.0f} MB whole, "
          f"{sum(p.stat().st_size for p in delta.iterdir()) / 1e6:.1f} MB delta", flush=True)
    db = work / f"db-{size}" / "platform.db"
    shutil.rmtree(db.parent, ignore_errors=True)
    with Store.open(db) as store:
        add_key(store, public.to_text())
    first = ingest(db, whole)
    print(f"ingest (verify every chunk, build every index): {first['seconds']:.1f} s, peak memory "
          f"{first['peak_rss_mb']:.0f} MB (anchor: under 4,000 MB at 10 million)", flush=True)
    applied = ingest(db, delta)
    print(f"delta of {DELTA:,} added and {DELTA:,} removed: {applied['seconds']:.1f} s, peak memory "
          f"{applied['peak_rss_mb']:.0f} MB (anchor: under 60 s)", flush=True)
    with Store.open(db) as store:
        stored, = [s for s in stored_bundles(store) if s.status is Status.ACTIVE]
        big = BigList(stored.manifest, stored.folder)
        disk = {signal: sum(p.stat().st_size for p in stored.folder.rglob(f"{signal}.*.faiss"))
                for signal in (NEURAL, DCT, CROPS)}
        ids = sum(p.stat().st_size for p in stored.folder.rglob("*.npy"))
    print("index bytes per banned image: " + ", ".join(f"{s} {b / size:.0f}" for s, b in disk.items())
          + f", ids {ids / size:.0f}; total {(sum(disk.values()) + ids) / size:.0f} (memory-mapped)")
    queries = planted_queries(size)
    for signal in (NEURAL, DCT, CROPS):
        big.nearest(signal, queries[signal][0][:10])  # load the shards
    for nprobe in nprobes:
        for index in big._indexes.values():
            for shard in index.shards:
                if isinstance(shard, faiss.IndexBinaryIVF):
                    shard.nprobe = nprobe
        for threads in sorted({1, os.cpu_count() or 1}):
            for index in big._indexes.values():
                index.workers = threads
            seconds, hits = {}, {}
            for signal in (NEURAL, DCT, CROPS):
                big.nearest(signal, queries[signal][0][:200])  # warm the pages these queries touch
                start = time.perf_counter()
                found = big.nearest(signal, queries[signal][0])
                seconds[signal] = time.perf_counter() - start
                hits[signal] = found.distance < THRESHOLDS[signal]
            per_query = sum(seconds.values()) / PLANTED
            recall = {s: float(h.mean()) for s, h in hits.items()}
            print(f"nprobe {nprobe:4d}, {threads} core(s): all signals {1 / per_query:8,.0f} queries/s "
                  f"(" + ", ".join(f"{s} {PLANTED / t:,.0f}/s" for s, t in seconds.items()) + "); recall "
                  + ", ".join(f"{s} {100 * r:.2f} %" for s, r in recall.items())
                  + " (anchor: 1,000 queries/s on 2 cores, 99.9 %)", flush=True)
        bands = []
        for signal in (NEURAL, DCT, CROPS):
            flipped, limit = queries[signal][1], THRESHOLDS[signal]
            edges = [0, limit // 2, 3 * limit // 4, limit]
            bands.append(f"{signal} " + ", ".join(
                f"[{low},{high}) {100 * hits[signal][(flipped >= low) & (flipped < high)].mean():.1f} %"
                for low, high in zip(edges, edges[1:])))
        print(f"  recall by bits flipped, nprobe {nprobe}: " + "; ".join(bands), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "index_speed")
    parser.add_argument("--ingest-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ingest_child:
        ingest_child(*args.ingest_child)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"faiss {faiss.__version__}, {os.cpu_count()} cores; exact search up to "
          f"{__import__('vetohash_platform.index').index.EXACT_MAX:,} hashes a shard, inverted lists above")
    for size in args.sizes:
        measure(size, args.work, args.nprobe)


if __name__ == "__main__":
    main()
