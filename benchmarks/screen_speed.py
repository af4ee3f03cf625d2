"""How fast `platform screen` goes, decoding included, beside plain and draft Pillow decoding and PDQ of the
same files, on one core and on all cores, in one run.

Run from the repository root::

    .venv/bin/python benchmarks/screen_speed.py                 # 128 px crops and 1-12 MP photos
    .venv/bin/python benchmarks/screen_speed.py --images DIR    # your own folder too (searched recursively)

Two sets of files are made once under .bench/screen_speed/ and reused: 1,000 128x128 JPEG crops of the
examples' "unrelated" source photos (examples/make_example_images.py), and --photos JPEG photos of 1 to 12
megapixels (in turn), those source photos (shipped inside PyPI packages, at their native size) upscaled
with Lanczos, with a little grain added so they decode like camera photos, saved at quality 90.

It builds a signed bundle as `authority train`'s default recipe makes it (the shipped copy detector's
network, with margin trimming, upright views and decoding reduced to 128-255 px on the shorter side, unless
--plain; the first 100
files plus random hashes up to --banned hashes, a DCT hash each and --crops crop hashes each, unless
--plain), ingests it into a throw-away database, and times on each set, from the page cache:

- Pillow: open + load + RGB of every file (full decode);
- Pillow draft: the same, JPEG scaled by 1/2, 1/4 or 1/8 while decoding, keeping both sides >= 128 px (the
  decoder's part of what the bundle's spec asks for);
- PDQ: full decode and `pdqhash.compute` (the `bench` extra), as ThreatExchange hashes a photo;
- screen: `platform screen`'s work in-process (read, decode, preprocess, hash, search, log);

each on one core (a process pinned to one CPU, one thread each: `--workers 1`) and on all cores (threads
for decoding and screening as `platform screen` runs them; PDQ, which holds the GIL, in a process per core).
It prints images/s, the ratios the targets name, the start-up of the `platform screen` command, and how many
bits decoding reduced moves the network's and the DCT hash of the photos.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from vetohash_authority.cropviews import PER_IMAGE as CROPS_PER_IMAGE

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".bench" / "screen_speed"
SEED = 20240613  # not the examples' seeds, so these crops are not the committed example images


def _examples():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("make_example_images", ROOT / "examples" / "make_example_images.py")
    if spec is None or spec.loader is None:
        raise SystemExit("examples/make_example_images.py is missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_images(count: int) -> list[Path]:
    """`count` 128x128 JPEG crops, made once with the examples' crop generator."""
    folder = CACHE / "images"
    files = sorted(folder.glob("*.jpg"))
    if len(files) < count:
        examples = _examples()
        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(examples.crops(examples.source_photos("unrelated"), count, 128, SEED)):
            out = io.BytesIO()
            image.save(out, format="JPEG", quality=examples.JPEG_QUALITY)
            (folder / f"crop-{i:04d}.jpg").write_bytes(out.getvalue())
        files = sorted(folder.glob("*.jpg"))
    return files[:count]


def photos(count: int) -> list[Path]:
    """`count` JPEG photos of 1, 2, ... 12, 1, ... megapixels, made once from the examples' source photos."""
    folder = CACHE / "photos"
    files = sorted(folder.glob("*.jpg"))
    if len(files) < count:
        folder.mkdir(parents=True, exist_ok=True)
        sources = [image for _, _, image in _examples().source_photos()]
        rng = np.random.default_rng(SEED)
        for i in range(len(files), count):
            source = sources[i % len(sources)]
            megapixels = 1 + i % 12
            scale = (megapixels * 1e6 / (source.width * source.height)) ** 0.5
            size = (round(source.width * scale), round(source.height * scale))
            big = np.asarray(source.resize(size, Image.Resampling.LANCZOS), dtype=np.int16)
            grain = rng.normal(0, 3, size=big.shape[:2] + (1,)).astype(np.int16)
            Image.fromarray(np.clip(big + grain, 0, 255).astype(np.uint8)).save(
                folder / f"photo-{i:03d}-{megapixels:02d}mp.jpg", quality=90)
        files = sorted(folder.glob("*.jpg"))
    return files[:count]


def make_store(folder: Path, paths: Sequence[Path], banned: int, plain: bool, crops: int,
               base: Path | None = None) -> Path:
    """A database with one trusted key and one bundle: the network of the base model `base` (default: the
    shipped copy detector's; as the default recipe sets it up unless `plain`), the hashes of the first 100 files plus random ones; unless `plain`, a
    DCT hash per banned hash and `crops` random crop hashes per banned hash (the random ones cost a search
    what real ones do)."""
    from vetohash.bundle import Bundle, CropSignal, DctSignal, sign_bundle
    from vetohash.dcthash import HASH_BYTES as DCT_BYTES
    from vetohash.dcthash import dct_hashes
    from vetohash.hasher import Hasher
    from vetohash.keys import generate_private_key, public_key_of
    from vetohash.modelfile import read_model
    from vetohash.preprocess import open_image
    from vetohash_authority.listfit import BASE_MODEL, ListFitConfig
    from vetohash_platform.ingest import ingest_file
    from vetohash_platform.store import Store
    from vetohash_platform.trust import add_key

    model, _ = read_model(base or BASE_MODEL)
    spec = model.spec
    if not plain:
        config = ListFitConfig()
        spec = dataclasses.replace(spec, preprocess=dataclasses.replace(
            spec.preprocess, trim=config.trim, upright=config.upright, draft=config.draft))
    hasher = Hasher.from_arrays(spec, model.arrays())
    decoded = [open_image(p, draft=spec.preprocess.draft) for p in paths[:100]]
    known = hasher.hash_images(decoded)
    rng = np.random.default_rng(0)
    filler = rng.integers(0, 256, size=(max(0, banned - len(known)), spec.hash_bytes), dtype=np.uint8)
    hashes = np.concatenate([known, filler])[:banned]
    key = generate_private_key()
    now = int(time.time())
    dct = crop_signal = None
    if not plain:
        known_dct = dct_hashes(decoded)
        dct_filler = rng.integers(0, 256, size=(max(0, banned - len(known_dct)), DCT_BYTES), dtype=np.uint8)
        dct = DctSignal(hashes=np.concatenate([known_dct, dct_filler])[:banned], threshold=32)
        crop_signal = CropSignal(hashes=rng.integers(0, 256, size=(crops * banned, spec.hash_bytes), dtype=np.uint8),
                                 owners=np.repeat(np.arange(banned, dtype=np.int64), crops), threshold=8)
    bundle = Bundle(spec=spec, weights=hasher.encoded_weights(), hashes=hashes,
                    ids=tuple(f"h{i:07d}" for i in range(len(hashes))), threshold=10, authority="Bench",
                    key_id=public_key_of(key).key_id, list_name="bench", sequence=1, created=now - 60,
                    expires=now + 3600, dct=dct, crops=crop_signal)
    (folder / "bench.vhb").write_bytes(sign_bundle(bundle, key))
    store = Store.open(folder / "platform.db")
    add_key(store, public_key_of(key).to_text(), "bench")
    ingest_file(store, folder / "bench.vhb")
    store.close()
    return folder / "platform.db"


# --- the measured work (module-level functions, so a process pool can run them) ---

def full_decode(path: Path) -> None:
    with Image.open(path) as image:
        image.load()
        image.convert("RGB")


def draft_decode(path: Path) -> None:
    from vetohash_authority.listfit import ListFitConfig

    with Image.open(path) as image:
        image.draft("RGB", (ListFitConfig.draft, ListFitConfig.draft))
        image.load()
        image.convert("RGB")


def pdq(path: Path) -> None:
    import pdqhash

    with Image.open(path) as image:
        pdqhash.compute(np.asarray(image.convert("RGB")))


def _pdq_chunk(paths: Sequence[Path]) -> None:
    for path in paths:
        pdq(path)


def best_rates(runs: dict[str, Callable[[], object]], count: int, repeats: int) -> dict[str, float]:
    """Images per second of each run, the best of `repeats` timings (the least disturbed by other jobs); the
    runs take turns, so a busy spell on a shared machine falls on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: count / min(spent) for name, spent in times.items()}


def measure(paths: list[Path], db: Path, workers: int, repeats: int) -> dict[str, float]:
    """Images/s of each method on `paths`, with `workers` threads (processes for PDQ when more than one)."""
    from vetohash_platform.active import Status, stored_bundles
    from vetohash_platform.screening import MatchLog, Screener, Upload
    from vetohash_platform.store import Store

    n = len(paths)
    store = Store.open(db)
    screener = Screener([s for s in stored_bundles(store) if s.status is Status.ACTIVE], workers=workers)
    uploads = [Upload(str(p), path=p) for p in paths]

    def screen() -> None:
        with MatchLog(store) as log:
            for result in screener.run(uploads):
                log.add(result)

    threads = ThreadPoolExecutor(workers)
    processes = ProcessPoolExecutor(workers)
    chunks = [paths[i::workers] for i in range(workers)]

    def each(work: Callable[[Path], None]) -> Callable[[], None]:
        if workers == 1:
            return lambda: [work(p) for p in paths]
        return lambda: list(threads.map(work, paths))

    def pdq_all() -> None:
        if workers == 1:
            _pdq_chunk(paths)
        else:
            list(processes.map(_pdq_chunk, chunks))

    screen()  # warm-ups: the engine is built on the first batch, the PDQ processes start
    list(processes.map(_pdq_chunk, [paths[:1]] * workers))
    try:
        return best_rates({"decode": each(full_decode), "draft": each(draft_decode), "pdq": pdq_all,
                           "screen": screen}, n, repeats)
    finally:
        threads.shutdown()
        processes.shutdown()
        store.close()


def hash_moves(paths: Sequence[Path], db: Path) -> dict[str, float]:
    """Mean and largest bits by which decoding reduced moves the photos' network and DCT hashes."""
    from vetohash.dcthash import dct_hashes
    from vetohash.hashes import Hash
    from vetohash.preprocess import open_image
    from vetohash_platform.active import stored_bundles
    from vetohash_platform.store import Store

    store = Store.open(db)
    [stored] = stored_bundles(store)
    hasher = stored.bundle.hasher()
    store.close()
    draft = hasher.spec.preprocess.draft
    full = [open_image(p) for p in paths]
    reduced = [open_image(p, draft=draft) for p in paths]
    out = {}
    for name, fn in (("network", hasher.hash_images), ("dct", dct_hashes)):
        moves = [Hash(a.tobytes()) - Hash(b.tobytes()) for a, b in zip(fn(full), fn(reduced), strict=True)]
        out[f"{name}_mean"], out[f"{name}_max"] = float(np.mean(moves)), float(max(moves))
    return out


def network_rates(db: Path, repeats: int) -> dict[str, float]:
    """Images/s of the bundle's network alone on 256 preprocessed inputs, one thread, by each engine."""
    from vetohash.engines import onnx_engine, torch_engine
    from vetohash_platform.active import stored_bundles
    from vetohash_platform.store import Store

    store = Store.open(db)
    [stored] = stored_bundles(store)
    hasher = stored.bundle.hasher()
    store.close()
    pre = hasher.spec.preprocess
    batch = np.random.default_rng(0).normal(size=(256, pre.channels, pre.size, pre.size)).astype(np.float32)
    engines = {"onnxruntime": onnx_engine(hasher.spec, hasher.arrays(), 1),
               "torch": torch_engine(hasher.spec, hasher.arrays(), 1)}
    return best_rates({name: lambda run=run: run(batch) for name, run in engines.items()}, len(batch), repeats)


def worker(args: argparse.Namespace) -> None:
    """One measurement run in this process (pinned to one CPU when --workers is 1); JSON on stdout."""
    if args.workers == 1:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    paths = [Path(p) for p in json.loads(Path(args.files).read_text())]
    print(json.dumps(measure(paths, args.db, args.workers, args.repeats)))


def startup(db: Path, path: Path) -> float:
    """Seconds `platform screen` takes on one file, start-up (imports, opening the store, the model) included."""
    env = dict(os.environ, VETOHASH_DB=str(db))
    start = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "platform"), "screen", "--json", "--no-progress",
                           "--workers", "1", str(path)], env=env, capture_output=True, check=False)
    if done.returncode not in (0, 1):
        raise SystemExit(f"platform screen failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help="also time a folder of your own images")
    parser.add_argument("--count", type=int, default=1000, help="128 px images (default 1000)")
    parser.add_argument("--photos", type=int, default=48, help="photos of 1 to 12 MP (default 48)")
    parser.add_argument("--banned", type=int, default=10_000, help="hashes in the bundle (default 10000)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="threads for all cores")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each measurement (the best counts)")
    parser.add_argument("--plain", action="store_true",
                        help="the shipped network without the default recipe's trimming, upright views and "
                             "decoding reduced, and a bundle with network hashes alone")
    parser.add_argument("--base", type=Path, metavar="MODEL",
                        help="the network of this base model file instead of the shipped copy detector's (e.g. a "
                             "one-pass student from `authority distil`)")
    parser.add_argument("--crops", type=int, default=CROPS_PER_IMAGE,
                        help=f"crop hashes per banned hash (default {CROPS_PER_IMAGE}, as authority publish writes)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: a worker's file list
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        args.files = args.measure
        worker(args)
        return

    sets = {"128 px JPEG crops": small_images(args.count), "JPEG photos, 1-12 MP": photos(args.photos)}
    if args.images:
        from vetohash.files import image_files

        sets[f"{args.images}"] = image_files([args.images])
    results: dict[str, dict[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = make_store(folder, sets["128 px JPEG crops"], args.banned, args.plain, args.crops, args.base)
        for name, paths in sets.items():
            for path in paths:  # into the page cache, so every measurement reads from memory
                path.read_bytes()
            (folder / "files.json").write_text(json.dumps([str(p) for p in paths]))
            results[name] = {}
            for workers in (1, args.workers):
                done = subprocess.run([sys.executable, __file__, "--measure", str(folder / "files.json"),
                                       "--db", str(db), "--workers", str(workers), "--repeats", str(args.repeats)],
                                      capture_output=True, text=True, check=False)
                if done.returncode:
                    raise SystemExit(f"measurement failed: {done.stderr[-2000:]}")
                results[name][workers] = json.loads(done.stdout.splitlines()[-1])
        started = startup(db, sets["128 px JPEG crops"][0])
        moves = hash_moves(sets["JPEG photos, 1-12 MP"], db)
        networks = network_rates(db, args.repeats)

    import onnxruntime

    from vetohash.engines import engine_name

    from vetohash_authority.listfit import ListFitConfig

    draft = ListFitConfig.draft
    print(f"bundle of {args.banned:,} hashes, network of {args.base or 'the shipped copy detector'}" + ("" if args.plain else f", their DCT hashes and {args.crops} crop "
          f"hashes each; decoding reduced to >= {draft} px a side") + f"; {os.cpu_count()} CPUs; network engine "
          f"{engine_name()} (onnxruntime {onnxruntime.__version__}); best of {args.repeats} runs; images/s")
    print()
    print(f"| {'files':<24} | {'cores':>5} | {'Pillow':>7} | {'draft':>7} | {'PDQ':>7} | {'screen':>7} | "
          f"{'screen/PDQ':>10} | {'screen/draft':>12} |")
    print(f"|{'-' * 26}|{'-' * 6}:|{'-' * 8}:|{'-' * 8}:|{'-' * 8}:|{'-' * 8}:|{'-' * 11}:|{'-' * 13}:|")
    for name, by_workers in results.items():
        for workers, r in by_workers.items():
            label = f"{name} ({len(sets[name])})"
            print(f"| {label:<24} | {workers:>5} | {r['decode']:>7,.1f} | {r['draft']:>7,.1f} | {r['pdq']:>7,.1f} | "
                  f"{r['screen']:>7,.1f} | {r['screen'] / r['pdq']:>9.2f}x | {r['screen'] / r['draft']:>11.2f}x |")
    print()
    print(f"`platform screen` start-up (one 128 px file, one worker): {started:.2f} s")
    print(f"the network alone, one thread, 256 inputs: {networks['onnxruntime']:,.0f} images/s by ONNX Runtime, "
          f"{networks['torch']:,.0f} by torch")
    print(f"decoding the photos reduced to >= {draft} px a side instead of at full size moves the network hash by "
          f"{moves['network_mean']:.1f} bits on average (at most {moves['network_max']:.0f}) and the DCT hash by "
          f"{moves['dct_mean']:.1f} (at most {moves['dct_max']:.0f})")


if __name__ == "__main__":
    main()
