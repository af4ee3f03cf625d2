"""Alterations: the edits someone makes to a banned image to dodge the ban, as pure factories.

A *kind* (Rotation, Blur, ...) holds parameter ranges fixed at construction. `kind.draw(rng)` draws one
concrete `Edit` from an explicit `random.Random`; an edit is a pure function of the image alone, so the same
seed always gives the same edits and the same altered pixels. Every kind is registered by name in `KINDS`,
which the training config, the evaluation report and the benchmarks share.

Pixel sizes are given for the paper's 32x32 images (its Table 1) and scaled by side/32 when applied, where
side is the image's shorter side: a 5..15 px square on a 32 px image is a 20..60 px square on a 128 px one.
"""

from __future__ import annotations

import io
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from vetohash.errors import VetohashError
from vetohash.upright import kept_whole

REFERENCE_SIDE = 32  # the paper's image side; pixel parameters are in units of this side
Range = tuple[float, float]
BLACK = (0, 0, 0)


class AlterationError(VetohashError):
    """An alteration kind or its parameters are unknown or out of range."""


def scale_of(image: Image.Image) -> float:
    """How many image pixels one reference (32 px image) pixel is: shorter side / 32."""
    return min(image.size) / REFERENCE_SIDE


@dataclass(frozen=True)
class Edit:
    """One concrete alteration: a kind name, its drawn parameters, and the pure function that applies them."""

    kind: str
    params: Mapping[str, Any]
    apply: Callable[..., Image.Image] = field(repr=False, compare=False)

    def __call__(self, image: Image.Image) -> Image.Image:
        """The altered image (RGB); the input is never modified."""
        return self.apply(image.convert("RGB") if image.mode != "RGB" else image, **self.params).convert("RGB")


class Kind(ABC):
    """A family of edits with parameter ranges; subclasses are frozen dataclasses registered in KINDS."""

    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def draw(self, rng: random.Random) -> Edit:
        """One edit with parameters drawn from this kind's ranges."""

    def settings(self) -> dict[str, Any]:
        """The plain (TOML/msgpack-ready) form of this kind's parameters."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


KINDS: dict[str, type[Kind]] = {}


def register(cls: type[Kind]) -> type[Kind]:
    """Add a kind to the registry under its `name`."""
    KINDS[cls.name] = cls
    return cls


def make_kind(name: str, settings: Mapping[str, Any] | None = None) -> Kind:
    """The kind registered as `name`, with `settings` overriding its default ranges; AlterationError if bad."""
    if name not in KINDS:
        raise AlterationError(f"unknown alteration kind {name!r}; known: {', '.join(sorted(KINDS))}")
    cls = KINDS[name]
    settings = dict(settings or {})
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise AlterationError(f"alteration {name!r} has no setting {', '.join(unknown)}; "
                              f"it takes {', '.join(sorted(known)) or 'none'}")
    defaults = cls()
    values: dict[str, Any] = {}
    for key, value in settings.items():
        default = getattr(defaults, key)
        values[key] = _coerce(name, key, value, default)
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise AlterationError(f"alteration {name!r}: {error}") from None


def _coerce(kind: str, key: str, value: Any, default: Any) -> Any:
    """A setting in the type of its default: a range is a pair of numbers low <= high, a choice a list of
    strings."""
    where = f"alteration {kind!r} setting {key!r}"
    if isinstance(default, tuple) and default and isinstance(default[0], str):
        if not isinstance(value, list | tuple) or not value or not all(isinstance(v, str) for v in value):
            raise AlterationError(f"{where} must be a non-empty list of names, got {value!r}")
        return tuple(value)
    if isinstance(default, tuple):
        if (not isinstance(value, list | tuple) or len(value) != 2
                or not all(type(v) in (int, float) and math.isfinite(v) for v in value)):
            raise AlterationError(f"{where} must be a [low, high] pair of numbers, got {value!r}")
        low, high = float(value[0]), float(value[1])
        if low > high:
            raise AlterationError(f"{where}: low {low:g} is above high {high:g}")
        return (low, high)
    raise AlterationError(f"{where} cannot be set")


def _check_range(key: str, value: Range, low: float, high: float) -> None:
    if not low <= value[0] <= value[1] <= high:
        raise ValueError(f"{key} {list(value)} must lie within [{low:g}, {high:g}]")


def _check_choices(key: str, value: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    bad = [v for v in value if v not in allowed]
    if bad or not value:
        raise ValueError(f"{key} must be names from {list(allowed)}, got {list(value)}")


def _position(rng: random.Random) -> tuple[float, float]:
    """Where a thing goes, as fractions of the free room along x and y."""
    return rng.random(), rng.random()


def _place(image: Image.Image, width: float, height: float, x: float, y: float) -> tuple[int, int]:
    """Top-left corner for a width x height box placed at fractions (x, y) of the room left over."""
    return round(x * max(0, image.width - width)), round(y * max(0, image.height - height))


# --- the paper's four (Table 1) ------------------------------------------------------------------------------


def rotate(image: Image.Image, degrees: float) -> Image.Image:
    """Rotate counter-clockwise about the centre, same size, corners filled black."""
    return image.rotate(degrees, resample=Image.Resampling.BILINEAR, fillcolor=BLACK)


@register
@dataclass(frozen=True)
class Rotation(Kind):
    """Rotation by an angle drawn from `degrees` (paper: -90..90)."""

    name: ClassVar[str] = "rotation"
    description: ClassVar[str] = "rotate by a drawn angle, corners filled black"
    degrees: Range = (-90.0, 90.0)

    def __post_init__(self) -> None:
        _check_range("degrees", self.degrees, -360, 360)

    def draw(self, rng: random.Random) -> Edit:
        return Edit(self.name, {"degrees": rng.uniform(*self.degrees)}, rotate)


def turned_whole(image: Image.Image, degrees: float) -> Image.Image:
    """`image` turned by `degrees` about its centre and cut to the part the turn kept whole: a rotated copy
    cropped so that no corner shows the fill, which the platform's upright check cannot spot by its corners."""
    return kept_whole(image.rotate(degrees, resample=Image.Resampling.BILINEAR), degrees)


@register
@dataclass(frozen=True)
class TurnedCrop(Kind):
    """Rotation by an angle drawn from `degrees`, either way, its filled corners cropped off."""

    name: ClassVar[str] = "turned-crop"
    description: ClassVar[str] = "rotate by a drawn angle either way, then crop away the filled corners"
    degrees: Range = (5.0, 45.0)

    def __post_init__(self) -> None:
        _check_range("degrees", self.degrees, 0, 89)

    def draw(self, rng: random.Random) -> Edit:
        return Edit(self.name, {"degrees": rng.choice((1, -1)) * rng.uniform(*self.degrees)}, turned_whole)


def blur_sigma(kernel: float) -> float:
    """Gaussian sigma for a kernel size, by OpenCV's rule 0.3*((k-1)/2 - 1) + 0.8, kept above zero."""
    return max(0.3 * ((kernel - 1) / 2 - 1) + 0.8, 0.05)


def blur(image: Image.Image, size: float) -> Image.Image:
    """Gaussian blur whose kernel is `size` reference pixels (scaled to the image)."""
    return image.filter(ImageFilter.GaussianBlur(blur_sigma(size * scale_of(image))))


@register
@dataclass(frozen=True)
class Blur(Kind):
    """Gaussian blur with a kernel of `size` px (paper: 1..10 px on 32 px images)."""

    name: ClassVar[str] = "blur"
    description: ClassVar[str] = "Gaussian blur of a drawn kernel size"
    size: Range = (1.0, 10.0)

    def __post_init__(self) -> None:
        _check_range("size", self.size, 0.1, 32)

    def draw(self, rng: random.Random) -> Edit:
        return Edit(self.name, {"size": rng.uniform(*self.size)}, blur)


def sigma_blur(image: Image.Image, sigma: float) -> Image.Image:
    """Gaussian blur of standard deviation `sigma` reference pixels (scaled to the image)."""
    return image.filter(ImageFilter.GaussianBlur(sigma * scale_of(image)))


@register
@dataclass(frozen=True)
class SigmaBlur(Kind):
    """Gaussian blur with a sigma of `sigma` px on 32 px images: the paper's "blur of 1-10 px" read as a sigma,
    up to six times stronger than `blur`'s kernel reading (what an uploader blurs to dodge a filter)."""

    name: ClassVar[str] = "blur-sigma"
    description: ClassVar[str] = "Gaussian blur of a drawn sigma"
    sigma: Range = (1.0, 10.0)

    def __post_init__(self) -> None:
        _check_range("sigma", self.sigma, 0.1, 32)

    def draw(self, rng: random.Random) -> Edit:
        return Edit(self.name, {"sigma": rng.uniform(*self.sigma)}, sigma_blur)


def black_square(image: Image.Image, side: float, x: float, y: float) -> Image.Image:
    """A black square of `side` reference pixels at fractions (x, y) of the free room."""
    pixels = max(1, round(side * scale_of(image)))
    out = image.copy()
    left, top = _place(out, pixels, pixels, x, y)
    ImageDraw.Draw(out).rectangle((left, top, left + pixels - 1, top + pixels - 1), fill=BLACK)
    return out


@register
@dataclass(frozen=True)
class Overlay(Kind):
    """A black square of side drawn from `side` px at a random position (paper: 5..15 px)."""

    name: ClassVar[str] = "overlay"
    description: ClassVar[str] = "black square of a drawn side at a random position"
    side: Range = (5.0, 15.0)

    def __post_init__(self) -> None:
        _check_range("side", self.side, 0.5, 32)

    def draw(self, rng: random.Random) -> Edit:
        side = rng.uniform(*self.side)
        x, y = _position(rng)
        return Edit(self.name, {"side": side, "x": x, "y": y}, black_square)


def translate(image: Image.Image, dx: float, dy: float) -> Image.Image:
    """Shift by (dx, dy) reference pixels (scaled; positive is right and down), uncovered area black."""
    scale = scale_of(image)
    sx, sy = round(dx * scale), round(dy * scale)
    out = Image.new("RGB", image.size, BLACK)
    out.paste(image, (sx, sy))
    return out


@register
@dataclass(frozen=True)
class Translation(Kind):
    """A shift of `shift` px along X, Y or both, drawn among `axes` (paper: -10..10 px)."""

    name: ClassVar[str] = "translation"
    description: ClassVar[str] = "shift along X, Y or both, uncovered area black"
    shift: Range = (-10.0, 10.0)
    axes: tuple[str, ...] = ("x", "y", "both")

    def __post_init__(self) -> None:
        _check_range("shift", self.shift, -32, 32)
        _check_choices("axes", self.axes, ("x", "y", "both"))

    def draw(self, rng: random.Random) -> Edit:
        axis = rng.choice(self.axes)
        dx = rng.uniform(*self.shift) if axis in ("x", "both") else 0.0
        dy = rng.uniform(*self.shift) if axis in ("y", "both") else 0.0
        return Edit(self.name, {"dx": dx, "dy": dy}, translate)


# --- edits people use to dodge filters (issue 6's benchmark) -------------------------------------------------


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """Re-encode as JPEG at `quality` and decode again."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


@register
@dataclass(frozen=True)
class Jpeg(Kind):
    """JPEG re-encoding at a quality drawn from `quality`."""

    name: ClassVar[str] = "jpeg"
    description: ClassVar[str] = "re-encode as JPEG at a drawn quality"
    quality: Range = (10.0, 90.0)

    def __post_init__(self) -> None:
        _check_range("quality", self.quality, 1, 100)

    def draw(self, rng: random.Random) -> Edit:
        return Edit(self.name, {"quality": rng.randint(round(self.quality[0]), round(self.quality[1]))}, jpeg)


def rescale(image: Image.Image, factor: float) -> Image.Image:
    """Resize both sides by `factor` (aspect kept); the output has a new size."""
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.BILINEAR)


@register
@dataclass(frozen=True)
class Rescale(Kind):
    """Resizing by a factor drawn from `factor` (below 1 shrinks)."""

    name: ClassVar[str] = "rescale"
    description: ClassVar[str] = "resize by a drawn factor"
    factor: Range = (0.3, 2.0)

    def __post_init__(self) -> None:
        _check_range("factor", self.factor, 0.05, 8)

    def draw(self, rng: random.Random) -> Edit:
        return Edit(self.name, {"factor": rng.uniform(*self.factor)}, rescale)


def crop(image: Image.Image, keep_x: float, keep_y: float, x: float, y: float) -> Image.Image:
    """Keep a `keep_x` by `keep_y` fraction of the image at fractions (x, y) of the free room."""
    width, height = max(1, round(image.width * keep_x)), max(1, round(image.height * keep_y))
    left, top = _place(image, width, height, x, y)
    return image.crop((left, top, left + width, top + height))


@register
@dataclass(frozen=True)
class Crop(Kind):
    """A random crop keeping a fraction drawn from `keep` of each side."""

    name: ClassVar[str] = "crop"
    description: ClassVar[str] = "random crop keeping a drawn fraction of each side"
    keep: Range = (0.7, 0.95)

    def __post_init__(self) -> None:
        _check_range("keep", self.keep, 0.05, 1)

    def draw(self, rng: random.Random) -> Edit:
        keep_x, keep_y = rng.uniform(*self.keep), rng.uniform(*self.keep)
        x, y = _position(rng)
        return Edit(self.name, {"keep_x": keep_x, "keep_y": keep_y, "x": x, "y": y}, crop)


@register
@dataclass(frozen=True)
class SmallCrop(Crop):
    """A random crop keeping a quarter to a half of the image: a part anyone can share on its own."""

    name: ClassVar[str] = "small-crop"
    description: ClassVar[str] = "random crop keeping a quarter to a half of the image"
    keep: Range = (0.5, 0.71)


def mirror(image: Image.Image, axis: str) -> Image.Image:
    """Flip left-right ("horizontal") or top-bottom ("vertical")."""
    return ImageOps.mirror(image) if axis == "horizontal" else ImageOps.flip(image)


@register
@dataclass(frozen=True)
class Mirror(Kind):
    """A mirror image, along an axis drawn from `axes`."""

    name: ClassVar[str] = "mirror"
    description: ClassVar[str] = "flip left-right"
    axes: tuple[str, ...] = ("horizontal",)

    def __post_init__(self) -> None:
        _check_choices("axes", self.axes, ("horizontal", "vertical"))

    def draw(self, rng: random.Random) -> Edit:
        return Edit(self.name, {"axis": rng.choice(self.axes)}, mirror)


def colour(image: Image.Image, saturation: float, hue: float) -> Image.Image:
    """Scale saturation by `saturation`, then turn hue by `hue` of a full turn."""
    out = ImageEnhance.Color(image).enhance(saturation)
    hsv = np.asarray(out.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(hue * 256)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


@register
@dataclass(frozen=True)
class Colour(Kind):
    """Saturation scaled by a factor from `saturation`, hue turned by a fraction from `hue`."""

    name: ClassVar[str] = "colour"
    description: ClassVar[str] = "change saturation and turn the hue"
    saturation: Range = (0.0, 2.0)
    hue: Range = (-0.1, 0.1)

    def __post_init__(self) -> None:
        _check_range("saturation", self.saturation, 0, 5)
        _check_range("hue", self.hue, -0.5, 0.5)

    def draw(self, rng: random.Random) -> Edit:
        return Edit(self.name, {"saturation": rng.uniform(*self.saturation), "hue": rng.uniform(*self.hue)},
                    colour)


def brightness_contrast(image: Image.Image, brightness: float, contrast: float) -> Image.Image:
    """Scale brightness, then contrast, by the given factors (1 leaves the image as it is)."""
    return ImageEnhance.Contrast(ImageEnhance.Brightness(image).enhance(brightness)).enhance(contrast)


@register
@dataclass(frozen=True)
class BrightnessContrast(Kind):
    """Brightness and contrast scaled by factors drawn from `brightness` and `contrast`."""

    name: ClassVar[str] = "brightness"
    description: ClassVar[str] = "scale brightness and contrast"
    brightness: Range = (0.6, 1.4)
    contrast: Range = (0.6, 1.4)

    def __post_init__(self) -> None:
        _check_range("brightness", self.brightness, 0, 5)
        _check_range("contrast", self.contrast, 0, 5)

    def draw(self, rng: random.Random) -> Edit:
        return Edit(self.name, {"brightness": rng.uniform(*self.brightness),
                                "contrast": rng.uniform(*self.contrast)}, brightness_contrast)


WORDS = ("lol", "SALE", "@user", "2024", "wow", "repost", "meme", "hi", "NEW", "#tbt", "ok", "free")


def text(image: Image.Image, words: str, size: float, x: float, y: float, fill: tuple[int, int, int]
         ) -> Image.Image:
    """`words` in Pillow's default font, `size` reference pixels tall, at fractions (x, y) of the room."""
    font = ImageFont.load_default(size=max(4, round(size * scale_of(image))))
    out = image.copy()
    draw = ImageDraw.Draw(out)
    left, top, right, bottom = draw.textbbox((0, 0), words, font=font)
    corner = _place(out, right - left, bottom - top, x, y)
    draw.text((corner[0] - left, corner[1] - top), words, font=font, fill=tuple(fill))
    return out


@register
@dataclass(frozen=True)
class Text(Kind):
    """One to three short words, `size` px tall, in white, black or a random colour, at a random place."""

    name: ClassVar[str] = "text"
    description: ClassVar[str] = "a caption of short words in the default font"
    size: Range = (4.0, 8.0)

    def __post_init__(self) -> None:
        _check_range("size", self.size, 1, 32)

    def draw(self, rng: random.Random) -> Edit:
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))
        fill = rng.choice([(255, 255, 255), BLACK, tuple(rng.randrange(256) for _ in range(3))])
        x, y = _position(rng)
        return Edit(self.name, {"words": words, "size": rng.uniform(*self.size), "x": x, "y": y,
                                "fill": tuple(fill)}, text)


def sticker(image: Image.Image, side: float, x: float, y: float, fill: tuple[int, int, int]) -> Image.Image:
    """An emoji-like face (filled disc, two eyes, a smile) `side` reference pixels wide."""
    pixels = max(3, round(side * scale_of(image)))
    out = image.copy()
    left, top = _place(out, pixels, pixels, x, y)
    draw = ImageDraw.Draw(out)
    draw.ellipse((left, top, left + pixels - 1, top + pixels - 1), fill=tuple(fill), outline=BLACK)
    eye = max(1, pixels // 8)
    for ex in (left + pixels * 0.33, left + pixels * 0.67):
        ey = top + pixels * 0.38
        draw.ellipse((ex - eye, ey - eye, ex + eye, ey + eye), fill=BLACK)
    draw.arc((left + pixels * 0.25, top + pixels * 0.35, left + pixels * 0.75, top + pixels * 0.78),
             20, 160, fill=BLACK, width=max(1, pixels // 12))
    return out


@register
@dataclass(frozen=True)
class Sticker(Kind):
    """An emoji-like sticker of side drawn from `side` px, in a random colour, at a random place."""

    name: ClassVar[str] = "sticker"
    description: ClassVar[str] = "an emoji-like face sticker"
    side: Range = (6.0, 14.0)

    def __post_init__(self) -> None:
        _check_range("side", self.side, 1, 32)

    def draw(self, rng: random.Random) -> Edit:
        fill = rng.choice([(255, 204, 0), tuple(rng.randrange(256) for _ in range(3))])
        x, y = _position(rng)
        return Edit(self.name, {"side": rng.uniform(*self.side), "x": x, "y": y, "fill": tuple(fill)}, sticker)


def border(image: Image.Image, width: float, fill: tuple[int, int, int]) -> Image.Image:
    """A frame `width` reference pixels wide added around the image (the output is larger)."""
    pixels = max(1, round(width * scale_of(image)))
    return ImageOps.expand(image, border=pixels, fill=tuple(fill))


@register
@dataclass(frozen=True)
class Border(Kind):
    """A border of width drawn from `width` px, black, white or a random colour."""

    name: ClassVar[str] = "border"
    description: ClassVar[str] = "pad with a coloured border"
    width: Range = (1.0, 5.0)

    def __post_init__(self) -> None:
        _check_range("width", self.width, 0.1, 32)

    def draw(self, rng: random.Random) -> Edit:
        fill = rng.choice([BLACK, (255, 255, 255), tuple(rng.randrange(256) for _ in range(3))])
        return Edit(self.name, {"width": rng.uniform(*self.width), "fill": tuple(fill)}, border)


def noise(image: Image.Image, sigma: float, seed: int) -> Image.Image:
    """Add Gaussian noise of standard deviation `sigma` (0..255 scale), the same for the same seed."""
    pixels = np.asarray(image, dtype=np.float32)
    noisy = pixels + np.random.default_rng(seed).normal(0.0, sigma, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), "RGB")


@register
@dataclass(frozen=True)
class Noise(Kind):
    """Gaussian noise with a standard deviation drawn from `sigma` (in 0..255 units)."""

    name: ClassVar[str] = "noise"
    description: ClassVar[str] = "add Gaussian noise"
    sigma: Range = (2.0, 20.0)

    def __post_init__(self) -> None:
        _check_range("sigma", self.sigma, 0, 128)

    def draw(self, rng: random.Random) -> Edit:
        return Edit(self.name, {"sigma": rng.uniform(*self.sigma), "seed": rng.getrandbits(63)}, noise)


def compose(image: Image.Image, first: Edit, second: Edit) -> Image.Image:
    """`second` applied to the result of `first`."""
    return second(first(image))


SINGLE_KINDS = ("rotation", "blur", "overlay", "translation", "jpeg", "rescale", "crop", "mirror", "colour",
                "brightness", "text", "sticker", "border", "noise")


@register
@dataclass(frozen=True)
class Pair(Kind):
    """Two different kinds drawn from `kinds` (each with its default ranges), applied one after the other."""

    name: ClassVar[str] = "pair"
    description: ClassVar[str] = "two different edits, one after the other"
    kinds: tuple[str, ...] = SINGLE_KINDS

    def __post_init__(self) -> None:
        _check_choices("kinds", self.kinds, SINGLE_KINDS)
        if len(set(self.kinds)) < 2:
            raise ValueError("kinds must name at least two different kinds")

    def draw(self, rng: random.Random) -> Edit:
        first, second = rng.sample(sorted(set(self.kinds)), 2)
        return Edit(self.name, {"first": KINDS[first]().draw(rng), "second": KINDS[second]().draw(rng)},
                    compose)


PAPER_KINDS = ("rotation", "blur", "overlay", "translation")
