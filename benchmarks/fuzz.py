"""Fuzz the bundle reader and the image reader in-process and count what comes out.

Mutates the seeds of tests/hostile_corpus.py (valid v1, v2 and v3 bundles; small images in every accepted
format): overwritten, inserted and deleted bytes, cuts, and spliced msgpack headers that declare huge lengths
or deep nesting. Half of the bundles are re-signed after their payload is mutated, as a hostile holder of a
trusted key could, so the payload parser is reached and not only the signature check. Prints, per reader:
cases accepted, refused with the project's own error (by type), foreign exceptions (anything else: the
figure that must be 0), cases over 5 s, the slowest case, the process's peak memory, and the lines C code
(libtiff) wrote to stderr on its own, which no Python warning filter sees.

    nice -n 5 .venv/bin/python benchmarks/fuzz.py            # 10,000 bundles and 10,000 images
    nice -n 5 .venv/bin/python benchmarks/fuzz.py --cases 500 --seed 3
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the corpus seeds live with the tests

import msgpack  # noqa: E402

from tests.hostile_corpus import NOW, TRUSTED, seal, seed_bundle, seed_images  # noqa: E402
from vetohash.bundle import read_bundle  # noqa: E402
from vetohash.errors import BundleError, ImageError  # noqa: E402
from vetohash.preprocess import Preprocess, collected_warnings, open_image, route_warnings, to_array  # noqa: E402

HANG_S = 5.0
PRE = Preprocess(mode="RGB", size=32, resample="bilinear", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
# msgpack headers that declare much more than follows, or nest: what a parser must bound before allocating.
SPLICES = (b"\xdc\xff\xff", b"\xdd\xff\xff\xff\xff", b"\xde\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff",
           b"\xdb\xff\xff\xff\xff", b"\xd6\xff\x00\x00\x00\x00", b"\x91" * 700, b"\x81\xa1a" * 300, b"\xc1",
           b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff", b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00")


class Hang(Exception):
    """A case ran past HANG_S (raised by the alarm, where Python gets control back)."""


def mutate(seed: bytes, rng: random.Random) -> bytes:
    """`seed` with one to four random edits."""
    data = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(max(1, len(data)))
        edit = rng.random()
        if edit < 0.4 and data:
            data[at] = rng.randrange(256)
        elif edit < 0.55:
            data[at:at] = rng.randbytes(rng.randint(1, 8))
        elif edit < 0.7:
            del data[at:at + rng.randint(1, 16)]
        elif edit < 0.8:
            del data[at:]
        else:
            data[at:at + rng.randint(0, 4)] = rng.choice(SPLICES)
    return bytes(data)


def run(name: str, cases: int, make: Callable[[int], tuple[str, bytes]], check: Callable[[str, bytes], object],
        own: type[Exception]) -> None:
    """Feed `cases` inputs from `make` to `check` and print the counts."""
    outcomes: Counter[str] = Counter()
    foreign: list[str] = []
    slowest = (0.0, -1)
    started = time.perf_counter()
    for index in range(cases):
        label, data = make(index)
        signal.setitimer(signal.ITIMER_REAL, HANG_S)
        begun = time.perf_counter()
        hung = False
        try:
            with collected_warnings() as warned:
                check(label, data)
            outcomes["accepted"] += 1
            outcomes["warned"] += bool(warned)
        except Hang:
            hung = True
        except own as error:
            outcomes[type(error).__name__] += 1
        except Exception as error:  # noqa: BLE001 (counting them is the point)
            outcomes["foreign"] += 1
            foreign.append(f"case {index} ({label}): {type(error).__name__}: {str(error)[:120]}")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        took = time.perf_counter() - begun
        outcomes["hang"] += hung or took > HANG_S  # C code can keep the alarm waiting until it returns
        slowest = max(slowest, (took, index))
    seconds = time.perf_counter() - started
    refused = {kind: count for kind, count in outcomes.items()
               if kind not in ("accepted", "warned", "foreign", "hang")}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{name}: {cases:,} cases in {seconds:.0f} s")
    print(f"  accepted                 {outcomes['accepted']:>7,}  ({outcomes['warned']:,} with a decoder warning, "
          "kept in the result)")
    print(f"  refused (project errors) {sum(refused.values()):>7,}  "
          + ", ".join(f"{kind} {count:,}" for kind, count in sorted(refused.items(), key=lambda kv: -kv[1])))
    print(f"  foreign exceptions       {outcomes['foreign']:>7,}")
    print(f"  over {HANG_S:.0f} s                 {outcomes['hang']:>7,}  (slowest case {slowest[1]}: "
          f"{slowest[0] * 1000:.0f} ms)")
    print(f"  peak memory (RSS)        {peak:>7,.0f} MB")
    for line in foreign[:10]:
        print(f"  foreign: {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000, help="inputs per reader [10000]")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same cases")
    args = parser.parse_args()

    def alarm(_signum: int, _frame: FrameType | None) -> None:
        raise Hang

    signal.signal(signal.SIGALRM, alarm)
    route_warnings()  # as the command line does: Pillow's warnings into the case, not onto stderr
    bundles = {version: seed_bundle(version) for version in (1, 2, 3, 6)}
    payloads = {version: msgpack.unpackb(data)["payload"] for version, data in bundles.items()}
    images = seed_images()
    image_names = sorted(images)

    def bundle_case(index: int) -> tuple[str, bytes]:
        rng = random.Random(args.seed * 1_000_003 + index)
        version = rng.choice(sorted(bundles))
        if index % 2:
            return f"v{version} re-signed payload", seal(mutate(payloads[version], rng), version)
        return f"v{version} envelope", mutate(bundles[version], rng)

    def image_case(index: int) -> tuple[str, bytes]:
        rng = random.Random(args.seed * 1_000_003 + index + 1)
        name = rng.choice(image_names)
        return name, mutate(images[name], rng)

    def read_image(name: str, data: bytes) -> None:
        to_array(open_image(data, name=name), PRE)

    for name, make, check, own in (
            ("bundles", bundle_case, lambda _label, data: read_bundle(data, TRUSTED, now=NOW), BundleError),
            ("images", image_case, read_image, ImageError)):
        with tempfile.TemporaryFile() as raw:  # what C libraries write to fd 2 themselves, counted not shown
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(raw.fileno(), 2)
            try:
                run(name, args.cases, make, check, own)
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
            raw.seek(0)
            print(f"  lines C code wrote to stderr itself (libtiff): {len(raw.read().splitlines()):,}")


if __name__ == "__main__":
    main()
