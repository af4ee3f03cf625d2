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

With ``--real N`` the list's first N images are real instead: the benchmark's banned photo crops
(benchmarks/quality.py's, from examples/make_example_images.py) hashed by the copy detector fitted to them as
`authority train` fits it (cached in --work), with their 21 crop hashes and their DCT hash; the rest of the
list stays random. The queries are the altered copies quality.py makes of the first --altered of them (one per
edit of benchmarks/edits.py), hashed as the platform hashes uploads (every view; a copy's distance is its
least over its views), and a copy is a true match of a signal when its brute-force nearest hash among the N
real images is under that signal's threshold. Speeds are then copies searched per second (all their views).

    nice -n 5 .venv/bin/python benchmarks/index_speed.py --real 1000 --sizes 100000 1000000 --nprobe 16 64

Recall is printed at the default bundle's thresholds and at those benchmarks/list_growth.py extrapolates for a
list of 10 million (docs/benchmarks.md, "The flagged share grows with the list"), which a calibration on
the whole list would choose lower than the default.
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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from vetohash.chunked import CHUNK_IMAGES, CROPS, DCT, NEURAL, ImageChunk, ListHeader, Signals, write_chunked
from vetohash.errors import VetohashError
from vetohash.hasher import Hasher
from vetohash.keys import public_key_of
from vetohash.matching import Nearest, best_by_owner, nearest, nearest_by_owner
from vetohash.specs import PRESETS, ModelSpec
from vetohash.weights import encode_arrays, module_arrays
from vetohash_authority.cropviews import PER_IMAGE as CROPS_PER_IMAGE

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "examples"), str(ROOT / "benchmarks")]  # for --real (imported there: the ingest child
# loads this module too, and must not load torch into the memory it measures)

BITS = 160
THRESHOLDS = {NEURAL: 50, DCT: 96, CROPS: 39}  # the default bundle's (docs/authority.md)
FAR_THRESHOLDS = {NEURAL: 38, DCT: 79, CROPS: 37}  # list_growth.py's extrapolation to 10 million (docs/benchmarks.md)
WIDTH = {NEURAL: BITS // 8, DCT: 32, CROPS: BITS // 8}
DELTA = 10_000
PLANTED = 2_000  # banned images whose hashes the queries are near copies of
SEED = 20261201


@dataclass(frozen=True)
class Probe:
    """One signal's queries: the hash of every view, the query each view belongs to (increasing), and each
    query's distance to its nearest banned hash by brute force (for flips: the bits flipped, an upper bound)."""

    views: np.ndarray
    owners: np.ndarray
    truth: np.ndarray


@dataclass(frozen=True)
class Queries:
    """The queries of every signal (query i of each signal comes from banned image or copy i), the list rows
    their brute-force distances were measured against (rows 0 to `planted` - 1; the rest are random filler),
    and groups of them whose recall is printed apart (edit families)."""

    probes: dict[str, Probe]
    count: int
    planted: int
    unit: str
    groups: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Real:
    """Real banned images planted at the list's first rows (their hashes as one chunk), the model that hashed
    them, and their altered copies as queries."""

    planted: ImageChunk
    hasher: Hasher
    queries: Queries


def spec() -> ModelSpec:
    base = PRESETS["copy-cnn"]
    return ModelSpec(name=base.name, arch=base.arch, preprocess=base.preprocess, bits=BITS)


def chunks(count: int, first: int, seed: int, planted: ImageChunk | None = None) -> Iterator[ImageChunk]:
    """Random images `first`..`first + count` with every signal, a chunk at a time (bounded memory); the first
    images' hashes replaced by `planted`'s (same draws otherwise)."""
    rng = np.random.default_rng(seed)
    for start in range(first, first + count, CHUNK_IMAGES):
        n = min(CHUNK_IMAGES, first + count - start)
        chunk = ImageChunk(tuple(f"h{i:011x}" for i in range(start, start + n)),
                           rng.integers(0, 256, (n, WIDTH[NEURAL]), dtype=np.uint8),
                           rng.integers(0, 256, (n, WIDTH[DCT]), dtype=np.uint8),
                           rng.integers(0, 256, (n * CROPS_PER_IMAGE, WIDTH[CROPS]), dtype=np.uint8),
                           np.repeat(np.arange(n, dtype=np.int64), CROPS_PER_IMAGE))
        yield with_planted(chunk, planted) if planted is not None and start == first else chunk


def with_planted(chunk: ImageChunk, planted: ImageChunk) -> ImageChunk:
    """`chunk` with its first images' hashes (every signal) replaced by those of `planted`."""
    n = len(planted.ids)
    if n > len(chunk.ids) or chunk.dct is None or chunk.crops is None or chunk.crop_owners is None \
            or planted.dct is None or planted.crops is None or planted.crop_owners is None:
        raise ValueError("planted images must fit in the first chunk, every signal on both sides")
    rest = chunk.crop_owners >= n
    return replace(chunk, neural=np.concatenate([planted.neural, chunk.neural[n:]]),
                   dct=np.concatenate([planted.dct, chunk.dct[n:]]),
                   crops=np.concatenate([planted.crops, chunk.crops[rest]]),
                   crop_owners=np.concatenate([planted.crop_owners, chunk.crop_owners[rest]]))


def write_lists(work: Path, size: int, key_bytes: bytes, real: Real | None) -> tuple[Path, Path]:
    """The whole list of `size` images (sequence 1) and a delta on it (sequence 2), written once."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(key_bytes)
    name = f"list-{size}" if real is None else f"list-{size}-real{len(real.planted.ids)}"
    whole, delta = work / f"{name}.vhb4", work / f"{name}-delta.vhb4"
    now = int(time.time())
    model = spec() if real is None else real.hasher.spec
    weights: Mapping[str, Any] = encode_arrays(module_arrays(model.build())) if real is None \
        else real.hasher.encoded_weights()
    signals = Signals(THRESHOLDS[NEURAL], THRESHOLDS[DCT], THRESHOLDS[CROPS])
    header = ListHeader(spec=model, authority="Benchmark", list_name=f"bench-{size}", sequence=1, created=now,
                        expires=now + 30 * 86400, signals=signals)
    if not whole.exists():
        write_chunked(whole, header, weights, chunks(size, 0, SEED + size, None if real is None else real.planted), key,
                      VetohashError)
    if not delta.exists():
        removed = [f"h{i:011x}" for i in range(size - DELTA, size)]  # the last ones: never planted
        write_chunked(delta, ListHeader(**{**header.__dict__, "sequence": 2, "base": 1}), weights,
                      chunks(DELTA, size, SEED + size + 1), key, VetohashError, removed=[removed[i:i + CHUNK_IMAGES]
                                                                         for i in range(0, DELTA, CHUNK_IMAGES)],
                      total_images=size)
    return whole, delta


def flipped_queries(size: int) -> Queries:
    """For each signal, near copies of the first PLANTED images' hashes (crops: one crop of each), and how
    many bits each has flipped."""
    first = next(chunks(min(size, CHUNK_IMAGES), 0, SEED + size))
    rng = np.random.default_rng(SEED)
    probes = {}
    for signal, hashes in ((NEURAL, first.neural), (DCT, first.dct), (CROPS, first.crops[::CROPS_PER_IMAGE])):
        queries = hashes[:PLANTED].copy()
        flipped = rng.integers(0, THRESHOLDS[signal], len(queries))
        for row, count in zip(queries, flipped, strict=True):
            flips = rng.choice(WIDTH[signal] * 8, count, replace=False)
            np.bitwise_xor.at(row, flips // 8, (1 << (7 - flips % 8)).astype(np.uint8))
        probes[signal] = Probe(queries, np.arange(len(queries)), flipped)
    return Queries(probes, PLANTED, PLANTED, "queries")


def real_copies(banned_count: int, altered_of: int, work: Path) -> Real:
    """The first `banned_count` of quality.py's banned crops, hashed by the copy detector fitted to them (the
    model file cached in `work`), and the altered copies of the first `altered_of` (quality.altered_copies,
    seed 0), hashed as the platform hashes uploads."""
    from make_example_images import BANNED_SEED, crops, source_photos
    from quality import altered_copies, edit_labels, hasher_queries

    from edits import EDITS
    from vetohash.dcthash import dct_hashes
    from vetohash.modelfile import read_model, write_model
    from vetohash_authority.cropviews import crop_hashes
    from vetohash_authority.listfit import ListFitConfig, base_model, fit_to_list

    start = time.perf_counter()
    banned = crops(source_photos("banned"), banned_count, 128, BANNED_SEED)
    cached = work / f"fitted-{banned_count}.vhm"
    if cached.exists():
        hasher, _ = read_model(cached)
    else:
        hasher, meta = fit_to_list(base_model(), banned, ListFitConfig(), seed=0)
        write_model(cached, hasher, meta)
    print(f"copy detector fitted to {banned_count:,} banned images (`authority train`'s recipe, cached in "
          f"{cached.name}): {time.perf_counter() - start:.0f} s", flush=True)
    crop_list, crop_of = crop_hashes(hasher, banned)
    banned_dct = dct_hashes(banned)
    planted = ImageChunk(tuple(f"h{i:011x}" for i in range(banned_count)), hasher.hash_images(banned), banned_dct,
                         crop_list, crop_of)
    altered = altered_copies(banned[:altered_of], EDITS, 0)
    images = [image for _, _, image in altered]
    views, owners = hasher_queries(hasher)(images)
    dct = dct_hashes(images)
    count = len(altered)
    probes = {NEURAL: Probe(views, owners, nearest_by_owner(views, owners, count, planted.neural).distance),
              CROPS: Probe(views, owners, nearest_by_owner(views, owners, count, crop_list).distance),
              DCT: Probe(dct, np.arange(count), nearest(dct, banned_dct).distance)}
    families = edit_labels(altered)["family"]
    print(f"{banned_count:,} real banned images ({len(crop_list):,} crop hashes) planted at rows 0-{banned_count - 1}; "
          f"{count:,} altered copies of the first {altered_of} ({len(EDITS)} edits, {len(views):,} views); "
          f"hashed in {time.perf_counter() - start:.0f} s", flush=True)
    return Real(planted, hasher, Queries(probes, count, banned_count, "copies",
                                         {str(f): families == f for f in dict.fromkeys(families.tolist())}))


def ingest_child(db: Path, folder: Path) -> None:
    """In a child process: ingest one bundle, print its wall time and this process's peak memory."""
    from vetohash_platform.ingest import ingest_chunked
    from vetohash_platform.store import Store

    with Store.open(db) as store:
        start = time.perf_counter()
        ingest_chunked(store, folder)
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_memory_mb()}))


def peak_memory_mb() -> float:
    """This process's peak resident memory since it started: VmHWM where Linux gives it, since ru_maxrss also
    counts the parent's memory, which the child shares until it runs this script (2.3 GB with --real)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ingest(db: Path, folder: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--ingest-child", str(db), str(folder)], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def share(hit: np.ndarray, true: np.ndarray) -> str:
    """The share of `true` queries that `hit`, and of how many."""
    return f"{100 * hit[true].mean():.2f} % of {int(true.sum()):,}" if true.any() else "none true"


def print_recall(queries: Queries, found: dict[str, Nearest], thresholds: dict[str, int], label: str) -> None:
    """Recall at `thresholds` for each signal and for the any-signal rule, by brute-force distance band and by
    group. A hit is a planted row found under the threshold: a random filler hash under it is a match by chance
    (a random 256-bit DCT hash falls under 96 bits of any query with probability 2.2e-5), counted apart."""
    true = {s: p.truth < thresholds[s] for s, p in queries.probes.items()}
    hit = {s: (near.distance < thresholds[s]) & (near.index < queries.planted) for s, near in found.items()}
    true_any, hit_any = np.logical_or.reduce(list(true.values())), np.logical_or.reduce(list(hit.values()))
    print(f"  {label} ({'|'.join(str(thresholds[s]) for s in (NEURAL, DCT, CROPS))}): recall "
          + ", ".join(f"{s} {share(hit[s], true[s])}" for s in (NEURAL, DCT, CROPS))
          + f"; any signal {share(hit_any, true_any)}", flush=True)
    bands = []
    for signal, probe in queries.probes.items():
        limit = thresholds[signal]
        edges = [0, limit // 2, 3 * limit // 4, limit]
        bands.append(f"{signal} " + ", ".join(
            f"[{low},{high}) {share(hit[signal], true[signal] & (probe.truth >= low) & (probe.truth < high))}"
            for low, high in zip(edges, edges[1:])))
    print("    by brute-force distance: " + "; ".join(bands), flush=True)
    if queries.groups:
        print("    any signal, by edit family: " + ", ".join(
            f"{group} {share(hit_any, true_any & members)}" for group, members in queries.groups.items()), flush=True)
    chance = {s: int(((near.distance < thresholds[s]) & (near.index >= queries.planted)).sum())
              for s, near in found.items()}
    if any(chance.values()):
        print(f"    {queries.unit} whose nearest found hash is random filler under the threshold: {chance}", flush=True)


def measure(size: int, work: Path, nprobes: list[int], real: Real | None) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from vetohash_platform.active import Status, stored_bundles
    from vetohash_platform.biglist import BigList
    from vetohash_platform.store import Store
    from vetohash_platform.trust import add_key

    key_bytes = bytes(range(32))
    public = public_key_of(Ed25519PrivateKey.from_private_bytes(key_bytes))
    start = time.perf_counter()
    whole, delta = write_lists(work, size, key_bytes, real)
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
    queries = flipped_queries(size) if real is None else real.queries
    for signal, probe in queries.probes.items():
        big.nearest(signal, probe.views[:10])  # load the shards
    for nprobe in nprobes:
        for index in big._indexes.values():
            for shard in index.shards:
                if isinstance(shard, faiss.IndexBinaryIVF):
                    shard.nprobe = nprobe
        for threads in sorted({1, os.cpu_count() or 1}):
            for index in big._indexes.values():
                index.workers = threads
            seconds: dict[str, float] = {}
            found: dict[str, Nearest] = {}
            for signal, probe in queries.probes.items():
                big.nearest(signal, probe.views[:200])  # warm the pages these queries touch
                start = time.perf_counter()
                near = big.nearest(signal, probe.views)
                seconds[signal] = time.perf_counter() - start
                found[signal] = best_by_owner(near, probe.owners, queries.count)
            per_query = sum(seconds.values()) / queries.count
            print(f"nprobe {nprobe:4d}, {threads} core(s): all signals {1 / per_query:8,.0f} {queries.unit}/s ("
                  + ", ".join(f"{s} {queries.count / t:,.0f}/s" for s, t in seconds.items())
                  + ") (anchor: 1,000 queries/s on 2 cores, 99.9 % of true matches)", flush=True)
        print_recall(queries, found, THRESHOLDS, "default bundle's thresholds")
        if real is not None:
            print_recall(queries, found, FAR_THRESHOLDS, "thresholds extrapolated for 10 million")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--real", type=int, metavar="N",
                        help="plant N real banned images (at most 1,000 advised: the fit and hashing take minutes) "
                             "and query with their altered copies")
    parser.add_argument("--altered", type=int, default=110, metavar="M",
                        help="with --real: query with one altered copy per edit of each of the first M (default 110)")
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "index_speed")
    parser.add_argument("--ingest-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ingest_child:
        ingest_child(*args.ingest_child)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"faiss {faiss.__version__}, {os.cpu_count()} cores; exact search up to "
          f"{__import__('vetohash_platform.index').index.EXACT_MAX:,} hashes a shard, inverted lists above")
    real = None if args.real is None else real_copies(args.real, min(args.altered, args.real), args.work)
    for size in args.sizes:
        measure(size, args.work, args.nprobe, real)


if __name__ == "__main__":
    main()
