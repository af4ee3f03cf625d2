"""Make altered copies of banned images: the "user uploads" the demo's platform screens.

Each copy is one edit from the authority's alteration registry (`vetohash_authority.alterations`), at
moderate strength: someone re-posting a banned image with a tilt, a crop, a caption or a new JPEG encoding,
not wrecking it. Kinds take turns over the sorted images, so every kind gets about the same number of
copies, and each edit's parameters come from one `random.Random(seed)`: the same seed and images always
give the same copies.

The copies get neutral names (`upload-0000.jpg`, ...), as uploads would; which banned image and which edit
each one is stays on the authority's side, in the manifest (CSV) if one is asked for.

    python examples/make_altered.py examples/banned demo/platform/inbox-altered --manifest altered.csv
    python examples/make_altered.py examples/banned out/ --kinds rotation,mirror --per-image 3 --seed 7
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vetohash.errors import VetohashError
from vetohash.files import image_files
from vetohash.preprocess import open_image
from vetohash_authority.alterations import KINDS, Kind, make_kind

# Moderate strengths, in the registry's units (pixel sizes are for a 32 px image and scale with the side).
# The paper's four come first, at a fraction of the ranges it trained on; then everyday edits.
MODERATE: dict[str, dict[str, Any]] = {
    "rotation": {"degrees": [-15, 15]},
    "blur": {"size": [1, 3]},
    "overlay": {"side": [4, 8]},
    "translation": {"shift": [-4, 4]},
    "jpeg": {"quality": [30, 75]},
    "crop": {"keep": [0.85, 0.95]},
    "rescale": {"factor": [0.5, 1.5]},
    "brightness": {"brightness": [0.8, 1.2], "contrast": [0.8, 1.2]},
    "colour": {"saturation": [0.6, 1.4], "hue": [-0.04, 0.04]},
    "text": {"size": [3, 5]},
    "noise": {"sigma": [2, 8]},
}
DEFAULT_KINDS = tuple(MODERATE)
JPEG_QUALITY = 90  # how the copies are saved, as an upload would be


def kinds_for(names: Sequence[str], settings: Mapping[str, Mapping[str, Any]] = MODERATE) -> list[Kind]:
    """The named kinds, each at its moderate settings (the registry's defaults where none are listed here)."""
    return [make_kind(name, settings.get(name)) for name in names]


def make_altered(sources: Sequence[Path], out: Path, kinds: Sequence[Kind], per_image: int = 1,
                 seed: int = 0) -> list[dict[str, str]]:
    """Write `per_image` altered copies of each source into `out`; one manifest row per copy."""
    if not kinds:
        raise VetohashError("at least one alteration kind is needed")
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    for source in sources:
        image = open_image(source)
        for _ in range(per_image):
            kind = kinds[len(rows) % len(kinds)]
            edit = kind.draw(rng)
            name = f"upload-{len(rows):04d}.jpg"
            edit(image).save(out / name, format="JPEG", quality=JPEG_QUALITY)
            rows.append({"file": name, "source": source.name, "kind": edit.kind, "params": _params(edit.params)})
    return rows


def _params(params: Mapping[str, Any]) -> str:
    """An edit's drawn parameters as short text for the manifest."""
    return " ".join(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
                    for key, value in params.items())


def write_manifest(path: Path, rows: Sequence[dict[str, str]]) -> None:
    """The answer key: which banned image and which edit each copy is."""
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=["file", "source", "kind", "params"])
        writer.writeheader()
        writer.writerows(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; exit status 2 with one line on a bad argument or unreadable input."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("banned", type=Path, help="folder of banned images (read recursively)")
    parser.add_argument("out", type=Path, help="folder to write the copies into (created if missing)")
    parser.add_argument("--kinds", default=",".join(DEFAULT_KINDS),
                        help=f"comma-separated alteration kinds, taking turns (default: {','.join(DEFAULT_KINDS)}; "
                             f"known: {','.join(sorted(KINDS))})")
    parser.add_argument("--per-image", type=int, default=1, help="copies of each banned image (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the edits' parameters (default: 0)")
    parser.add_argument("--manifest", type=Path, help="CSV to write: file, source image, kind, parameters")
    args = parser.parse_args(argv)
    try:
        if args.per_image < 1:
            raise VetohashError("--per-image must be at least 1")
        if args.out.exists() and any(args.out.iterdir()):
            raise VetohashError(f"{args.out} is not empty; give a new or empty folder")
        sources = image_files([args.banned]) if args.banned.is_dir() else []
        if not sources:
            raise VetohashError(f"{args.banned}: no image files found")
        names = [name.strip() for name in args.kinds.split(",") if name.strip()]
        rows = make_altered(sources, args.out, kinds_for(names), args.per_image, args.seed)
        if args.manifest:
            write_manifest(args.manifest, rows)
    except (VetohashError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["kind"]] = counts.get(row["kind"], 0) + 1
    print(f"wrote {len(rows)} altered copies of {len(sources)} images to {args.out}: "
          + ", ".join(f"{kind} {count}" for kind, count in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
