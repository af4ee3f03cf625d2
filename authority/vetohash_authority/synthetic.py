"""Procedurally generated natural-looking images, for training when real images are scarce.

A dead-leaves model: opaque shapes with power-law sizes fall on a canvas and occlude one another, which
reproduces the scale invariance and edge statistics of photographs. Shapes are filled with flat colour,
gradients or oriented gratings so the network sees texture as well as edges. Everything derives from one
numpy Generator, so a seed names an image.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

MIN_RADIUS = 2.0  # at a side of 128 px


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A random colour, often muted, as in photographs."""
    grey = rng.uniform(0, 255)
    saturation = rng.beta(1.2, 2.5)
    hue = rng.uniform(0, 255, 3)
    return tuple(int(v) for v in np.clip(grey * (1 - saturation) + hue * saturation, 0, 255))  # type: ignore[return-value]


def _texture(rng: np.random.Generator, size: int) -> Image.Image:
    """A gradient or an oriented grating between two colours, to fill a shape."""
    a, b = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, math.pi)
    ramp = x * math.cos(angle) + y * math.sin(angle)
    if rng.random() < 0.5:
        t = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    else:
        t = 0.5 + 0.5 * np.sin(2 * math.pi * rng.uniform(2, 12) * ramp + rng.uniform(0, 2 * math.pi))
    pixels = a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None]
    return Image.fromarray(np.uint8(pixels))


def _radius(rng: np.random.Generator, low: float, high: float, power: float) -> float:
    """A radius with density proportional to r^-power on [low, high] (power 3 is the classic dead-leaves law)."""
    u = rng.random()
    e = 1 - power
    return float((low ** e * (1 - u) + high ** e * u) ** (1 / e))


def _paste_texture(rng: np.random.Generator, canvas: Image.Image, kind: str, geometry: object,
                   box: tuple[int, int, int, int]) -> None:
    """Fill a shape with a texture, working only inside its bounding box."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0, 1)
    mask = Image.new("L", (side, side), 0)
    moved = ([(x - x0, y - y0) for x, y in geometry] if kind == "polygon"  # type: ignore[attr-defined]
             else [geometry[0] - x0, geometry[1] - y0, geometry[2] - x0, geometry[3] - y0])  # type: ignore[index]
    getattr(ImageDraw.Draw(mask), kind)(moved, fill=255)
    canvas.paste(_texture(rng, side), (x0, y0), mask)


def dead_leaves(rng: np.random.Generator, size: int = 128) -> Image.Image:
    """One RGB dead-leaves image of side `size`; shape count, size law and smallest size vary per image."""
    shapes = int(rng.integers(80, 400))
    power = rng.uniform(2.0, 3.0)
    low = MIN_RADIUS * rng.uniform(1, 4) * size / 128
    canvas = _texture(rng, size) if rng.random() < 0.5 else Image.new("RGB", (size, size), _colour(rng))
    draw = ImageDraw.Draw(canvas)
    for _ in range(shapes):
        r = _radius(rng, low, size * 0.6, power)
        cx, cy = rng.uniform(-r, size + r, 2)
        kind = rng.integers(3)
        if kind == 0:
            box = [cx - r, cy - r * rng.uniform(0.4, 1.0), cx + r, cy + r * rng.uniform(0.4, 1.0)]
            shape = ("ellipse", box)
        else:
            corners = 4 if kind == 1 else 3
            start = rng.uniform(0, 2 * math.pi)
            points = [(cx + r * math.cos(start + 2 * math.pi * k / corners), cy + r * math.sin(start + 2 * math.pi * k / corners))
                      for k in range(corners)]
            shape = ("polygon", points)
        if r > 6 and rng.random() < 0.35:
            square = (int(cx - r), int(cy - r), int(cx + r) + 1, int(cy + r) + 1)
            _paste_texture(rng, canvas, shape[0], shape[1], square)
        else:
            getattr(draw, shape[0])(shape[1], fill=_colour(rng))
    if rng.random() < 0.3:
        canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    noise = rng.normal(0, rng.uniform(0, 6), (size, size, 3))
    return Image.fromarray(np.uint8(np.clip(np.asarray(canvas, np.float32) + noise, 0, 255)))


def _one(args: tuple[int, int, int]) -> Image.Image:
    seed, index, size = args
    return dead_leaves(np.random.default_rng([seed, index]), size)


def bank(count: int, seed: int, size: int = 128, workers: int = 1) -> list[Image.Image]:
    """`count` dead-leaves images; image i depends only on (seed, i), whatever the number of workers."""
    jobs = [(seed, i, size) for i in range(count)]
    if workers <= 1:
        return [_one(job) for job in jobs]
    from multiprocessing import get_context

    with get_context("spawn").Pool(workers) as pool:
        return pool.map(_one, jobs, chunksize=64)
