"""Build the example image sets in ``examples/banned`` and ``examples/unrelated``.

Every crop comes from a photograph shipped inside an installed PyPI package
(scikit-image, scikit-learn, matplotlib, PyWavelets); nothing is downloaded.
The two sets are cut from disjoint groups of source photos, so no unrelated
image shows the same scene as any banned image. A third group, "extra", holds
more unrelated photos that only the benchmarks use (more source photos, more
groups to calibrate on), so the example sets stay as they are.

Run from the repository root::

    python examples/make_example_images.py

The module is importable, so a benchmark can draw more crops without writing
files, e.g. ``crops(source_photos("banned"), 1000, 128, BANNED_SEED)``.
Crop ``i`` depends only on the seed and crops ``0..i-1``, so a longer run
starts with the same crops as a shorter one.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import shutil
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from PIL import Image

Group = Literal["banned", "unrelated", "extra"]

BANNED_SEED = 20240611
UNRELATED_SEED = 20240612
SIBLING_SEED = 20240613
EXTRA_SEED = 20240614
SIZE = 128
JPEG_QUALITY = 92
MIN_CROP, MAX_CROP = 0.35, 1.0  # crop side as a fraction of the shorter side
MIN_STD = 12.0  # grayscale std below which a crop counts as featureless
MAX_IOU = 0.3  # preferred upper bound on overlap with earlier crops of a photo
TRIES = 200  # candidate boxes drawn per crop
MIN_SIBLING = 48  # smallest sibling side in source pixels (upscaled at most 128/48 = 2.7x)

# (package, file inside the package, licence, group).  Photos sharing visual
# content (the US flag behind Collins and Hopper; the two gravel/grass
# textures) sit in the same group so the sets stay truly unrelated.  Each
# licence is the one the package's own docstring for the image states; shipped
# photos whose package states none are left out (scikit-image's moon.png and
# motorcycle_*.png, PyWavelets' aero.npz, mahotas' demo images).
SOURCES: list[tuple[str, str, str, Group]] = [
    ("scikit-image", "data/astronaut.png", "Public domain (NASA)", "banned"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
     "Public domain (official U.S. Navy photograph)", "banned"),
    ("scikit-image", "data/chelsea.png", "CC0 1.0 (Stefan van der Walt)", "banned"),
    ("scikit-image", "data/coffee.png", "CC0 1.0 (Rachel Michetti)", "banned"),
    ("scikit-learn", "datasets/images/china.jpg",
     "CC BY 2.0 (Flickr: danielbuechele)", "banned"),
    ("scikit-image", "data/brick.png", "CC0 1.0 (CC0Textures Bricks25)", "banned"),
    ("scikit-image", "data/retina.jpg", "CC0 1.0 (Mikael Häggström)", "banned"),
    ("scikit-image", "data/coins.png",
     "No known copyright restrictions (Brooklyn Museum)", "banned"),
    ("scikit-image", "data/camera.png", "CC0 1.0 (Lav Varshney)", "unrelated"),
    ("PyWavelets", "data/ascent.npz",
     "Public domain (public-domain-image.com)", "unrelated"),
    ("scikit-learn", "datasets/images/flower.jpg",
     "CC BY 2.0 (Flickr: vultilion)", "unrelated"),
    ("scikit-image", "data/rocket.jpg", "Public domain (SpaceX)", "unrelated"),
    ("scikit-image", "data/hubble_deep_field.jpg", "Public domain (NASA)", "unrelated"),
    ("scikit-image", "data/grass.png", "CC0 1.0 (linolafett)", "unrelated"),
    ("scikit-image", "data/gravel.png", "CC0 1.0 (CC0Textures Gravel04)", "unrelated"),
    ("scikit-image", "data/ihc.png",
     "No known copyright restrictions (CMMI)", "unrelated"),
    ("scikit-image", "data/cell.png", "CC0 1.0 (Paul Müller et al., quantitative phase image)", "extra"),
    ("scikit-image", "data/clock_motion.png",
     "Public domain (Stefan van der Walt)", "extra"),
    ("scikit-image", "data/microaneurysms.png",
     "CC0 1.0 (Andreas Maier, HRF fundus image database)", "extra"),
    ("scikit-image", "data/text.png",
     "Public domain (Wikipedia: File:Corner.png)", "extra"),
]

_MODULES = {"scikit-image": "skimage", "scikit-learn": "sklearn",
            "matplotlib": "matplotlib", "PyWavelets": "pywt"}


class Crop(NamedTuple):
    """One crop: its source photo name, licence, box (left, top, right, bottom) and image."""

    source: str
    licence: str
    box: tuple[int, int, int, int]
    image: Image.Image


def _package_dir(package: str) -> Path:
    """Return the installed directory of ``package`` without importing it."""
    spec = importlib.util.find_spec(_MODULES[package])
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"example images need {package}; pip install {package}")
    return Path(next(iter(spec.submodule_search_locations)))


def _load(package: str, file: str) -> Image.Image:
    """Load one bundled photo as an RGB image."""
    path = _package_dir(package) / file
    if path.suffix == ".npz":
        with np.load(path) as npz:
            return Image.fromarray(npz["data"]).convert("RGB")
    with Image.open(path) as im:
        return im.convert("RGB")


def source_photos(group: Group | None = None) -> list[tuple[str, str, Image.Image]]:
    """Return ``(name, licence, RGB image)`` for the source photos of ``group`` (all if None)."""
    return [(f"{pkg}:{file}", lic, _load(pkg, file))
            for pkg, file, lic, g in SOURCES if group is None or g == group]


def _iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Largest intersection-over-union of each row of ``boxes`` with any row of ``others``."""
    if len(others) == 0:
        return np.zeros(len(boxes))
    b, o = boxes[:, None, :], others[None, :, :]
    wh = np.clip(np.minimum(b[..., 2:], o[..., 2:]) - np.maximum(b[..., :2], o[..., :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    area_o = (o[..., 2] - o[..., 0]) * (o[..., 3] - o[..., 1])
    return np.asarray(np.max(inter / (area + area_o - inter), axis=1))


def _pick_box(gray: Image.Image, size: int, prev: np.ndarray,
              rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Draw a square box whose crop has texture and little overlap with ``prev``.

    Draws ``TRIES`` candidates; returns the first with IoU < ``MAX_IOU`` that is
    textured, else the textured one with the least overlap, else the least overlap.
    """
    w, h = gray.size
    sides = (rng.uniform(MIN_CROP, MAX_CROP, TRIES) * min(w, h)).astype(np.int64)
    xs = (rng.random(TRIES) * (w - sides + 1)).astype(np.int64)
    ys = (rng.random(TRIES) * (h - sides + 1)).astype(np.int64)
    boxes = np.stack([xs, ys, xs + sides, ys + sides], axis=1)
    ious = _iou(boxes, prev)
    low, high = np.flatnonzero(ious < MAX_IOU), np.flatnonzero(ious >= MAX_IOU)
    order = np.concatenate([low, high[np.argsort(ious[high], kind="stable")]])
    for j in order:
        box = (int(boxes[j, 0]), int(boxes[j, 1]), int(boxes[j, 2]), int(boxes[j, 3]))
        small = gray.resize((size, size), Image.Resampling.LANCZOS, box=box)
        if float(np.asarray(small, dtype=np.float32).std()) >= MIN_STD:
            return box
    j = int(order[0])
    return (int(boxes[j, 0]), int(boxes[j, 1]), int(boxes[j, 2]), int(boxes[j, 3]))


def crop_specs(sources: list[tuple[str, str, Image.Image]], count: int,
               size: int = SIZE, seed: int = 0) -> list[Crop]:
    """Cut ``count`` square crops, cycling through ``sources``, resized with Lanczos."""
    rng = np.random.default_rng(seed)
    grays = [im.convert("L") for _, _, im in sources]
    boxes: list[list[tuple[int, int, int, int]]] = [[] for _ in sources]
    out: list[Crop] = []
    for i in range(count):
        k = i % len(sources)
        name, licence, im = sources[k]
        box = _pick_box(grays[k], size, np.array(boxes[k]).reshape(-1, 4), rng)
        boxes[k].append(box)
        small = im.resize((size, size), Image.Resampling.LANCZOS, box=box)
        out.append(Crop(name, licence, box, small))
    return out


def crops(sources: list[tuple[str, str, Image.Image]], count: int,
          size: int = SIZE, seed: int = 0) -> list[Image.Image]:
    """Return only the images of :func:`crop_specs`."""
    return [c.image for c in crop_specs(sources, count, size, seed)]


def keep_left(sources: list[tuple[str, str, Image.Image]], share: float) -> list[tuple[str, str, Image.Image]]:
    """``sources`` cut to the left ``1 - share`` of their width, in the same pixel coordinates: crops of them
    leave a strip on the right of each photo to :func:`sibling_specs`."""
    return [(name, licence, im.crop((0, 0, max(1, round(im.width * (1 - share))), im.height)))
            for name, licence, im in sources]


def sibling_specs(sources: list[tuple[str, str, Image.Image]], taken: list[Crop], per_photo: int,
                  size: int = SIZE, seed: int = 0) -> list[Crop]:
    """Up to ``per_photo`` crops of each of ``sources`` sharing no pixel with any crop in ``taken`` of the same
    photo (IoU 0 with every one of them): other shots of a banned image's scene, for innocents.

    Candidates are squares of side ``MIN_SIBLING`` or more centred where the free room allows them (a
    chessboard distance map of the pixels outside ``taken``); as in :func:`crop_specs`, a sibling overlaps
    earlier siblings by IoU < ``MAX_IOU`` and is textured. Fewer come back where the room runs out.
    """
    from scipy.ndimage import distance_transform_cdt

    rng = np.random.default_rng(seed)
    out: list[Crop] = []
    for name, licence, im in sources:
        w, h = im.size
        banned = np.array([c.box for c in taken if c.source == name]).reshape(-1, 4)
        free = np.zeros((h + 2, w + 2), dtype=bool)  # a covered frame keeps squares inside the photo
        free[1:-1, 1:-1] = True
        for left, top, right, bottom in banned:
            free[top + 1:bottom + 1, left + 1:right + 1] = False
        # A square of side 2r - 1 centred on a pixel r or more from any covered one is free.
        room = distance_transform_cdt(free, metric="chessboard")[1:-1, 1:-1]
        ys, xs = np.nonzero(2 * room - 1 >= MIN_SIBLING)
        gray = im.convert("L")
        boxes: list[tuple[int, int, int, int]] = []
        for _ in range(TRIES * per_photo if len(ys) else 0):
            if len(boxes) == per_photo:
                break
            j = int(rng.integers(len(ys)))
            half = int(rng.integers(MIN_SIBLING // 2, room[ys[j], xs[j]]))
            box = (int(xs[j]) - half, int(ys[j]) - half, int(xs[j]) + half + 1, int(ys[j]) + half + 1)
            candidate = np.array([box])
            if _iou(candidate, banned)[0] > 0 or _iou(candidate, np.array(boxes).reshape(-1, 4))[0] >= MAX_IOU:
                continue
            small = gray.resize((size, size), Image.Resampling.LANCZOS, box=box)
            if float(np.asarray(small, dtype=np.float32).std()) < MIN_STD:
                continue
            boxes.append(box)
            out.append(Crop(name, licence, box, im.resize((size, size), Image.Resampling.LANCZOS, box=box)))
    return out


def _jpeg(im: Image.Image) -> bytes:
    """Encode ``im`` as a baseline JPEG at the example quality."""
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def write_sets(out_dir: Path, n_banned: int = 110, n_unrelated: int = 200) -> None:
    """Write ``banned/``, ``unrelated/`` and ``sources.json`` under ``out_dir``."""
    runs: list[tuple[Group, int, int]] = [("banned", n_banned, BANNED_SEED),
                                          ("unrelated", n_unrelated, UNRELATED_SEED)]
    records: list[dict[str, object]] = []
    for group, n, seed in runs:
        folder = out_dir / group
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for i, c in enumerate(crop_specs(source_photos(group), n, SIZE, seed)):
            fname = f"{group}/{group}-{i:03d}.jpg"
            (out_dir / fname).write_bytes(_jpeg(c.image))
            package, file = c.source.split(":", 1)
            records.append({"file": fname, "package": package, "source": file,
                            "licence": c.licence, "crop_box": list(c.box)})
    rows = ",\n".join(" " + json.dumps(r, ensure_ascii=False) for r in records)
    (out_dir / "sources.json").write_text(f"[\n{rows}\n]\n", encoding="utf-8")


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description="Build the banned/unrelated example sets.")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                    help="output folder (default: the folder holding this script)")
    write_sets(ap.parse_args().out)


if __name__ == "__main__":
    main()
