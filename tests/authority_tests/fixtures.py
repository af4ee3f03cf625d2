"""Small images and settings shared by the authority tests (helpers, not a conftest, so nothing is implicit)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from vetohash.specs import ModelSpec

# A copy-cnn small enough to fit to a list in a second: the copy recipe's tests use it as their base model.
TINY_COPY_SPEC = ModelSpec.from_dict({
    "name": "copy-cnn", "bits": 32,
    "arch": {"type": "copy-cnn", "width": 4, "stages": 3, "mirror": True},
    "preprocess": {"mode": "RGB", "size": 32, "resample": "bilinear", "mean": [0.5] * 3, "std": [0.25] * 3},
})

TINY_CONFIG = """\
epochs = 2
batch_size = 8
[alterations.rotation]
count = 4
[alterations.overlay]
count = 4
"""


def picture(seed: int, side: int = 64) -> Image.Image:
    """A distinct, photo-ish RGB image: a smooth colour gradient with a few random shapes on it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    base = np.stack([np.sin(x * rng.uniform(1, 6) + rng.uniform(0, 6)),
                     np.cos(y * rng.uniform(1, 6) + rng.uniform(0, 6)),
                     np.sin((x + y) * rng.uniform(1, 6))], axis=-1)
    image = Image.fromarray(((base + 1) * 127.5).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x0, y0 = rng.integers(0, side - 8, 2)
        size = int(rng.integers(6, side // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x0 + size, y0 + size), fill=colour)
        else:
            draw.ellipse((x0, y0, x0 + size, y0 + size), fill=colour)
    return image


def write_pictures(folder: Path, seeds: range, prefix: str = "img", side: int = 64) -> list[Path]:
    """Save pictures as PNG (lossless, so their content digests are stable) and return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        path = folder / f"{prefix}-{seed:03d}.png"
        picture(seed, side).save(path)
        paths.append(path)
    return paths


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors on a shared 2-core machine: one intra-op thread avoids OpenMP barrier stalls."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
