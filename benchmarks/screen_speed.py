"""How fast `platform screen` goes, decoding included, beside plain Pillow decoding of the same files.

Run from the repository root::

    .venv/bin/python benchmarks/screen_speed.py                 # 1,000 generated 128x128 JPEG crops
    .venv/bin/python benchmarks/screen_speed.py --images DIR    # your own folder (searched recursively)

Without --images it writes 1,000 photo crops (from examples/make_example_images.py, drawn from the
"unrelated" source photos) to .bench/screen_speed/images once and reuses them. It builds a signed bundle
(random weights of the --spec network, copy-cnn by default, with the copy recipe's margin trimming and upright
views unless --plain; the first 100 images plus random hashes up to --banned hashes; as a default bundle, a
DCT hash per banned hash and --crops random crop hashes per banned hash, unless --plain), ingests it into a
throw-away database, and times, in one run on the same page-cached files:

- Pillow: open + load + convert("RGB") of every file, on one thread and on the screening thread count;
- screening in-process (read, decode, preprocess, hash in batches, match, log) as `platform screen` runs it;
- the `platform screen --json` command end to end, start-up (importing torch) included.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vetohash.bundle import Bundle, CropSignal, DctSignal, sign_bundle
from vetohash.dcthash import HASH_BYTES as DCT_BYTES
from vetohash.dcthash import dct_hashes
from vetohash.files import image_files
from vetohash.hasher import Hasher
from vetohash.keys import generate_private_key, public_key_of
from vetohash.matching import nearest
from vetohash.preprocess import open_image, to_array
from vetohash.specs import PRESETS
from vetohash_platform.active import Status, stored_bundles
from vetohash_platform.ingest import ingest_file
from vetohash_platform.screening import MatchLog, Screener, Upload, default_workers
from vetohash_platform.store import Store
from vetohash_platform.trust import add_key

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".bench" / "screen_speed" / "images"
SEED = 20240613  # not the examples' seeds, so these crops are not the committed example images


def generated_images(count: int) -> list[Path]:
    """`count` 128x128 JPEG crops in CACHE, made once with the examples' crop generator."""
    files = sorted(CACHE.glob("*.jpg"))
    if len(files) >= count:
        return files[:count]
    spec = importlib.util.spec_from_file_location("make_example_images", ROOT / "examples" / "make_example_images.py")
    if spec is None or spec.loader is None:
        raise SystemExit("examples/make_example_images.py is missing; pass --images DIR")
    examples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(examples)
    CACHE.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(examples.crops(examples.source_photos("unrelated"), count, 128, SEED)):
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=examples.JPEG_QUALITY)
        (CACHE / f"crop-{i:04d}.jpg").write_bytes(out.getvalue())
    return sorted(CACHE.glob("*.jpg"))[:count]


def pillow_decode(paths: Sequence[Path], workers: int) -> None:
    def one(path: Path) -> None:
        with Image.open(path) as image:
            image.load()
            image.convert("RGB")

    if workers == 1:
        for path in paths:
            one(path)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, paths))


def best_rate(run: Callable[[], object], count: int, repeats: int) -> tuple[float, float]:
    """Images per second: the best and the median of `repeats` timed runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return count / min(times), count / statistics.median(times)


def make_store(folder: Path, paths: Sequence[Path], banned: int, preset: str, plain: bool, crops: int) -> Store:
    """A database with one trusted key and one bundle: hashes of the first 100 files plus random ones. Unless
    `plain`, the copy-cnn spec gets the trimming and upright views the copy recipe turns on, and the bundle
    carries what a default one does: a DCT hash per banned hash and `crops` random crop hashes per banned
    hash (the random ones cost a search what real ones do)."""
    torch.manual_seed(0)
    spec = PRESETS[preset]
    if preset == "copy-cnn" and not plain:
        spec = dataclasses.replace(spec, preprocess=dataclasses.replace(spec.preprocess, trim=True, upright=True))
    hasher = Hasher(spec, spec.build())
    known = hasher.hash_images([open_image(p) for p in paths[:100]])
    rng = np.random.default_rng(0)
    filler = rng.integers(0, 256, size=(max(0, banned - len(known)), spec.hash_bytes), dtype=np.uint8)
    hashes = np.concatenate([known, filler])[:banned]
    key = generate_private_key()
    now = int(time.time())
    dct = crop_signal = None
    if not plain:
        known_dct = dct_hashes([open_image(p) for p in paths[:100]])
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
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help="folder of images (default: 1,000 generated crops)")
    parser.add_argument("--count", type=int, default=1000, help="images to use (default 1000)")
    parser.add_argument("--banned", type=int, default=10_000, help="hashes in the bundle (default 10000)")
    parser.add_argument("--workers", type=int, default=default_workers(), help="decoding threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each in-process measurement")
    parser.add_argument("--spec", default="copy-cnn", choices=sorted(PRESETS),
                        help="network to time, random weights (default copy-cnn, the default recipe's)")
    parser.add_argument("--plain", action="store_true",
                        help="copy-cnn without the margin trimming and upright views the copy recipe turns on, "
                             "and a bundle with network hashes alone (no DCT hashes, no crop hashes)")
    parser.add_argument("--crops", type=int, default=17,
                        help="crop hashes per banned hash (default 17, as authority publish writes)")
    args = parser.parse_args()

    paths = image_files([args.images])[: args.count] if args.images else generated_images(args.count)
    n = len(paths)
    for path in paths:  # warm the page cache so every measurement reads from memory
        path.read_bytes()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = make_store(folder, paths, args.banned, args.spec, args.plain, args.crops)
        active = [s for s in stored_bundles(store) if s.status is Status.ACTIVE]
        screener = Screener(active, workers=args.workers)
        uploads = [Upload(str(p), path=p) for p in paths]

        def screen() -> int:
            with MatchLog(store) as log:
                for result in screener.run(uploads):
                    log.add(result)
            return log.count

        screen()  # warm-up: first batches pay for torch's lazy initialisation
        [model] = screener.models
        batch = np.stack([to_array(open_image(p), model.hasher.spec.preprocess) for p in paths])
        hashes = model.hasher.hash_arrays(batch)
        banned = model.lists[0].bundle.hashes
        crop_list = model.lists[0].bundle.crops
        rows = [
            ("Pillow open+load+RGB, 1 thread", *best_rate(lambda: pillow_decode(paths, 1), n, args.repeats)),
            (f"Pillow open+load+RGB, {args.workers} threads",
             *best_rate(lambda: pillow_decode(paths, args.workers), n, args.repeats)),
            (f"screen in-process ({args.workers} decode threads)", *best_rate(screen, n, args.repeats)),
            ("  of which: model alone, on preprocessed arrays", *best_rate(lambda: model.hasher.hash_arrays(batch),
                                                                         n, args.repeats)),
            (f"  of which: nearest of {len(banned):,} banned hashes alone", *best_rate(lambda: nearest(hashes, banned),
                                                                                  n, args.repeats)),
        ]
        if crop_list is not None:
            rows.append((f"  of which: nearest of {len(crop_list.hashes):,} crop hashes alone",
                         *best_rate(lambda: nearest(hashes, crop_list.hashes), n, args.repeats)))
        store.close()
        env = dict(os.environ, VETOHASH_DB=str(folder / "platform.db"))
        script = Path(sys.executable).parent / "platform"
        start = time.perf_counter()
        done = subprocess.run([str(script), "screen", "--json", "--no-progress", "--workers", str(args.workers),
                               *map(str, paths)], env=env, capture_output=True, check=False)
        elapsed = time.perf_counter() - start
        if done.returncode not in (0, 1):
            raise SystemExit(f"platform screen failed ({done.returncode}): {done.stderr.decode()[-500:]}")
        rows.append(("`platform screen` command, start-up included", n / elapsed, n / elapsed))

    print(f"{n} images ({'from ' + str(args.images) if args.images else 'generated 128x128 JPEG crops'}), "
          f"bundle of {args.banned} hashes" + ("" if args.plain else f", their DCT hashes and {args.crops} crop "
                                                f"hashes each") + f", {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print()
    print(f"| {'what':<50} | {'images/s (best)':>15} | {'images/s (median)':>17} |")
    print(f"|{'-' * 52}|{'-' * 16}:|{'-' * 18}:|")
    for what, best, median in rows:
        print(f"| {what:<50} | {best:>15,.0f} | {median:>17,.0f} |")


if __name__ == "__main__":
    main()
