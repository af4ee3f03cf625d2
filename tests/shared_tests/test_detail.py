"""vetohash.detail: every example photo scores well above MIN_DETAIL; flat colours, gentle gradients and
near-blank pages score below it, also as low-quality JPEG and at any size."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from vetohash.detail import MIN_DETAIL, detail
from vetohash.files import image_files
from vetohash.preprocess import open_image

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SIZES = (64, 200, 1000)
QUALITIES = (None, 30, 20, 10)  # None: the image as drawn; else re-encoded as JPEG at that quality


def ramp(size: int, low: float, high: float, angle: str = "x") -> np.ndarray:
    """Grey levels from `low` to `high` across the image: left to right, top to bottom or along a diagonal."""
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size
    t = {"x": x, "y": y, "xy": (x + y) / 2}[angle]
    return low + (high - low) * t


def featureless(size: int) -> dict[str, Image.Image]:
    """Images with nothing in them a hash could hold on to, drawn at `size` x `size`."""
    rgb = lambda a: Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8)).convert("RGB")  # noqa: E731
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size - 0.5
    r2 = x * x + y * y
    out = {f"flat {c}": Image.new("RGB", (size, size), c)
           for c in [(0, 0, 0), (255, 255, 255), (128, 128, 128), (200, 30, 40), (20, 120, 230)]}
    for low, high in [(100, 160), (40, 80), (230, 255)]:
        for angle in ("x", "y"):
            out[f"ramp {low}-{high} {angle}"] = rgb(ramp(size, low, high, angle))
        d = ramp(size, low, high, "xy")
        out[f"colour ramp {low}-{high}"] = Image.fromarray(
            np.rint(np.stack([d, d / 2 + 60, 255 - d], axis=-1)).astype(np.uint8))
    out["vignette"] = rgb(220 / (1 + r2 / 2) ** 2)  # corners 40% darker, as a cheap lens leaves them
    out["radial"] = rgb(230 - 60 * np.sqrt(r2))
    rng = np.random.default_rng(0)
    out["grain"] = Image.fromarray(np.clip(128 + rng.normal(0, 3, (size, size, 3)), 0, 255).astype(np.uint8))
    ruled = Image.new("RGB", (size, size), (250, 250, 248))
    draw = ImageDraw.Draw(ruled)
    for k in range(6):  # faint ruled lines, 12 grey levels below the paper
        row = int(size * (0.2 + 0.1 * k))
        draw.line([(size * 0.1, row), (size * 0.8, row)], fill=(238, 238, 238), width=max(1, size // 200))
    out["ruled page"] = ruled
    note = Image.new("RGB", (size, size), (245, 245, 240))
    ImageDraw.Draw(note).text((size * 0.1, size * 0.1), "faint pencil note", fill=(233, 233, 233))
    out["faint note"] = note
    dusty = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(dusty)
    for px, py in rng.integers(0, size, (30, 2)):  # a few dark specks of dust
        draw.point((int(px), int(py)), fill=(200, 200, 200))
    out["dusty page"] = dusty
    return out


def as_jpeg(image: Image.Image, quality: int | None) -> Image.Image:
    if quality is None:
        return image
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return open_image(buffer.getvalue())


def test_every_example_photo_scores_comfortably_above_the_threshold() -> None:
    paths = image_files([EXAMPLES / "banned", EXAMPLES / "unrelated"])
    assert len(paths) == 310
    scores = {path.name: detail(open_image(path)) for path in paths}
    lowest = min(scores, key=scores.__getitem__)
    print(f"lowest example detail: {lowest} {scores[lowest]:.2f} (MIN_DETAIL {MIN_DETAIL})")
    assert scores[lowest] >= 1.5 * MIN_DETAIL, (lowest, scores[lowest])


@pytest.mark.parametrize("size", SIZES)
def test_flat_gradient_and_near_blank_images_score_below_the_threshold_also_as_jpeg(size: int) -> None:
    scores = {(name, quality): detail(as_jpeg(image, quality))
              for name, image in featureless(size).items() for quality in QUALITIES}
    highest = max(scores, key=scores.__getitem__)
    print(f"highest featureless detail at {size} px: {highest} {scores[highest]:.2f}")
    assert scores[highest] < MIN_DETAIL, (highest, scores[highest])
    assert all(scores[name, None] < 1e-9 for name, _ in scores if name.startswith("flat"))


def test_a_ramp_of_any_strength_is_featureless_but_a_bright_blob_is_not() -> None:
    # Slopes and vignetting are lighting, whatever their range; a shape is something to hash.
    assert detail(Image.fromarray(np.rint(ramp(128, 0, 255, "xy")).astype(np.uint8))) < 1
    y, x = (np.mgrid[0:128, 0:128] + 0.5) / 128 - 0.5
    blob = Image.fromarray(np.rint(230 * np.exp(-(x * x + y * y) / 0.25)).astype(np.uint8))
    assert detail(blob) > MIN_DETAIL


def test_the_score_ignores_size_container_and_colour_mode_and_is_repeatable() -> None:
    photo = open_image(EXAMPLES / "banned" / "banned-000.jpg")
    score = detail(photo)
    assert detail(photo) == score
    assert detail(open_image(EXAMPLES / "banned" / "banned-000.jpg")) == score
    assert detail(photo.convert("L")) == score  # luma either way
    assert detail(photo.resize((512, 512), Image.Resampling.LANCZOS)) == pytest.approx(score, rel=0.15)
